"""models.train: every model trains from stores, saves, reloads, resumes, and refuses bad inputs."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import models  # noqa: F401  (registers the custom layers for load_model)
from common import cli
from common.card import Card
from common.errors import InputError
from data.formats import FEATURE_SIZE
from evaluation.metrics import Accumulator
from features.store import Store
from features.writer import create_store
from models import zoo
from models.__main__ import main as models_main
from models.batches import model_inputs
from models.checkpoints import HISTORY_COLUMNS, plot_history
from models.inference import iter_scores, load_model_dir
from models.train import TrainOptions, train
from tests.conftest import REPO

CLASSES = 6
# small enough that every model trains in seconds
TINY = {"logistic": {}, "moe": {}, "lstm": {"hidden": 8}, "qrnn": {"hidden": 8},
        "qrnn-video": {"hidden": 8, "chunk": 64}, "nextvlad": {"clusters": 4, "groups": 4, "hidden": 8}}
QUICK = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)


def make_store(path, videos: int, seed: int, classes: int = CLASSES, level: str = "frame",
               has_labels: bool = True) -> Store:
    """A small learnable store: each label lifts its own block of dimensions in a stretch of frames."""
    rng = np.random.default_rng(seed)
    num_frames = rng.integers(2, 16, videos)
    labels = [rng.choice(classes, rng.integers(1, 3), replace=False) for _ in range(videos)]
    frames = rng.normal(128, 12, (int(num_frames.sum()), FEATURE_SIZE))
    start = 0
    for count, video_labels in zip(num_frames, labels, strict=True):
        for label in video_labels:
            first = start + rng.integers(0, count)
            frames[first:start + count, label * 16:(label + 1) * 16] += 60
        start += count
    frames = frames.clip(0, 255).astype(np.uint8)
    ids = [f"{seed:02d}{i:03d}" for i in range(videos)]
    store = create_store(path / "frame", ids, labels, None, frames=frames, num_frames=num_frames,
                         num_classes=classes, has_labels=has_labels)
    if level == "frame":
        return store
    return create_store(path / "video", ids, labels, store.video(np.arange(videos)), num_classes=classes,
                        has_labels=has_labels)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return make_store(root / "train", 48, seed=1).path, make_store(root / "validate", 24, seed=2).path


def validation_gap(run_dir, validate_dir) -> float:
    """GAP of the saved model.keras on the validation store, recomputed from scratch."""
    model, card = load_model_dir(run_dir)
    store = Store(validate_dir)
    acc = Accumulator(store.num_classes)
    for indices, scores in iter_scores(model, card, store, batch_size=10):
        acc.add(scores, store.dense_labels(indices))
    return acc.result().gap


def read_history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def stop_after(epochs: int):
    """Simulates an interruption: raises once the checkpoint of epoch `epochs` is written."""

    def after_epoch(done: int):
        if done == epochs:
            raise KeyboardInterrupt

    return after_epoch


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_model_trains_saves_and_reloads(name, stores, tmp_path):
    train_dir, validate_dir = stores
    out = tmp_path / f"{name}-run"
    card = train(name, train_dir, validate_dir, out, QUICK, TINY[name], verbose=0)

    assert {p.name for p in out.iterdir()} == {"model.keras", "card.json", "history.csv", "training.png"}
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Card.load(out) == card
    assert (card.run, card.model, card.level) == (out.name, name, zoo.spec(name).level)
    assert card.num_classes == CLASSES and card.train_videos == 48 and card.epochs == 2
    assert card.file_bytes == (out / "model.keras").stat().st_size
    assert card.config["model"] == {**zoo.make_config(name).__dict__, **TINY[name]}
    assert card.config["training"]["frames"] == (6 if card.level == "frame" else None)
    assert card.config["training"]["learning_rate"] == zoo.spec(name).learning_rate  # the model's own default
    assert card.config["training"]["clipnorm"] == zoo.spec(name).clipnorm  # ... and its own gradient clip
    assert (card.strategy, card.replicas, card.precision) == ("default", 1, "float32")
    # The card's rate leaves out the run's first step, which traces the graph (seconds, where steps take ms).
    assert card.train_videos_per_second > card.train_videos * card.epochs / card.train_seconds

    history = read_history(out)
    assert [int(row["epoch"]) for row in history] == [1, 2] and list(history[0]) == list(HISTORY_COLUMNS)
    gaps = [float(row["val_gap"]) for row in history]
    assert card.best_epoch == 1 + int(np.argmax(gaps))
    assert card.validation["gap"] == pytest.approx(max(gaps))
    # model.keras holds the best epoch's weights and, reloaded, scores exactly as during training.
    assert validation_gap(out, validate_dir) == pytest.approx(card.validation["gap"], abs=1e-6)
    reloaded = keras.models.load_model(out / "model.keras")
    assert reloaded.count_params() == card.parameters


def test_the_qrnn_paces_its_skip_path_by_the_training_labels(stores, tmp_path):
    train_dir, validate_dir = stores
    train("qrnn", train_dir, validate_dir, tmp_path / "run", QUICK, {"hidden": 8, "pace": 5.0}, verbose=0)
    counts = np.bincount(Store(train_dir).labels_indices, minlength=CLASSES)
    pace = keras.ops.convert_to_numpy(load_model_dir(tmp_path / "run")[0].get_layer("pace").pace)
    np.testing.assert_allclose(pace, np.minimum(1, np.sqrt(5 / np.maximum(counts, 1))), rtol=1e-6)
    assert pace.min() < 1  # 48 videos of 1 or 2 labels in 6 classes: every class is frequent here


def test_frame_level_model_learns(stores, tmp_path):
    """Labels are visible in the frames: a few epochs of the QRNN beat a random ranking by far."""
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=6, batch_size=8, frames=8, learning_rate=0.01, patience=6)
    card = train("qrnn", train_dir, validate_dir, tmp_path / "run", options, {"hidden": 16}, verbose=0)
    assert card.validation["gap"] > 0.7  # a random ranking of 6 classes scores about 0.35 here


def test_resume_continues_from_the_last_checkpoint(stores, tmp_path, capsys):
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=3, batch_size=16, frames=6, patience=3)
    config = TINY["qrnn"]  # with zoneout: its draws come from (seed, step), so a resume replays them too
    whole = train("qrnn", train_dir, validate_dir, tmp_path / "whole", options, config, verbose=0)

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train("qrnn", train_dir, validate_dir, out, options, config, after_epoch=stop_after(2), verbose=0)
    assert not (out / "model.keras").exists() and not (out / "card.json").exists()
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept in (["epoch-0002"], ["epoch-0001", "epoch-0002"])  # the last epoch, and the best if older
    capsys.readouterr()

    resumed = train("qrnn", train_dir, validate_dir, out, options, config, verbose=0)
    assert f"{out}: resuming from the checkpoint of epoch 2 of 3" in capsys.readouterr().out
    assert resumed.epochs == 3 and not (out / "checkpoints").exists()
    # Same seed, same batches, same optimizer state: the resumed run is the uninterrupted one.
    got, want = read_history(out), read_history(tmp_path / "whole")
    for key in ("loss", "val_gap", "lr"):
        assert [float(r[key]) for r in got] == pytest.approx([float(r[key]) for r in want], rel=1e-5), key
    assert resumed.validation == pytest.approx(whole.validation, rel=1e-5)
    # ... and zoneout is on: without it the same training takes other steps.
    train("qrnn", train_dir, validate_dir, tmp_path / "plain", options, {**config, "zoneout": 0.0}, verbose=0)
    assert float(read_history(tmp_path / "plain")[0]["loss"]) != pytest.approx(float(want[0]["loss"]), rel=1e-5)


def checkpoint_of(out, epoch: int, seen: dict):
    """An after_epoch hook that keeps, in `seen`, each checkpoint's state and the model of epoch `epoch`."""

    def after_epoch(done: int):
        folder = out / "checkpoints" / f"epoch-{done:04d}"
        seen.setdefault("states", []).append(json.loads((folder / "state.json").read_text()))
        if done == epoch:
            seen["model"] = keras.models.load_model(folder / "model.keras", compile=False)

    return after_epoch


