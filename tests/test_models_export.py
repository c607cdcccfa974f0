"""models.export: float16 and int8 exports of every kind of model folder reload, predict like their source,
are smaller, and carry the size and the change in validation GAP on their card."""

import keras
import numpy as np
import pytest

from common import cli
from common.card import Card
from features.store import Store
from models import ensemble, export
from models.__main__ import main as models_main
from models.inference import iter_scores, load_model_dir
from models.qrnn import QRNN
from models.train import TrainOptions, train
from tests.test_models_train import make_store

QUICK = TrainOptions(epochs=1, batch_size=16, frames=6, patience=1)
RUNS = {"qrnn": {"hidden": 16}, "moe": {}, "nextvlad": {"clusters": 4, "groups": 4, "hidden": 16},
        "lstm": {"hidden": 8}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    train_dir = make_store(root / "train", 32, seed=41).path
    validate_dir = make_store(root / "validate", 20, seed=42).path
    for name, config in RUNS.items():
        train(name, train_dir, validate_dir, root / name, QUICK, config, verbose=0)
    ensemble.make_ensemble([root / "qrnn", root / "moe"], validate_dir, root / "ensemble", progress=False)
    return root, validate_dir


def scores(folder, store_dir):
    model, card = load_model_dir(folder)
    return np.concatenate([s for _, s in iter_scores(model, card, Store(store_dir))])


@pytest.mark.parametrize("weights", export.WEIGHTS)
@pytest.mark.parametrize("source", [*RUNS, "ensemble"])
def test_export_reloads_predicts_like_the_source_and_is_smaller(runs, source, weights, tmp_path):
    root, validate_dir = runs
    out = tmp_path / f"{source}-{weights}"
    card = export.export(root / source, out, weights)

    assert {p.name for p in out.iterdir()} == {"model.keras", "card.json"}
    assert Card.load(out) == card and card.run == out.name and card.model == Card.load(root / source).model
    model, _ = load_model_dir(out)
    stored = {w.dtype for w in model.weights}
    assert ("int8" in stored) == (weights == "int8")
    assert "float32" not in stored or weights == "int8"  # int8: scales and the quantized layers' biases
    np.testing.assert_allclose(scores(out, validate_dir), scores(root / source, validate_dir),
                               atol=2e-3 if weights == "float16" else 2e-2)
    info = card.export
    assert info["weights"] == weights and info["source"] == str((root / source).resolve())
    assert card.file_bytes == (out / "model.keras").stat().st_size < info["source_file_bytes"]
    assert info["size_ratio"] == pytest.approx(card.file_bytes / info["source_file_bytes"], abs=1e-4)
    assert info["validation_gap_change"] == pytest.approx(card.validation["gap"] - info["source_validation_gap"])
    assert abs(info["validation_gap_change"]) < 0.05


def test_cli_export_and_bad_weights(runs, tmp_path, capsys):
    root, _ = runs
    assert cli.run(models_main, ["export", "--model", str(root / "moe"), "--out", str(tmp_path / "e"),
                                 "--weights", "int8"]) == 0
    assert Card.load(tmp_path / "e").export["weights"] == "int8"
    with pytest.raises(SystemExit):
        models_main(["export", "--model", str(root / "moe"), "--out", str(tmp_path / "f"), "--weights", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err


def test_qrnn_int8_kernel_is_dequantized_in_call_and_saved(tmp_path):
    inputs = keras.Input((None, 12))
    model = keras.Model(inputs, QRNN(8, window=2)(inputs))
    x = np.random.default_rng(0).normal(size=(3, 5, 12)).astype("float32")
    want = model.predict(x, verbose=0)
    layer = model.layers[-1]
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    layer.quantize("int8", config=export.WEIGHTS_ONLY)
    assert layer.kernel.dtype == "int8" and layer.kernel_scale.shape == (24,)
    dequantized = keras.ops.convert_to_numpy(layer.kernel).astype(np.float32) / keras.ops.convert_to_numpy(
        layer.kernel_scale)
    np.testing.assert_allclose(dequantized, kernel, atol=np.abs(kernel).max() / 127)
    quantized = keras.ops.convert_to_numpy(model(x))  # (predict() would reuse the graph traced before)
    assert 0 < np.abs(quantized - want).max() < 0.02
    model.save(tmp_path / "q.keras")
    reloaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), quantized, rtol=1e-6, atol=1e-7)
