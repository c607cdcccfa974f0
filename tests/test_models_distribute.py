"""models.train under tf.distribute (two worker processes on 127.0.0.1, mirrored on one CPU) and in Keras
mixed precision."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import models  # noqa: F401  (registers the custom layers for load_model)
from common import cli
from common.card import Card
from models import zoo
from models.__main__ import main as models_main
from models.inference import load_model_dir
from models.qrnn import QRNN
from models.train import TrainOptions, compile_model, dtype_policy, train
from tests.conftest import REPO
from tests.test_models_train import make_store, read_history

# Six epochs of a small QRNN: enough to learn the tiny stores well (GAP > 0.9), and to kill a worker mid-run.
OPTIONS = ["--model", "qrnn", "--epochs", "6", "--batch-size", "8", "--frames", "8", "--learning-rate", "0.01",
           "--patience", "6", "--config", "hidden=16"]
RUN_OUTPUTS = {"model.keras", "card.json", "history.csv", "training.png"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    # 49 videos: the last global batch of 8 holds one video, so worker 1's share of it is empty.
    return make_store(root / "train", 49, seed=1).path, make_store(root / "validate", 24, seed=2).path


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together, so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args: list[str], cwds: list, count: int = 2) -> list[subprocess.Popen]:
    """`python -m models train ARGS --strategy multiworker` once per worker, TF_CONFIG naming each."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    procs = []
    for index, cwd in enumerate(cwds):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=tf_config, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen([sys.executable, "-m", "models", "train", *args, "--strategy", "multiworker"],
                                      cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    """(status, stdout, stderr) of every process; all are killed, and the test fails, past `timeout`."""
    deadline, results = time.monotonic() + timeout, []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            results.append((proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the workers did not finish within {timeout} s (hung?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_two_workers_train_as_well_as_one_process_and_only_the_chief_writes(stores, tmp_path):
    train_dir, validate_dir = stores
    args = [*OPTIONS, "--train", str(train_dir), "--validate", str(validate_dir), "--out", "run"]
    # The same relative --out from two folders: the non-chief's run folder is one nobody else writes.
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "other"
    chief_dir.mkdir(), other_dir.mkdir()
    results = wait_all(start_workers(args, [chief_dir, other_dir]))
    for status, _, err in results:
        assert status == 0, err
    assert "worker 1 of 2: done" in results[1][1]
    assert list(other_dir.iterdir()) == []  # the non-chief wrote nothing
    assert {p.name for p in (chief_dir / "run").iterdir()} == RUN_OUTPUTS

    two = Card.load(chief_dir / "run")
    assert (two.strategy, two.replicas, two.precision, two.epochs) == ("multiworker", 2, "float32", 6)
    assert two.config["training"]["batch_size"] == 8  # the global batch
    assert cli.run(models_main, ["train", *args[:-1], str(tmp_path / "one")]) == 0
    one = Card.load(tmp_path / "one")
    assert one.validation["gap"] > 0.9 and two.validation["gap"] > 0.9
    assert two.validation["gap"] == pytest.approx(one.validation["gap"], abs=0.05)


def test_two_workers_distill_and_the_non_chief_keeps_its_teacher_scores_out_of_the_run_folder(stores, tmp_path):
    train_dir, validate_dir = stores
    train("logistic", train_dir, validate_dir, tmp_path / "teacher", TrainOptions(epochs=1, batch_size=16),
          verbose=0)
    args = [*OPTIONS, "--epochs", "2", "--train", str(train_dir), "--validate", str(validate_dir), "--out", "run",
            "--teacher", str(tmp_path / "teacher")]  # (argparse: the later --epochs wins)
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "other"
    chief_dir.mkdir(), other_dir.mkdir()
    results = wait_all(start_workers(args, [chief_dir, other_dir]))
    for status, _, err in results:
        assert status == 0, err
    assert list(other_dir.iterdir()) == []  # the teacher's scores of worker 1 went to a temporary folder
    assert {p.name for p in (chief_dir / "run").iterdir()} == RUN_OUTPUTS
    card = Card.load(chief_dir / "run")
    assert card.teacher["folder"] == str((tmp_path / "teacher").resolve()) and card.replicas == 2


def test_a_killed_worker_fails_the_job_cleanly_and_a_rerun_resumes(stores, tmp_path):
    train_dir, validate_dir = stores
    out = tmp_path / "run"
    args = [*OPTIONS, "--train", str(train_dir), "--validate", str(validate_dir), "--out", str(out)]
    procs = start_workers(args, [tmp_path, tmp_path])
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "epoch-0001").exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no first checkpoint"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    (status, _, err), _ = wait_all(procs, timeout=180)
    assert status == 1
    assert err.strip().splitlines()[-1].startswith(f"error: {out}: worker 0 of 2 lost contact with the other "
                                                   "workers (")
    assert "run the same command on every worker again" in err
    assert not (out / "card.json").exists() and not (out / "model.keras").exists()
    saved = sorted(p.name for p in (out / "checkpoints").glob("epoch-*"))
    assert saved and saved[-1] < "epoch-0006"

    results = wait_all(start_workers(args, [tmp_path, tmp_path]))
    for status, stdout, err in results:
        assert status == 0, err
        assert f"{out}: resuming from the checkpoint of epoch {int(saved[-1][-4:])} of 6" in stdout
    assert Card.load(out).epochs == 6 and not (out / "checkpoints").exists()


def test_mirrored_on_one_cpu_is_the_default_strategy(stores, tmp_path):
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)  # the QRNN's zoneout on
    cards = {name: train("qrnn", train_dir, validate_dir, tmp_path / name,
                         TrainOptions(**{**options.__dict__, "strategy": name}), {"hidden": 8}, verbose=0)
             for name in ("default", "mirrored")}
    assert (cards["mirrored"].strategy, cards["mirrored"].replicas) == ("mirrored", 1)
    history = {name: [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(tmp_path / name)]
               for name in cards}
    assert history["mirrored"] == history["default"]  # to the last digit
    weights = [keras.models.load_model(tmp_path / name / "model.keras").get_weights() for name in cards]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_multiworker_needs_tf_config(stores, tmp_path, monkeypatch, capsys):
    train_dir, validate_dir = stores
    args = ["train", *OPTIONS, "--train", str(train_dir), "--validate", str(validate_dir),
            "--out", str(tmp_path / "run"), "--strategy", "multiworker"]
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.run(models_main, args) == 2
    assert capsys.readouterr().err.startswith("error: TF_CONFIG: --strategy multiworker needs this environment")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    assert cli.run(models_main, args) == 2
    assert "error: TF_CONFIG: task worker 3 is not in the cluster" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_a_float32_recurrence_and_output(precision, stores, tmp_path):
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)
    want = train("qrnn", train_dir, validate_dir, tmp_path / "float32", options, {"hidden": 8}, verbose=0)
    card = train("qrnn", train_dir, validate_dir, tmp_path / precision,
                 TrainOptions(**{**options.__dict__, "precision": precision}), {"hidden": 8}, verbose=0)
    assert card.precision == precision == card.config["training"]["precision"]
    assert card.validation["gap"] == pytest.approx(want.validation["gap"], abs=0.05)

    model, _ = load_model_dir(tmp_path / precision)  # the saved model keeps its policy: predicts in it too
    qrnn = next(layer for layer in model.layers if isinstance(layer, QRNN))
    assert qrnn.compute_dtype == precision.removeprefix("mixed_") and qrnn.variable_dtype == "float32"
    frames = np.random.default_rng(0).integers(0, 255, (3, 5, 1152), dtype=np.uint8)
    x = {"frames": frames, "num_frames": np.array([5, 3, 1], np.int32),
         "video": np.random.default_rng(1).normal(size=(3, 1152)).astype(np.float32)}
    assert keras.ops.convert_to_numpy(qrnn(model.get_layer("frame_features")([frames, x["num_frames"]]))).dtype \
        == np.float32  # the gates' pre-activations go to float32: the recurrence runs in float32
    assert model.predict_on_batch(x).dtype == np.float32


def test_mixed_float16_scales_the_loss():
    with dtype_policy("mixed_float16"):
        model = zoo.build("logistic", 5)
        compile_model(model, TrainOptions(learning_rate=0.01))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.config.dtype_policy().name == "float32"  # the policy does not outlive the block
