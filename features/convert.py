"""Shards -> feature store, streamed in shard order straight into the store's files.

Shards are sorted by name and their videos go into the store in that order, so the store is byte for
byte the same for any worker count or listing order. The workers are tf.data threads that parse
batches of records in parallel (results come back in order) while this thread writes them.

While converting, `<store>.parts/` holds:
  video.grow, frames.grow   the store's video.npy and frames.npy, growing (header space kept free)
  <shard>.part              one shard's small arrays (ids, labels, frame offsets), written once its
                            rows are in the .grow files
Every frame is written once: at the end the .grow files get their .npy header and are renamed into
the new store, which is itself built under a temporary name and renamed, so the old store stays until
then. A run killed at any moment (kill -9) keeps the shards whose .part it wrote; a re-run truncates
the .grow files after them and goes on. Shards unchanged since the old store (same name, size, record
count and fingerprint) are copied from it instead of converted.
"""

import collections
import hashlib
import io
import itertools
import json
import mmap
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npy
from tqdm import tqdm

from common.errors import InputError
from common.files import atomic_path
from data.formats import FEATURE_SIZE, MAX_FRAMES, ShardFormat
from features.store import Manifest, Source, Store, expected_files, id_width, labels_dtype, npy_layout

SMALL_ARRAYS = ("ids", "labels_indptr", "labels_indices", "frame_offsets")  # kept in .part files


@dataclass
class Part:
    """One shard appended to the growing store: where its rows start and what it holds."""

    source: Source
    level: str
    version: int
    has_labels: bool
    first_video: int  # its first row in video.grow
    first_frame: int  # its first row in frames.grow (0 at video level)
    num_videos: int
    num_labels: int
    num_frames: int  # 0 at video level
    id_width: int  # bytes of its longest id (at least 1)
    problems: list[str] = field(default_factory=list)

    @property
    def format(self) -> ShardFormat:
        return ShardFormat(self.level, self.version, self.has_labels)


def scan_shard(path) -> Source:
    """Size, record count and a fingerprint (hash of every record's length and CRC), reading only headers.

    A truncated last record is not counted (the reader reports it when converting).
    """
    path = Path(path)
    size = path.stat().st_size
    hashed = [size.to_bytes(8, "little")]
    records = pos = 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else nullcontext(b"") as m:
        while pos + 12 <= size:
            end = pos + 12 + int.from_bytes(m[pos:pos + 8], "little") + 4
            if end > size:
                break
            hashed += (m[pos:pos + 12], m[end - 4:end])  # length (8 bytes) and its CRC, the data's CRC
            records, pos = records + 1, end
    return Source(path.name, size, records, fingerprint=hashlib.sha1(b"".join(hashed)).hexdigest()[:20])


def describe(fmt: ShardFormat) -> str:
    return f"{fmt.level} level {fmt.version}" + ("" if fmt.has_labels else " without labels")


# -- .part files ------------------------------------------------------------------------------------

PART_BYTES = 16 << 20  # finished shards are saved in .part files of about this many bytes of shards

def _part_path(parts_dir: Path, name: str) -> Path:
    """The .part file that starts with shard `name` (it may hold the shards after it too)."""
    return parts_dir / f"{name}.part"


