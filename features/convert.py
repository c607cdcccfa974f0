"""Shards -> feature store: each shard into a part (in parallel worker threads), then all parts copied in order.

The store is byte for byte the same for any worker count or listing order: shards are sorted by name
and each part depends only on its own shard. A run killed at any moment loses at most the shards in
flight: finished parts stay in `<store>.parts/` until the store is complete, and the store itself is
built under a temporary name and renamed at the end, so the old store stays until then. A re-run
takes unchanged shards (same name, size, record count and fingerprint) from the old store or from
finished parts and converts only the rest.
"""

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import InputError
from common.files import atomic_path
from data.formats import FEATURE_SIZE, MAX_FRAMES, ShardFormat
from features.store import Manifest, Source, Store, StoreWriter, labels_dtype, npy_layout

VIDEO_CHUNK = 4096  # videos copied per step when assembling the store
FRAME_CHUNK = 1 << 15  # frame rows (36 MB) copied per step


@dataclass
class Part:
    """What a converted shard's part holds (saved at the start of its .part file)."""

    source: Source
    level: str
    version: int
    has_labels: bool
    num_videos: int
    num_labels: int  # length of its labels_indices
    num_frames: int  # frame rows in its .frames file (0 at video level)
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


def convert_shard(path, parts_dir, source: Source, fmt: ShardFormat, skip_corrupt: bool = False) -> Part:
    """Convert one shard into parts_dir/<name>.part plus <name>.frames (streamed to disk batch by batch).

    The .part is renamed into place last, so its presence means the part is complete."""
    from data.reader import ReadReport, read_batches

    part_path, raw_path = part_paths(parts_dir, source.name)
    part_path.unlink(missing_ok=True)  # an older part must never be paired with the frames written below
    report = ReadReport()
    ids, labels, videos, num_frames = [], [], [], []
    with open(f"{raw_path}.tmp", "wb") if fmt.level == "frame" else nullcontext() as raw:
        for batch in read_batches(path, fmt, skip_corrupt=skip_corrupt, report=report):
            ids += batch.ids
            labels += batch.labels
            videos.append(batch.video)
            if raw is not None:
                num_frames.append(batch.num_frames)
                batch.frames.tofile(raw)
    if raw is not None:
        os.replace(f"{raw_path}.tmp", raw_path)
    encoded = [i.encode("utf-8") for i in ids]
    counts = np.fromiter(map(len, labels), dtype=np.int64, count=len(labels))
    arrays = {
        "ids": np.array(encoded, dtype=f"S{max([len(i) for i in encoded] + [1])}"),
        "labels_indptr": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "labels_indices": (np.concatenate(labels) if labels else np.zeros(0)).astype(labels_dtype(fmt.num_classes)),
        "video": np.concatenate(videos) if videos else np.zeros((0, FEATURE_SIZE), np.float32),
    }
    if raw is not None:
        lengths = np.concatenate(num_frames) if num_frames else np.zeros(0, np.int64)
        arrays["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    source = Source(source.name, source.bytes, source.records, videos=len(ids), skipped=report.skipped,
                    fingerprint=source.fingerprint)
    part = Part(source, fmt.level, fmt.version, fmt.has_labels, len(ids), len(arrays["labels_indices"]),
                int(arrays["frame_offsets"][-1]) if raw is not None else 0, _id_width(arrays["ids"]),
                report.problems)
    with open(f"{part_path}.tmp", "wb") as f:
        _save_part(f, part, arrays)
    os.replace(f"{part_path}.tmp", part_path)
    return part


def _id_width(ids: np.ndarray) -> int:
    """Bytes of the longest of these fixed-width ids (at least 1)."""
    return max(int(np.char.str_len(ids).max()) if len(ids) else 1, 1)


PART_ARRAYS = ("ids", "labels_indptr", "frame_offsets", "labels_indices", "video")  # their order in a .part


