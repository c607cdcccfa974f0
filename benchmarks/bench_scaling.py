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
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common.cli import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from benchmarks.runs import REPO, synthetic_world  # noqa: E402
from common.card import Card  # noqa: E402
from data.formats import FEATURE_SIZE  # noqa: E402
from evaluation.score import score_files  # noqa: E402
from features.store import Store  # noqa: E402
from models import zoo  # noqa: E402
from models.batches import StoreBatches, model_inputs, ordered_batches  # noqa: E402
from models.inference import load_model_dir, sampled_frames  # noqa: E402
from models.qrnn import POOLINGS  # noqa: E402
from models.train import DEFAULT_FRAMES, compile_model, dtype_policy, make_train_step, model_options  # noqa: E402
from submissions.predict import predict  # noqa: E402

FULL = dict(videos=(2000, 400, 400), seeds=(0, 1), epochs=3, batch=64, config=[], rounds=15, steps=2,
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
    """Start one of the project's commands (`python -m ...`) without waiting (workers run side by side),
    its output kept for a failure message."""
    return subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def done(*procs: subprocess.Popen) -> None:
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(proc.args)}\n{out[-3000:]}")


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


def gate_shape(batch: int, config: dict) -> tuple[int, int, int]:
    """(rows, depth, width) of the qrnn's gate products in a training step: (B*T, window*1152,
    gates*hidden*directions), both directions' products as one of their total width (the same FLOPs)."""
    cfg = zoo.make_config("qrnn", config)
    directions = 2 if cfg.bidirectional else 1
    return batch * DEFAULT_FRAMES, cfg.window * FEATURE_SIZE, len(POOLINGS[cfg.pooling]) * cfg.hidden * directions


def gate_products(precision: str, batch: int, config: dict) -> Callable[[], None]:
    """The qrnn's two large matrix products of a training step alone, at its shapes: the gates' forward
    product (B*T, window*1152) x (window*1152, gates*hidden) and the kernel's gradient."""
    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    rows, depth, width = gate_shape(batch, config)
    x, kernel, grad = (tf.cast(tf.random.normal(shape), dtype) for shape in ((rows, depth), (depth, width),
                                                                            (rows, width)))
    products = tf.function(lambda: (tf.matmul(x, kernel), tf.matmul(x, grad, transpose_a=True)))
    return lambda: [float(tf.reduce_sum(tf.cast(p[:1, :1], tf.float32))) for p in products()]


def training_steps(world: Path, sizes: dict) -> dict:
    """(model, precision) -> seconds of each round's training steps, interleaved round by round; every step
    reads its batch from the store as training does. ("qrnn products", precision): the same for the qrnn's
    two large matrix products alone."""
    store = Store(world / "train")
    assert 1 + sizes["rounds"] * sizes["steps"] <= len(store) // sizes["batch"], "too few batches in an epoch"
    strategy = tf.distribute.get_strategy()
    config = dict(c.split("=") for c in sizes["config"])
    runs = {}
    for model, precision in SPEED:
        level = zoo.spec(model).level
        data = StoreBatches(store, level, sizes["batch"], DEFAULT_FRAMES if level == "frame" else None,
                            shuffle=True, seed=0)
        with dtype_policy(precision):
            keras.utils.set_random_seed(0)
            net = zoo.build(model, store.num_classes, config if model == "qrnn" else None)
            compile_model(net, model_options(model))
            net.optimizer.build(net.trainable_variables)
        iterator = iter(strategy.distribute_datasets_from_function(data.dataset))
        step = make_train_step(net, strategy, 0)
        videos = tf.constant(float(sizes["batch"]))
        runs[(model, precision)] = lambda step=step, it=iterator, v=videos: float(step(it, v, tf.constant(0, tf.int64)))
        runs[(model, precision)]()  # trace
    for precision in PRECISIONS:
        runs[("qrnn products", precision)] = gate_products(precision, sizes["batch"], config)
        runs[("qrnn products", precision)]()
    seconds = {key: [] for key in runs}
    for r in range(sizes["rounds"]):
        for key, run in runs.items():
            started = time.perf_counter()
            for _ in range(sizes["steps"]):
                run()
            seconds[key].append((time.perf_counter() - started) / sizes["steps"])
        print(f"round {r + 1}, seconds per step: " + ", ".join(f"{m} {p} {v[-1]:.3f}" for (m, p), v in
                                                               seconds.items()), flush=True)
    return seconds


def prediction(folders: dict, world: Path, sizes: dict) -> dict:
    """("forward" | "predict", precision) -> seconds per video of the trained qrnn models, interleaved round
    by round: the forward passes alone over the same batches, and whole `submissions predict` runs on the
    training store (its steady rate)."""
    store = Store(world / "train")
    loaded = {p: load_model_dir(folders[p]) for p in PRECISIONS}
    frames = sampled_frames(loaded["float32"][1])
    indices = list(ordered_batches(len(store), 256))[:sizes["predict_batches"]]
    inputs = [model_inputs(store, batch, "frame", frames, "even") for batch in indices]
    seconds = {(kind, p): [] for kind in ("forward", "predict") for p in PRECISIONS}
    for model, _ in loaded.values():
        model.predict_on_batch(inputs[0])  # trace
    for _ in range(sizes["rounds"]):
        for precision, (model, _) in loaded.items():
            started = time.perf_counter()
            for x in inputs:
                model.predict_on_batch(x)
            seconds[("forward", precision)].append((time.perf_counter() - started) / sum(map(len, indices)))
    for r in range(sizes["predict_rounds"]):
        for precision in PRECISIONS:
            csv = folders[precision].with_name(f"{folders[precision].name}-train-{r}.csv")
            seconds[("predict", precision)].append(1 / predict(folders[precision], world / "train",
                                                               csv).videos_per_second)
    return seconds