def _save_parts(path: Path, group: list[tuple[Part, dict]]) -> None:
    """Consecutive finished shards in one .part file: the header's length (8 bytes), the header (JSON: each
    Part and its arrays' dtypes and shapes), then all arrays' bytes. Written under a .tmp name, renamed."""
    header = json.dumps([{"part": asdict(part), "arrays": {n: [a.dtype.str, list(a.shape)] for n, a in arrays.items()}}
                         for part, arrays in group]).encode()
    with open(f"{path}.tmp", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for _, arrays in group:
            for array in arrays.values():
                f.write(np.ascontiguousarray(array).data)
    os.replace(f"{path}.tmp", path)


def _load_parts(path: Path, arrays: bool = True) -> list[tuple[Part, dict[str, np.ndarray]]]:
    """The (Part, arrays) of every shard in a .part file (arrays empty unless `arrays`)."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        buffer = f.read() if arrays else b""
    out, at = [], 0
    for entry in header:
        data = entry["part"]
        part, found = Part(**dict(data, source=Source(**data["source"]))), {}
        for name, (dtype, shape) in entry["arrays"].items() if arrays else ():
            dtype = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            found[name] = np.frombuffer(buffer, dtype, count, at).reshape(shape)
            at += count * dtype.itemsize
        out.append((part, found))
    if at != len(buffer):
        raise ValueError(f"{path}: {len(buffer)} bytes of arrays where the header says {at}")
    return out


def _read_parts(path: Path) -> list[Part]:
    """The Parts of a finished .part file ([] if there is none, or it is unreadable)."""
    try:
        return [part for part, _ in _load_parts(path, arrays=False)]
    except (OSError, ValueError, TypeError, KeyError):
        return []


# -- the growing .npy files -------------------------------------------------------------------------

def _npy_header(dtype, shape) -> bytes:
    """The .npy (version 1.0) header numpy writes for this dtype and shape. Its length does not depend
    on the number of rows (numpy pads it for an array that grows), so it can be written last."""
    out = io.BytesIO()
    npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                     "shape": tuple(shape)})
    return out.getvalue()


class Growing:
    """video.npy (float32) and, at frame level, frames.npy (uint8) as they grow in the parts folder.

    Appends are written by a writer thread (file writes release the GIL), so writing overlaps parsing and
    the next batch's preparation; every other operation first waits for the writes in flight."""

    IN_FLIGHT = 4  # appends queued at most (bounds the memory they hold)

    def __init__(self, parts_dir: Path, level: str):
        self.dtypes = {"video": np.dtype(np.float32)}
        if level == "frame":
            self.dtypes["frames"] = np.dtype(np.uint8)
        self.paths = {n: parts_dir / f"{n}.grow" for n in self.dtypes}
        self.header = {n: len(_npy_header(d, (0, FEATURE_SIZE))) for n, d in self.dtypes.items()}
        self.files = {}
        self.writer, self.writes = None, collections.deque()

    def row_bytes(self, name: str) -> int:
        return FEATURE_SIZE * self.dtypes[name].itemsize

    def rows_on_disk(self, name: str) -> int:
        """Whole rows the file holds now (-1 if it is missing)."""
        path = self.paths[name]
        return (path.stat().st_size - self.header[name]) // self.row_bytes(name) if path.exists() else -1

    def open_at(self, rows: dict[str, int]) -> None:
        """Open the files for appending after `rows` rows each (truncating what lies beyond)."""
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        for name, path in self.paths.items():
            handle = open(path, "r+b" if path.exists() else "w+b")
            self.files[name] = handle
            self.truncate(name, rows[name])

    def wait(self) -> None:
        """Wait until every append is on its way to disk (raising a failed write's error)."""
        while self.writes:
            self.writes.popleft().result()

    def truncate(self, name: str, rows: int) -> None:
        self.wait()
        handle = self.files[name]
        handle.flush()
        end = self.header[name] + rows * self.row_bytes(name)
        handle.truncate(end)
        handle.seek(end)

    def append(self, name: str, array: np.ndarray) -> None:
        if len(self.writes) >= self.IN_FLIGHT:
            self.writes.popleft().result()
        array = np.ascontiguousarray(array, dtype=self.dtypes[name])
        self.writes.append(self.writer.submit(array.tofile, self.files[name]))

    def copy(self, name: str, source: Path, offset: int, rows: int) -> None:
        """Append `rows` rows that lie from byte `offset` of another file (copied inside the kernel)."""
        self.wait()
        target = self.files[name]
        target.flush()
        count = rows * self.row_bytes(name)
        with open(source, "rb") as src:
            if _copy_range(src, target, offset, count) != count:
                raise InputError(source, f"truncated: {rows} rows from byte {offset} promised, file ends sooner")

    def flush(self) -> None:
        self.wait()
        for handle in self.files.values():
            handle.flush()

    def publish(self, folder: Path, rows: dict[str, int]) -> None:
        """Write each file's .npy header for its final row count and move it into `folder` as <name>.npy."""
        self.wait()
        for name, handle in self.files.items():
            handle.flush()
            if handle.tell() != self.header[name] + rows[name] * self.row_bytes(name):
                raise RuntimeError(f"{self.paths[name]}: size does not match {rows[name]} rows")
            header = _npy_header(self.dtypes[name], (rows[name], FEATURE_SIZE))
            assert len(header) == self.header[name]
            handle.seek(0)
            handle.write(header)
            handle.close()
            os.replace(self.paths[name], folder / f"{name}.npy")
        self.files = {}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.shutdown(wait=True)  # a failed write has already raised, or is dropped on an error
            self.writes.clear()
        for handle in self.files.values():
            handle.close()
        self.files = {}


def _copy_range(source, target, offset: int, count: int) -> int:
    """Copy up to `count` bytes from byte `offset` of `source` to the position of `target`; bytes copied.

    os.copy_file_range keeps the data inside the kernel; where the file system refuses it, plain reads
    and writes do the same."""
    position, done = target.tell(), 0
    try:
        while done < count:
            step = os.copy_file_range(source.fileno(), target.fileno(), count - done, offset + done, position + done)
            if step == 0:
                break
            done += step
    except (AttributeError, OSError):  # not Linux, or not between these files
        source.seek(offset + done)
        target.seek(position + done)
        while done < count:
            chunk = source.read(min(count - done, 1 << 24))
            if not chunk:
                break
            target.write(chunk)
            done += len(chunk)
    target.seek(position + done)
    return done


# -- appending shards in order ----------------------------------------------------------------------

def _id_width(ids: np.ndarray) -> int:
    """Bytes of the longest of these fixed-width ids (at least 1)."""
    return max(int(np.char.str_len(ids).max()) if len(ids) else 1, 1)


class StoreStream:
    """Appends shards, in store order, to the growing store in `parts_dir`: one shard open at a time."""

    def __init__(self, parts_dir: Path, fmt: ShardFormat, done: list[Part], done_files: list[Path], bar,
                 shards: int):
        self.parts_dir, self.format, self.parts, self.bar, self.shards = parts_dir, fmt, list(done), bar, shards
        self.files = list(done_files)  # the .part files holding self.parts, in order
        self.pending = []  # (Part, arrays) of finished shards not saved yet
        self.grow = Growing(parts_dir, fmt.level)
        self.rows = {"video": sum(p.num_videos for p in done), "frames": sum(p.num_frames for p in done)}
        self.grow.open_at(self.rows)
        self.source = None

    def begin(self, source: Source) -> None:
        self.source, self.start = source, dict(self.rows)
        self.ids, self.labels, self.num_frames, self.counted = [], [], [], 0

    def add(self, batch) -> None:
        """Append a Batch (data.reader) of the open shard."""
        self.grow.append("video", batch.video)
        self.rows["video"] += len(batch.ids)
        if batch.frames is not None:
            self.grow.append("frames", batch.frames)
            self.rows["frames"] += len(batch.frames)
            self.num_frames.append(batch.num_frames)
        self.ids += batch.ids
        self.labels += batch.labels
        step = self.source.bytes * len(batch.ids) // max(self.source.records, 1)
        self.counted += step
        self.bar.update(step)

    def rewind(self) -> None:
        """Forget what the open shard appended (to convert it again from its start)."""
        for name, rows in self.start.items():
            if name in self.grow.files:
                self.grow.truncate(name, rows)
        self.rows = dict(self.start)
        self.bar.update(-self.counted)
        self.begin(self.source)

    def end(self, report) -> None:
        """Close the open shard: its rows are on disk, so its .part can say they are there."""
        self.bar.update(self.source.bytes - self.counted)
        encoded = [i.encode("utf-8") for i in self.ids]
        counts = np.fromiter(map(len, self.labels), dtype=np.int64, count=len(self.labels))
        arrays = {
            "ids": np.array(encoded, dtype=f"S{id_width(encoded)}"),
            "labels_indptr": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "labels_indices": (np.concatenate(self.labels) if self.labels else np.zeros(0)).astype(
                labels_dtype(self.format.num_classes)),
        }
        if self.format.level == "frame":
            lengths = np.concatenate(self.num_frames) if self.num_frames else np.zeros(0, np.int64)
            arrays["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        source = Source(self.source.name, self.source.bytes, self.source.records, videos=len(self.ids),
                        skipped=report.skipped, fingerprint=self.source.fingerprint)
        self._finish_part(source, arrays, report.problems)

    def copy_from_store(self, old: Store, start: int, stop: int, source: Source) -> None:
        """Append videos [start, stop) of an old store (one unchanged shard) without converting them."""
        self.begin(source)
        arrays = {"ids": np.array(old.ids[start:stop])}
        indptr = np.asarray(old.labels_indptr[start:stop + 1])
        arrays["labels_indptr"] = indptr - indptr[0]
        arrays["labels_indices"] = np.array(old.labels_indices[indptr[0]:indptr[-1]])
        _, _, offset = npy_layout(old.path / "video.npy")
        self.grow.copy("video", old.path / "video.npy", offset + start * self.grow.row_bytes("video"), stop - start)
        self.rows["video"] += stop - start
        if self.format.level == "frame":
            offsets = np.asarray(old.frame_offsets[start:stop + 1])
            arrays["frame_offsets"] = offsets - offsets[0]
            _, _, offset = npy_layout(old.path / "frames.npy")
            rows = int(offsets[-1] - offsets[0])
            self.grow.copy("frames", old.path / "frames.npy", offset + int(offsets[0]) * FEATURE_SIZE, rows)
            self.rows["frames"] += rows
        self._finish_part(source, arrays, [])

    def save_pending(self) -> None:
        """Save the finished shards not saved yet in one .part file (after their rows are on disk)."""
        if self.pending:
            self.grow.flush()  # rows first, then the .part that vouches for them
            path = _part_path(self.parts_dir, self.pending[0][0].source.name)
            _save_parts(path, self.pending)
            self.files.append(path)
            self.pending = []

    def _finish_part(self, source: Source, arrays: dict, problems: list[str]) -> None:
        fmt = self.format
        part = Part(source, fmt.level, fmt.version, fmt.has_labels, self.start["video"], self.start["frames"],
                    len(arrays["ids"]), len(arrays["labels_indices"]),
                    int(arrays["frame_offsets"][-1]) if "frame_offsets" in arrays else 0,
                    _id_width(arrays["ids"]), problems)
        self.parts.append(part)
        self.pending.append((part, arrays))
        if sum(p.source.bytes for p, _ in self.pending) >= PART_BYTES:
            self.save_pending()
        self.source = None
        self.bar.set_postfix_str(f"{len(self.parts)}/{self.shards} shards, {self.rows['video']:,} videos",
                                 refresh=False)

    def publish(self, out: Path) -> Manifest:
        """Turn the parts into the store at `out` (atomically): small arrays gathered, .grow files moved."""
        parts, fmt = self.parts, self.format
        manifest = Manifest(
            level=fmt.level, version=fmt.version, num_videos=self.rows["video"],
            num_labels=sum(p.num_labels for p in parts),
            num_frames=self.rows["frames"] if fmt.level == "frame" else None,
            max_frames=MAX_FRAMES if fmt.level == "frame" else None,
            id_width=max(p.id_width for p in parts), num_classes=fmt.num_classes, has_labels=fmt.has_labels,
            sources=[p.source for p in parts])
        with atomic_path(out) as tmp:
            tmp.mkdir()
            self._write_small_arrays(tmp, manifest)
            self.grow.publish(tmp, self.rows)
            manifest.save(tmp)
            Store(tmp)  # refuse to publish a store that does not open
        return manifest

    def _write_small_arrays(self, folder: Path, m: Manifest) -> None:
        expected = expected_files(m)
        layout = {name: expected[f"{name}.npy"] for name in SMALL_ARRAYS if f"{name}.npy" in expected}
        names, dtypes = list(layout), {name: dtype for name, (_, dtype) in layout.items()}
        files = {}
        try:
            for name, (shape, dtype) in layout.items():
                files[name] = open(folder / f"{name}.npy", "wb")
                files[name].write(_npy_header(dtype, shape))
            base = {"labels_indptr": 0, "frame_offsets": 0}
            for name in base:
                if name in files:
                    np.zeros(1, np.int64).tofile(files[name])
            saved = (arrays for path in self.files for _, arrays in _load_parts(path))
            for arrays in itertools.chain(saved, (arrays for _, arrays in self.pending)):
                for name in names:
                    values = arrays[name]
                    if name in base:  # offsets within the shard -> offsets within the store
                        values, base[name] = values[1:] + base[name], base[name] + int(values[-1])
                    values.astype(dtypes[name]).tofile(files[name])
        finally:
            for handle in files.values():
                handle.close()

    def close(self) -> None:
        self.grow.close()


# -- the conversion ---------------------------------------------------------------------------------

def convert(shards, out, *, workers: int | None = None, skip_corrupt: bool = False, log=print) -> Manifest:
    """Convert shards (a folder, a glob, or a list of paths) into the store `out`; return its manifest.

    `workers`: threads parsing records (default: the number of cores)."""
    from data.reader import detect_format, list_shards

    paths = list_shards(shards) if isinstance(shards, str | Path) else [Path(p) for p in shards]
    paths = _sorted_unique(paths)
    out = Path(out)
    parts_dir = out.with_name(out.name + ".parts")
    _recover(out, parts_dir)
    sources = [scan_shard(p) for p in paths]

    old = _open_old(out, log)
    if old is not None and _up_to_date(old.manifest, sources, skip_corrupt):
        log(f"{out}: up to date ({len(old):,} videos from {len(sources)} shards)")
        shutil.rmtree(parts_dir, ignore_errors=True)  # left if a run was killed right after its rename
        return old.manifest

    started = time.time()
    in_old = _in_old_store(old, sources, skip_corrupt)
    old_format = old and ShardFormat(old.manifest.level, old.manifest.version, old.manifest.has_labels)
    done, done_files = _finished_parts(parts_dir, sources, skip_corrupt)
    formats = [p.format for p in done] + [
        old_format if s.name in in_old else detect_format(p)
        for p, s in zip(paths[len(done):], sources[len(done):], strict=True)]
    _check_one_format(paths, formats)
    parts_dir.mkdir(parents=True, exist_ok=True)
    todo = [(p, s) for p, s in zip(paths[len(done):], sources[len(done):], strict=True) if s.name not in in_old]
    workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=sum(s.bytes for _, s in todo), unit="B", unit_scale=True, desc="converting",
               dynamic_ncols=True, disable=not todo)
    stream = StoreStream(parts_dir, formats[0], done, done_files, bar, len(sources))
    try:
        with bar:
            rest = list(zip(paths[len(done):], sources[len(done):], strict=True))
            while rest:
                run = _leading_run(rest, in_old)
                if run:
                    _convert_run(run, stream, workers, skip_corrupt)
                else:
                    run = [rest[0]]
                    stream.copy_from_store(old, *in_old[rest[0][1].name])
                rest = rest[len(run):]
        manifest = stream.publish(out)
    except BaseException:
        stream.save_pending()  # what is finished is kept for the next run
        raise
    finally:
        stream.close()
    shutil.rmtree(parts_dir, ignore_errors=True)
    skipped = sum(s.skipped for s in manifest.sources)
    log(f"{out}: {manifest.num_videos:,} videos from {len(sources)} shards "
        f"({len(todo)} converted, {len(sources) - len(todo)} reused) in {time.time() - started:.1f} s"
        + (f"; {skipped} bad records skipped" if skipped else ""))
    return manifest


