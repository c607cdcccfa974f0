"""Feature stage benchmark: conversion speed beside a raw tf.data read, peak memory, store vs shard reading.

Run: .venv/bin/python -m benchmarks.bench_features   (about 3 minutes on 2 cores; writes ~3 GB to a
temporary folder and deletes it; results go to the "Features" section of benchmarks/RESULTS.md)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.cli import quiet_tensorflow

quiet_tensorflow()

REPO = Path(__file__).resolve().parents[1]
REAL_2018 = Path(os.environ.get("YT8M_SHARED", REPO.parent / "shared" / "yt8m")) / "video-2018-validate"
BATCH = 64  # frame-level videos per batch when reading
REPEATS = 5  # conversion and raw-read timings: the best of this many interleaved runs


def raw_read(shards: list[Path], level: str) -> tuple[float, int]:
    """Seconds and videos for a plain tf.data read + parse of the shards to numpy (no conversion)."""
    import tensorflow as tf

    if level == "video":
        spec = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64),
                "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
                "mean_audio": tf.io.FixedLenFeature([128], tf.float32)}
        parse = lambda raw: tf.io.parse_example(raw, spec)  # noqa: E731
        batch = 256
    else:
        parse = _frame_parser(pad=False)
        batch = 32
    start = time.perf_counter()
    count = 0
    data = tf.data.TFRecordDataset([str(s) for s in shards], buffer_size=8 << 20).batch(batch)
    for parsed in data.map(parse).prefetch(2):
        count += len(parsed["id"].numpy())
    return time.perf_counter() - start, count


def _frame_parser(pad: bool):
    """parse_sequence_example + decode_raw of rgb/audio; with pad, cut/padded to (B, 300, 1152)."""
    import tensorflow as tf

    context = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    sequence = {"rgb": tf.io.RaggedFeature(tf.string), "audio": tf.io.RaggedFeature(tf.string)}

    def parse(raw):
        ctx, lists, _ = tf.io.parse_sequence_example(raw, context_features=context, sequence_features=sequence)
        rgb, audio = lists["rgb"], lists["audio"]
        flat = tf.concat([tf.io.decode_raw(rgb.flat_values, tf.uint8),
                          tf.io.decode_raw(audio.flat_values, tf.uint8)], 1)
        frames = tf.RaggedTensor.from_row_splits(flat, rgb.row_splits)
        if pad:
            frames = frames[:, :300].to_tensor(shape=[None, 300, 1152])
        else:
            frames = frames.flat_values
        return {"id": ctx["id"], "frames": frames}

    return parse


def timed_convert(shards, out: Path, workers: int) -> float:
    from features.convert import convert

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    convert(shards, out, workers=workers, log=lambda line: None)
    return time.perf_counter() - start


def conversion_rows(name: str, shards: list[Path], level: str, work: Path) -> tuple[list[str], Path]:
    """Markdown rows: raw read, then conversion with 1 and 2 workers, as videos/s, MB/s and ratio."""
    size = sum(s.stat().st_size for s in shards)
    raw_read(shards[:1], level)  # warm-up, untimed: TensorFlow loads its modules and builds ops on first use
    timed_convert(shards[:1], work / f"{level}-warm-up", workers=1)
    out = work / f"{level}-store"
    times = {"raw": [], 1: [], 2: []}
    for _ in range(REPEATS):  # interleaved, so that all three see the same machine
        seconds, videos = raw_read(shards, level)
        times["raw"].append(seconds)
        for workers in (1, 2):
            times[workers].append(timed_convert(shards, out, workers))
    raw_s = min(times["raw"])
    rows = [f"| {name} | raw tf.data read + parse | {videos:,} | {raw_s:.2f} | {videos / raw_s:,.0f} | "
            f"{size / raw_s / 1e6:,.1f} | 1.00 |"]
    for workers in (1, 2):
        seconds = min(times[workers])
        rows.append(f"| {name} | convert, {workers} worker{'s' if workers > 1 else ''} | {videos:,} | "
                    f"{seconds:.2f} | {videos / seconds:,.0f} | {size / seconds / 1e6:,.1f} | "
                    f"{raw_s / seconds:.2f} |")
        print(rows[-1], flush=True)
    start = time.perf_counter()
    from features.convert import convert

    convert(shards, out, log=lambda line: None)
    rows.append(f"| {name} | re-run on the complete store (up to date) | {videos:,} | "
                f"{time.perf_counter() - start:.2f} | | | |")
    return rows, out


def _tree_memory(pid: int) -> tuple[int, int]:
    """(current RSS summed over a process and its descendants, largest VmHWM among them), in bytes.

    VmHWM is each process's own peak, kept by the kernel, so sampling cannot miss it (ru_maxrss can
    not be used: it carries over the peak of the parent that forked the child).
    """
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    total = peak = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if "VmRSS" in status:
            total += int(status["VmRSS"].split()[0]) * 1024
            peak = max(peak, int(status["VmHWM"].split()[0]) * 1024)
    return total, peak


def peak_rss(command: list[str]) -> tuple[float, int, int]:
    """Run `command`; return (seconds, peak RSS of its largest single process, peak RSS of the whole tree)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree = single = 0
    while child.poll() is None:
        total, peak = _tree_memory(child.pid)
        tree, single = max(tree, total), max(single, peak)
        time.sleep(0.05)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed with status {child.returncode}")
    return time.perf_counter() - start, single, tree


