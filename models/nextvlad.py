"""NeXtVLAD (Lin, Xiao and Fan 2018, arXiv:1811.05014): learnable pooling of a video's frames.

Each frame x (N features) is expanded to x' = W_e x (lambda * N features) and cut into G groups of
lambda * N / G features. Every group of every frame gets an attention alpha_g = sigmoid(w_g . x' + b_g)
and a soft assignment to K clusters, softmax_k(w_gk . x'); the video is the VLAD of all groups of all
frames, y_kj = sum_t sum_g alpha_g alpha_gk (x'_gj - c_kj), normalized per cluster. The paper pools
rgb and audio with separate NeXtVLADs (audio with half the clusters and groups), then a hidden layer,
squeeze-and-excitation context gating and a logistic or mixture-of-experts classifier (models.zoo).
"""

import keras
from keras import ops

# Keras' default 0.99 leaves the moving statistics 38% at their initial values after the ~100 steps of a
# 2,000-video, 3-epoch run, and inference uses them; at 0.9 they follow the batches within ~30 steps.
BN_MOMENTUM = 0.9


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


@keras.saving.register_keras_serializable(package="yt8m")
class FeatureRange(keras.layers.Layer):
    """(B, T, D) -> (B, T, stop - start): the features start..stop of every frame, the mask kept."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)
        self.supports_masking = True

    def call(self, inputs):
        return inputs[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="yt8m")
class NeXtVLAD(keras.layers.Layer):
    """[expanded frames (B, T, E), group attention (B, T, G), assignment logits (B, T, G*K)] and the
    frames' mask -> (B, K * E / G): the VLAD of every group of every real frame, each cluster's residual
    sum L2-normalized (intra-normalization). Padded frames get weight 0, so they change nothing."""

    def __init__(self, groups, clusters, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.clusters = int(groups), int(clusters)
        self.supports_masking = True

    def build(self, input_shape):
        expanded = input_shape[0][-1]
        if expanded % self.groups:
            raise ValueError(f"{expanded} expanded features do not split into {self.groups} groups")
        self.group_size = expanded // self.groups
        self.centers = self.add_weight(name="centers", shape=(self.clusters, self.group_size),
                                       initializer="glorot_uniform")

    def call(self, inputs, mask=None):
        expanded, attention, logits = inputs
        batch, steps = ops.shape(expanded)[0], ops.shape(expanded)[1]
        assignment = ops.softmax(ops.reshape(logits, (batch, steps, self.groups, self.clusters)), axis=-1)
        weight = assignment * ops.expand_dims(attention, -1)  # alpha_g * alpha_gk, (B, T, G, K)
        frame_mask = mask[0] if isinstance(mask, list | tuple) else mask
        if frame_mask is not None:
            weight = weight * ops.cast(ops.reshape(frame_mask, (batch, steps, 1, 1)), weight.dtype)
        weight = ops.reshape(weight, (batch, steps * self.groups, self.clusters))
        groups = ops.reshape(expanded, (batch, steps * self.groups, self.group_size))
        vlad = ops.matmul(ops.transpose(weight, (0, 2, 1)), groups)  # (B, K, E / G)
        vlad = vlad - ops.expand_dims(ops.sum(weight, axis=1), -1) * self.centers
        norm = ops.sqrt(ops.maximum(ops.sum(vlad * vlad, axis=-1, keepdims=True), 1e-12))
        return ops.reshape(vlad / norm, (batch, self.clusters * self.group_size))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.clusters * (input_shape[0][-1] // self.groups))

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "clusters": self.clusters}


def nextvlad(frames, clusters: int, groups: int, expansion: int, name: str):
    """NeXtVLAD of masked frames (B, T, N) -> (B, clusters * expansion * N / groups), as in the paper."""
    depth = frames.shape[-1]
    expanded = keras.layers.Dense(expansion * depth, name=f"{name}_expansion")(frames)
    attention = keras.layers.Dense(groups, activation="sigmoid", name=f"{name}_attention")(expanded)
    logits = keras.layers.Dense(groups * clusters, use_bias=False, name=f"{name}_assignment")(expanded)
    logits = batch_norm(f"{name}_assignment_bn")(logits)  # masked statistics
    return NeXtVLAD(groups, clusters, name=name)([expanded, attention, logits])


def se_context_gating(x, reduction: int, name: str = "se_gating"):
    """Squeeze-and-excitation context gating (the paper's): x * sigmoid(W2 relu(BN(W1 x))), W1 reducing
    the width `reduction` times."""
    width = x.shape[-1]
    gate = keras.layers.Dense(max(width // reduction, 1), use_bias=False, name=f"{name}_squeeze")(x)
    gate = batch_norm(f"{name}_bn")(gate)
    gate = keras.layers.ReLU(name=f"{name}_relu")(gate)
    gate = keras.layers.Dense(width, activation="sigmoid", name=f"{name}_excite")(gate)
    return keras.layers.Multiply(name=name)([x, gate])
