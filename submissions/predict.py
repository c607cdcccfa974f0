"""Predict a store with a trained model and write its top-k labels per video as a submission CSV.

Scores are streamed batch by batch and cut to the top k at once, so memory stays at one batch of
(batch, classes) scores whatever the number of videos.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import InputError
from evaluation.metrics import top_k
from submissions.csv_writer import write_submission


@dataclass
class Prediction:
    """What `predict` did: rows written, seconds, and the steady inference rate (None when skipped)."""

    csv: Path
    rows: int
    seconds: float
    videos_per_second: float | None
    skipped: bool = False


def newest_mtime(path: Path) -> float:
    """Modification time of a file, or of the newest file directly inside a folder."""
    if path.is_dir():
        return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=path.stat().st_mtime)
    return path.stat().st_mtime


def up_to_date(csv: Path, model_dir: Path, store_dir: Path) -> bool:
    """The CSV exists and is newer than the model file and every file of the store (DESIGN's skip rule).

    model.keras is compared, not card.json, because predicting rewrites the card.
    """
    if not csv.is_file():
        return False
    return csv.stat().st_mtime >= max(newest_mtime(model_dir / "model.keras"), newest_mtime(store_dir))


def top_k_batches(model, card, store, k: int, batch_size: int, progress, marks: list) -> Iterator[tuple]:
    """(ids, labels (B, k), scores (B, k)) per batch of the store, in store order; appends
    (time, videos done) to `marks` after each batch."""
    from models.inference import iter_scores

    done = 0
    for indices, scores in iter_scores(model, card, store, batch_size=batch_size):
        if not np.isfinite(scores).all():
            raise InputError(card.run, f"model {card.model} produced non-finite scores for videos "
                                       f"{int(indices[0])}..{int(indices[-1])} of the store")
        labels, best = top_k(scores, k)
        progress.update(len(indices))
        yield store.id_strings(indices), labels, best
        done += len(indices)
        marks.append((time.perf_counter(), done))


def steady_rate(start: float, marks: list) -> float | None:
    """Videos per second after the first batch (which includes building the model's graph), or over the
    whole run when there was only one batch."""
    if len(marks) >= 2:
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None
    if marks and marks[0][0] > start:
        return marks[0][1] / (marks[0][0] - start)
    return None


def predict(model_dir, store_dir, out_csv, *, k: int = 20, batch_size: int = 256) -> Prediction:
    """Write `out_csv` with the top `k` labels of every video of the store; record the rate in card.json.

    Skipped (and says so) when the CSV is newer than both the model and the store.
    """
    model_dir, store_dir, out_csv = Path(model_dir), Path(store_dir), Path(out_csv)
    if k < 1 or batch_size < 1:
        raise InputError(out_csv, "--top-k and --batch-size must be at least 1")
    if not (model_dir / "model.keras").is_file():
        raise InputError(model_dir, "not a trained model folder (model.keras and card.json expected)")
    if not store_dir.is_dir():
        raise InputError(store_dir, "no such feature store folder")
    if up_to_date(out_csv, model_dir, store_dir):
        print(f"{out_csv}: up to date")
        return Prediction(out_csv, 0, 0.0, None, skipped=True)

    from common.card import Card
    from features.store import Store
    from models.inference import load_model_dir

    store = Store(store_dir)
    model, card = load_model_dir(model_dir)
    start, marks = time.perf_counter(), []
    with tqdm(total=len(store), unit="video", desc=f"predict {model_dir.name}", dynamic_ncols=True) as bar:
        rows = write_submission(out_csv, top_k_batches(model, card, store, k, batch_size, bar, marks))
    seconds = time.perf_counter() - start
    rate = steady_rate(start, marks)
    if rate is not None:
        card = Card.load(model_dir / "card.json")  # re-read: only this field changes
        card.inference_videos_per_second = round(rate, 2)
        card.save(model_dir / "card.json")
    print(f"{out_csv}: {rows:,} videos, top {k} labels each, {seconds:.1f} s"
          + (f" ({rate:,.0f} videos/s)" if rate else ""))
    return Prediction(out_csv, rows, seconds, rate)