def _leading_run(rest: list, in_old: dict) -> list:
    """The shards at the head of `rest` that must be converted (none if the first is in the old store)."""
    run = []
    for path, source in rest:
        if source.name in in_old:
            break
        run.append((path, source))
    return run


def _convert_run(run: list, stream: StoreStream, workers: int, skip_corrupt: bool) -> None:
    """Convert consecutive shards with tf.data's parallel parsing; a shard where anything goes wrong is
    converted again, alone, by data.reader.read_batches, which names the bad record (or skips it).

    The records of all the shards flow as one stream, in batches that may span two shards: each batch is
    cut where a shard ends, by the shards' record counts (features.convert.scan_shard)."""
    import tensorflow as tf

    from data.reader import ReadReport, read_batches, to_batch

    fmt = stream.format
    first = 0  # the run's first shard not yet appended
    while first < len(run):
        current = first
        stream.begin(run[current][1])
        left = run[current][1].records  # records of the open shard still to come
        try:
            for parsed in _parsed_batches([p for p, _ in run[first:]], fmt, workers):
                batch, bad = to_batch(parsed, 0, fmt)
                if bad is not None:
                    raise _Retry
                while len(batch.ids):
                    while left == 0:  # the open shard is complete
                        stream.end(ReadReport())
                        current += 1
                        stream.begin(run[current][1])
                        left = run[current][1].records
                    head, batch = batch.split(min(left, len(batch.ids)))
                    stream.add(head)
                    left -= len(head.ids)
            if left:
                raise _Retry
            stream.end(ReadReport())
            for _, source in run[current + 1:]:  # shards with no records at all
                stream.begin(source)
                stream.end(ReadReport())
            return
        except (tf.errors.OpError, UnicodeDecodeError, _Retry):
            stream.rewind()
            path = run[current][0]
            report = ReadReport()
            for batch in read_batches(path, fmt, skip_corrupt=skip_corrupt, report=report):
                stream.add(batch)
            for problem in report.problems:
                tqdm.write(f"skipped: {problem}")
            stream.end(report)
            first = current + 1