def test_a_resumed_run_replays_zoneout_and_dropout(stores, tmp_path):
    """Two epochs straight, and one epoch then a resume for the second, end with the same weights and the
    same predictions with zoneout 0.1 and dropout on: their random draws come from (seed, step)."""
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)
    config = {"hidden": 8, "zoneout": 0.1, "dropout": 0.2}
    whole, resumed, plain = {}, {}, {}
    train("qrnn", train_dir, validate_dir, tmp_path / "whole", options, config,
          after_epoch=checkpoint_of(tmp_path / "whole", 2, whole), verbose=0)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train("qrnn", train_dir, validate_dir, out, options, config, after_epoch=stop_after(1), verbose=0)
    train("qrnn", train_dir, validate_dir, out, options, config, after_epoch=checkpoint_of(out, 2, resumed),
          verbose=0)
    store = Store(validate_dir)
    x = model_inputs(store, np.arange(len(store)), "frame", 6)
    for got, want in zip(resumed["model"].get_weights(), whole["model"].get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(resumed["model"].predict_on_batch(x), whole["model"].predict_on_batch(x),
                               rtol=1e-5, atol=1e-7)
    # The draws matter: without zoneout and dropout the same two epochs end elsewhere.
    train("qrnn", train_dir, validate_dir, tmp_path / "plain", options, {"hidden": 8, "zoneout": 0.0},
          after_epoch=checkpoint_of(tmp_path / "plain", 2, plain), verbose=0)
    assert not np.allclose(plain["model"].predict_on_batch(x), whole["model"].predict_on_batch(x), atol=1e-5)


def test_the_card_s_rate_leaves_out_each_process_s_first_step(stores, tmp_path):
    """The first training step of a process traces the graph: the card's videos/s counts only the steps after
    it, in a resumed run too (whose process traces again). 48 videos in batches of 16: 3 steps an epoch."""
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)
    straight, resumed = {}, {}
    card = train("qrnn", train_dir, validate_dir, tmp_path / "straight", options, TINY["qrnn"],
                 after_epoch=checkpoint_of(tmp_path / "straight", 2, straight), verbose=0)
    assert [s["steady_videos"] for s in straight["states"]] == [32, 80]
    steady = straight["states"][-1]
    assert card.train_videos_per_second == pytest.approx(80 / steady["steady_seconds"], abs=0.01)
    assert steady["steady_seconds"] < card.train_seconds

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train("qrnn", train_dir, validate_dir, out, options, TINY["qrnn"], after_epoch=stop_after(1), verbose=0)
    card = train("qrnn", train_dir, validate_dir, out, options, TINY["qrnn"],
                 after_epoch=checkpoint_of(out, 2, resumed), verbose=0)
    assert [s["steady_videos"] for s in resumed["states"]] == [64]  # 32 before the interruption, 32 after
    assert card.train_videos_per_second == pytest.approx(64 / resumed["states"][0]["steady_seconds"], abs=0.01)


