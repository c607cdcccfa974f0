"""Models benchmark: QRNN vs LSTM speed, the size of every model, and every model's quality side by side.

    python -m benchmarks.bench_models [--quick] [--seeds 0,1,2,3,4,5] [--folds A,B,C] [--workdir DIR]

1. Speed: train-step and inference throughput (videos/s) of `qrnn` and `lstm` at their defaults on the
   same frame-level batches, interleaved so both see the same machine load; parameters and .keras size
   of every model at 3,862 classes.
2. Synthetic frame-level worlds made as `./run_all.sh` makes them (2,000 train, 400 validate, 400 test
   videos; `python -m data synth --seed S`), every frame-level default model trained as run_all trains it
   (`models train --epochs 3`, all else default), scored on the test split: GAP, Hit@1, PERR and the mean
   per-class AP of each class role. Seed 0 is the world the QRNN was tuned on (by its validation split);
   the other seeds are worlds nobody tuned on, and the summary is over those. logistic and moe also run
   at the learning rate of a small grid that scores best on seed 0's validation split (their defaults were
   chosen on real shards), so that the QRNN's lead is not a lead over untuned baselines.
3. The real 2018 video-level shards in ../shared/yt8m/video-2018-validate: logistic, moe and qrnn-video
   with `models train` defaults, on fold A (train validate0000-0089, validate validate0090-0099, the split
   the QRNN was tuned on), fold B (train validate0010-0099, validate validate0000-0009) and fold C (validate
   validate0040-0049, train the other 90 shards; added after every choice was made).
Figures go to benchmarks/RESULTS.md (section "Models"); --quick runs tiny sizes and writes nothing. Trained
runs are kept in --workdir (default: a temporary folder), so a re-run with the same DIR retrains nothing.
"""

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from common.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.results import read_section, write_section  # noqa: E402
from benchmarks.runs import ROLES, mean_sd, real_split, synthetic_world, train_and_score  # noqa: E402
from data.formats import NUM_CLASSES  # noqa: E402
from features.store import Store  # noqa: E402
from models import zoo  # noqa: E402
from models.batches import StoreBatches  # noqa: E402
from models.train import TrainOptions, compile_model, model_options, train  # noqa: E402

FRAME_MODELS = ("qrnn", "lstm", "moe", "logistic")  # run_all.sh's defaults on frame-level data
VIDEO_MODELS = ("qrnn-video", "moe", "logistic")  # ... and on video-level data
TUNED = ("logistic", "moe")  # baselines also run at the learning rate that is best on the tuning world
RATES = (0.03, 0.1, 0.2, 0.3)  # ... out of these
FOLDS = {"A": ("validate00[0-8][0-9].tfrecord", "validate009[0-9].tfrecord"),
         "B": ("validate00[1-9][0-9].tfrecord", "validate000[0-9].tfrecord"),
         "C": ("validate00[!4][0-9].tfrecord", "validate004[0-9].tfrecord")}
FULL = dict(videos={"train": 2000, "validate": 400, "test": 400}, epochs=3, speed_batches=4, speed_rounds=3,
            real_options={}, folds=FOLDS)
QUICK = dict(videos={"train": 120, "validate": 40, "test": 40}, epochs=1, speed_batches=2, speed_rounds=1,
             real_options={"epochs": 1}, folds={"A": ("validate000[0-3].tfrecord", "validate009[0-1].tfrecord")})


# ---------------------------------------------------------------- 1. speed and size


