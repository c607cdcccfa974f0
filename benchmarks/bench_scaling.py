"""Scaling benchmark: two workers against one process, float32 against mixed_bfloat16, and the training rates
behind the epoch-time table of docs/scaling.md.

    python -m benchmarks.bench_scaling [--stores DIR ...] [--quick]

Each DIR holds the frame-level stores train/, validate/ and test/ of one synthetic world (default: worlds
of seed 0 and 1 made with `python -m data synth` and `python -m features convert`, 2,000 / 400 / 400 videos).
1. Quality, on every world: the qrnn at its defaults trained by `python -m models train` in one process in
   float32, by two worker processes (`--strategy multiworker`, TF_CONFIG on 127.0.0.1) at the same global
   batch and epochs, and in one process in mixed_bfloat16: validation GAP, and the test GAP of the CSV that
   `submissions predict` writes.
2. Speed, in this process, interleaved so that every configuration sees the same machine load: training
   steps of every model (the qrnn and the lstm also in mixed_bfloat16) on the same batches, read from the
   store as training reads them; the trained qrnn models' forward passes on the same prediction batches;
   and whole `submissions predict` runs. Best of the rounds; ratios mixed_bfloat16 / float32. The training
   rates give the epoch-time table.
Figures go to benchmarks/RESULTS.md (section "Scaling"); --quick runs tiny sizes and writes nothing.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from common.card import Card  # noqa: E402
from evaluation.score import score_files  # noqa: E402
from features.store import Store  # noqa: E402
from models import zoo  # noqa: E402
from models.batches import StoreBatches, model_inputs, ordered_batches  # noqa: E402
from models.inference import load_model_dir, sampled_frames  # noqa: E402
from models.train import DEFAULT_FRAMES, TrainOptions, compile_model, dtype_policy, make_train_step  # noqa: E402
from submissions.predict import predict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULL = dict(videos=(2000, 400, 400), seeds=(0, 1), epochs=3, batch=64, config=[], rounds=7, steps=3,
            predict_batches=4, predict_rounds=3)
QUICK = dict(videos=(96, 48, 48), seeds=(0,), epochs=1, batch=16, config=["hidden=32"], rounds=2, steps=2,
             predict_batches=2, predict_rounds=1)
TRAIN_VIDEOS = 3_888_919  # YouTube-8M 2018 training partition, video level and frame level alike
SPEED = (("logistic", "float32"), ("moe", "float32"), ("qrnn-video", "float32"), ("lstm", "float32"),
         ("lstm", "mixed_bfloat16"), ("qrnn", "float32"), ("qrnn", "mixed_bfloat16"))
PRECISIONS = ("float32", "mixed_bfloat16")


def label(world: Path) -> str:
    """A world's short name: its folder, with the parent's when the folder is called features."""
    return "/".join(world.parts[-2:]) if world.name == "features" else world.name


def sh(*args, env=None) -> subprocess.Popen:
    """Start one of the project's commands (`python -m ...`), its output kept for a failure message."""
    return subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def done(*procs: subprocess.Popen) -> None:
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(proc.args)}\n{out[-3000:]}")


def make_worlds(root: Path, sizes: dict) -> list[Path]:
    """Synthetic frame-level worlds (train, validate, test stores), one per seed."""
    worlds = []
    for seed in sizes["seeds"]:
        world = root / f"seed{seed}"
        for split, videos in zip(("train", "validate", "test"), sizes["videos"], strict=True):
            print(f"$ data synth + features convert: seed {seed} {split}, {videos} videos", flush=True)
            done(sh("data", "synth", "--out", world / "shards" / split, "--level", "frame", "--split", split,
                    "--videos", videos, "--seed", seed))
            done(sh("features", "convert", "--shards", world / "shards" / split, "--out", world / split))
        worlds.append(world)
    return worlds


# ---------------------------------------------------------------- 1. quality


def train_qrnn(world: Path, out: Path, sizes: dict, *more, workers: int = 1) -> Card:
    """`python -m models train` of the qrnn at its defaults; with workers > 1, that many worker processes
    on this machine (TF_CONFIG on free ports of 127.0.0.1)."""
    args = ["models", "train", "--model", "qrnn", "--train", world / "train", "--validate", world / "validate",
            "--out", out, "--epochs", sizes["epochs"], "--batch-size", sizes["batch"], *more,
            *(["--config", *sizes["config"]] if sizes["config"] else [])]
    print(f"$ train qrnn {' '.join(more)} -> {out}", flush=True)
    if workers == 1:
        done(sh(*args))
        return Card.load(out)
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    procs = [sh(*args, env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {
        "type": "worker", "index": index}}))) for index in range(workers)]
    done(*procs)
    return Card.load(out)


