"""What the model benchmarks share: synthetic worlds made as run_all.sh makes them, training a run, and
scoring it on a held-out split overall and by the generator's class roles."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("YT8M_SHARED", REPO.parent / "shared" / "yt8m")) / "video-2018-validate"
ROLES = ("regular", "stretch", "order")


def sh(*args) -> None:
    """Run one of the project's commands (`python -m ...`), failing loudly."""
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def synthetic_world(root: Path, seed: int, videos: dict) -> Path:
    """Frame-level stores root/seed<S>/{train,validate,test} of world `seed`, as run_all.sh makes them
    (videos: split -> count); shards are deleted once converted. Returns root/seed<S>."""
    world = root / f"seed{seed}"
    for split, count in videos.items():
        if (world / split / "manifest.json").exists():
            continue
        shards = world / "shards" / split
        sh("data", "synth", "--out", shards, "--level", "frame", "--split", split, "--videos", count,
           "--seed", seed)
        sh("features", "convert", "--shards", shards, "--out", world / split)
        shutil.rmtree(shards)
    return world


def real_split(root: Path, train_glob: str, validate_glob: str) -> tuple[Path, Path] | None:
    """Stores of the real 2018 video-level shards, split by file name; None when they are absent."""
    if not REAL.is_dir():
        return None
    for name, pattern in (("train", train_glob), ("validate", validate_glob)):
        if not (root / name / "manifest.json").exists():
            sh("features", "convert", "--shards", REAL / pattern, "--out", root / name)
    return root / "train", root / "validate"


@dataclass
class Result:
    """One trained run scored on a held-out store."""

    model: str
    gap: float
    hit_at_one: float
    perr: float
    roles: dict  # role -> mean per-class AP (synthetic stores only)
    parameters: int
    train_videos_per_second: float
    train_seconds: float
    best_epoch: int
    epochs: int
    reused: bool  # the run folder was up to date: nothing trained, the card's figures


def train_and_score(name: str, train_dir, validate_dir, test_dir, out: Path, options, config=None,
                    seed_of_world: int | None = None) -> Result:
    """Train `name` (models.train.train) and score the best epoch on `test_dir`; with `seed_of_world`,
    also the mean per-class AP of each class role of that synthetic world."""
    from evaluation.metrics import evaluate
    from features.store import Store
    from models.inference import iter_scores, load_model_dir
    from models.train import train

    card_file = Path(out) / "card.json"
    before = card_file.stat().st_mtime_ns if card_file.exists() else None
    card = train(name, train_dir, validate_dir, out, options, config, verbose=0)
    reused = before is not None and card_file.stat().st_mtime_ns == before
    model, card = load_model_dir(out)
    store = Store(test_dir)
    scores = np.concatenate([s for _, s in iter_scores(model, card, store)])
    truth = store.dense_labels(np.arange(len(store)))
    overall = evaluate(scores, truth)
    roles = role_map(scores, truth, seed_of_world) if seed_of_world is not None else {}
    return Result(name, overall.gap, overall.hit_at_one, overall.perr, roles, card.parameters,
                  card.train_videos_per_second, card.train_seconds, card.best_epoch, card.epochs, reused)


def role_map(scores: np.ndarray, truth: np.ndarray, seed: int) -> dict:
    """Mean per-class average precision by class role (regular: evidence in every frame; stretch: in one
    short stretch; order: only the order of two contents tells the class), over classes with at least 3
    positives in the split."""
    from sklearn.metrics import average_precision_score

    from data import synth

    roles = synth.make_world(seed, truth.shape[1]).roles
    codes = {"regular": [synth.REGULAR], "stretch": [synth.STRETCH], "order": [synth.ORDER_AB, synth.ORDER_BA]}
    out = {}
    for role in ROLES:
        classes = np.flatnonzero(np.isin(roles, codes[role]) & (truth.sum(axis=0) >= 3))
        out[role] = float(np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in classes]))
    return out


def mean_sd(values) -> str:
    """'mean ± sd' over seeds (population sd), 4 decimals."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std():.4f}"
