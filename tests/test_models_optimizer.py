import keras
import numpy as np
import tensorflow as tf

from models.optimizer import FusedAdam


def _steps(optimizer, start, gradients):
    variables = [keras.Variable(x) for x in start]
    optimizer.build(variables)
    for grads in gradients:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    return [v.numpy() for v in variables]


def test_fused_adam_takes_keras_adams_steps():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32")]
    gradients = [[rng.normal(size=x.shape).astype("float32") * 10 ** -k for x in start] for k in range(4)]
    options = {"learning_rate": 0.01, "epsilon": 1e-9, "clipnorm": 0.5}
    fused = _steps(FusedAdam(**options), start, gradients)
    plain = _steps(keras.optimizers.Adam(**options), start, gradients)
    for a, b, x in zip(fused, plain, start, strict=True):
        assert np.abs(a - x).max() > 0.01  # the weights moved
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fused_adam_survives_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=FusedAdam(learning_rate=0.1), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, FusedAdam)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
