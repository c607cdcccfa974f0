"""Scaling benchmark: two workers against one process, float32 against mixed_bfloat16, and the training rates
behind the epoch-time table of docs/scaling.md.

    python -m benchmarks.bench_scaling [--stores DIR ...] [--quick]

Each DIR holds the frame-level stores train/, validate/ and test/ of one synthetic world (default: worlds
of seed 0 and 1 made with `python -m data synth` and `python -m features convert`, 2,000 / 400 / 400 videos).
1. The qrnn at its defaults, trained by `python -m models train` in one process and by two worker processes
   (`--strategy multiworker`, TF_CONFIG on 127.0.0.1) at the same global batch and epochs: validation GAP.
2. The same training in float32 and in mixed_bfloat16, interleaved: the card's training videos/s (graph
   tracing left out) and validation GAP; then `submissions predict` of both models, interleaved: videos/s on
   the training store, GAP of the test store's CSV. Best of the rounds; ratios bf16 / float32.
3. One epoch of every other model in one process: the training rates of the epoch-time table.
Figures go to benchmarks/RESULTS.md (section "Scaling"); --quick runs tiny sizes and writes nothing.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.results import write_section  # noqa: E402
from common.card import Card  # noqa: E402
from evaluation.score import score_files  # noqa: E402
from submissions.predict import predict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULL = dict(videos=(2000, 400, 400), seeds=(0, 1), epochs=3, batch=64, rounds=2, predict_rounds=3, config=[])
QUICK = dict(videos=(96, 48, 48), seeds=(0,), epochs=1, batch=16, rounds=1, predict_rounds=1,
             config=["hidden=32"])
TRAIN_VIDEOS = 3_888_919  # YouTube-8M 2018 training partition, video level and frame level alike
OTHERS = ("logistic", "moe", "qrnn-video", "lstm")


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


def train_args(model: str, world: Path, out: Path, sizes: dict, epochs: int, *more) -> list:
    config = sizes["config"] if model == "qrnn" else []
    return ["models", "train", "--model", model, "--train", world / "train", "--validate", world / "validate",
            "--out", out, "--epochs", epochs, "--batch-size", sizes["batch"], *more,
            *(["--config", *config] if config else [])]


def train_one(model: str, world: Path, out: Path, sizes: dict, epochs: int, *more) -> Card:
    print(f"$ train {model} {' '.join(more)} -> {out}", flush=True)
    done(sh(*train_args(model, world, out, sizes, epochs, *more)))
    return Card.load(out)


def train_two_workers(world: Path, out: Path, sizes: dict) -> Card:
    """The qrnn by two worker processes on this machine (TF_CONFIG on free ports of 127.0.0.1)."""
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    print(f"$ train qrnn --strategy multiworker (2 workers) -> {out}", flush=True)
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                     "task": {"type": "worker", "index": index}}))
        args = train_args("qrnn", world, out, sizes, sizes["epochs"], "--strategy", "multiworker")
        procs.append(sh(*args, env=env))
    done(*procs)
    return Card.load(out)


def workers_section(worlds: list[Path], ones: dict, twos: dict, sizes: dict) -> str:
    lines = [f"qrnn at its defaults, global batch {sizes['batch']}, {sizes['epochs']} epochs, same seed; two "
             "worker processes on this one 2-core machine share its cores, so their speed says nothing about "
             "scaling.", "",
             "| world | one process: validation GAP | two workers: validation GAP | difference |",
             "|---|---|---|---|"]
    for world in worlds:
        one, two = ones[world].validation["gap"], twos[world].validation["gap"]
        lines.append(f"| {world.name} | {one:.4f} | {two:.4f} | {two - one:+.4f} |")
    return "\n".join(lines)


def precision_section(worlds: list[Path], runs: dict, predictions: dict, sizes: dict) -> str:
    """runs[world][precision]: cards of every round; predictions[world][precision]: (videos/s list, GAP)."""
    lines = [f"qrnn at its defaults, {sizes['epochs']} epochs, batch {sizes['batch']}; training videos/s is the "
             "card's rate (first step, which traces the graph, left out); prediction is `submissions predict` "
             f"on the {sizes['videos'][0]:,}-video training store (videos/s) and on the test store (GAP). "
             f"Best of {sizes['rounds']} interleaved training rounds and {sizes['predict_rounds']} prediction "
             "rounds.", "",
             "| world | precision | train videos/s | validation GAP | predict videos/s | test GAP |",
             "|---|---|---|---|---|---|"]
    for world in worlds:
        for precision in ("float32", "mixed_bfloat16"):
            cards = runs[world][precision]
            rates, gap = predictions[world][precision]
            lines.append(f"| {world.name} | {precision} | {max(c.train_videos_per_second for c in cards):.1f} | "
                         f"{cards[0].validation['gap']:.4f} | {max(rates):.1f} | {gap:.4f} |")
    lines.append("")
    for world in worlds:
        f32, bf16 = runs[world]["float32"], runs[world]["mixed_bfloat16"]
        train = max(c.train_videos_per_second for c in bf16) / max(c.train_videos_per_second for c in f32)
        infer = max(predictions[world]["mixed_bfloat16"][0]) / max(predictions[world]["float32"][0])
        gap = bf16[0].validation["gap"] - f32[0].validation["gap"]
        test_gap = predictions[world]["mixed_bfloat16"][1] - predictions[world]["float32"][1]
        lines.append(f"- {world.name}: **mixed_bfloat16 / float32: training {train:.2f}x, prediction "
                     f"{infer:.2f}x as fast; validation GAP {gap:+.4f}, test GAP {test_gap:+.4f}.**")
    return "\n".join(lines)


def rates_section(rates: dict) -> str:
    lines = [f"Training videos/s in one process on this machine (the card's rate), and what one epoch of the "
             f"{TRAIN_VIDEOS:,} training videos of YouTube-8M 2018 then takes: videos / rate.", "",
             "| model | features | precision | train videos/s | one epoch |", "|---|---|---|---|---|"]
    for (model, level, precision), rate in rates.items():
        seconds = TRAIN_VIDEOS / rate
        lines.append(f"| {model} | {level} | {precision} | {rate:.1f} | {TRAIN_VIDEOS:,} / {rate:.1f} = "
                     f"{seconds:,.0f} s = {seconds / 3600:.1f} h |")
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
        ones, twos, runs, predictions = {}, {}, {}, {}
        for world in worlds:
            runs[world] = {"float32": [], "mixed_bfloat16": []}
            for r in range(sizes["rounds"]):
                for precision in runs[world]:
                    out = tmp / f"{world.name}-{precision}-{r}"
                    runs[world][precision].append(train_one("qrnn", world, out, sizes, sizes["epochs"],
                                                            "--precision", precision))
            ones[world] = runs[world]["float32"][0]
            twos[world] = train_two_workers(world, tmp / f"{world.name}-two-workers", sizes)
            predictions[world] = {precision: ([], None) for precision in runs[world]}
            for r in range(sizes["predict_rounds"]):
                for precision in runs[world]:
                    csv = tmp / f"{world.name}-{precision}-train-{r}.csv"
                    rate = predict(tmp / f"{world.name}-{precision}-0", world / "train", csv).videos_per_second
                    predictions[world][precision][0].append(rate)
            for precision in runs[world]:
                csv = tmp / f"{world.name}-{precision}-test.csv"
                predict(tmp / f"{world.name}-{precision}-0", world / "test", csv)
                predictions[world][precision] = (predictions[world][precision][0],
                                                 score_files(csv, world / "test").scores.gap)
            print(workers_section([world], ones, twos, sizes), flush=True)
            print(precision_section([world], runs, predictions, sizes), flush=True)

        world = worlds[0]
        rates = {}
        for model in OTHERS:
            card = train_one(model, world, tmp / f"rate-{model}", sizes, 1)
            rates[(model, card.level, "float32")] = card.train_videos_per_second
        for precision, cards in runs[world].items():
            rates[("qrnn", "frame", precision)] = max(c.train_videos_per_second for c in cards)
        body = "\n\n".join([
            "### Two workers against one process\n\n" + workers_section(worlds, ones, twos, sizes),
            "### float32 against mixed_bfloat16\n\n" + precision_section(worlds, runs, predictions, sizes),
            f"### Training rates ({world.name})\n\n" + rates_section(rates)])
    print(body)
    if not args.quick:
        command = "python -m benchmarks.bench_scaling" + (" --stores " + " ".join(map(str, args.stores))
                                                          if args.stores else "")
        write_section("Scaling", command, body)


if __name__ == "__main__":
    main()
