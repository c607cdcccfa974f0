"""Models benchmark: QRNN vs LSTM speed, the size of every model, and quality side by side.

    python -m benchmarks.bench_models [--quick]

1. Speed: train-step and inference throughput (videos/s) of `qrnn` and `lstm` at their default (equal)
   hidden size on the same frame-level batches of a synthetic store, interleaved so both see the same
   machine load; parameters and .keras size of every model at 3,862 classes.
2. Synthetic frame-level data (`python -m data synth` + `python -m features convert`): qrnn, lstm, moe and
   logistic trained the same way, validation GAP / Hit@1 / PERR, and the training seconds qrnn and lstm
   each need to reach the same validation GAP.
3. The real 2018 video-level shards in ../shared/yt8m/video-2018-validate, split by a fixed rule
   (validate0000-0079 train, validate0080-0099 validate): logistic, moe and qrnn-video.
Figures go to benchmarks/RESULTS.md (section "Models"); --quick runs tiny sizes and writes nothing.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from data.formats import NUM_CLASSES  # noqa: E402
from features.store import Store  # noqa: E402
from models import zoo  # noqa: E402
from models.batches import StoreBatches  # noqa: E402
from models.train import TrainOptions, compile_model, read_csv_history, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("YT8M_SHARED", REPO.parent / "shared" / "yt8m")) / "video-2018-validate"
FULL = dict(train_videos=1500, validate_videos=500, speed_batches=4, speed_rounds=2,
            synthetic_epochs=5, real_epochs=5, frames=32,
            real_train="validate00[0-7][0-9].tfrecord", real_validate="validate00[89][0-9].tfrecord")
QUICK = dict(train_videos=120, validate_videos=60, speed_batches=2, speed_rounds=1,
             synthetic_epochs=1, real_epochs=1, frames=8,
             real_train="validate000[0-3].tfrecord", real_validate="validate008[0-1].tfrecord")


# name -> (Adam learning rate in epoch 1, the model's default in models.zoo, decayed x0.9 per epoch; config
# overrides). Frame models at an equal hidden size of 512 (not the default 1024) so that both fit this
# benchmark's time.
# logistic and moe at 0.03: the best of 0.01 / 0.03 / 0.1 for logistic on the real split (5 epochs: GAP 0.664 /
# 0.701 / 0.696), and moe beat logistic at every epoch at 0.03 (0.01 gave it 0.685). qrnn and lstm at 0.003:
# on the synthetic split (5 epochs) 0.003 beat 0.01 for both (qrnn 0.546 / 0.513, lstm 0.515 / 0.477).
SYNTHETIC_PLAN = {name: (zoo.spec(name).learning_rate, config) for name, config in
                  (("qrnn", {"hidden": 512}), ("lstm", {"hidden": 512}), ("moe", {}), ("logistic", {}))}
REAL_PLAN = {name: (zoo.spec(name).learning_rate, {}) for name in ("logistic", "moe", "qrnn-video")}


def plan_line(plan: dict) -> str:
    described = [f"{name} {rate}" + "".join(f" ({k}={v})" for k, v in config.items())
                 for name, (rate, config) in plan.items()]
    return "Adam learning rate in epoch 1 (then x0.9 per epoch): " + ", ".join(described) + "."


def sh(*args) -> None:
    """Run one of the project's commands (`python -m ...`), failing loudly."""
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)


def synthetic_stores(root: Path, sizes: dict) -> tuple[Path, Path]:
    """Generate and convert the synthetic frame-level train and validate splits (seed 0)."""
    stores = []
    for split, videos in (("train", sizes["train_videos"]), ("validate", sizes["validate_videos"])):
        sh("data", "synth", "--out", root / "shards" / split, "--level", "frame", "--split", split,
           "--videos", videos, "--seed", 0)
        sh("features", "convert", "--shards", root / "shards" / split, "--out", root / "features" / split)
        stores.append(root / "features" / split)
    return stores[0], stores[1]


