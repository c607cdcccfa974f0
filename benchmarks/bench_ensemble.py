"""Ensembles, distillation and compact exports, measured on data never tuned on.

    python -m benchmarks.bench_ensemble [--quick] [--stores DIR] [--workdir DIR] [--seeds 1 2 3] [--members ...]
                                        [--skip-real]

0. Speed and size of nextvlad beside the qrnn (benchmarks.bench_models.speed: the same batches, interleaved).
1. Synthetic frame-level worlds (seeds 1, 2, 3; every default was chosen on seed 0's validation split): the
   members trained as run_all.sh trains them (2,000 train videos, 3 epochs, validated on 400), their ensemble
   fitted on the validation split, a second ensemble with four more qrnns that differ only by their training
   seed, two qrnns distilled from that second ensemble (on the training videos alone, and
   with the validation videos as a transfer store: the teacher's scores are their targets, the training
   videos keep their labels),
   and float16 / int8 exports of the qrnn and the ensemble. Every GAP is measured on the 400-video test
   split, which nothing was fitted or chosen on. The stores are generated like run_all's (`data synth` +
   `features convert`), or read from `--stores DIR` (DIR/seed<N>/features/{train,validate,test}).
2. Ablations on the same worlds (weights fitted on the validation split, scored on the test split): the
   combination space (logits or probabilities) and equal weights.
3. The real 2018 video-level shards in ../shared/yt8m/video-2018-validate: logistic, moe and qrnn-video
   trained on validate0000-0089 and validated on validate0090-0099, and their ensemble. Its weights are
   fitted on half of the validation videos and scored on the other half, both ways (2-fold cross-fitting),
   so no video is scored with weights fitted on it.
Runs go to a temporary folder, or to `--workdir DIR`, where a second run reuses every finished training.
Figures go to benchmarks/RESULTS.md (section "Ensembles, distillation, export"); --quick runs tiny sizes and
writes nothing.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common.cli import quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402

from benchmarks.bench_models import speed  # noqa: E402
from benchmarks.results import write_section  # noqa: E402
from benchmarks.runs import REAL, mean_sd, real_split, synthetic_world, train_and_score  # noqa: E402
from common.card import Card  # noqa: E402
from evaluation.metrics import Accumulator  # noqa: E402
from features.store import Store  # noqa: E402
from models import ensemble  # noqa: E402
from models.export import export  # noqa: E402
from models.inference import load_model_dir, sampled_frames, scores_in_batches, store_scores  # noqa: E402
from models.train import TrainOptions, train  # noqa: E402

SPLITS = ("train", "validate", "test")
MEMBERS = ("qrnn", "nextvlad", "lstm", "moe", "logistic")  # run_all.sh's frame-level defaults
FULL = dict(train_videos=2000, small_videos=400, epochs=3, real_epochs=3, speed_batches=4, speed_rounds=3,
            real_train="validate00[0-8][0-9].tfrecord", real_validate="validate009[0-9].tfrecord")
QUICK = dict(train_videos=60, small_videos=30, epochs=1, real_epochs=1, speed_batches=1, speed_rounds=1,
             real_train="validate000[0-1].tfrecord", real_validate="validate009[0-1].tfrecord")
# With a transfer store, the training videos keep their labels alone: on world 0 (qrnn, validation GAP after
# 3 epochs, its test split as the transfer store) W = 0 gave 0.5580, W = 0.5 0.5568, no transfer store 0.5506,
# no teacher 0.5551.
TRANSFER_WEIGHT = 0.0
QRNN_SEEDS = (1, 2, 3, 4)  # training seeds of the extra qrnns of the second ensemble (the members' is 0)


def synthetic_stores(root: Path, seed: int, sizes: dict, given: Path | None) -> dict[str, Path]:
    """train / validate / test stores of world `seed`: given (DIR/seed<N>/features/<split>), or generated as
    run_all.sh makes them (benchmarks.runs.synthetic_world)."""
    if given is not None:
        return {split: given / f"seed{seed}" / "features" / split for split in SPLITS}
    videos = {split: sizes["train_videos"] if split == "train" else sizes["small_videos"] for split in SPLITS}
    world = synthetic_world(root, seed, videos)
    return {split: world / split for split in SPLITS}


def timed_gap(folder: Path, store: Store) -> tuple[float, float]:
    """GAP@20 of a model folder on a labelled store, and its inference videos/s (once its graph is built)."""
    model, card = load_model_dir(folder)
    next(scores_in_batches(model, store, card.level, sampled_frames(card)))  # builds the graph
    started = time.perf_counter()
    gap = store_scores(model, store, card.level, sampled_frames(card)).gap
    return gap, len(store) / (time.perf_counter() - started)


# ---------------------------------------------------------------- 1. and 2. one synthetic world


def world(seed: int, stores: dict[str, Path], runs: Path, sizes: dict, members: tuple) -> dict:
    """Train, combine, distill and export in world `seed`; every figure on its test split."""
    options = TrainOptions(epochs=sizes["epochs"], patience=sizes["epochs"])
    splits = stores["train"], stores["validate"], stores["test"]
    results = {name: train_and_score(name, *splits, runs / name, options) for name in members}
    folders = [runs / name for name in members]
    ens = ensemble.make_ensemble(folders, stores["validate"], runs / "ensemble", progress=False)
    weights = np.array([m["weight"] for m in ens.ensemble["members"]])
    fig = {"seed": seed, "members": {name: r.gap for name, r in results.items()}, "results": results,
           "sizes": {name: Card.load(runs / name).file_bytes for name in members},
           "weights": dict(zip(members, weights.round(3), strict=True))}
    test = Store(stores["test"])
    fig["videos"] = len(test)
    loaded = ensemble.load_members(folders)
    test_cand = ensemble.collect_candidates(loaded, test, progress=False)
    valid_cand = ensemble.collect_candidates(loaded, Store(stores["validate"]), progress=False)

    # The fit in each space, on the validation split; scored on the test split (the product's: make_ensemble's).
    for space in ensemble.SPACES:
        w, _ = ensemble.fit_weights(valid_cand, space)
        scores, exact = ensemble.evaluate(test_cand, w, space)
        fig[space] = scores.gap
        if space == ensemble.SPACE:
            fig["ensemble"], fig["exact"] = scores.gap, exact
    if fig["exact"] < len(test):  # some top 20 not proven by the candidates: the saved ensemble, end to end
        fig["ensemble"] = timed_gap(runs / "ensemble", test)[0]
    fig["equal weights"] = ensemble.evaluate(test_cand, np.full(len(members), 1 / len(members)))[0].gap

    # The members and more qrnns that differ from the first only by their training seed.
    seeded = {f"qrnn-seed{s}": TrainOptions(epochs=sizes["epochs"], patience=sizes["epochs"], seed=s)
              for s in QRNN_SEEDS}
    fig["qrnn seeds"] = {run: train_and_score("qrnn", *splits, runs / run, opts).gap for run, opts in seeded.items()}
    ensemble.make_ensemble(folders + [runs / run for run in seeded], stores["validate"], runs / "ensemble-seeds",
                           progress=False)
    fig["ensemble seeds"] = timed_gap(runs / "ensemble-seeds", test)[0]

    # Distillation from the second ensemble: a teacher of several qrnn training seeds, as on the tuning world.
    for run, transfer, weight in (("qrnn-distilled", None, TrainOptions.teacher_weight),
                                  ("qrnn-distilled-transfer", str(stores["validate"]), TRANSFER_WEIGHT)):
        distilled = TrainOptions(epochs=sizes["epochs"], patience=sizes["epochs"],
                                 teacher=str(runs / "ensemble-seeds"), teacher_weight=weight, transfer=transfer)
        fig[run] = train_and_score("qrnn", *splits, runs / run, distilled).gap

    fig["exports"] = {}
    for source in ("qrnn", "ensemble"):
        before, rate = timed_gap(runs / source, test)
        for weights_type in ("float16", "int8"):
            out = runs / f"{source}-{weights_type}"
            card = export(runs / source, out, weights_type)
            gap, exported_rate = timed_gap(out, test)
            fig["exports"][(source, weights_type)] = (card.export["size_ratio"], gap - before, card.file_bytes,
                                                       exported_rate / rate)
    print(fig, flush=True)
    return fig


def synthetic_tables(figs: list[dict], members: tuple, sizes: dict) -> str:
    seeds = [f["seed"] for f in figs]
    head = "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |"
    rule = "|---|" + "---|" * (len(seeds) + 1)

    def row(label, values):  # None: no figure for that world
        known = [v for v in values if v is not None]
        cells = ["" if v is None else f"{v:.4f}" for v in values]
        return f"| {label} | " + " | ".join(cells) + f" | {mean_sd(known) if known else ''} |"

    lines = [f"Test-split GAP@20 ({sizes['small_videos']} videos per world):", "", head, rule]
    for name in members:
        lines.append(row(name, [f["members"][name] for f in figs]))
    best = [max(f["members"].values()) for f in figs]
    lines.append(row("**ensemble**", [f["ensemble"] for f in figs]))
    lines.append(row("ensemble - best member", [f["ensemble"] - b for f, b in zip(figs, best, strict=True)]))
    for run in figs[0]["qrnn seeds"]:
        lines.append(row(f"qrnn, training seed {run.removeprefix('qrnn-seed')}", [f["qrnn seeds"][run] for f in figs]))
    lines.append(row(f"**ensemble of the members and these {len(QRNN_SEEDS)} qrnns**",
                     [f["ensemble seeds"] for f in figs]))
    lines.append(row("... minus its best member", [f["ensemble seeds"] - max(b, *f["qrnn seeds"].values())
                                                    for f, b in zip(figs, best, strict=True)]))
    for run, label in (("qrnn-distilled", "training videos"), ("qrnn-distilled-transfer",
                                                             "training + validation videos (transfer store)")):
        lines.append(row(f"qrnn distilled from the second ensemble, on {label}", [f[run] for f in figs]))
        lines.append(row("... minus the qrnn", [f[run] - f["members"]["qrnn"] for f in figs]))
        lines.append(row("... share of the teacher's lead over the qrnn closed (blank: no lead to close)",
                         [(f[run] - f["members"]["qrnn"]) / (f["ensemble seeds"] - f["members"]["qrnn"])
                          if f["ensemble seeds"] > f["members"]["qrnn"] else None for f in figs]))
    lines += ["", "Ensemble member weights (fitted on each world's validation split): "
              + "; ".join(f"seed {f['seed']}: " + ", ".join(f"{k} {v:.2f}" for k, v in f["weights"].items())
                          for f in figs) + ".",
        "Videos whose ensemble top 20 the candidate fit proves exact: " + ", ".join(
        f"{f['exact']}/{f['videos']}" for f in figs) + ".", "",
        "Ablation (weights fitted on the validation split, GAP on the test split):", "", head, rule]
    for key in ("equal weights", "logit", "probability"):
        lines.append(row(key + (" (models ensemble)" if key == ensemble.SPACE else ""),
                         [f[key] for f in figs]))
    lines += ["", "Members (mean over the worlds; training videos/s as the card measured it):",
              "", "| model | parameters | model.keras MB | train videos/s |", "|---|---|---|---|"]
    for name in members:
        results = [f["results"][name] for f in figs]
        lines.append(f"| {name} | {results[0].parameters:,} | {figs[0]['sizes'][name] / 1e6:.1f} | "
                     f"{np.mean([r.train_videos_per_second for r in results]):.1f} |")
    lines += ["", "Exports (size: model.keras of the export / of the source; GAP change on the test split; "
              "inference videos/s of the export / of the source, measured one after the other):", "",
              "| export | " + " | ".join(f"seed {s}: size, GAP change, speed" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    for key in figs[0]["exports"]:
        cells = [f"{f['exports'][key][0]:.1%}, {f['exports'][key][1]:+.4f}, {f['exports'][key][3]:.2f}x"
                 for f in figs]
        lines.append(f"| {key[0]} {key[1]} ({figs[0]['exports'][key][2] / 1e6:.1f} MB) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- 3. real shards


def real_ensemble(root: Path, sizes: dict) -> str | None:
    """logistic, moe and qrnn-video on the real split and their 2-fold cross-fitted ensemble."""
    stores = real_split(root, sizes["real_train"], sizes["real_validate"])
    if stores is None:
        return None
    train_dir, validate_dir = stores
    options = TrainOptions(epochs=sizes["real_epochs"], batch_size=256, patience=sizes["real_epochs"])
    names = ("logistic", "moe", "qrnn-video")
    for name in names:
        train(name, train_dir, validate_dir, root / name, options, verbose=0)
    store = Store(validate_dir)
    cand = ensemble.collect_candidates(ensemble.load_members([root / n for n in names]), store, progress=False)

    halves = np.arange(len(store)) % 2
    acc, weights = Accumulator(store.num_classes), []
    for half in (0, 1):
        fit, held_out = np.flatnonzero(halves == half), np.flatnonzero(halves != half)
        w, _ = ensemble.fit_weights(cand.take(fit))  # what models ensemble fits
        weights.append(w)
        labels, scores, _ = ensemble.combined_top_k(cand.take(held_out), w)
        acc.add_top_k(labels, scores, cand.truth.take(held_out))
    crossed = acc.result().gap
    in_sample = ensemble.evaluate(cand, ensemble.fit_weights(cand)[0])[0].gap
    lines = ["| model | validation GAP |", "|---|---|"]
    for i, name in enumerate(names):
        lines.append(f"| {name} | {ensemble.evaluate(cand, np.eye(len(names))[i])[0].gap:.4f} |")
    lines += [f"| **ensemble, 2-fold cross-fitted** | {crossed:.4f} |",
              f"| ensemble, fitted and scored on all validation videos | {in_sample:.4f} |", "",
              "Member weights fitted on each half: " + "; ".join(
                  ", ".join(f"{n} {v:.2f}" for n, v in zip(names, w, strict=True)) for w in weights) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Ensembles, distillation and exports on unseen worlds.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--stores", type=Path, default=None,
                        help="read DIR/seed<N>/features/{train,validate,test} instead of generating them")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the runs here (a second run reuses finished trainings); default: a temp folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--members", nargs="+", default=list(MEMBERS))
    parser.add_argument("--skip-real", action="store_true", help="leave out the real-shard part")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    members = tuple(args.members)
    started = time.perf_counter()
    body = [f"Load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.", ""]
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
        tmp = args.workdir or Path(tmp)
        figs = []
        for seed in args.seeds:
            stores = synthetic_stores(tmp, seed, sizes, args.stores)
            if not figs:
                body += ["### Speed: nextvlad beside the qrnn (defaults)", "",
                         speed(stores["train"], sizes, ("nextvlad", "qrnn"))[0], ""]
            figs.append(world(seed, stores, tmp / f"runs{seed}", sizes, members))
        table = synthetic_tables(figs, members, sizes)
        print(table, flush=True)
        body += [f"### Synthetic worlds (seeds {', '.join(map(str, args.seeds))}; {sizes['train_videos']:,} train "
                 f"/ {sizes['small_videos']} validate / {sizes['small_videos']} test videos; {sizes['epochs']} "
                 "epochs, run_all's defaults)", "", table, ""]
        if not args.skip_real:
            real = real_ensemble(tmp / "real", sizes)
            body += ["### Real 2018 video-level shards (train validate0000-0089, validate validate0090-0099; "
                     f"{sizes['real_epochs']} epochs, batch 256)", "",
                     real or f"skipped: {REAL} not found", ""]
            print(real, flush=True)
    body += [f"Whole benchmark: {time.perf_counter() - started:.0f} s; load average at the end "
             f"{os.getloadavg()[0]:.1f}."]
    if args.quick:
        print("--quick: benchmarks/RESULTS.md left as it is")
    else:
        write_section("Ensembles, distillation, export", "python -m benchmarks.bench_ensemble " + " ".join(
            argv if argv is not None else sys.argv[1:]), "\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