def reading_rows(store_dir: Path, shards: list[Path]) -> list[str]:
    """Frame-level batches of BATCH videos padded to 300 frames: store (memmap) vs shards (tf.data)."""
    import tensorflow as tf

    from features.store import Store

    store = Store(store_dir)
    n = len(store)
    rng = np.random.default_rng(0)
    rows = []
    for label, order, sample in [("store, in order", np.arange(n), None),
                                 ("store, shuffled", rng.permutation(n), None),
                                 ("store, shuffled, 30 random frames", rng.permutation(n), "random")]:
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            store.frames(np.sort(order[i:i + BATCH]), sample=sample, num_samples=30 if sample else None, rng=rng)
        seconds = time.perf_counter() - start
        rows.append((label, seconds))
    start = time.perf_counter()
    data = tf.data.TFRecordDataset([str(s) for s in shards], buffer_size=8 << 20).batch(BATCH)
    for parsed in data.map(_frame_parser(pad=True)).prefetch(2):
        parsed["frames"].numpy()
    rows.insert(0, ("shards, tf.data parse + pad (in order)", time.perf_counter() - start))
    base = rows[0][1]
    return [f"| {label} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} | {base / seconds:.1f} |"
            for label, seconds in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-videos", type=int, default=2000, help="synthetic frame-level videos to convert")
    parser.add_argument("--rss-gb", type=float, default=2.0, help="frame-level shards converted for peak RSS")
    args = parser.parse_args(argv)
    from data.synth import generate

    load = os.getloadavg()[0]  # other work on the machine skews timings: say how busy it was
    work = Path(tempfile.mkdtemp(prefix="bench_features."))
    try:
        video_shards = sorted(REAL_2018.glob("*.tfrecord"))
        if not video_shards:
            raise SystemExit(f"real 2018 shards not found at {REAL_2018}")
        rows, _ = conversion_rows("video level: real 2018 validate, 100 shards", video_shards, "video", work)

        frame_dir = work / "frame-shards"
        generate(frame_dir, "frame", "bench", args.frame_videos, seed=0, progress=False)
        frame_shards = sorted(frame_dir.glob("*.tfrecord"))
        frame_mb = sum(s.stat().st_size for s in frame_shards) / 1e6
        more, frame_store = conversion_rows(f"frame level: synthetic, {len(frame_shards)} shards, "
                                            f"{frame_mb:,.0f} MB", frame_shards, "frame", work)
        rows += more
        reading = reading_rows(frame_store, frame_shards)
        for row in reading:
            print(row, flush=True)
        shutil.rmtree(frame_store)

        big = work / "big-shards"  # links to the same shards under new names, up to the wanted size
        big.mkdir()
        total, i = 0, 0
        while total < args.rss_gb * 1e9:
            source = frame_shards[i % len(frame_shards)]
            os.link(source, big / f"big{i:04d}.tfrecord")
            total, i = total + source.stat().st_size, i + 1
        baseline = peak_rss([sys.executable, "-c", "import tensorflow as tf; tf.constant(1)"])[1]
        memory = []
        for workers in (1, 2):
            seconds, single, tree = peak_rss([sys.executable, "-m", "features", "convert", "--shards", str(big),
                                              "--out", str(work / f"big-store-{workers}"),
                                              "--workers", str(workers)])
            shutil.rmtree(work / f"big-store-{workers}")
            memory.append(f"| {workers} | {total / 1e9:.2f} GB, {i} shards | {seconds:.0f} | "
                          f"{single / 2**20:,.0f} MB | {tree / 2**20:,.0f} MB |")
            print(memory[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    body = "\n".join([
        "Conversion throughput beside a raw `tf.data` read + parse of the same shards in the same run "
        "(ratio = raw seconds / conversion seconds; 1.00 or more means conversion keeps up with reading). "
        "Conversion seconds include scanning the shards, detecting their format, writing the store's files and "
        "publishing the store; workers are tf.data threads parsing batches of records. "
        "Both sides were warmed up on one shard first (untimed); each figure is the best of "
        f"{REPEATS} runs, the raw read and the two conversions interleaved. "
        f"Load average when the run started: {load:.1f} on {os.cpu_count()} cores.",
        "",
        "| shards | what | videos | seconds | videos/s | MB/s of shards | ratio to raw read |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Peak memory while converting {total / 1e9:.2f} GB of frame-level shards (`python -m features convert`). "
        f"For scale: a Python process that only imports TensorFlow peaks at {baseline / 2**20:,.0f} MB RSS.",
        "",
        "| workers | shards | seconds | peak RSS, largest process | peak RSS, all processes |",
        "|---:|---|---:|---:|---:|",
        *memory,
        "",
        f"Reading frame-level batches of {BATCH} videos as uint8 (B, 300, 1152) padded arrays "
        "(page cache warm for both):",
        "",
        "| source | videos | seconds | videos/s | speed-up over shards |",
        "|---|---:|---:|---:|---:|",
        *reading,
    ])
    from benchmarks.results import write_section

    write_section("Features", "python -m benchmarks.bench_features", body)


if __name__ == "__main__":
    main()
