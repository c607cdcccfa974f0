"""QRNN ablation: what each design choice of the frame-level qrnn is worth, on worlds nobody tuned on.

    python -m benchmarks.bench_qrnn [--quick] [--seeds 1,2,3] [--workdir DIR]

The choices were made on seed 0's validation split; this table scores each variant on the test split of
other synthetic worlds (made as `./run_all.sh` makes them, 3 epochs, as run_all trains). The first rows
walk from the old design (the last state only) to today's default; the others change one thing of the
default each. Figures go to benchmarks/RESULTS.md (section "QRNN ablation"); with the same --workdir as
benchmarks.bench_models, the stores and the default's runs are shared.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from common.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import numpy as np  # noqa: E402

from benchmarks.bench_models import FULL, QUICK  # noqa: E402
from benchmarks.results import write_section  # noqa: E402
from benchmarks.runs import ROLES, mean_sd, synthetic_world, train_and_score  # noqa: E402
from models import zoo  # noqa: E402
from models.train import TrainOptions  # noqa: E402

UNPACED = {"pace": 0}  # every class's skip-path weights step at the full rate, as before
ONE_WAY = {**UNPACED, "bidirectional": False, "hidden": 512}  # ... and one QRNN, forward in time
STARTER_L2 = {**ONE_WAY, "l2": 1e-8}  # ... and the head's weights on the skip path take the starter's L2
RAW = {**STARTER_L2, "centered": False}  # ... and the QRNN reads the frames themselves, as before
GLOROT = {**RAW, "zero_skip": False}  # the head's weights on the skip path start as the others do (Glorot)
FLAT = {**GLOROT, "qrnn_l2": 1e-8}  # ... and the head's L2 the same on every weight (the starter's 1e-8)
OLD = {**FLAT, "hidden": 1024, "readout": "last", "skip": False}  # the design before: the last state alone
BEFORE = {"learning_rate": 0.003, "clipnorm": 1.0}  # the training before: the starter's gradient clip, rate 0.003
# (run name, what changes, config overrides of the default, training option overrides)
VARIANTS = [
    ("old", "before: the last state only, hidden 1024", OLD, BEFORE),
    ("old-lastmax", "... by the last and the largest", {**OLD, "readout": "last+max"}, BEFORE),
    ("lastmax", "... with the skip path, hidden 512", {**FLAT, "readout": "last+max"}, BEFORE),
    ("attention", "... the last state and attention over all states", FLAT, BEFORE),
    ("head-l2", "... and L2 3e-3 on the head's weights that read the QRNN", GLOROT, BEFORE),
    ("zero-skip", "... and the head's weights on the skip path starting at zero", RAW, BEFORE),
    ("raw", "... trained at learning rate 0.005 without gradient clipping", RAW, {}),
    ("centered", "... the QRNN reading each frame minus its video's mean frame", STARTER_L2, {}),
    ("skip-l2", "... and L2 1e-3 on the head's weights on the skip path", ONE_WAY, {}),
    ("bidirectional", "... bidirectional, hidden 256 per direction (as many parameters; the previous default)",
     UNPACED, {}),
    ("qrnn", "**today's default: ... each class's skip-path weights paced by its training count (pace 10)**",
     {}, {}),
    ("clip", "default with the starter's gradient clip (1.0 per variable)", {}, {"clipnorm": 1.0}),
    ("no-skip", "default without the skip path (nothing reads the video's mean)", {"skip": False}, {}),
    ("dropout", "dropout 0.2 on the QRNN's features", {"dropout": 0.2}, {}),
]


def ablation(seeds: list[int], work: Path, sizes: dict) -> str:
    results = {}  # (run, seed) -> Result
    for seed in seeds:
        world = synthetic_world(work / "synthetic", seed, sizes["videos"])
        for run, _, config, options in VARIANTS:
            options = TrainOptions(**{"epochs": sizes["epochs"], **options})
            results[run, seed] = train_and_score("qrnn", world / "train", world / "validate", world / "test",
                                                 work / "runs" / f"seed{seed}" / run, options, config,
                                                 seed_of_world=seed)
            print(f"seed {seed} {run}: test GAP {results[run, seed].gap:.4f}", flush=True)
    default = {seed: results["qrnn", seed].gap for seed in seeds}
    lines = [f"qrnn variants, test split of seeds {', '.join(map(str, seeds))} ({sizes['videos']['train']:,} train "
             f"videos, {sizes['epochs']} epochs, batch 64, 32 frames, learning rate "
             f"{zoo.spec('qrnn').learning_rate} and no gradient clipping unless the row says). Δ GAP: the mean "
             "over seeds of the variant's test GAP minus the default's on the same seed. Role columns: mean "
             "per-class AP, averaged over the seeds.", "",
             "| variant | parameters | test GAP (mean ± sd) | Δ GAP | Hit@1 | PERR | "
             + " | ".join(f"{r} mAP" for r in ROLES) + " | train videos/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run, label, _, _ in VARIANTS:
        rs = [results[run, seed] for seed in seeds]
        delta = np.mean([results[run, seed].gap - default[seed] for seed in seeds])
        cells = [f"{rs[0].parameters:,}", mean_sd([r.gap for r in rs]), f"{delta:+.4f}",
                 f"{np.mean([r.hit_at_one for r in rs]):.4f}", f"{np.mean([r.perr for r in rs]):.4f}"]
        cells += [f"{np.mean([r.roles[role] for r in rs]):.3f}" for role in ROLES]
        cells.append(f"{np.mean([r.train_videos_per_second for r in rs]):.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="QRNN ablation on synthetic worlds nobody tuned on.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--seeds", default="1,2,3", help="synthetic worlds (default 1,2,3)")
    parser.add_argument("--workdir", default=None, help="keep stores and runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_qrnn_") as tmp:
        table = ablation([int(s) for s in args.seeds.split(",")], Path(args.workdir or tmp), sizes)
    body = f"{table}\n\nWhole benchmark: {time.perf_counter() - started:.0f} s; load average at the end " \
           f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    if args.quick:
        print("--quick: benchmarks/RESULTS.md left as it is")
    else:
        write_section("QRNN ablation", "python -m benchmarks.bench_qrnn", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