def _save_part(f, part: Part, arrays: dict[str, np.ndarray]) -> None:
    """A .part file: the header's length (8 bytes), the header (JSON: the Part, each array's dtype and
    shape), then the arrays' bytes one after another; read back with one read and no parsing per array."""
    names = [n for n in PART_ARRAYS if n in arrays]
    layout = {n: [arrays[n].dtype.str, list(arrays[n].shape)] for n in names}
    header = json.dumps({"part": asdict(part), "arrays": layout}).encode()
    f.write(len(header).to_bytes(8, "little") + header)
    for name in names:
        f.write(np.ascontiguousarray(arrays[name]).data)


def part_paths(parts_dir, name: str) -> tuple[Path, Path]:
    """The two files of a shard's part: its arrays saved one after another (.part), its frames (.frames)."""
    return Path(parts_dir) / f"{name}.part", Path(parts_dir) / f"{name}.frames"


def _load_part(path: Path, arrays: bool = True) -> tuple[Part, dict[str, np.ndarray]]:
    """The Part of a .part file and (when `arrays`) its arrays, all of them."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        data = header["part"]
        part = Part(**dict(data, source=Source(**data["source"])))
        if not arrays:
            return part, {}
        buffer, out, at = f.read(), {}, 0
    for name, (dtype, shape) in header["arrays"].items():
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        out[name] = np.frombuffer(buffer, dtype, count, at).reshape(shape)
        at += count * dtype.itemsize
    if at != len(buffer):
        raise ValueError(f"{path}: {len(buffer)} bytes of arrays where the header says {at}")
    return part, out


def read_part(parts_dir: Path, name: str) -> Part | None:
    """The Part of a finished part file, or None if there is none (or it is unreadable)."""
    try:
        return _load_part(part_paths(parts_dir, name)[0], arrays=False)[0]
    except (OSError, ValueError, TypeError, KeyError):
        return None


class Segment:
    """Videos [start, stop) of one shard, as held by an old store or a part, to copy into the new store."""

    def __init__(self, start: int, stop: int, fmt: ShardFormat, source: Source):
        self.start, self.stop, self.format, self.source = start, stop, fmt, source
        indptr = self.read("labels_indptr", start, stop + 1)
        self.labels = int(indptr[0]), int(indptr[-1])
        self.frames = (0, 0)
        if fmt.level == "frame":
            offsets = self.read("frame_offsets", start, stop + 1)
            self.frames = int(offsets[0]), int(offsets[-1])
        self.id_width = _id_width(self.read("ids", start, stop))

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of one array (ids, labels_indptr, labels_indices, video, frame_offsets)."""
        raise NotImplementedError

    def frames_file(self) -> tuple[Path, int]:
        """The file holding this shard's frame rows end to end, and the byte offset of frame row 0."""
        raise NotImplementedError

    def copy_into(self, writer: StoreWriter, progress) -> None:
        """Append this segment's videos, then its frames, to `writer` in bounded chunks."""
        for a in range(self.start, self.stop, VIDEO_CHUNK):
            b = min(a + VIDEO_CHUNK, self.stop)
            indptr = self.read("labels_indptr", a, b + 1)
            frames = None
            if self.format.level == "frame":
                frames = np.diff(self.read("frame_offsets", a, b + 1))
            writer.append_videos(self.read("ids", a, b), np.diff(indptr),
                                 self.read("labels_indices", int(indptr[0]), int(indptr[-1])),
                                 self.read("video", a, b), frames)
            progress.update((b - a) * FEATURE_SIZE * 4)
        path, offset = self.frames_file() if self.frames[1] > self.frames[0] else (None, 0)
        for a in range(self.frames[0], self.frames[1], FRAME_CHUNK):
            b = min(a + FRAME_CHUNK, self.frames[1])
            writer.append_frames_from(path, offset + a * FEATURE_SIZE, b - a)
            progress.update((b - a) * FEATURE_SIZE)