def real_stores(root: Path, sizes: dict) -> tuple[Path, Path] | None:
    """The fixed split of the real 2018 shards: validate0000-0079 train, validate0080-0099 validate."""
    if not REAL.is_dir():
        return None
    sh("features", "convert", "--shards", REAL / sizes["real_train"], "--out", root / "train")
    sh("features", "convert", "--shards", REAL / sizes["real_validate"], "--out", root / "validate")
    return root / "train", root / "validate"


# ---------------------------------------------------------------- 1. speed and size


def speed(store_dir: Path, sizes: dict) -> str:
    """Train-step and inference videos/s of qrnn and lstm on the same batches, interleaved."""
    store = Store(store_dir)
    data = StoreBatches(store, "frame", 64, sizes["frames"], shuffle=True, seed=0)
    batches = [data[i] for i in range(sizes["speed_batches"])]
    models, hidden = {}, {}
    for name in ("qrnn", "lstm"):
        keras.utils.set_random_seed(0)
        model = zoo.build(name, store.num_classes)
        compile_model(model, TrainOptions(learning_rate=zoo.spec(name).learning_rate))
        model.train_on_batch(*batches[0])  # trace once before timing
        model.predict_on_batch(batches[0][0])
        models[name], hidden[name] = model, zoo.make_config(name).hidden
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
    lines = [f"Same {len(batches)} batches of 64 videos x {sizes['frames']} sampled frames "
             f"(uint8, 1,152 features), {store.num_classes:,} classes; best of {sizes['speed_rounds']} "
             "interleaved rounds.", "",
             "| model | hidden | parameters | train videos/s | inference videos/s |", "|---|---|---|---|---|"]
    for name, model in models.items():
        lines.append(f"| {name} | {hidden[name]} | {model.count_params():,} | {rate[name][0]:.1f} | "
                     f"{rate[name][1]:.1f} |")
    lines += ["", f"**qrnn / lstm: training {rate['qrnn'][0] / rate['lstm'][0]:.2f}x, inference "
                  f"{rate['qrnn'][1] / rate['lstm'][1]:.2f}x as fast.**"]
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


def sizes_of_models(folder: Path) -> str:
    """Parameters and saved .keras size of every model at its defaults, for 3,862 classes."""
    lines = ["| model | level | parameters | model.keras MB |", "|---|---|---|---|"]
    for name, spec in zoo.MODELS.items():
        model = zoo.build(name, NUM_CLASSES[2018])
        path = folder / f"{name}.keras"
        model.save(path)
        megabytes = path.stat().st_size / 1e6
        lines.append(f"| {name} | {spec.level} | {model.count_params():,} | {megabytes:.1f} |")
        path.unlink()
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


# ---------------------------------------------------------------- 2. and 3. quality


def train_all(plan: dict, train_dir, validate_dir, out: Path, options: dict) -> dict:
    """Train each model of `plan` (name -> (learning rate, config)) with otherwise equal options;
    returns name -> (card, history rows)."""
    results = {}
    for name, (rate, config) in plan.items():
        run = out / name
        card = train(name, train_dir, validate_dir, run, TrainOptions(**options, learning_rate=rate), config,
                     verbose=0)
        results[name] = (card, read_csv_history(run / "history.csv"))
    return results


def quality_table(results: dict) -> str:
    lines = ["| model | parameters | epochs (best) | val GAP | val Hit@1 | val PERR | train s | "
             "train videos/s |", "|---|---|---|---|---|---|---|---|"]
    for name, (card, _) in results.items():
        v = card.validation
        lines.append(f"| {name} | {card.parameters:,} | {card.epochs} ({card.best_epoch}) | {v['gap']:.4f} | "
                     f"{v['hit_at_one']:.4f} | {v['perr']:.4f} | {card.train_seconds:.0f} | "
                     f"{card.train_videos_per_second:.1f} |")
    return "\n".join(lines)


def time_to_gap(results: dict, a: str = "qrnn", b: str = "lstm") -> str:
    """Training seconds (validation excluded) each model needs to first reach the lower of their best GAPs."""
    target = min(max(row["val_gap"] for row in results[m][1]) for m in (a, b))
    parts = []
    for name in (a, b):
        seconds = 0.0
        for row in results[name][1]:
            seconds += row["seconds"]
            if row["val_gap"] >= target:
                parts.append((name, seconds, int(row["epoch"])))
                break
    (na, sa, ea), (nb, sb, eb) = parts
    return (f"Time to reach validation GAP {target:.4f} (the lower of the two best): {na} {sa:.0f} s "
            f"(epoch {ea}), {nb} {sb:.0f} s (epoch {eb}): {na} needs {sa / sb:.2f}x the time of {nb}.")