class _Retry(Exception):
    """The fast path met something it does not diagnose (a label out of range): use the precise reader."""


def _parsed_batches(paths: list[Path], fmt: ShardFormat, workers: int):
    """The records of the shards, in order, as parsed batches; `workers` batches are parsed at a time."""
    import tensorflow as tf

    from data.reader import DEFAULT_BATCH, batch_parser

    records = tf.data.TFRecordDataset([str(p) for p in paths], buffer_size=8 << 20)
    batches = records.batch(DEFAULT_BATCH[fmt.level]).map(batch_parser(fmt), num_parallel_calls=workers)
    yield from batches.prefetch(workers)


def _sorted_unique(paths: list[Path]) -> list[Path]:
    """Shards sorted by file name (the store's order); two shards with one name are refused."""
    paths = sorted(paths, key=lambda p: (p.name, str(p)))
    for a, b in zip(paths, paths[1:], strict=False):
        if a.name == b.name:
            raise InputError(b, f"two shards named {b.name} (also in {a.parent}): names must be unique")
    return paths


def _recover(out: Path, parts_dir: Path) -> None:
    """Undo what a killed run left: restore a store caught mid-rename, drop half-written temporaries."""
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and not out.exists():
        os.replace(old, out)
    shutil.rmtree(old, ignore_errors=True)
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in parts_dir.glob("*.tmp"):
        tmp.unlink()


