"""The quasi-recurrent neural network layer (Bradbury et al. 2016, arXiv:1611.01576) for Keras 3.

All gates of all time steps come from one causal convolution (a single matrix product); only the cheap
element-wise recurrence `c_t = f_t * c_{t-1} + (1 - f_t) * z_t` runs step by step, where an LSTM does
its matrix products inside the sequential loop (speed beside the LSTM: benchmarks/RESULTS.md, Models).
"""

import keras
from keras import ops

POOLINGS = {"f": "zf", "fo": "zfo", "ifo": "zfoi"}  # pooling -> the gates it needs, in kernel order


@keras.saving.register_keras_serializable(package="yt8m")
class QRNN(keras.layers.Layer):
    """One QRNN layer: (B, T, D) -> (B, units), or (B, T, units) with `return_sequences`.

    `pooling` is "f", "fo" or "ifo"; `window` is the width k of the causal convolution; `zoneout` is the
    probability, during training only, that a unit's forget gate is forced to 1 (it keeps its state).
    A mask (B, T) marks real frames: padded steps leave the state unchanged, so the output is the
    hidden state at the last real frame (sequence outputs are zero at padded steps).
    `quantize("int8")` (Keras' quantization API, used by models.export) stores the kernel as int8 with one
    scale per output column and dequantizes it in call.
    """

    def __init__(self, units, window=2, pooling="fo", zoneout=0.0, return_sequences=False, seed=None,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)  # (models.zoo checks the values a configuration may give)
        self.units, self.window, self.pooling = int(units), int(window), pooling
        self.zoneout, self.return_sequences, self.seed = float(zoneout), bool(return_sequences), seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.gates = POOLINGS[pooling]
        self.seed_generator = keras.random.SeedGenerator(seed) if self.zoneout > 0 else None
        self.supports_masking = True

    def build(self, input_shape):
        # kernel[j] multiplies the input j - (window - 1) steps away (j = window - 1 is the current step).
        self._add_weights((self.window, input_shape[-1], len(self.gates) * self.units))

    def _add_weights(self, shape):
        int8 = self.quantization_mode == "int8"
        self.kernel = self.add_weight(name="kernel", shape=shape, dtype="int8" if int8 else None,
                                      initializer="zeros" if int8 else self.kernel_initializer,
                                      regularizer=None if int8 else self.kernel_regularizer, trainable=not int8)
        self.bias = self.add_weight(name="bias", shape=(shape[-1],), initializer="zeros")
        if int8:  # kernel = int8 values / kernel_scale
            self.kernel_scale = self.add_weight(name="kernel_scale", shape=(shape[-1],), initializer="ones",
                                                trainable=False)

    def quantize(self, mode=None, type_check=True, config=None):
        """int8 weights: the kernel quantized by abs-max per output column (the inputs stay float)."""
        if mode != "int8":
            raise NotImplementedError(f"QRNN quantizes to int8 only, not {mode}")
        values, scale = keras.quantizers.abs_max_quantize(self.kernel, axis=(0, 1), to_numpy=True)
        bias, shape = ops.convert_to_numpy(self.bias), self.kernel.shape
        del self.kernel, self.bias
        self._is_quantized = True
        self.dtype_policy = f"int8_from_{self.dtype_policy.name}"
        self._add_weights(shape)
        self.kernel.assign(values)
        self.bias.assign(bias)
        self.kernel_scale.assign(ops.reshape(scale, (-1,)))

    def _int8_call(self, inputs, mask=None, training=None):
        return self.call(inputs, mask=mask, training=training)

    def call(self, inputs, mask=None, training=None):
        gates = self._gates(inputs)
        z = ops.tanh(gates["z"])
        f = ops.sigmoid(gates["f"])
        if training and self.zoneout > 0:
            keep = keras.random.uniform(ops.shape(f), seed=self.seed_generator) < self.zoneout
            f = ops.where(keep, 1.0, f)
        decay = f
        update = ops.sigmoid(gates["i"]) * z if "i" in gates else (1.0 - f) * z
        if mask is not None:  # padded steps: c_t = 1 * c_{t-1} + 0
            real = ops.expand_dims(ops.cast(mask, "bool"), -1)
            decay = ops.where(real, decay, 1.0)
            update = ops.where(real, update, 0.0)
        cells, last_cell = self._recurrence(decay, update)
        out_gate = ops.sigmoid(gates["o"]) if "o" in gates else None
        if self.return_sequences:
            hidden = cells if out_gate is None else out_gate * cells
            return hidden if mask is None else ops.where(real, hidden, 0.0)
        if out_gate is None:
            return last_cell
        return at_last_real_step(out_gate, mask) * last_cell

    def _gates(self, inputs):
        """All pre-activations at once: a causal convolution as one matmul over stacked shifted inputs."""
        x = ops.cast(inputs, self.compute_dtype)
        batch, steps = ops.shape(x)[0], ops.shape(x)[1]
        if self.window > 1:
            padded = ops.pad(x, [[0, 0], [self.window - 1, 0], [0, 0]])
            x = ops.concatenate([padded[:, j:j + steps] for j in range(self.window)], axis=-1)
        width = len(self.gates) * self.units
        kernel = self.kernel
        if self.quantization_mode == "int8":
            kernel = ops.cast(kernel, self.compute_dtype) / self.kernel_scale
        kernel = ops.reshape(kernel, (-1, width))
        # A 2-D matmul over all B * T steps: faster on CPU than the same product batched over B.
        pre = ops.matmul(ops.reshape(x, (-1, ops.shape(kernel)[0])), kernel) + self.bias
        pre = ops.reshape(ops.cast(pre, "float32"), (batch, steps, width))  # gates and recurrence in float32
        parts = ops.split(pre, len(self.gates), axis=-1)
        return dict(zip(self.gates, parts, strict=True))

    def _recurrence(self, decay, update):
        """c_t = decay_t * c_{t-1} + update_t from c_0 = 0 with keras.ops.scan; returns (all c, last c).

        On this CPU a scan is as fast as a Python loop unrolled over time steps, and faster than
        keras.ops.associative_scan, and it works for any sequence length.
        """
        def step(cell, decay_update):
            decay, update = ops.unstack(decay_update, 2, axis=0)  # not [0], [1]: their gradients cost more
            cell = decay * cell + update
            return cell, cell

        # One stacked tensor (T, 2, B, U), not a pair: keras' TF scan fails on a pair when T is unknown.
        time_major = ops.transpose(ops.stack([decay, update]), (2, 0, 1, 3))
        cell, cells = ops.scan(step, ops.zeros_like(decay[:, 0]), time_major)
        return ops.transpose(cells, (1, 0, 2)), cell

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (*input_shape[:-1], self.units)
        return (input_shape[0], self.units)

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def get_config(self):
        return {**super().get_config(), "units": self.units, "window": self.window, "pooling": self.pooling,
                "zoneout": self.zoneout, "return_sequences": self.return_sequences, "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


def at_last_real_step(values, mask):
    """values (B, T, U) at each row's last real step (the last step when there is no mask)."""
    if mask is None:
        return values[:, -1]
    steps = ops.shape(mask)[1]
    flipped = ops.flip(ops.cast(mask, "int32"), axis=1)
    last = steps - 1 - ops.argmax(flipped, axis=1)  # a row with no real step gets T-1 (its state is 0)
    # A one-hot weighted sum, not a gather: the same values, and its gradient is far cheaper on CPU.
    pick = ops.cast(ops.arange(steps)[None, :] == ops.cast(last, "int32")[:, None], values.dtype)
    return ops.sum(values * ops.expand_dims(pick, -1), axis=1)


def qrnn_stack(x, units, layers=1, dense=False, sequences=False, **qrnn_options):
    """Apply `layers` QRNN layers to a (B, T, D) tensor, returning the last layer's final state (B, units).

    With `dense`, each layer reads the concatenation of the input and every earlier layer's sequence
    (the densely connected stacking of the QRNN paper). The mask of `x`, if any, flows through.
    """
    for n in range(layers):
        last = n == layers - 1
        y = QRNN(units, return_sequences=sequences or not last, **qrnn_options)(x)
        x = keras.layers.Concatenate()([x, y]) if dense and not last else y
    return x