def quality(world: Path, tmp: Path, sizes: dict) -> dict:
    """Cards of the three trainings and the test GAP of each one's `submissions predict` CSV."""
    name = label(world).replace("/", "-")
    folders = {key: tmp / f"{name}-{key.replace(' ', '-')}" for key in ("float32", "two workers", "mixed_bfloat16")}
    cards = {"float32": train_qrnn(world, folders["float32"], sizes),
             "two workers": train_qrnn(world, folders["two workers"], sizes, "--strategy", "multiworker",
                                       workers=2),
             "mixed_bfloat16": train_qrnn(world, folders["mixed_bfloat16"], sizes, "--precision", "mixed_bfloat16")}
    test = {}
    for key, folder in folders.items():
        csv = folder.with_name(f"{folder.name}-test.csv")
        predict(folder, world / "test", csv)
        test[key] = score_files(csv, world / "test").scores.gap
    return {"cards": cards, "test": test, "folders": folders}


def quality_section(results: dict, sizes: dict) -> str:
    lines = [f"qrnn at its defaults, global batch {sizes['batch']}, {sizes['epochs']} epochs, seed 0; validation "
             f"GAP of the best epoch and test GAP of the `submissions predict` CSV ({sizes['videos'][1]:,} and "
             f"{sizes['videos'][2]:,} videos). The two workers are two processes on this 2-core machine.", "",
             "| world | training | validation GAP | test GAP | vs one process float32 (validation, test) |",
             "|---|---|---|---|---|"]
    for world, result in results.items():
        base, base_test = result["cards"]["float32"].validation["gap"], result["test"]["float32"]
        for key, card in result["cards"].items():
            gap, test = card.validation["gap"], result["test"][key]
            where = "one process, float32" if key == "float32" else (
                "2 workers, float32" if key == "two workers" else "one process, mixed_bfloat16")
            diff = "" if key == "float32" else f"{gap - base:+.4f}, {test - base_test:+.4f}"
            lines.append(f"| {label(world)} | {where} | {gap:.4f} | {test:.4f} | {diff} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- 2. speed


def training_steps(world: Path, sizes: dict) -> dict:
    """(model, precision) -> best videos/s of training steps, interleaved round by round; every step reads
    its batch from the store as training does."""
    store = Store(world / "train")
    assert 1 + sizes["rounds"] * sizes["steps"] <= len(store) // sizes["batch"], "too few batches in an epoch"
    strategy = tf.distribute.get_strategy()
    steps, rates = {}, {key: [] for key in SPEED}
    for model, precision in SPEED:
        level = zoo.spec(model).level
        data = StoreBatches(store, level, sizes["batch"], DEFAULT_FRAMES if level == "frame" else None,
                            shuffle=True, seed=0)
        with dtype_policy(precision):
            keras.utils.set_random_seed(0)
            net = zoo.build(model, store.num_classes, dict(c.split("=") for c in sizes["config"])
                            if model == "qrnn" else None)
            compile_model(net, TrainOptions(learning_rate=zoo.spec(model).learning_rate))
            net.optimizer.build(net.trainable_variables)
        iterator = iter(strategy.distribute_datasets_from_function(data.dataset))
        step = make_train_step(net, strategy, 0)
        float(step(iterator, tf.constant(float(sizes["batch"])), tf.constant(0, tf.int64)))  # trace
        steps[(model, precision)] = (step, iterator)
    for r in range(sizes["rounds"]):
        for key, (step, iterator) in steps.items():
            started = time.perf_counter()
            for i in range(sizes["steps"]):
                float(step(iterator, tf.constant(float(sizes["batch"])), tf.constant(i, tf.int64)))
            rates[key].append(sizes["batch"] * sizes["steps"] / (time.perf_counter() - started))
        print(f"training steps, round {r + 1}: " + ", ".join(f"{m} {p} {v[-1]:.0f}" for (m, p), v in rates.items()),
              flush=True)
    return {key: max(values) for key, values in rates.items()}


def prediction(folders: dict, world: Path, sizes: dict) -> dict:
    """precision -> (best videos/s of the trained model's forward passes over the same batches, interleaved
    round by round; best videos/s of whole `submissions predict` runs on the training store, interleaved)."""
    store = Store(world / "train")
    loaded = {p: load_model_dir(folders[p]) for p in PRECISIONS}
    frames = sampled_frames(loaded["float32"][1])
    indices = list(ordered_batches(len(store), 256))[:sizes["predict_batches"]]
    inputs = [model_inputs(store, batch, "frame", frames, "even") for batch in indices]
    forward, whole = {p: [] for p in PRECISIONS}, {p: [] for p in PRECISIONS}
    for model, _ in loaded.values():
        model.predict_on_batch(inputs[0])  # trace
    for _ in range(sizes["rounds"]):
        for precision, (model, _) in loaded.items():
            started = time.perf_counter()
            for x in inputs:
                model.predict_on_batch(x)
            forward[precision].append(sum(map(len, indices)) / (time.perf_counter() - started))
    for r in range(sizes["predict_rounds"]):
        for precision in PRECISIONS:
            csv = folders[precision].with_name(f"{folders[precision].name}-train-{r}.csv")
            whole[precision].append(predict(folders[precision], world / "train", csv).videos_per_second)
    return {p: (max(forward[p]), max(whole[p])) for p in PRECISIONS}


def speed_section(steps: dict, predicted: dict, cards: dict, sizes: dict, world: Path) -> str:
    lines = [f"On {label(world)}, in one process; best of {sizes['rounds']} interleaved rounds. Training: "
             f"{sizes['steps']} steps of batch {sizes['batch']} per round and configuration, each batch read from "
             f"the store as training reads it ({DEFAULT_FRAMES} random frames per video for frame-level models). "
             "The card's rate is that of the whole `models train` run (one process, its first step left out), "
             "measured while the machine's load changed.", "",
             "| model | precision | training steps videos/s | card's training videos/s |", "|---|---|---|---|"]
    for (model, precision), rate in steps.items():
        card = cards.get((model, precision))
        lines.append(f"| {model} | {precision} | {rate:.1f} | {card.train_videos_per_second:.1f} |" if card else
                     f"| {model} | {precision} | {rate:.1f} | |")
    f32, bf16 = steps[("qrnn", "float32")], steps[("qrnn", "mixed_bfloat16")]
    lstm = steps[("lstm", "mixed_bfloat16")] / steps[("lstm", "float32")]
    lines += ["", f"Prediction, the trained qrnn models: the forward passes alone over {sizes['predict_batches']} "
              f"batches of 256 videos (best of {sizes['rounds']}), and whole `submissions predict` runs over the "
              f"{sizes['videos'][0]:,}-video training store, CSV included (best of {sizes['predict_rounds']}).", "",
              "| precision | forward pass videos/s | `submissions predict` videos/s |", "|---|---|---|"]
    lines += [f"| {p} | {predicted[p][0]:.1f} | {predicted[p][1]:.1f} |" for p in PRECISIONS]
    lines += ["", f"**mixed_bfloat16 / float32, qrnn: training {bf16 / f32:.2f}x, forward pass "
                  f"{predicted['mixed_bfloat16'][0] / predicted['float32'][0]:.2f}x, `submissions predict` "
                  f"{predicted['mixed_bfloat16'][1] / predicted['float32'][1]:.2f}x as fast (lstm training "
                  f"{lstm:.2f}x).**"]
    return "\n".join(lines)


def epochs_section(steps: dict) -> str:
    lines = [f"One epoch of the {TRAIN_VIDEOS:,} training videos of YouTube-8M 2018 (video level and frame "
             "level alike) at the training-step rates above, on one machine like this one: videos / rate.", "",
             "| model | features | precision | videos/s | one epoch |", "|---|---|---|---|---|"]
    for (model, precision), rate in steps.items():
        seconds = TRAIN_VIDEOS / rate
        lines.append(f"| {model} | {zoo.spec(model).level} | {precision} | {rate:.1f} | {TRAIN_VIDEOS:,} / "
                     f"{rate:.1f} = {seconds:,.0f} s = {seconds / 3600:.1f} h |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", nargs="*", type=Path, metavar="DIR",
                   help="worlds: folders holding train/, validate/ and test/ frame-level stores")
    p.add_argument("--quick", action="store_true", help="tiny sizes; writes nothing to RESULTS.md")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        tmp = Path(tmp)
        worlds = args.stores or make_worlds(tmp / "worlds", sizes)
        results = {}
        for world in worlds:
            results[world] = quality(world, tmp, sizes)
            print(quality_section({world: results[world]}, sizes), flush=True)
        world = worlds[0]
        steps = training_steps(world, sizes)
        predicted = prediction(results[world]["folders"], world, sizes)
        cards = {("qrnn", p): results[world]["cards"][p] for p in PRECISIONS}
        body = "\n\n".join([
            "### Quality: two workers and mixed_bfloat16 against one process in float32\n\n"
            + quality_section(results, sizes),
            "### Speed: float32 and mixed_bfloat16\n\n" + speed_section(steps, predicted, cards, sizes, world),
            "### Expected time per epoch of the full dataset\n\n" + epochs_section(steps)])
    print(body)
    if not args.quick:
        command = "python -m benchmarks.bench_scaling" + (" --stores " + " ".join(map(str, args.stores))
                                                          if args.stores else "")
        write_section("Scaling", command, body)


if __name__ == "__main__":
    main()
