"""Predict a store with a trained model and write its top-k labels per video as a submission CSV.

Scores are streamed batch by batch and cut to the top k at once, so memory stays at one batch of
(batch, classes) scores whatever the number of videos. Beside the CSV, `.<name>.json` records what it was
made from (model file, store, k) and the CSV's own size and SHA-256: the skip rule compares those.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import InputError
from common.files import digest, write_json_atomic
from evaluation.metrics import K, top_k
from submissions.csv_writer import write_submission


@dataclass
class Prediction:
    """What `predict` did: rows written, seconds, and the steady inference rate (None when skipped)."""

    csv: Path
    rows: int
    seconds: float
    videos_per_second: float | None
    skipped: bool = False


def record_path(csv: Path) -> Path:
    """Beside the CSV, what it was made from: `.<name>.json` (hidden)."""
    return csv.with_name(f".{csv.name}.json")


def made_from(model_dir: Path, store_dir: Path, k: int) -> dict:
    """What decides a CSV's content: the model file, the store (its manifest names every shard) and k."""
    return {"model": digest(model_dir / "model.keras"), "store": digest(store_dir / "manifest.json"), "top_k": k}


def up_to_date(csv: Path, inputs: dict) -> bool:
    """The CSV's record names these inputs, and the CSV is still the file recorded (size and SHA-256)."""
    try:
        record = json.loads(record_path(csv).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and csv.is_file() and record.get("inputs") == inputs
            and record.get("bytes") == csv.stat().st_size and record.get("sha256") == digest(csv))


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


def predict(model_dir, store_dir, out_csv, *, k: int = K, batch_size: int = 256) -> Prediction:
    """Write `out_csv` with the top `k` labels of every video of the store; record the rate in card.json.

    Skipped (and says so) when the CSV is this model's top k of this store, as its record says.
    """
    model_dir, store_dir, out_csv = Path(model_dir), Path(store_dir), Path(out_csv)
    if not 1 <= k <= K:
        raise InputError("--top-k", f"must be in 1..{K} (a submission holds at most {K} pairs a video), not {k}")
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, not {batch_size}")
    if out_csv.is_dir():
        raise InputError(out_csv, "is a folder: --out names the CSV file to write")
    if not (model_dir / "model.keras").is_file():
        raise InputError(model_dir, "not a trained model folder (model.keras and card.json expected)")
    if not (store_dir / "manifest.json").is_file():
        raise InputError(store_dir, "no such feature store folder")
    inputs = made_from(model_dir, store_dir, k)
    if up_to_date(out_csv, inputs):
        print(f"{out_csv}: up to date")
        return Prediction(out_csv, 0, 0.0, None, skipped=True)

    from common.card import Card
    from features.store import Store
    from models.inference import load_model_dir

    store = Store(store_dir)
    model, card = load_model_dir(model_dir)
    start, marks = time.perf_counter(), []
    record_path(out_csv).unlink(missing_ok=True)  # the CSV is about to change: its old record no longer holds
    with tqdm(total=len(store), unit="video", desc=f"predict {model_dir.name}", dynamic_ncols=True) as bar:
        rows = write_submission(out_csv, top_k_batches(model, card, store, k, batch_size, bar, marks))
    write_json_atomic(record_path(out_csv), {"inputs": inputs, "bytes": out_csv.stat().st_size,
                                             "sha256": digest(out_csv)})
    seconds = time.perf_counter() - start
    rate = steady_rate(start, marks)
    if rate is not None:
        card = Card.load(model_dir / "card.json")  # re-read: only this field changes
        card.inference_videos_per_second = round(rate, 2)
        card.save(model_dir / "card.json")
    print(f"{out_csv}: {rows:,} videos, top {k} labels each, {seconds:.1f} s"
          + (f" ({rate:,.0f} videos/s)" if rate else ""))
    return Prediction(out_csv, rows, seconds, rate)