def ratios(seconds: dict, key: str) -> str:
    """float32 / mixed_bfloat16 time of `key`, round by round: median (lowest to highest)."""
    each = sorted(a / b for a, b in zip(seconds[(key, "float32")], seconds[(key, "mixed_bfloat16")], strict=True))
    return f"{statistics.median(each):.2f}x ({each[0]:.2f}-{each[-1]:.2f})"


def speed_section(steps: dict, predicted: dict, cards: dict, sizes: dict, world: Path, load: tuple) -> str:
    batch, config = sizes["batch"], dict(c.split("=") for c in sizes["config"])
    lines = [f"On {label(world)}, in one process, {sizes['rounds']} interleaved rounds (the machine's load average "
             f"was {load[0]:.1f} before and {load[1]:.1f} after on {os.cpu_count()} cores, the benchmark's own runs "
             "included). Training: "
             f"{sizes['steps']} steps of batch {batch} per round and configuration, each batch read from the store "
             f"as training reads it ({DEFAULT_FRAMES} random frames per video for frame-level models); videos/s of "
             "the best round. The card's rate is that of the whole `models train` run above (one process, its "
             "first step left out).", "",
             "| model | precision | training steps: videos/s | card's training videos/s |", "|---|---|---|---|"]
    for (model, precision), values in steps.items():
        if model == "qrnn products":
            continue
        card = cards.get((model, precision))
        lines.append(f"| {model} | {precision} | {batch / min(values):.1f} | "
                     + (f"{card.train_videos_per_second:.1f} |" if card else "|"))
    step_f32 = statistics.median(steps[("qrnn", "float32")])
    share = statistics.median(a / b for a, b in zip(steps[("qrnn products", "float32")], steps[("qrnn", "float32")],
                                                    strict=True))
    lines += ["", f"Prediction, the trained qrnn models: the forward passes alone over {sizes['predict_batches']} "
              f"batches of 256 videos ({sizes['rounds']} rounds), and whole `submissions predict` runs over the "
              f"{sizes['videos'][0]:,}-video training store, reading and CSV included ({sizes['predict_rounds']} "
              "rounds); videos/s of the best round.", "",
              "| precision | forward pass videos/s | `submissions predict` videos/s |", "|---|---|---|"]
    lines += [f"| {p} | {1 / min(predicted[('forward', p)]):.1f} | {1 / min(predicted[('predict', p)]):.1f} |"
              for p in PRECISIONS]
    lines += ["", "mixed_bfloat16 against float32, time ratio round by round, median (lowest-highest):", "",
              f"- **qrnn training step: {ratios(steps, 'qrnn')} as fast**; lstm: {ratios(steps, 'lstm')};",
              f"- **prediction: forward pass {ratios(predicted, 'forward')}, `submissions predict` "
              f"{ratios(predicted, 'predict')} as fast**;",
              f"- where the qrnn's training time goes: its two large matrix products alone (the gates' forward "
              f"product and the kernel's gradient, {4 * math.prod(gate_shape(batch, config)) / 1e9:.0f} GFLOP "
              f"per step) take {share:.0%} of a float32 step (median "
              f"{step_f32:.2f} s) and run {ratios(steps, 'qrnn products')} as fast in bfloat16 (oneDNN's "
              "AVX-512 BF16 kernels); the rest of the step runs in float32 in both. With a fraction p of the "
              "time sped up s times, the step gains 1 / (1 - p + p / s): "
              f"{1 / (1 - share + share / products_speedup(steps)):.2f}x here."]
    return "\n".join(lines)


def products_speedup(steps: dict) -> float:
    return statistics.median(a / b for a, b in zip(steps[("qrnn products", "float32")],
                                                   steps[("qrnn products", "mixed_bfloat16")], strict=True))


def epochs_section(steps: dict, batch: int) -> str:
    lines = [f"One epoch of the {TRAIN_VIDEOS:,} training videos of YouTube-8M 2018 (video level and frame "
             "level alike) at the best training-step rates above, on one machine like this one: videos / rate.",
             "", "| model | features | precision | videos/s | one epoch |", "|---|---|---|---|---|"]
    for (model, precision), values in steps.items():
        if model == "qrnn products":
            continue
        rate = batch / min(values)
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
        worlds = args.stores or [synthetic_world(tmp / "worlds", seed, dict(zip(("train", "validate", "test"),
                                                                                sizes["videos"], strict=True)))
                                 for seed in sizes["seeds"]]
        results = {}
        for world in worlds:
            results[world] = quality(world, tmp, sizes)
            print(quality_section({world: results[world]}, sizes), flush=True)
        world = worlds[0]
        before = os.getloadavg()[0]
        steps = training_steps(world, sizes)
        predicted = prediction(results[world]["folders"], world, sizes)
        load = (before, os.getloadavg()[0])
        cards = {("qrnn", p): results[world]["cards"][p] for p in PRECISIONS}
        body = "\n\n".join([
            "### Quality: two workers and mixed_bfloat16 against one process in float32\n\n"
            + quality_section(results, sizes),
            "### Speed: float32 and mixed_bfloat16\n\n" + speed_section(steps, predicted, cards, sizes, world, load),
            "### Expected time per epoch of the full dataset\n\n" + epochs_section(steps, sizes["batch"])])
    print(body)
    if not args.quick:
        command = "python -m benchmarks.bench_scaling" + (" --stores " + " ".join(map(str, args.stores))
                                                          if args.stores else "")
        write_section("Scaling", command, body)


if __name__ == "__main__":
    main()
