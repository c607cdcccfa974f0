"""Classifier heads shared by the models: logistic, mixture of experts, and optional context gating."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

HEADS = ("logistic", "moe")
LABELS_PER_VIDEO = 3.0  # YouTube-8M 2018 averages 3.0 labels per video (the synthetic data copies that)


def l2_penalty(l2, num_classes, leading=(0, 0.0)):
    """The starter code's L2 penalty for a loss that averages over classes: the starter's cross-entropy
    sums over classes, Keras' BinaryCrossentropy averages, so the same weight decay needs l2 / C.
    `leading` (n, l2_n): the weights that read the first n input features take l2_n instead."""
    rows, rows_l2 = leading
    if rows and rows_l2 != l2:
        return SquaredNorm(l2 / num_classes, int(rows), rows_l2 / num_classes)
    return SquaredNorm(l2 / num_classes) if l2 > 0 else None


@keras.saving.register_keras_serializable(package="yt8m")
class SquaredNorm(keras.regularizers.Regularizer):
    """l2 * sum(w ** 2), as keras.regularizers.L2, through TensorFlow's fused `L2Loss`: one pass forward
    and one product backward where Square, Sum and their gradients take four passes over the kernel.
    With `rows`, the kernel's first `rows` rows (the weights reading the first input features) take
    `rows_l2` instead of l2."""

    def __init__(self, l2, rows=0, rows_l2=0.0):
        self.l2, self.rows, self.rows_l2 = float(l2), int(rows), float(rows_l2)

    def __call__(self, x):
        if not self.rows:
            return (2.0 * self.l2) * tf.nn.l2_loss(x)
        first, rest = tf.split(x, [self.rows, x.shape[0] - self.rows])  # gradient: one concat (slices: two scatters)
        return (2.0 * self.rows_l2) * tf.nn.l2_loss(first) + (2.0 * self.l2) * tf.nn.l2_loss(rest)

    def get_config(self):
        return {"l2": self.l2, "rows": self.rows, "rows_l2": self.rows_l2}


@keras.saving.register_keras_serializable(package="yt8m")
class ZeroTail(keras.initializers.Initializer):
    """Dense's default start (Glorot uniform) on a kernel's first `rows` rows, zeros on the rest: the qrnn's
    head starts its weights on the skip path at zero (models.zoo.QrnnConfig.zero_skip)."""

    def __init__(self, rows):
        self.rows = int(rows)

    def __call__(self, shape, dtype=None):
        first = keras.initializers.GlorotUniform()(shape, dtype)[: self.rows]
        return ops.concatenate([first, ops.zeros((shape[0] - self.rows, *shape[1:]), dtype=first.dtype)])

    def get_config(self):
        return {"rows": self.rows}


@keras.saving.register_keras_serializable(package="yt8m")
class ClassPace(keras.layers.Layer):
    """Per-class logits (B, C) times each class's pace, min(1, sqrt(reference / n)) for a class with n
    training positives (`set_counts`; 1 until then). Adam steps every weight about alike, so the weights of a
    class in every batch travel far in a few epochs while a rare class's barely start; scaling a class's
    logits scales its weights' steps, slowing the frequent classes alone (the qrnn's skip path: docs/models.md)."""

    def __init__(self, reference, **kwargs):
        super().__init__(**kwargs)
        self.reference = float(reference)

    def build(self, input_shape):
        self.pace = self.add_weight(name="pace", shape=(input_shape[-1],), initializer="ones", trainable=False)

    def set_counts(self, counts) -> None:
        """Set the pace of each class from its count of positives in the training videos."""
        counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
        self.pace.assign(np.minimum(1.0, np.sqrt(self.reference / counts)).astype("float32"))

    def call(self, logits):
        return logits * ops.cast(self.pace, logits.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reference": self.reference}


def set_class_counts(model: keras.Model, counts) -> None:
    """Give every ClassPace layer of `model` the classes' counts of training positives."""
    for layer in model.layers:
        if isinstance(layer, ClassPace):
            layer.set_counts(counts)


def paced_logistic(features, video, num_classes, l2, video_l2, reference, video_initializer="zeros"):
    """Logistic regression on two inputs, its logits W f + pace * (V video) + b: V (the qrnn's skip path)
    steps at each class's pace (ClassPace), W at the full rate; L2 `l2` on W and `video_l2` on V."""
    start = keras.initializers.Constant(prior_logit(num_classes))
    logits = keras.layers.Dense(num_classes, kernel_regularizer=l2_penalty(l2, num_classes),
                                bias_initializer=start, name="logistic")(features)
    video_logits = keras.layers.Dense(num_classes, use_bias=False, kernel_initializer=video_initializer,
                                      kernel_regularizer=l2_penalty(video_l2, num_classes),
                                      name="video_logistic")(video)
    video_logits = ClassPace(reference, name="pace")(video_logits)
    logits = keras.layers.Add(name="logits")([logits, video_logits])
    return keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(logits)


