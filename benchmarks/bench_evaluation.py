"""Evaluation speed: vectorized NumPy beside a plain per-video Python loop (heapq) with the same definition.

1. GAP@20, Hit@1 and PERR of dense predictions, 20,000 videos x 3,862 classes (float32, as models give).
2. Scoring a generated submission CSV of 1,000,000 rows x 20 pairs against a 1,000,000-row truth CSV.
   The loop baseline reads and scores the first 100,000 rows; its time is scaled by 10 (said in the table).
Both pairs of results must agree to 1e-9. Run: `.venv/bin/python -m benchmarks.bench_evaluation`.
"""

import csv
import heapq
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results import write_section
from evaluation.metrics import evaluate
from evaluation.score import score_files

C, K = 3862, 20
DENSE_VIDEOS, CSV_ROWS, LOOP_ROWS = 20_000, 1_000_000, 100_000


# -- the baseline: one video at a time, the definition written out plainly ---------------------------------
def loop_ranked(pairs, k=K):
    """The k best (label, score) pairs: score descending, then label id ascending (the tie rule)."""
    return heapq.nlargest(k, pairs, key=lambda p: (p[1], -p[0]))


def loop_metrics(videos):
    """videos: iterable of (ranked top-k pairs, set of true labels) -> (gap, hit_at_one, perr)."""
    pool, positives, hits, perr, count = [], 0, 0, 0.0, 0
    for ranked, truth in videos:
        count += 1
        positives += len(truth)
        pool.extend((score, label in truth) for label, score in ranked)
        hits += bool(ranked) and ranked[0][0] in truth
        if truth:
            perr += sum(1 for label, score in ranked[: len(truth)] if label in truth and score > 0) / len(truth)
    pool.sort(key=lambda p: -p[0])
    found = seen = 0
    total = 0.0
    for _, block in itertools.groupby(pool, key=lambda p: p[0]):  # equal scores: one block
        block = [is_true for _, is_true in block]
        seen += len(block)
        found += sum(block)
        total += sum(block) * found / seen
    return total / positives, hits / count, perr / count


def loop_dense(scores, truth):
    """Dense predictions scored one video at a time."""

    def videos():
        for row, labels in zip(scores, truth, strict=True):
            values = row.tolist()
            yield loop_ranked(zip(range(len(values)), values, strict=True)), set(np.flatnonzero(labels).tolist())

    return loop_metrics(videos())


