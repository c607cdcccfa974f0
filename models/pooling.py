"""Temporal pooling: a masked sequence (B, T, D) read as one vector per video."""

import keras
from keras import ops

from models.qrnn import at_last_real_step

MODES = ("last", "mean", "max", "attention")


@keras.saving.register_keras_serializable(package="yt8m")
class TemporalPooling(keras.layers.Layer):
    """(B, T, D) and a mask (B, T) -> (B, len(modes) * D): each mode over the real steps only.

    "last" is the last real step; "mean" averages the real steps; "max" takes each feature's largest value
    over them; "attention" weights them by a softmax of a learned score per step. Padded steps never change
    the result, and a video without real steps gives zeros.
    """

    def __init__(self, modes=("mean",), **kwargs):
        super().__init__(**kwargs)
        self.modes = tuple(modes)  # of MODES (models.zoo checks a configuration's readout)
        self.supports_masking = True

    def build(self, input_shape):
        if "attention" in self.modes:
            self.score = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)  # exports shrink it too
            self.score.build(input_shape)

    def call(self, inputs, mask=None):
        real = ops.ones(ops.shape(inputs)[:2], "bool") if mask is None else ops.cast(mask, "bool")
        weight = ops.expand_dims(ops.cast(real, inputs.dtype), -1)
        count = ops.maximum(ops.sum(weight, axis=1), 1.0)
        pooled = []
        for mode in self.modes:
            if mode == "last":
                pooled.append(at_last_real_step(inputs, real))
            elif mode == "mean":
                pooled.append(ops.sum(inputs * weight, axis=1) / count)
            elif mode == "max":
                pooled.append(ops.max(ops.where(weight > 0, inputs, ops.min(inputs) - 1.0), axis=1))
            else:
                logits = ops.where(weight > 0, ops.cast(self.score(inputs), "float32"), -1e9)  # float32 always
                attention = ops.cast(ops.softmax(logits, axis=1), inputs.dtype) * weight
                pooled.append(ops.sum(inputs * attention, axis=1))
        out = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        return ops.where(ops.sum(weight, axis=1) > 0, out, 0.0)  # a video without real steps: zeros

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] * len(self.modes))

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "modes": list(self.modes)}


@keras.saving.register_keras_serializable(package="yt8m")
class Reverse(keras.layers.Layer):
    """Reverse the time axis, mask included: padding ends up first, where a recurrence skips it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return ops.flip(inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else ops.flip(mask, axis=1)