def _read_rows(path: Path, dtype: np.dtype, row_shape: tuple, offset: int, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of an array stored row after row from byte `offset` of `path` (a plain read)."""
    row = int(np.prod(row_shape, dtype=np.int64))
    count = (stop - start) * row
    data = np.fromfile(path, dtype=dtype, count=count, offset=offset + start * row * dtype.itemsize)
    if len(data) != count:
        raise InputError(path, f"truncated: rows {start}..{stop} missing")
    return data.reshape((stop - start, *row_shape))


class StoreSegment(Segment):
    """A shard's videos inside an existing store, read with plain file reads (no memmap, bounded memory)."""

    def __init__(self, folder, start: int, stop: int, fmt: ShardFormat, source: Source):
        self.folder = Path(folder)
        self._layouts = {}
        super().__init__(start, stop, fmt, source)

    def _layout(self, file: str):
        if file not in self._layouts:
            self._layouts[file] = npy_layout(self.folder / file)
        return self._layouts[file]

    def read(self, name, start, stop):
        shape, dtype, offset = self._layout(f"{name}.npy")
        return _read_rows(self.folder / f"{name}.npy", dtype, shape[1:], offset, start, stop)

    def frames_file(self):
        return self.folder / "frames.npy", self._layout("frames.npy")[2]


class PartSegment(Segment):
    """A converted shard's part: arrays from its .part file (one shard's worth), frames from its .frames."""

    def __init__(self, parts_dir, part: Part):  # what Segment.__init__ reads, the Part already says
        self.part_path, self.frames_path = part_paths(parts_dir, part.source.name)
        self._arrays = None
        self.start, self.stop, self.format, self.source = 0, part.num_videos, part.format, part.source
        self.labels, self.frames, self.id_width = (0, part.num_labels), (0, part.num_frames), part.id_width

    def read(self, name, start, stop):
        if self._arrays is None or name not in self._arrays:
            self._arrays = _load_part(self.part_path)[1]
        return self._arrays[name][start:stop]

    def frames_file(self):
        return self.frames_path, 0

    def copy_into(self, writer, progress):
        try:
            super().copy_into(writer, progress)
        finally:
            self._arrays = None  # hold one part's arrays at a time


# -- the conversion ---------------------------------------------------------------------------------

def convert(shards, out, *, workers: int | None = None, skip_corrupt: bool = False, log=print) -> Manifest:
    """Convert shards (a folder, a glob, or a list of paths) into the store `out`; return its manifest."""
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

    segments = _reusable(old, parts_dir, sources, skip_corrupt)
    todo = [(p, s) for p, s in zip(paths, sources, strict=True) if s.name not in segments]
    started = time.time()
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    with _workers(workers) as (map_all, map_unordered):
        formats = map_all(detect_format, [p for p, _ in todo])
        format_of = {name: seg.format for name, seg in segments.items()}
        format_of.update((s.name, f) for (_, s), f in zip(todo, formats, strict=True))
        _check_one_format(paths, [format_of[s.name] for s in sources])
        if todo:
            parts_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(p, parts_dir, s, format_of[s.name], skip_corrupt) for p, s in todo]
        for part in _convert_parts(jobs, map_unordered):
            segments[part.source.name] = PartSegment(parts_dir, part)
    ordered = [segments[s.name] for s in sources]
    manifest = _assemble(out, ordered)
    shutil.rmtree(parts_dir, ignore_errors=True)
    skipped = sum(s.skipped for s in manifest.sources)
    log(f"{out}: {manifest.num_videos:,} videos from {len(sources)} shards "
        f"({len(todo)} converted, {len(sources) - len(todo)} reused) in {time.time() - started:.1f} s"
        + (f"; {skipped} bad records skipped" if skipped else ""))
    return manifest


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


