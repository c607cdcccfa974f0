"""Model-side input preprocessing: the store's uint8 frames and float video features, normalized."""

import keras
from keras import ops

from data.quantization import BIAS, SCALE


def unit_mean_square(x):
    """x (..., D) L2-normalized along the last axis and scaled to norm sqrt(D): each feature is then about
    unit size, so gate pre-activations start near unit size (measured against a unit norm:
    benchmarks/RESULTS.md, development measurements)."""
    norm = ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))
    return x * (x.shape[-1] ** 0.5) / norm


@keras.saving.register_keras_serializable(package="yt8m")
class FrameFeatures(keras.layers.Layer):
    """[frames uint8 (B, T, 1152), num_frames int (B,)] -> float32 (B, T, 1152) plus a mask (B, T).

    Dequantizes as YouTube-8M does (q * 4/255 + 4/512 - 2) and normalizes each frame (`unit_mean_square`,
    the starter code's per-frame L2 normalization, rescaled). The mask marks the first num_frames steps of
    each row as real, so recurrent layers and pooling after it skip the padding; padded frames become zeros,
    so that a convolution over time sees the same zeros before and after a video whatever its padding.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        frames, _ = inputs
        x = unit_mean_square(ops.cast(frames, "float32") * SCALE + BIAS)
        return x * ops.expand_dims(ops.cast(self.compute_mask(inputs), "float32"), -1)

    def compute_mask(self, inputs, mask=None):
        frames, num_frames = inputs
        steps = ops.cumsum(ops.ones_like(frames[:, :, 0], dtype="int32"), axis=1)  # 1, 2, ..., T per row
        return steps <= ops.cast(ops.reshape(num_frames, (-1, 1)), "int32")

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="yt8m")
class CenteredFrames(keras.layers.Layer):
    """Masked frames (B, T, D) -> each real frame minus the mean of its video's real frames; padding stays
    zero and the mask passes through. The qrnn's QRNN reads what changes within a video, while its skip
    path reads the video's mean (models.zoo.QrnnConfig.centered). Not causal: every step sees the mean."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        real = ops.ones(ops.shape(inputs)[:2], "bool") if mask is None else ops.cast(mask, "bool")
        weight = ops.expand_dims(ops.cast(real, inputs.dtype), -1)
        count = ops.maximum(ops.sum(weight, axis=1, keepdims=True), 1.0)
        return (inputs - ops.sum(inputs * weight, axis=1, keepdims=True) / count) * weight

    def compute_mask(self, inputs, mask=None):
        return mask


@keras.saving.register_keras_serializable(package="yt8m")
class VideoFeatures(keras.layers.Layer):
    """Video features (B, 1152) (mean rgb, then mean audio) -> the same vector through `unit_mean_square`."""

    def call(self, inputs):
        return unit_mean_square(inputs)


@keras.saving.register_keras_serializable(package="yt8m")
class VideoChunks(keras.layers.Layer):
    """A video vector (B, 1152) -> a sequence (B, 1152 / chunk, chunk) for a recurrent layer.

    The vector is cut into chunks of `chunk` features (rgb chunks, then audio) and read in reverse: the
    audio chunk first and the rgb chunk holding the first (largest-variance) PCA components last, nearest
    the output, where a forget-gated state remembers best (measured against the forward order:
    benchmarks/RESULTS.md, development measurements).
    """

    def __init__(self, chunk=128, **kwargs):
        super().__init__(**kwargs)
        self.chunk = int(chunk)

    def call(self, inputs):
        return ops.flip(ops.reshape(inputs, (-1, inputs.shape[-1] // self.chunk, self.chunk)), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] // self.chunk, self.chunk)

    def get_config(self):
        return {**super().get_config(), "chunk": self.chunk}