def _open_old(out: Path, log) -> Store | None:
    """The existing store at `out` if it opens; never replace a folder that is not a store."""
    if not out.exists():
        return None
    if not (out / "manifest.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "exists and is not a feature store: refusing to replace it")
    try:
        return Store(out)
    except InputError as err:
        log(f"{out}: rebuilding an unusable store ({err})")
        return None


def _up_to_date(manifest: Manifest, sources: list[Source], skip_corrupt: bool) -> bool:
    old = manifest.sources
    return (len(old) == len(sources) and all(a.same_file(b) for a, b in zip(old, sources, strict=True))
            and (skip_corrupt or not any(s.skipped for s in old))
            and manifest.max_frames in (None, MAX_FRAMES) and manifest.version is not None)


def _usable(previous: Source, now: Source, skip_corrupt: bool) -> bool:
    """Whether what was converted from `previous` can stand for the shard `now`."""
    return previous.same_file(now) and (skip_corrupt or previous.skipped == 0)


def _in_old_store(old: Store | None, sources: list[Source], skip_corrupt: bool) -> dict[str, tuple]:
    """Shard name -> (start, stop, source): its videos in the old store, for shards unchanged since then."""
    m = old.manifest if old is not None else None
    if not (m and m.version and m.max_frames in (None, MAX_FRAMES)
            and m.num_videos == sum(s.videos or 0 for s in m.sources)):
        return {}
    current = {s.name: s for s in sources}
    found, start = {}, 0
    for source in m.sources:
        stop = start + source.videos
        if source.name in current and _usable(source, current[source.name], skip_corrupt):
            found[source.name] = (start, stop, source)
        start = stop
    return found


def _finished_parts(parts_dir: Path, sources: list[Source], skip_corrupt: bool) -> tuple[list[Part], list[Path]]:
    """The parts a killed run saved for the first shards of this run, in order, with their rows still in
    the .grow files, and their .part files. Every other .part is deleted, so only parts saved after their
    rows remain."""
    done, files = [], []
    rows = {"video": 0, "frames": 0}
    while len(done) < len(sources):
        path = _part_path(parts_dir, sources[len(done)].name)
        group = _read_parts(path)
        if not group:
            break
        good = 0
        for part, source in zip(group, sources[len(done):], strict=False):
            if (not _usable(part.source, source, skip_corrupt)
                    or (part.first_video, part.first_frame) != (rows["video"], rows["frames"])
                    or part.format != group[0].format or (done and part.format != done[0].format)):
                break
            rows = {"video": rows["video"] + part.num_videos, "frames": rows["frames"] + part.num_frames}
            good += 1
        if good < len(group) and good:  # the shards after these changed: keep only these
            _save_parts(path, _load_parts(path)[:good])
        if good:
            done += group[:good]
            files.append(path)
        if good < len(group):
            break
    if done:
        grow = Growing(parts_dir, done[0].level)
        if any(grow.rows_on_disk(name) < rows[name] for name in grow.paths):
            done, files = [], []
    for path in parts_dir.glob("*.part"):
        if path not in files:
            path.unlink()
    return done, files


def _check_one_format(paths: list[Path], formats: list[ShardFormat]) -> None:
    """Refuse a mix of levels, versions, or labelled and unlabelled shards."""
    for path, fmt in zip(paths, formats, strict=True):
        if fmt != formats[0]:
            raise InputError(path, f"is {describe(fmt)} but {paths[0].name} is {describe(formats[0])}: "
                                   "convert one level and version at a time")