def loop_score_csv(submission, truth_csv):
    """Read both CSVs with the csv module and score one video at a time."""
    with open(truth_csv, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        truth = {vid: {int(x) for x in labels.split()} for vid, labels in rows}
    seen = set()

    def videos():
        with open(submission, newline="") as f:
            rows = csv.reader(f)
            next(rows)
            for vid, text in rows:
                tokens = text.split()
                seen.add(vid)
                pairs = [(int(a), float(b)) for a, b in zip(tokens[0::2], tokens[1::2], strict=True)]
                yield loop_ranked(pairs), truth[vid]
        for vid, labels in truth.items():  # videos without a row: all misses
            if vid not in seen:
                yield [], labels

    return loop_metrics(videos())


# -- data ---------------------------------------------------------------------------------------------------
def dense_data(rng):
    """float32 probabilities for 20,000 videos with 1-6 labels each (popular classes more often)."""
    truth = np.zeros((DENSE_VIDEOS, C), np.float32)
    popular = rng.zipf(1.3, size=(DENSE_VIDEOS, 6)) % C
    counts = rng.integers(1, 7, DENSE_VIDEOS)
    for i in range(DENSE_VIDEOS):
        truth[i, popular[i, : counts[i]]] = 1
    logits = rng.standard_normal((DENSE_VIDEOS, C), dtype=np.float32) - 4 + 5 * truth * rng.random(
        (DENSE_VIDEOS, C), dtype=np.float32)
    return (1 / (1 + np.exp(-logits))).astype(np.float32), truth


def write_csvs(folder: Path, rng, rows: int):
    """A submission (20 distinct labels per row, scores '%.6g' descending) and the truth it is scored on."""
    label_text = np.array([str(i) for i in range(C)], dtype=object)
    score_text = np.array([f"{i / 1e6:.6g}" for i in range(1_000_000)], dtype=object)  # as submissions writes
    sub, truth = folder / "bench_validate.csv", folder / "truth.csv"
    with open(sub, "w") as fs, open(truth, "w") as ft:
        fs.write("VideoId,LabelConfidencePairs\n")
        ft.write("VideoId,Labels\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            labels = (rng.integers(0, C, (n, 1)) + np.arange(K) * rng.integers(1, 190, (n, 1))) % C
            scores = -np.sort(-rng.integers(0, 1_000_000, (n, K)), axis=1)
            tokens = np.empty((n, 2 * K), dtype=object)
            tokens[:, 0::2], tokens[:, 1::2] = label_text[labels], score_text[scores]
            ids = [f"v{start + i:07d}" for i in range(n)]
            fs.write("".join(f"{v},{' '.join(t)}\n" for v, t in zip(ids, tokens.tolist(), strict=True)))
            # truth: some of the row's labels (its first ones more often) plus one label no row predicts
            hits = (rng.random((n, K)) < np.linspace(0.5, 0.02, K)).tolist()
            missed = ((labels[:, 0] - 1) % C).tolist()  # base - 1: never base + j * step (mod C), j < 20
            true_lists = [" ".join(map(str, [lab for lab, hit in zip(row, h, strict=True) if hit] + [m]))
                          for row, h, m in zip(labels.tolist(), hits, missed, strict=True)]
            ft.write("".join(f"{v},{t}\n" for v, t in zip(ids, true_lists, strict=True)))
    return sub, truth


def head(path: Path, rows: int, out: Path) -> Path:
    with open(path) as f, open(out, "w") as g:
        g.writelines(itertools.islice(f, rows + 1))
    return out


def timed(fn, *args, repeat: int = 1):
    """(result, median wall seconds, median CPU seconds of this process) over `repeat` runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = fn(*args)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return value, statistics.median(wall), statistics.median(cpu)


def agree(a: tuple, b) -> float:
    """Largest absolute difference between (gap, hit, perr) and a Scores."""
    return max(abs(x - y) for x, y in zip(a, (b.gap, b.hit_at_one, b.perr), strict=True))


def main() -> None:
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"dense: {DENSE_VIDEOS:,} x {C:,} float32 predictions")
    scores, truth = dense_data(rng)
    fast, fast_s, fast_cpu = timed(evaluate, scores, truth, repeat=3)
    print(f"  vectorized  {fast_s:8.2f} s  GAP {fast.gap:.6f}")
    slow, slow_s, _ = timed(loop_dense, scores, truth)
    print(f"  Python loop {slow_s:8.2f} s  GAP {slow[0]:.6f}")
    dense_diff = agree(slow, fast)
    assert dense_diff <= 1e-9, f"dense results differ by {dense_diff}"
    del scores, truth

    with tempfile.TemporaryDirectory(prefix="bench_evaluation_") as tmp:
        folder = Path(tmp)
        print(f"writing a {CSV_ROWS:,}-row submission CSV and its truth ...")
        sub, truth_csv = write_csvs(folder, rng, CSV_ROWS)
        size_mb = sub.stat().st_size / 1e6
        report, csv_s, csv_cpu = timed(score_files, sub, truth_csv, repeat=3)
        print(f"  vectorized  {csv_s:8.2f} s  ({size_mb:.0f} MB) GAP {report.scores.gap:.6f}")
        sub_small = head(sub, LOOP_ROWS, folder / "small_validate.csv")
        truth_small = head(truth_csv, LOOP_ROWS, folder / "truth_small.csv")
        small, small_s, small_cpu = timed(score_files, sub_small, truth_small, repeat=3)
        loop, loop_s, _ = timed(loop_score_csv, sub_small, truth_small)
        print(f"  {LOOP_ROWS:,} rows: vectorized {small_s:.2f} s, Python loop {loop_s:.2f} s")
        csv_diff = agree(loop, small.scores)
        assert csv_diff <= 1e-9, f"CSV results differ by {csv_diff}"

    loop_full = loop_s * CSV_ROWS / LOOP_ROWS
    rows = [
        f"| GAP@20 + Hit@1 + PERR, dense {DENSE_VIDEOS:,} x {C:,} float32 | {fast_s:.2f} s ({fast_cpu:.2f} s) "
        f"| {slow_s:.1f} s | {slow_s / fast_s:.0f}x |",
        f"| score a CSV, {CSV_ROWS:,} rows x {K} pairs ({size_mb:.0f} MB), truth CSV | {csv_s:.2f} s "
        f"({csv_cpu:.2f} s) | {loop_full:.1f} s ({LOOP_ROWS:,} rows x {CSV_ROWS // LOOP_ROWS}) "
        f"| {loop_full / csv_s:.0f}x |",
        f"| score a CSV, {LOOP_ROWS:,} rows x {K} pairs, truth CSV | {small_s:.2f} s ({small_cpu:.2f} s) "
        f"| {loop_s:.1f} s | {loop_s / small_s:.0f}x |",
    ]
    body = "\n".join([
        "| task | vectorized: wall (CPU) | Python loop (heapq): wall | ratio (wall) |", "|---|---|---|---|", *rows, "",
        f"The two agree: largest difference over GAP, Hit@1 and PERR {dense_diff:.1e} (dense) and "
        f"{csv_diff:.1e} (CSV), ties included (float32 and '%.6g' scores; both use the block rule).",
        "Vectorized times are medians of 3 runs (CPU: this process's CPU seconds, about what an idle machine "
        "would take); loops run once. The CSV times include reading and validating both files. "
        f"Load average when the run started: {load:.1f} on {os.cpu_count()} cores (other jobs shared the machine).",
    ])
    print(body)
    write_section("Evaluation", "python -m benchmarks.bench_evaluation", body)


if __name__ == "__main__":
    main()