def prior_logit(num_classes, scale=1.0):
    """Initial output bias so that each class starts near its average frequency (about 3 / C), not at 0.5:
    otherwise the first thousands of steps only push 3,862 outputs down. `scale` divides the target
    probability by the mixture weight an expert starts with."""
    p = min(LABELS_PER_VIDEO / num_classes * scale, 0.5)
    return math.log(p / (1.0 - p))


@keras.saving.register_keras_serializable(package="yt8m")
class MixtureOfExperts(keras.layers.Layer):
    """The starter code's MoeModel: per class, a softmax gate over `experts` sigmoid experts plus a dummy
    expert that always says 0. Two Dense layers do it for all classes at once: gates (C*(M+1), no bias,
    as in the starter) and experts (C*M; biases start at the class prior). Output (B, C) in [0, 1].
    Both follow this layer's dtype policy and quantization (models.export), so an exported MoE reloads."""

    def __init__(self, num_classes, experts=2, l2=1e-6, leading=(0, 0.0), initializer="glorot_uniform",
                 quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.experts, self.l2 = int(num_classes), int(experts), float(l2)
        self.leading = (int(leading[0]), float(leading[1]))
        self.initializer = keras.initializers.get(initializer)
        self.quantization_config = keras.saving.deserialize_keras_object(quantization_config)
        penalty = l2_penalty(self.l2, self.num_classes, self.leading)
        same = {"dtype": self.dtype_policy, "quantization_config": self.quantization_config,
                "kernel_initializer": self.initializer}
        self.gates = keras.layers.Dense(self.num_classes * (self.experts + 1), use_bias=False,
                                        kernel_regularizer=penalty, name="gates", **same)
        start = keras.initializers.Constant(prior_logit(self.num_classes, (self.experts + 1) / self.experts))
        self.expert_logits = keras.layers.Dense(self.num_classes * self.experts, kernel_regularizer=penalty,
                                                bias_initializer=start, name="experts", **same)

    def build(self, input_shape):
        self.gates.build(input_shape)
        self.expert_logits.build(input_shape)

    def call(self, inputs):
        gates = ops.cast(ops.reshape(self.gates(inputs), (-1, self.num_classes, self.experts + 1)), "float32")
        experts = ops.cast(ops.reshape(self.expert_logits(inputs), (-1, self.num_classes, self.experts)), "float32")
        gates, experts = ops.softmax(gates, axis=-1), ops.sigmoid(experts)
        return ops.sum(gates[:, :, : self.experts] * experts, axis=-1)  # the dummy expert adds 0

    def quantize(self, mode=None, type_check=True, config=None):
        """Keras' quantization of both Dense layers; this layer's dtype policy and config record it."""
        for dense in (self.gates, self.expert_logits):
            dense.quantize(mode, config=config)
        self.quantization_config, self._is_quantized = config, True
        self.dtype_policy = self.gates.dtype_policy

    def _int8_call(self, inputs):
        return self.call(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "experts": self.experts, "l2": self.l2,
                "leading": list(self.leading), "initializer": keras.initializers.serialize(self.initializer),
                "quantization_config": keras.saving.serialize_keras_object(self.quantization_config)}


def context_gating(x, name="context_gating"):
    """Context gating (Miech et al. 2017): x * sigmoid(W x + b), letting features re-weight each other."""
    gate = keras.layers.Dense(x.shape[-1], activation="sigmoid", name=f"{name}_weights")(x)
    return keras.layers.Multiply(name=name)([x, gate])


def classifier(x, num_classes, head="logistic", experts=2, l2=1e-8, gating=False, leading=(0, 0.0),
               initializer="glorot_uniform"):
    """Class probabilities (B, num_classes) from features (B, D): `head` is "logistic" or "moe"; `leading`
    (n, l2_n) gives the weights reading the first n features their own L2 and `initializer` starts the
    kernels (models.zoo, the qrnn). Its matrix products follow the dtype policy (bfloat16 under
    mixed_bfloat16); the sigmoids and softmaxes, and so the probabilities, are float32 under every policy
    (why: docs/scaling.md, mixed precision)."""
    if gating:
        x = context_gating(x)
    if head == "moe":  # (models.zoo checks that head is one of HEADS)
        return MixtureOfExperts(num_classes, experts, l2, leading, initializer, name="moe")(x)
    penalty = l2_penalty(l2, num_classes, leading)
    start = keras.initializers.Constant(prior_logit(num_classes))
    logits = keras.layers.Dense(num_classes, kernel_initializer=initializer, kernel_regularizer=penalty,
                                bias_initializer=start, name="logistic")(x)
    return keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(logits)