def test_checkpoints_of_another_configuration_are_not_resumed(stores, tmp_path, capsys):
    train_dir, validate_dir = stores
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("logistic", train_dir, validate_dir, out, QUICK, after_epoch=stop_after(1), verbose=0)
    capsys.readouterr()
    card = train("logistic", train_dir, validate_dir, out, TrainOptions(epochs=2, batch_size=8), verbose=0)
    assert "another configuration" in capsys.readouterr().out and card.epochs == 2


def test_rerun_is_up_to_date_and_new_inputs_retrain(stores, tmp_path, capsys):
    train_dir, validate_dir = stores
    out = tmp_path / "run"
    train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    stamp = (out / "model.keras").stat().st_mtime_ns
    capsys.readouterr()
    train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    assert capsys.readouterr().out == f"{out}: up to date\n"
    assert (out / "model.keras").stat().st_mtime_ns == stamp

    card = train("logistic", train_dir, validate_dir, out, QUICK, {"l2": 1e-4}, verbose=0)  # new config
    assert card.config["model"]["l2"] == 1e-4 and (out / "model.keras").stat().st_mtime_ns != stamp
    stamp = (out / "model.keras").stat().st_mtime_ns
    os.utime(validate_dir / "manifest.json")  # a newer file with the same content changes nothing
    train("logistic", train_dir, validate_dir, out, QUICK, {"l2": 1e-4}, verbose=0)
    assert "up to date" in capsys.readouterr().out and (out / "model.keras").stat().st_mtime_ns == stamp
    rebuilt = make_store(tmp_path / "validate", 24, seed=9).path  # other videos: another input
    train("logistic", train_dir, rebuilt, out, QUICK, {"l2": 1e-4}, verbose=0)
    assert "up to date" not in capsys.readouterr().out and (out / "model.keras").stat().st_mtime_ns != stamp


def test_distillation_defaults_are_not_part_of_a_run_without_a_teacher(stores, tmp_path, monkeypatch, capsys):
    from models import distill

    train_dir, validate_dir = stores
    out = tmp_path / "run"
    card = train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    assert "teacher_weight" not in card.config["training"] and "teacher_temperature" not in card.config["training"]
    monkeypatch.setattr(distill, "TEACHER_TEMPERATURE", 3.0)
    capsys.readouterr()
    train("logistic", train_dir, validate_dir, out, dataclasses.replace(QUICK, teacher_weight=0.9), verbose=0)
    assert capsys.readouterr().out == f"{out}: up to date\n"