def by_role(names, validate_dir: Path, runs: Path) -> str:
    """Mean per-class average precision on the synthetic validation split, by the generator's class role
    (regular: evidence in every frame; stretch: in a short stretch; order: only the order of two contents
    tells the class), over classes with at least 3 validation positives: where frame models should win."""
    from sklearn.metrics import average_precision_score

    from data import synth
    from models.inference import iter_scores, load_model_dir

    store = Store(validate_dir)
    truth = store.dense_labels(np.arange(len(store)))
    roles = synth.make_world(0, store.num_classes).roles
    kinds = {"regular": [synth.REGULAR], "stretch": [synth.STRETCH],
             "order": [synth.ORDER_AB, synth.ORDER_BA]}
    members = {kind: np.isin(roles, codes) for kind, codes in kinds.items()}
    scored = {kind: np.flatnonzero(m & (truth.sum(axis=0) >= 3)) for kind, m in members.items()}
    share = {kind: truth[:, m].sum() / truth.sum() for kind, m in members.items()}
    lines = ["| model | " + " | ".join(f"{k} mAP ({len(scored[k])} classes, {share[k]:.0%} of labels)"
                                      for k in kinds) + " |", "|---|---|---|---|"]
    for name in names:
        model, card = load_model_dir(runs / name)
        scores = np.concatenate([s for _, s in iter_scores(model, card, store)])
        cells = [np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in scored[kind]])
                 if len(scored[kind]) else None for kind in kinds]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="QRNN vs LSTM speed, model sizes, quality side by side.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    body = [f"Load average at the start: {os.getloadavg()[0]:.1f} (other jobs share these cores).", ""]
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        tmp = Path(tmp)
        train_dir, validate_dir = synthetic_stores(tmp / "synthetic", sizes)
        body += ["### Speed: qrnn vs lstm (equal hidden size)", "", speed(train_dir, sizes), ""]
        body += ["### Parameters and file size (defaults, 3,862 classes)", "", sizes_of_models(tmp), ""]

        options = dict(epochs=sizes["synthetic_epochs"], batch_size=64, frames=sizes["frames"],
                       patience=sizes["synthetic_epochs"])
        synthetic = train_all(SYNTHETIC_PLAN, train_dir, validate_dir, tmp / "runs-synthetic", options)
        table = quality_table(synthetic)
        print(table, flush=True)
        body += [f"### Quality on synthetic frame-level data ({sizes['train_videos']:,} train / "
                 f"{sizes['validate_videos']:,} validate videos, seed 0, {options['epochs']} epochs, "
                 f"batch 64, {sizes['frames']} frames per video)", "", plan_line(SYNTHETIC_PLAN), "",
                 table, "", time_to_gap(synthetic), "",
                 "Per-class average precision by the generator's class role:", "",
                 by_role(list(synthetic), validate_dir, tmp / "runs-synthetic"), ""]

        real = real_stores(tmp / "real", sizes)
        if real is None:
            body += [f"### Real 2018 video-level shards: skipped ({REAL} not found)"]
        else:
            options = dict(epochs=sizes["real_epochs"], batch_size=256, patience=sizes["real_epochs"])
            results = train_all(REAL_PLAN, *real, tmp / "runs-real", options)
            table = quality_table(results)
            print(table, flush=True)
            body += ["### Quality on the real 2018 video-level shards (train validate0000-0079, "
                     f"validate validate0080-0099; {options['epochs']} epochs, batch 256)", "",
                     plan_line(REAL_PLAN), "", table]
    body += ["", f"Whole benchmark: {time.perf_counter() - started:.0f} s; load average at the end "
                 f"{os.getloadavg()[0]:.1f}."]
    if args.quick:
        print("--quick: benchmarks/RESULTS.md left as it is")
    else:
        write_section("Models", "python -m benchmarks.bench_models", "\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
