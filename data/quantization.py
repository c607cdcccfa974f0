"""YouTube-8M's byte quantization of frame features, and per-video means of dequantized frames."""

import numpy as np

MIN_VALUE, MAX_VALUE = -2.0, 2.0
SCALE = (MAX_VALUE - MIN_VALUE) / 255.0  # 4/255
BIAS = 4.0 / 512.0 + MIN_VALUE  # 4/512 - 2


def dequantize(q: np.ndarray) -> np.ndarray:
    """Bytes to floats the official way: q * 4/255 + 4/512 - 2 (float32)."""
    return np.asarray(q, dtype=np.float32) * np.float32(SCALE) + np.float32(BIAS)


def quantize(x: np.ndarray) -> np.ndarray:
    """Floats to bytes: the nearest byte under `dequantize` (values outside its range are clipped)."""
    q = np.rint((np.asarray(x, dtype=np.float64) - BIAS) / SCALE)
    return np.clip(q, 0, 255).astype(np.uint8)


def frame_means(frames: np.ndarray, num_frames: np.ndarray) -> np.ndarray:
    """Mean of each video's dequantized frames: frames (F, D) uint8 end to end, num_frames (N,) -> (N, D).

    Summed exactly in int64 (without an int64 copy of the frames), then dequantized once: the map is
    affine, so this is the mean of the dequantized frames, rounded once to float32. No frames: zeros.
    """
    num_frames = np.asarray(num_frames, dtype=np.int64)
    out = np.zeros((len(num_frames), frames.shape[1]), dtype=np.float32)
    has = num_frames > 0
    if has.any():
        starts = np.concatenate([[0], np.cumsum(num_frames)[:-1]])[has]
        sums = np.add.reduceat(frames, starts, axis=0, dtype=np.int64)
        means_q = sums / num_frames[has, None]
        out[has] = (means_q * SCALE + BIAS).astype(np.float32)
    return out