def test_a_truncated_model_file_is_not_up_to_date(stores, tmp_path, capsys):
    train_dir, validate_dir = stores
    out = tmp_path / "run"
    train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    data = (out / "model.keras").read_bytes()
    (out / "model.keras").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    assert "up to date" not in capsys.readouterr().out
    assert (out / "model.keras").read_bytes()[:4] == b"PK\x03\x04" and load_model_dir(out)[1].model == "logistic"
    flipped = bytearray((out / "model.keras").read_bytes())
    flipped[len(flipped) // 3] ^= 0xFF  # same size, one byte changed: its CRC check fails
    (out / "model.keras").write_bytes(bytes(flipped))
    train("logistic", train_dir, validate_dir, out, QUICK, verbose=0)
    assert "up to date" not in capsys.readouterr().out


def test_same_seed_same_weights(stores, tmp_path):
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=1, batch_size=16, seed=7)
    for run in ("a", "b"):
        train("moe", train_dir, validate_dir, tmp_path / run, options, verbose=0)
    options.seed = 8
    train("moe", train_dir, validate_dir, tmp_path / "c", options, verbose=0)
    a, b, c = (keras.models.load_model(tmp_path / run / "model.keras").get_weights() for run in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_video_level_models_train_on_a_frame_store_but_not_the_reverse(stores, tmp_path):
    train_dir, validate_dir = stores
    video_store = make_store(tmp_path / "v", 8, seed=3, level="video").path
    with pytest.raises(InputError, match="video-level store, but model qrnn needs frame-level features"):
        train("qrnn", video_store, validate_dir, tmp_path / "run", QUICK, TINY["qrnn"])
    card = train("moe", video_store, validate_dir, tmp_path / "moe", QUICK, verbose=0)  # mixed levels: fine
    assert card.train_videos == 8


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def cli_args(model, train_dir, validate_dir, out, *more):
    return ["train", "--model", model, "--train", str(train_dir), "--validate", str(validate_dir),
            "--out", str(out), "--epochs", "1", "--batch-size", "16", *more]


@pytest.mark.parametrize("case", ["wrong level", "class mismatch", "empty", "no labels"])
def test_cli_refuses_bad_inputs_before_training(case, stores, tmp_path, capsys):
    """Each refusal is one `error: <store>: <problem>` line and exit status 2, and nothing is written."""
    train_dir, _ = stores
    bad, problem = {
        "wrong level": (lambda: make_store(tmp_path / "v", 4, seed=4, level="video").path,
                        "a video-level store, but model qrnn needs frame-level features"),
        "class mismatch": (lambda: make_store(tmp_path / "c", 4, seed=5, classes=CLASSES + 1).path,
                           f"{CLASSES + 1} classes, but the training store {train_dir} has {CLASSES}"),
        "empty": (lambda: create_store(tmp_path / "e", [], [], np.zeros((0, FEATURE_SIZE)),
                                       num_classes=CLASSES).path, "the store holds no videos"),
        "no labels": (lambda: make_store(tmp_path / "t", 4, seed=6, has_labels=False).path,
                      "the store has no labels, so it cannot train or validate a model"),
    }[case]
    store = bad()
    model = "qrnn" if case == "wrong level" else "logistic"
    capsys.readouterr()
    status = cli.run(models_main, cli_args(model, train_dir, store, tmp_path / "run"))
    assert status == 2
    assert capsys.readouterr().err == f"error: {store}: {problem}\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, problem", [
    ("--learning-rate", "-1", "must be a positive number, not -1.0"),
    ("--learning-rate", "nan", "must be a positive number, not nan"),
    ("--frames", "0", "must be at least 1, not 0"),
    ("--epochs", "0", "must be at least 1, not 0"),
])
def test_cli_refuses_options_that_cannot_train(flag, value, problem, stores, tmp_path, capsys):
    train_dir, validate_dir = stores
    capsys.readouterr()
    assert cli.run(models_main, cli_args("qrnn", train_dir, validate_dir, tmp_path / "run", flag, value)) == 2
    assert capsys.readouterr().err == f"error: {flag}: {problem}\n"
    assert not (tmp_path / "run").exists()


def test_cli_in_a_process_trains_says_up_to_date_and_refuses(stores, tmp_path):
    train_dir, validate_dir = stores
    args = cli_args("moe", train_dir, validate_dir, tmp_path / "run", "--config", "experts=1")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert Card.load(tmp_path / "run").config["model"]["experts"] == 1
    assert cli.run(models_main, args) == 0  # in this process: the same command again is skipped
    assert cli.run(models_main, [*args[:-2], "--config", "nonsense=1"]) == 2

    refused = run_cli(*cli_args("lstm", train_dir, tmp_path / "run", tmp_path / "lstm"))
    assert refused.returncode == 2
    assert refused.stderr == f"error: {tmp_path / 'run'}: not a feature store (no manifest.json)\n"
    assert not (tmp_path / "lstm").exists()


def test_the_training_plot_has_whole_epoch_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at its axes
    history = [{"epoch": e, "loss": 1.0 / e, "val_gap": 0.1 * e, "val_hit_at_one": 0.2, "val_perr": 0.1}
               for e in (1, 2, 3)]
    plot_history(tmp_path / "training.png", history, 3, "run")
    for axis in figures[0].axes:
        ticks = [t for t in axis.get_xticks() if 1 <= t <= 3]
        assert ticks == [1.0, 2.0, 3.0], ticks
