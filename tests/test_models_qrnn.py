"""The QRNN layer against the paper's equations, and its causality, masking, zoneout and saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.qrnn import QRNN, qrnn_stack

B, T, D, U = 3, 6, 5, 4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(x, kernel, bias, pooling, mask=None):
    """A plain NumPy loop over Bradbury et al.'s equations; returns (h for every step, h at the last real one)."""
    window, _, width = kernel.shape
    units = width // len({"f": "zf", "fo": "zfo", "ifo": "zfoi"}[pooling])
    batch, steps, _ = x.shape
    mask = np.ones((batch, steps), bool) if mask is None else mask
    hs, last = np.zeros((batch, steps, units)), np.zeros((batch, units))
    for b in range(batch):
        c = np.zeros(units)
        for t in range(steps):
            pre = bias.copy()
            for j in range(window):  # masked convolution: x_{t-k+1} .. x_t, zeros before the start
                s = t - (window - 1) + j
                if s >= 0:
                    pre = pre + x[b, s] @ kernel[j]
            z, f = np.tanh(pre[:units]), _sigmoid(pre[units:2 * units])
            o = _sigmoid(pre[2 * units:3 * units]) if pooling != "f" else np.ones(units)
            if not mask[b, t]:
                continue
            if pooling == "ifo":
                c = f * c + _sigmoid(pre[3 * units:]) * z
            else:
                c = f * c + (1 - f) * z
            hs[b, t] = o * c
            last[b] = o * c
    return hs, last


def _layer(pooling="fo", window=2, **options):
    layer = QRNN(U, window=window, pooling=pooling, **options)
    layer.build((None, None, D))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(0, 0.6, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("pooling", ["f", "fo", "ifo"])
@pytest.mark.parametrize("window", [1, 2, 3])
def test_pooling_matches_numpy_loop(pooling, window):
    x = np.random.default_rng(1).normal(size=(B, T, D)).astype("float32")
    seq = _layer(pooling, window, return_sequences=True)
    last = QRNN.from_config({**seq.get_config(), "return_sequences": False})
    last.build((None, None, D))
    last.set_weights(seq.get_weights())
    want_seq, want_last = reference(x, *seq.get_weights(), pooling)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(seq(x)), want_seq, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(last(x)), want_last, atol=1e-5)


def test_output_at_t_does_not_depend_on_later_inputs():
    layer = _layer("ifo", window=3, return_sequences=True)
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype("float32")
    changed = x.copy()
    changed[:, 3:] += 5.0
    before, after = (keras.ops.convert_to_numpy(layer(v)) for v in (x, changed))
    np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-6)
    assert np.abs(before[:, 3:] - after[:, 3:]).max() > 1e-3


@pytest.mark.parametrize("pooling", ["f", "fo", "ifo"])
def test_padded_video_gives_the_same_output_as_unpadded(pooling):
    rng = np.random.default_rng(3)
    lengths = [6, 2, 4]
    padded = rng.normal(size=(B, 9, D)).astype("float32")  # junk after each video's real steps
    mask = np.arange(9)[None, :] < np.array(lengths)[:, None]
    last = _layer(pooling)
    seq = _layer(pooling, return_sequences=True)
    out = keras.ops.convert_to_numpy(last(padded, mask=mask))
    out_seq = keras.ops.convert_to_numpy(seq(padded, mask=mask))
    for b, n in enumerate(lengths):
        alone = padded[b:b + 1, :n]
        np.testing.assert_allclose(out[b], keras.ops.convert_to_numpy(last(alone))[0], atol=1e-5)
        np.testing.assert_allclose(out_seq[b, :n], keras.ops.convert_to_numpy(seq(alone))[0], atol=1e-5)
        assert not out_seq[b, n:].any()  # padded steps output zeros
    np.testing.assert_allclose(out, reference(padded, *last.get_weights(), pooling, mask)[1], atol=1e-5)


def test_zoneout_only_acts_in_training():
    x = np.random.default_rng(4).normal(size=(B, T, D)).astype("float32")
    zoned, plain = _layer(zoneout=0.5, seed=7), _layer(zoneout=0.0)
    inference = keras.ops.convert_to_numpy(zoned(x, training=False))
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(plain(x)), atol=1e-6)
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(zoned(x)), atol=1e-6)
    training = keras.ops.convert_to_numpy(zoned(x, training=True))
    assert np.abs(training - inference).max() > 1e-3


def test_model_with_stacked_qrnn_saves_and_reloads(tmp_path):
    inputs = keras.Input((None, D))
    x = keras.layers.Masking(0.0)(inputs)
    x = qrnn_stack(x, U, layers=3, dense=True, window=2, pooling="ifo", zoneout=0.1, seed=1)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(x))
    qrnns = [layer for layer in model.layers if isinstance(layer, QRNN)]
    assert [q.kernel.shape[1] for q in qrnns] == [D, D + U, D + 2 * U]  # dense connections
    x = np.random.default_rng(5).normal(size=(B, T, D)).astype("float32")
    x[0, 4:] = 0.0  # masked steps
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.layers[-2].get_config() == qrnns[-1].get_config()


def test_gradients_reach_every_weight_and_early_steps():
    layer = _layer("fo", window=2, zoneout=0.2, seed=3)
    x = tf.constant(np.random.default_rng(6).normal(size=(B, T, D)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(grads[0].numpy()[:, 0]).max() > 0  # the first frame still matters at the end
    assert all(np.abs(g.numpy()).max() > 0 for g in grads[1:])


def test_any_sequence_length():
    layer = _layer()
    unknown_length = tf.function(layer, input_signature=[tf.TensorSpec((None, None, D), tf.float32)])
    for steps in (1, 7, 40):
        x = np.random.default_rng(steps).normal(size=(2, steps, D)).astype("float32")
        np.testing.assert_allclose(unknown_length(x).numpy(), reference(x, *layer.get_weights(), "fo")[1],
                                   atol=1e-5)
