"""Model-side input preprocessing: the store's uint8 frames become normalized float frames with a mask."""

import keras
from keras import ops

from data.quantization import BIAS, SCALE


@keras.saving.register_keras_serializable(package="yt8m")
class FrameFeatures(keras.layers.Layer):
    """[frames uint8 (B, T, 1152), num_frames int (B,)] -> float32 (B, T, 1152) plus a mask (B, T).

    Dequantizes as YouTube-8M does (q * 4/255 + 4/512 - 2) and L2-normalizes each frame (the starter
    code's input normalization), scaled to unit mean square per feature (norm sqrt(1152)) so that gate
    pre-activations start near unit size (measured: benchmarks/RESULTS.md, development measurements).
    The mask marks the first num_frames steps of each row as real, so recurrent layers after it skip the
    zero padding.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        frames, num_frames = inputs
        x = ops.cast(frames, "float32") * SCALE + BIAS
        norm = ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))
        real = ops.cast(self.compute_mask(inputs), "float32")
        return x * (x.shape[-1] ** 0.5) / norm * ops.expand_dims(real, -1)  # padded frames are zeros

    def compute_mask(self, inputs, mask=None):
        frames, num_frames = inputs
        steps = ops.cumsum(ops.ones_like(frames[:, :, 0], dtype="int32"), axis=1)  # 1, 2, ..., T per row
        return steps <= ops.cast(ops.reshape(num_frames, (-1, 1)), "int32")

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="yt8m")
class VideoChunks(keras.layers.Layer):
    """Video features (B, 1152) -> a sequence (B, 1152 / chunk, chunk) for a recurrent layer.

    The vector is L2-normalized and scaled to unit mean square per feature (so gate pre-activations start
    near unit size), cut into chunks of `chunk` features (rgb chunks, then audio) and read in reverse:
    the audio chunk first and the rgb chunk holding the first (largest-variance) PCA components last,
    nearest the output, where a forget-gated state remembers best (measured against the forward order:
    benchmarks/RESULTS.md, development measurements).
    """

    def __init__(self, chunk=128, **kwargs):
        super().__init__(**kwargs)
        self.chunk = int(chunk)

    def call(self, inputs):
        depth = inputs.shape[-1]
        norm = ops.sqrt(ops.maximum(ops.sum(inputs * inputs, axis=-1, keepdims=True), 1e-12))
        x = inputs * (depth**0.5) / norm
        return ops.flip(ops.reshape(x, (-1, depth // self.chunk, self.chunk)), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] // self.chunk, self.chunk)

    def get_config(self):
        return {**super().get_config(), "chunk": self.chunk}
