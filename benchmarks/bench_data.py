"""Reader throughput on the real 2018 video-level shards, beside a plain tf.data + tf.io.parse_example.

Run: .venv/bin/python -m benchmarks.bench_data  (needs ../shared/yt8m/video-2018-validate)
"""

import statistics
import sys
import time
from pathlib import Path

from common.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import tensorflow as tf  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from data.reader import list_shards, read_batches  # noqa: E402

SHARDS = Path(__file__).resolve().parents[1].parent / "shared" / "yt8m" / "video-2018-validate"
REPEATS = 5


def read_with_reader(paths) -> int:
    return sum(len(batch.ids) for path in paths for batch in read_batches(path))


def read_with_tf_data(paths) -> int:
    features = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
        "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
        "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
    }
    dataset = (tf.data.TFRecordDataset([str(p) for p in paths]).batch(256)
               .map(lambda raw: tf.io.parse_example(raw, features)).prefetch(2))
    count = 0
    for parsed in dataset:
        parsed["mean_rgb"].numpy(), parsed["mean_audio"].numpy()  # the features, as the reader gives them
        count += len(parsed["id"])
    return count


def timed(fn, paths) -> tuple[int, list[float]]:
    fn(paths)  # warm-up: tracing, file cache
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        count = fn(paths)
        times.append(time.perf_counter() - start)
    return count, times


def main() -> None:
    if not SHARDS.exists():
        sys.exit(f"skipped: {SHARDS} not found (the real shards live in ../shared/yt8m)")
    paths = list_shards(SHARDS)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    rows = []
    for name, fn in (("data.reader.read_batches", read_with_reader),
                     ("tf.data.TFRecordDataset + tf.io.parse_example", read_with_tf_data)):
        count, times = timed(fn, paths)
        median = statistics.median(times)
        rows.append((name, count, median, count / median, megabytes / median))
        print(f"{name}: {count} videos, median {median:.3f} s, {count / median:,.0f} videos/s, "
              f"{megabytes / median:,.1f} MB/s")
    ratio = rows[0][3] / rows[1][3]
    body = (
        f"{len(paths)} real 2018 video-level shards, {rows[0][1]:,} videos, {megabytes:.1f} MB; "
        f"median of {REPEATS} runs after a warm-up, files in the page cache.\n\n"
        "| reader | videos/s | MB/s | median s |\n|---|---|---|---|\n"
        + "".join(f"| {n} | {v:,.0f} | {mb:,.1f} | {s:.3f} |\n" for n, _, s, v, mb in rows)
        + f"\nThe project's reader runs at {ratio:.2f}x the plain tf.data pipeline's rate; it also checks "
        "every label's range, decodes ids and labels to Python, and can name a bad record."
    )
    write_section("Data: reading shards", ".venv/bin/python -m benchmarks.bench_data", body)


if __name__ == "__main__":
    main()
