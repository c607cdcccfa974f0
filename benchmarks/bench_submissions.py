"""Submission speed and memory: the streamed top-20 beside holding the whole split's scores, CSV writing and
validation rates, and `submissions predict` end to end with a real Keras model.

1. 20,000 videos x 3,862 classes of float32 scores, cut to the top 20 either batch by batch (256 videos, as
   `submissions predict` does) or after collecting the dense (N, C) matrix: time and peak traced memory.
2. Writing a 200,000-row CSV (20 pairs each) and validating it as `submissions submit` does.
3. `submissions predict` of the logistic model over a 20,000-video store: videos/s, and the share of the
   time spent outside the model (top-k and CSV).
Run: `.venv/bin/python -m benchmarks.bench_submissions`.
"""

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.results import write_section
from evaluation.metrics import top_k
from submissions.csv_writer import write_submission
from submissions.validate import check_submission

C, K, BATCH = 3862, 20, 256
TOPK_VIDEOS, CSV_ROWS, PREDICT_VIDEOS = 20_000, 200_000, 20_000


def score_batches(n: int, seed: int = 0):
    """Model-like float32 scores, one batch at a time (the same numbers for the same seed)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        yield rng.random((min(BATCH, n - start), C), dtype=np.float32)


def streamed(n: int):
    parts = [top_k(s, K) for s in score_batches(n)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def dense(n: int):
    return top_k(np.concatenate(list(score_batches(n))), K)


def measure(fn, *args):
    """(result, seconds, peak traced MB)."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return result, seconds, peak


def bench_top_k() -> list[str]:
    (s_labels, s_scores), s_time, s_peak = measure(streamed, TOPK_VIDEOS)
    (d_labels, d_scores), d_time, d_peak = measure(dense, TOPK_VIDEOS)
    assert np.array_equal(s_labels, d_labels) and np.array_equal(s_scores, d_scores)
    print(f"top-20 streamed: {s_time:.2f} s, peak {s_peak:.0f} MB; dense: {d_time:.2f} s, peak {d_peak:.0f} MB")
    return [
        f"### 1. Top-20 of {TOPK_VIDEOS:,} videos x {C:,} classes (float32 scores; identical results)\n",
        "| method | seconds | videos/s | peak traced memory MB |",
        "|---|---|---|---|",
        f"| streamed, {BATCH} videos a batch (`submissions predict`) | {s_time:.2f} | {TOPK_VIDEOS / s_time:,.0f} "
        f"| {s_peak:,.0f} |",
        f"| dense (N, C) matrix, then top 20 | {d_time:.2f} | {TOPK_VIDEOS / d_time:,.0f} | {d_peak:,.0f} |",
        f"| ratio dense / streamed | {d_time / s_time:.2f}x | | {d_peak / s_peak:.1f}x |",
        "",
    ]


def bench_csv(folder: Path) -> list[str]:
    rng = np.random.default_rng(1)
    path = folder / "bench_test.csv"
    labels = (np.arange(K) * 193 + rng.integers(0, C, size=(CSV_ROWS, 1))) % C  # 20 distinct labels a row
    scores = -np.sort(-rng.random((CSV_ROWS, K)), axis=1)
    ids = [f"{i:06x}" for i in range(CSV_ROWS)]
    batches = [(ids[i:i + BATCH], labels[i:i + BATCH], scores[i:i + BATCH]) for i in range(0, CSV_ROWS, BATCH)]

    start = time.perf_counter()
    write_submission(path, batches)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    checked = check_submission(path, "youtube8m-2018")
    check_s = time.perf_counter() - start
    mb = path.stat().st_size / 1e6
    print(f"CSV {CSV_ROWS:,} rows: write {write_s:.1f} s, validate {check_s:.1f} s, {mb:.0f} MB")
    assert checked.rows == CSV_ROWS and checked.pairs == CSV_ROWS * K
    return [
        f"### 2. A {CSV_ROWS:,}-row CSV, {K} pairs per row ({mb:,.0f} MB), written {BATCH} rows a batch\n",
        "| step | seconds | rows/s |",
        "|---|---|---|",
        f"| write (`csv_writer.write_submission`, atomic) | {write_s:.1f} | {CSV_ROWS / write_s:,.0f} |",
        f"| validate (`submit` before upload) | {check_s:.1f} | {CSV_ROWS / check_s:,.0f} |",
        f"| ratio write / validate | {write_s / check_s:.2f}x | |",
        "",
    ]


def bench_predict(folder: Path) -> list[str]:
    import keras

    from common.card import Card
    from features.writer import create_store
    from models import zoo
    from models.inference import iter_scores, load_model_dir
    from submissions.predict import predict

    rng = np.random.default_rng(2)
    video = rng.normal(size=(PREDICT_VIDEOS, 1152)).astype(np.float32)
    labels = [rng.choice(C, size=3, replace=False) for _ in range(PREDICT_VIDEOS)]
    store = create_store(folder / "store", [f"{i:05x}" for i in range(PREDICT_VIDEOS)], labels, video,
                         num_classes=C)
    keras.utils.set_random_seed(0)
    model = zoo.build("logistic", C)
    run = folder / "logistic"
    run.mkdir()
    model.save(run / "model.keras")
    Card(run="logistic", model="logistic", level="video", parameters=model.count_params(),
         file_bytes=(run / "model.keras").stat().st_size, num_classes=C, train_videos=0, epochs=0, best_epoch=0,
         train_seconds=0.0, train_videos_per_second=0.0, validation={}, config={}, created=Card.now()).save(run)

    loaded, card = load_model_dir(run)
    start = time.perf_counter()
    for _ in iter_scores(loaded, card, store, batch_size=BATCH):
        pass
    model_s = time.perf_counter() - start
    result = predict(run, store.path, folder / "logistic_test.csv", batch_size=BATCH)
    share = 1 - model_s / result.seconds
    print(f"predict {PREDICT_VIDEOS:,} videos: {result.seconds:.1f} s, model alone {model_s:.1f} s")
    return [
        f"### 3. `submissions predict`, logistic model, {PREDICT_VIDEOS:,} videos of a video-level store\n",
        "| step | seconds | videos/s |",
        "|---|---|---|",
        f"| model scores only (`models.inference.iter_scores`) | {model_s:.1f} | {PREDICT_VIDEOS / model_s:,.0f} |",
        f"| whole `predict` (scores + top 20 + CSV) | {result.seconds:.1f} | {PREDICT_VIDEOS / result.seconds:,.0f} |",
        f"| rate written to card.json (first batch excluded) | | {result.videos_per_second:,.0f} |",
        f"| share of `predict` outside the model | {100 * share:.0f}% | |",
        "",
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        body = bench_top_k() + bench_csv(Path(tmp)) + bench_predict(Path(tmp))
    write_section("submissions", ".venv/bin/python -m benchmarks.bench_submissions", "\n".join(body))


if __name__ == "__main__":
    main()
