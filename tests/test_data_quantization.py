"""Quantization: per-video means of dequantized frames, computed exactly without a wide copy of the frames."""

import numpy as np

from data.quantization import dequantize, frame_means, quantize


def test_frame_means_equal_the_mean_of_dequantized_frames():
    rng = np.random.default_rng(0)
    num_frames = np.array([3, 0, 300, 1, 57])
    frames = rng.integers(0, 256, (num_frames.sum(), 1152), dtype=np.uint8)
    frames[3:303] = 255  # the largest possible sum
    means = frame_means(frames, num_frames)
    assert means.shape == (5, 1152) and means.dtype == np.float32
    ends = np.cumsum(num_frames)
    for i, (start, end) in enumerate(zip(ends - num_frames, ends, strict=True)):
        want = dequantize(frames[start:end]).astype(np.float64).mean(0) if end > start else np.zeros(1152)
        np.testing.assert_allclose(means[i], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(means[2], 4 + 4 / 512 - 2, rtol=1e-7)  # 255 * 4/255 = 4
    assert frame_means(frames[:0], np.zeros(0, np.int64)).shape == (0, 1152)


def test_quantize_inverts_dequantize():
    q = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantize(dequantize(q)), q)