def speed(store_dir: Path, sizes: dict, names=("qrnn", "lstm")) -> tuple[str, dict]:
    """Train-step and inference videos/s of two frame-level models (qrnn and lstm unless named) at their
    defaults on the same batches, interleaved."""
    store = Store(store_dir)
    data = StoreBatches(store, "frame", 64, 32, shuffle=True, seed=0)
    batches = [data[i] for i in range(sizes["speed_batches"])]
    models = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = zoo.build(name, store.num_classes)
        compile_model(model, model_options(name))
        model.train_on_batch(*batches[0])  # trace once before timing
        model.predict_on_batch(batches[0][0])
        models[name] = model
    train_s = {name: [] for name in models}
    infer_s = {name: [] for name in models}
    for _ in range(sizes["speed_rounds"]):
        for name, model in models.items():
            started = time.perf_counter()
            for x, y in batches:
                model.train_on_batch(x, y)
            train_s[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            for x, _ in batches:
                model.predict_on_batch(x)
            infer_s[name].append(time.perf_counter() - started)
    videos = sum(len(y) for _, y in batches)
    rate = {name: (videos / min(train_s[name]), videos / min(infer_s[name])) for name in models}
    lines = [f"Same {len(batches)} batches of 64 videos x 32 sampled frames (uint8, 1,152 features), "
             f"{store.num_classes:,} classes, each model at its defaults; best of {sizes['speed_rounds']} "
             "interleaved rounds.", "",
             "| model | configuration | parameters | train videos/s | inference videos/s |", "|---|---|---|---|---|"]
    for name, model in models.items():
        cfg = zoo.make_config(name)
        both = " x 2 directions" if getattr(cfg, "bidirectional", False) else ""
        lines.append(f"| {name} | hidden {cfg.hidden}{both} | {model.count_params():,} | {rate[name][0]:.1f} | "
                     f"{rate[name][1]:.1f} |")
    a, b = names
    ratio = {"train": rate[a][0] / rate[b][0], "inference": rate[a][1] / rate[b][1]}
    lines += ["", f"**{a} / {b}: training {ratio['train']:.2f}x, inference {ratio['inference']:.2f}x as fast.**"]
    print("\n".join(lines), flush=True)
    return "\n".join(lines), ratio


def sizes_of_models(folder: Path) -> str:
    """Parameters and saved .keras size of every model at its defaults, for 3,862 classes."""
    lines = ["| model | level | parameters | model.keras MB |", "|---|---|---|---|"]
    for name, spec in zoo.MODELS.items():
        model = zoo.build(name, NUM_CLASSES[2018])
        path = folder / f"{name}.keras"
        model.save(path)
        lines.append(f"| {name} | {spec.level} | {model.count_params():,} | {path.stat().st_size / 1e6:.1f} |")
        path.unlink()
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


# ---------------------------------------------------------------- 2. synthetic worlds


def run_folder(work: Path, seed: int, name: str, rate: float | None) -> Path:
    """Where a run of `name` at `rate` (None: its default) on world `seed` lives: the grid's run at the
    chosen rate, or at the default rate, is then the table's run, trained once."""
    default = rate is None or rate == zoo.spec(name).learning_rate
    return work / "runs" / f"seed{seed}" / (name if default else f"{name}-{rate}")


def tuned_rates(work: Path, sizes: dict) -> tuple[dict, str]:
    """The learning rate out of RATES with the best validation GAP on the tuning world (seed 0) for each
    baseline in TUNED, and a table of the grid."""
    world = synthetic_world(work / "synthetic", 0, sizes["videos"])
    gaps = {}
    for name in TUNED:
        for rate in RATES:
            card = train(name, world / "train", world / "validate", run_folder(work, 0, name, rate),
                         TrainOptions(epochs=sizes["epochs"], learning_rate=rate), verbose=0)
            gaps[name, rate] = card.validation["gap"]
    best = {name: max(RATES, key=lambda rate: gaps[name, rate]) for name in TUNED}
    lines = ["Learning-rate grid of the baselines on the tuning world (seed 0, validation GAP of the best "
             "epoch; their defaults were chosen on real shards):", "",
             "| model | " + " | ".join(f"lr {rate}" for rate in RATES) + " |", "|---|" + "---|" * len(RATES)]
    lines += [f"| {name} | " + " | ".join(f"{gaps[name, rate]:.4f}" for rate in RATES) + " |" for name in TUNED]
    return best, "\n".join(lines)


def synthetic(seeds: list[int], work: Path, sizes: dict) -> tuple[str, dict]:
    """Every frame-level default model, and the baselines at their tuned rates, on every seed's world,
    scored on its test split."""
    rates, grid = tuned_rates(work, sizes)
    runs = {name: (name, None) for name in FRAME_MODELS}
    runs |= {f"{name}, lr {rate}": (name, rate) for name, rate in rates.items()}
    results = {}  # (seed, row) -> Result
    for seed in seeds:
        world = synthetic_world(work / "synthetic", seed, sizes["videos"])
        for row, (name, rate) in runs.items():
            options = TrainOptions(epochs=sizes["epochs"], learning_rate=rate)
            results[seed, row] = train_and_score(name, world / "train", world / "validate", world / "test",
                                                 run_folder(work, seed, name, rate), options, seed_of_world=seed)
            print(f"seed {seed} {row}: test GAP {results[seed, row].gap:.4f}", flush=True)
    unseen = [s for s in seeds if s != 0] or seeds
    lines = [f"Test split of each world; mean ± sd over the worlds nobody tuned on (seeds "
             f"{', '.join(map(str, unseen))}). Per-role columns: mean per-class AP over the classes with at "
             "least 3 test positives (regular: evidence in every frame; stretch: in one short stretch; "
             "order: only the order of two contents tells the class).", "",
             "| model | parameters | test GAP | Hit@1 | PERR | " + " | ".join(f"{r} mAP" for r in ROLES)
             + " | train videos/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in runs:
        rs = [results[s, name] for s in unseen]
        cells = [mean_sd([r.gap for r in rs]), mean_sd([r.hit_at_one for r in rs]), mean_sd([r.perr for r in rs])]
        cells += [f"{np.mean([r.roles[role] for r in rs]):.3f}" for role in ROLES]
        lines.append(f"| {name} | {rs[0].parameters:,} | " + " | ".join(cells)
                     + f" | {np.mean([r.train_videos_per_second for r in rs]):.1f} |")
    lines += ["", "Test GAP / Hit@1 / PERR of every world (seed 0: the tuning world):", "",
              "| seed | " + " | ".join(runs) + " | qrnn - best other default (GAP) | qrnn - best other (GAP) |",
              "|---|" + "---|" * (len(runs) + 2)]
    margins = {}
    for seed in seeds:
        defaults = max(results[seed, n].gap for n in FRAME_MODELS if n != "qrnn")
        margins[seed] = results[seed, "qrnn"].gap - max(results[seed, n].gap for n in runs if n != "qrnn")
        cells = [f"{results[seed, n].gap:.4f} / {results[seed, n].hit_at_one:.3f} / {results[seed, n].perr:.3f}"
                 for n in runs]
        lines.append(f"| {seed} | " + " | ".join(cells)
                     + f" | {results[seed, 'qrnn'].gap - defaults:+.4f} | {margins[seed]:+.4f} |")
    lines += ["", "Mean per-class AP of each role, every world (seed 0: the tuning world), and the qrnn's lead over "
              "the best of the video-level models (moe and logistic, every rate):", "",
              "| role | seed | " + " | ".join(runs) + " | qrnn - best video-level |",
              "|---|---|" + "---|" * (len(runs) + 1)]
    video_level = [n for n in runs if zoo.spec(runs[n][0]).level == "video"]
    for role in ROLES:
        for seed in [*seeds, "mean"]:
            group = unseen if seed == "mean" else [seed]
            ap = {n: np.mean([results[s, n].roles[role] for s in group]) for n in runs}
            lines.append(f"| {role} | {seed if seed != 'mean' else 'mean of ' + ', '.join(map(str, unseen))} | "
                         + " | ".join(f"{ap[n]:.4f}" for n in runs)
                         + f" | {ap['qrnn'] - max(ap[n] for n in video_level):+.4f} |")
    reused = sum(r.reused for r in results.values())
    lines = [grid, "", *lines, "", f"Runs reused, up to date in --workdir (their figures from their cards): "
             f"{reused} of {len(results)}."]
    print("\n".join(lines), flush=True)
    return "\n".join(lines), margins


# ---------------------------------------------------------------- 3. real shards

REAL_HEADING = "### Real 2018 video-level shards"
KEPT = "Not re-run"


def kept_real_tables(previous: str) -> str:
    """The real-shard tables of the Models section `previous` (RESULTS.md), for a run without the shards:
    marked with the date they were measured, so a run elsewhere does not erase them."""
    if REAL_HEADING not in previous:
        return "Real 2018 shards not found: skipped.\n"
    tables = previous.split(REAL_HEADING, 1)[1].split("Whole benchmark:", 1)[0].strip()
    if tables.startswith(KEPT) or tables.startswith("Real 2018 shards not found"):
        return tables + "\n"
    measured = re.search(r"\((\d{4}-\d{2}-\d{2});", previous)
    when = f"the run of {measured.group(1)}" if measured else "an earlier run"
    return f"{KEPT} (the shards were absent): the tables of {when} of this script.\n\n{tables}\n"


def real(work: Path, sizes: dict) -> str:
    """logistic, moe and qrnn-video with `models train` defaults on each fold of the real shards."""
    lines = []
    for fold, (train_glob, validate_glob) in sizes["folds"].items():
        stores = real_split(work / "real" / fold, train_glob, validate_glob)
        if stores is None:
            return kept_real_tables(read_section("Models"))
        options = TrainOptions(**sizes["real_options"])
        lines += [f"Fold {fold}: train `{train_glob}` ({len(Store(stores[0])):,} videos), validate "
                  f"`{validate_glob}` ({len(Store(stores[1])):,} videos); `models train` defaults "
                  f"({options.epochs} epochs at most, batch {options.batch_size}, patience {options.patience}).",
                  "", "| model | parameters | epochs (best) | validation GAP | Hit@1 | PERR | train videos/s |",
                  "|---|---|---|---|---|---|---|"]
        for name in VIDEO_MODELS:
            r = train_and_score(name, *stores, stores[1], work / "runs" / f"real-{fold}" / name, options)
            lines.append(f"| {name} | {r.parameters:,} | {r.epochs} ({r.best_epoch}) | {r.gap:.4f} | "
                         f"{r.hit_at_one:.4f} | {r.perr:.4f} | {r.train_videos_per_second:.1f} |")
        lines.append("")
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="QRNN vs LSTM speed, model sizes, quality side by side.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--seeds", default="0,1,2,3,4,5",
                        help="synthetic worlds (default 0-5; 0 is the tuned one)")
    parser.add_argument("--folds", default=None, help="real-shard folds (default A,B,C)")
    parser.add_argument("--workdir", default=None, help="keep stores and runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.folds:
        sizes["folds"] = {f: FOLDS[f] for f in args.folds.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    body = [f"Load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.", ""]
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        work = Path(args.workdir or tmp)
        world = synthetic_world(work / "synthetic", seeds[0], sizes["videos"])
        table, ratio = speed(world / "train", sizes)
        body += ["### Speed: qrnn vs lstm (defaults)", "", table, ""]
        body += ["### Parameters and file size (defaults, 3,862 classes)", "", sizes_of_models(Path(tmp)), ""]
        table, margins = synthetic(seeds, work, sizes)
        body += [f"### Synthetic frame-level worlds ({sizes['videos']['train']:,} train / "
                 f"{sizes['videos']['validate']:,} validate / {sizes['videos']['test']:,} test videos, "
                 f"{sizes['epochs']} epochs, every model at its defaults, as `./run_all.sh`; logistic and moe also at "
                 "the rate best on seed 0)", "", table, ""]
        body += ["### Real 2018 video-level shards", "", real(work, sizes)]
    body += [f"Whole benchmark: {time.perf_counter() - started:.0f} s; load average at the end "
             f"{os.getloadavg()[0]:.1f}."]
    if args.quick:
        print("--quick: benchmarks/RESULTS.md left as it is")
    else:
        write_section("Models", "python -m benchmarks.bench_models", "\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
