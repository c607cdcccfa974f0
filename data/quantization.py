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

    Each video's bytes are summed exactly (uint32 while no sum can overflow it, else int64; numpy casts
    in small buffers, so the frames are never copied whole), then dequantized once: the map is affine,
    so this is the mean of the dequantized frames, rounded once to float32. No frames: zeros.
    """
    num_frames = np.asarray(num_frames, dtype=np.int64)
    ends = np.cumsum(num_frames)
    exact = np.uint32 if len(num_frames) == 0 or num_frames.max() <= np.iinfo(np.uint32).max // 255 else np.int64
    sums = np.zeros((len(num_frames), frames.shape[1]), dtype=np.int64)
    for i, (start, end) in enumerate(zip((ends - num_frames).tolist(), ends.tolist(), strict=True)):
        if end > start:
            sums[i] = frames[start:end].sum(axis=0, dtype=exact)
    out = np.zeros(sums.shape, dtype=np.float32)
    has = num_frames > 0
    out[has] = (sums[has] / num_frames[has, None] * SCALE + BIAS).astype(np.float32)
    return out
