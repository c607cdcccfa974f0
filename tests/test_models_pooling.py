"""Temporal pooling and time reversal: exact per mode, blind to padded steps, and saved with a model."""

import keras
import numpy as np
import pytest

from models.pooling import Reverse, TemporalPooling

B, T, D = 3, 6, 4
LENGTHS = np.array([6, 2, 4])


def _inputs(seed=0):
    x = np.random.default_rng(seed).normal(size=(B, T, D)).astype("float32")
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    return x, mask


def _np(value):
    return keras.ops.convert_to_numpy(value)


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_each_mode_reads_only_the_real_steps(mode):
    x, mask = _inputs()
    got = _np(TemporalPooling([mode])(x, mask=mask))
    for b, n in enumerate(LENGTHS):
        real = x[b, :n]
        want = {"last": real[-1], "mean": real.mean(0), "max": real.max(0)}[mode]
        np.testing.assert_allclose(got[b], want, atol=1e-6)


@pytest.mark.parametrize("modes", [["last", "mean", "max", "attention"], ["attention"]])
def test_padded_steps_change_nothing(modes):
    x, mask = _inputs(1)
    layer = TemporalPooling(modes)
    junk = x.copy()
    junk[~mask] = 1e3  # anything after a video's real steps
    padded = _np(layer(junk, mask=mask))
    np.testing.assert_allclose(_np(layer(x, mask=mask)), padded, atol=1e-5)
    for b, n in enumerate(LENGTHS):  # and equals the video alone, unpadded
        np.testing.assert_allclose(padded[b], _np(layer(x[b:b + 1, :n]))[0], atol=1e-5)
    assert padded.shape == (B, D * len(modes))


def test_attention_weights_sum_to_one():
    x, mask = _inputs(2)
    constant = np.repeat(x[:, :1], T, axis=1)  # every step equal: any weighting that sums to 1 returns it
    layer = TemporalPooling(["attention"])
    np.testing.assert_allclose(_np(layer(constant, mask=mask)), constant[:, 0], atol=1e-5)


def test_a_video_without_real_steps_gives_zeros():
    x, _ = _inputs(3)
    none = np.zeros((B, T), bool)
    assert not _np(TemporalPooling(["last", "mean", "max", "attention"])(x, mask=none)).any()


def test_reverse_flips_steps_and_mask():
    x, mask = _inputs(4)
    layer = Reverse()
    np.testing.assert_array_equal(_np(layer(x)), x[:, ::-1])
    np.testing.assert_array_equal(_np(layer.compute_mask(x, mask)), mask[:, ::-1])


def test_pooling_saves_and_reloads_in_a_model(tmp_path):
    inputs = keras.Input((None, D))
    masked = keras.layers.Masking(0.0)(inputs)
    model = keras.Model(inputs, TemporalPooling(["last", "max", "attention"])(Reverse()(masked)))
    x, mask = _inputs(5)
    x[~mask] = 0.0
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_every_mode_runs_in_mixed_precision_like_float32(policy):
    x, mask = _inputs(2)
    mask[1] = False  # a video without real steps: zeros, not NaN (-1e9 is -inf in float16)
    modes = ["last", "mean", "max", "attention"]
    full = TemporalPooling(modes)
    want = _np(full(x, mask=mask))
    half = TemporalPooling(modes, dtype=policy)
    half.build(x.shape)
    half.set_weights(full.get_weights())
    got = _np(half(x, mask=mask)).astype("float32")
    np.testing.assert_allclose(got, want, atol=0.05, rtol=0.02)  # bfloat16 keeps 8 bits of mantissa
    assert got[1].tolist() == [0.0] * len(got[1])