def _reusable(old: Store | None, parts_dir: Path, sources: list[Source], skip_corrupt: bool) -> dict:
    """Shard name -> Segment for shards unchanged since the old store or a finished part."""
    current = {s.name: s for s in sources}
    found = {}

    def usable(previous: Source) -> bool:
        now = current.get(previous.name)
        return now is not None and previous.same_file(now) and (skip_corrupt or previous.skipped == 0)

    m = old.manifest if old is not None else None
    if m and m.version and m.max_frames in (None, MAX_FRAMES) and m.num_videos == sum(
            s.videos or 0 for s in m.sources):
        fmt = ShardFormat(m.level, m.version, m.has_labels)
        start = 0
        for source in m.sources:
            stop = start + source.videos
            if usable(source):
                found[source.name] = StoreSegment(old.path, start, stop, fmt, source)
            start = stop
    for name in sorted(set(current) - set(found)):
        part = read_part(parts_dir, name)
        if part is not None and usable(part.source):
            found[name] = PartSegment(parts_dir, part)
    return found


def _check_one_format(paths: list[Path], formats: list[ShardFormat]) -> None:
    """Refuse a mix of levels, versions, or labelled and unlabelled shards."""
    for path, fmt in zip(paths, formats, strict=True):
        if fmt != formats[0]:
            raise InputError(path, f"is {describe(fmt)} but {paths[0].name} is {describe(formats[0])}: "
                                   "convert one level and version at a time")


def _convert_job(job: tuple) -> Part:
    return convert_shard(*job)


@contextlib.contextmanager
def _workers(count: int):
    """(map, map_unordered) over `count` threads, or in this thread when count is 1.

    Threads rather than processes: TensorFlow's record reading and parsing, numpy's sums and file writes
    release the GIL, and a thread starts at once where a process would first import TensorFlow."""
    if count <= 1:
        yield (lambda f, xs: list(map(f, xs))), map
        return
    pool = ThreadPoolExecutor(count, thread_name_prefix="convert")
    try:
        yield (lambda f, xs: list(pool.map(f, xs))), (
            lambda f, xs: (job.result() for job in as_completed([pool.submit(f, x) for x in xs])))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: finish the shards in flight, start no more


def _convert_parts(jobs: list, map_unordered):
    """Run the convert_shard jobs, yielding each Part as it finishes, with a progress bar."""
    if not jobs:
        return
    bar = tqdm(total=sum(job[2].bytes for job in jobs), unit="B", unit_scale=True, desc="converting",
               dynamic_ncols=True)
    videos = 0
    with bar:
        for done, result in enumerate(map_unordered(_convert_job, jobs), 1):
            part = result
            videos += part.num_videos
            bar.set_postfix_str(f"{done}/{len(jobs)} shards, {videos:,} videos", refresh=False)
            bar.update(part.source.bytes)
            for problem in part.problems:
                tqdm.write(f"skipped: {problem}")
            yield part


def _assemble(out: Path, segments: list[Segment]) -> Manifest:
    """Concatenate the segments, in order, into a new store at `out` (atomically)."""
    first = segments[0].format
    frame = first.level == "frame"
    manifest = Manifest(
        level=first.level,
        version=first.version,
        num_videos=sum(len(s) for s in segments),
        num_labels=sum(s.labels[1] - s.labels[0] for s in segments),
        num_frames=sum(s.frames[1] - s.frames[0] for s in segments) if frame else None,
        max_frames=MAX_FRAMES if frame else None,
        id_width=max(s.id_width for s in segments),
        num_classes=first.num_classes,
        has_labels=first.has_labels,
        sources=[s.source for s in segments],
    )
    total = manifest.num_videos * FEATURE_SIZE * 4 + (manifest.num_frames or 0) * FEATURE_SIZE
    with atomic_path(out) as tmp:
        writer = StoreWriter(tmp, manifest)
        try:
            with tqdm(total=total, unit="B", unit_scale=True, desc="writing store") as bar:
                for segment in segments:
                    segment.copy_into(writer, bar)
            writer.finish()
        finally:
            writer.close()
        Store(tmp)  # refuse to publish a store that does not open
    return manifest
