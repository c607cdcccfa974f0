"""Feature stores: a folder of .npy files (opened as memmaps) plus manifest.json describing them.

Layout (see DESIGN.md): ids.npy (N,) fixed-width bytes; labels_indptr.npy (N+1,) int64 and
labels_indices.npy (nnz,) int16/int32 (CSR); video.npy (N, 1152) float32; frame level adds
frames.npy (F, 1152) uint8 (all kept frames end to end) and frame_offsets.npy (N+1,) int64.
"""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from common.errors import InputError
from common.files import atomic_path, write_json_atomic
from data.formats import AUDIO_SIZE, FEATURE_SIZE, MAX_FRAMES, NUM_CLASSES, RGB_SIZE
from data.quantization import frame_means

FORMAT = 1  # bump when the files change meaning, so old stores are rebuilt rather than misread
MANIFEST = "manifest.json"
FEATURES = {"rgb": RGB_SIZE, "audio": AUDIO_SIZE}


@dataclass
class Source:
    """One converted shard: enough to tell later whether it changed (size, records, fingerprint)."""

    name: str
    bytes: int
    records: int  # records framed in the file
    videos: int | None = None  # videos the store holds from it (None: not recorded)
    skipped: int = 0  # bad records left out (--skip-corrupt)
    fingerprint: str = ""  # hash of every record's length and CRC (see features.convert.scan_shard)

    def same_file(self, other: "Source") -> bool:
        return (self.name, self.bytes, self.records, self.fingerprint) == (
            other.name, other.bytes, other.records, other.fingerprint)


@dataclass(kw_only=True)
class Manifest:
    """manifest.json: what the store holds. Nothing in it depends on paths, times or worker counts."""

    format: int = FORMAT
    level: str  # "video" or "frame"
    version: int | None = None  # 2017 or 2018 (shard format); None when unknown
    num_videos: int
    num_labels: int = 0  # total label entries (length of labels_indices)
    num_frames: int | None = None  # frame level: rows of frames.npy
    max_frames: int | None = None  # frame level: frames kept per video at most
    id_width: int = 1  # bytes per id in ids.npy
    features: dict[str, int] = field(default_factory=lambda: dict(FEATURES))
    num_classes: int
    has_labels: bool = True
    sources: list[Source] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        data = dict(data, sources=[Source(**s) for s in data.get("sources", [])])
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder) -> None:
        write_json_atomic(Path(folder) / MANIFEST, self.to_dict())


def labels_dtype(num_classes: int) -> np.dtype:
    """int16 when every class id fits, else int32."""
    return np.dtype(np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32)


def expected_files(m: Manifest) -> dict[str, tuple[tuple, np.dtype]]:
    """File name -> (shape, dtype) that a store with manifest `m` must have."""
    n = m.num_videos
    files = {
        "ids.npy": ((n,), np.dtype(f"S{m.id_width}")),
        "labels_indptr.npy": ((n + 1,), np.dtype(np.int64)),
        "labels_indices.npy": ((m.num_labels,), labels_dtype(m.num_classes)),
        "video.npy": ((n, FEATURE_SIZE), np.dtype(np.float32)),
    }
    if m.level == "frame":
        files["frames.npy"] = ((m.num_frames, FEATURE_SIZE), np.dtype(np.uint8))
        files["frame_offsets.npy"] = ((n + 1,), np.dtype(np.int64))
    return files


def npy_layout(path) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, byte offset of the data) from a .npy header, without touching the data."""
    with open(path, "rb") as f:
        version = npy.read_magic(f)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(f)
        return shape, dtype, f.tell()


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), built without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    shift = np.asarray(starts, dtype=np.int64) - (np.cumsum(counts) - counts)
    return np.arange(total, dtype=np.int64) + np.repeat(shift, counts)


class Store:
    """A store opened read-only: arrays are memmaps, so opening costs nothing however large it is."""

    def __init__(self, path):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self._arrays = {}
        for name, (shape, dtype) in expected_files(self.manifest).items():
            self._arrays[name] = _open_npy(self.path / name, shape, dtype)
        self._check_offsets("labels_indptr.npy", self.manifest.num_labels)
        if self.level == "frame":
            self._check_offsets("frame_offsets.npy", self.manifest.num_frames)
        if self.manifest.num_labels:
            indices = self.labels_indices
            if indices.min() < 0 or indices.max() >= self.num_classes:
                raise InputError(self.path / "labels_indices.npy",
                                 f"label ids outside [0, {self.num_classes})")

    def _check_offsets(self, name: str, total: int) -> None:
        offsets = self._arrays[name]
        if offsets[0] != 0 or offsets[-1] != total or (np.diff(offsets) < 0).any():
            raise InputError(self.path / name, f"offsets must rise from 0 to {total} (manifest)")

    # -- what the store is ------------------------------------------------------------------------
    @property
    def level(self) -> str:
        return self.manifest.level

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def has_labels(self) -> bool:
        return self.manifest.has_labels

    def __len__(self) -> int:
        return self.manifest.num_videos

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, level={self.level!r}, videos={len(self)})"

    def __reduce__(self):  # pickled by path (for worker processes), never by copying the memmaps
        return Store, (str(self.path),)

    # -- ids and labels ---------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        return self._arrays["ids.npy"]

    def id_strings(self, indices=None) -> list[str]:
        ids = self.ids if indices is None else self.ids[np.asarray(indices, dtype=np.int64)]
        return [i.decode("utf-8") for i in ids.tolist()]

    @property
    def labels_indptr(self) -> np.ndarray:
        return self._arrays["labels_indptr.npy"]

    @property
    def labels_indices(self) -> np.ndarray:
        return self._arrays["labels_indices.npy"]

    def labels(self, i: int) -> np.ndarray:
        """The labels of video i (int64, in the order the shard listed them)."""
        start, stop = self.labels_indptr[i], self.labels_indptr[i + 1]
        return np.asarray(self.labels_indices[start:stop], dtype=np.int64)

    def dense_labels(self, indices) -> np.ndarray:
        """0/1 float32 (B, num_classes) for the videos `indices`."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(idx), self.num_classes), dtype=np.float32)
        starts = self.labels_indptr[idx]
        counts = self.labels_indptr[idx + 1] - starts
        if counts.sum():
            rows = np.repeat(np.arange(len(idx)), counts)
            out[rows, self.labels_indices[ranges(starts, counts)]] = 1.0
        return out

    # -- features ---------------------------------------------------------------------------------
    def video(self, indices) -> np.ndarray:
        """Video-level features float32 (B, 1152): rgb then audio (frame level: mean of the frames)."""
        return np.asarray(self._arrays["video.npy"][np.asarray(indices, dtype=np.int64)])

    @property
    def frame_offsets(self) -> np.ndarray:
        self._need_frames()
        return self._arrays["frame_offsets.npy"]

    @cached_property
    def num_frames(self) -> np.ndarray:
        """Frames kept per video, int64 (N,) (computed once, in memory: 8 bytes per video)."""
        return np.diff(self.frame_offsets)

    def frames(self, indices, max_frames: int = MAX_FRAMES, sample: str | None = None,
               num_samples: int | None = None, rng: np.random.Generator | None = None):
        """A padded batch: (uint8 (B, T, 1152), int32 lengths (B,)); rows past a video's length are 0.

        sample=None: the first `max_frames` frames, T = max_frames.
        sample="random": `num_samples` frame positions per video (T = num_samples, default max_frames),
        drawn without replacement and sorted; a video with fewer frames is drawn with replacement.
        sample="even": `num_samples` evenly spaced positions (centres of equal segments; repeats only
        when the video is shorter than T). Sampling picks among the first `max_frames` frames.
        """
        self._need_frames()
        if sample not in (None, "random", "even"):
            raise ValueError(f"sample must be None, 'random' or 'even', not {sample!r}")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        offsets, data = self._arrays["frame_offsets.npy"], self._arrays["frames.npy"]
        starts = offsets[idx]
        counts = np.minimum(offsets[idx + 1] - starts, max_frames)
        if sample is None:
            out = np.zeros((len(idx), max_frames, FEATURE_SIZE), dtype=np.uint8)
            for b, (start, count) in enumerate(zip(starts, counts, strict=True)):
                out[b, :count] = data[start:start + count]
            return out, counts.astype(np.int32)
        steps = num_samples or max_frames
        rng = rng if rng is not None else np.random.default_rng()
        positions = np.zeros((len(idx), steps), dtype=np.int64)
        for b, count in enumerate(counts):
            if count == 0:
                continue
            if sample == "random":
                picked = np.sort(rng.choice(count, size=steps, replace=count < steps))
            else:
                picked = (2 * np.arange(steps) + 1) * count // (2 * steps)
            positions[b] = starts[b] + picked
        lengths = np.where(counts > 0, steps, 0).astype(np.int32)
        keep = np.arange(steps) < lengths[:, None]
        out = np.zeros((len(idx), steps, FEATURE_SIZE), dtype=np.uint8)
        out[keep] = data[positions[keep]]
        return out, lengths

    def _need_frames(self) -> None:
        if self.level != "frame":
            raise ValueError(f"{self.path} is a video-level store: it has no frames")


def _read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(folder, "no such store folder")
    if not path.is_file():
        raise InputError(folder, "not a feature store (no manifest.json)")
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise InputError(path, f"not a valid store manifest ({err})") from None
    if manifest.format != FORMAT:
        raise InputError(path, f"store format {manifest.format}, this code reads {FORMAT}: convert again")
    if manifest.level not in ("video", "frame"):
        raise InputError(path, f"unknown level {manifest.level!r}")
    return manifest


def _open_npy(path: Path, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Memmap one .npy, refusing it unless shape, dtype and file size are what the manifest says."""
    if not path.is_file():
        raise InputError(path, "missing (the store is incomplete)")
    try:
        array = np.load(path, mmap_mode="r")
    except Exception as err:
        raise InputError(path, f"not a readable .npy file, truncated? ({err})") from None
    if array.shape != shape or array.dtype != dtype:
        raise InputError(path, f"holds {array.dtype} {array.shape}, manifest says {dtype} {shape}")
    if isinstance(array, np.memmap) and os.path.getsize(path) != array.offset + array.nbytes:
        raise InputError(path, "file size does not match its header (truncated or padded)")
    return array


class StoreWriter:
    """Fills a new store folder in order, chunk by chunk, with sizes known up front.

    Files are created with open_memmap (header and size) and then written with plain file writes,
    so writing a 100 GB store does not grow this process's memory.
    """

    def __init__(self, folder, manifest: Manifest):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest = manifest
        self._files, self._dtypes = {}, {}
        for name, (shape, dtype) in expected_files(manifest).items():
            array = npy.open_memmap(self.folder / name, mode="w+", dtype=dtype, shape=shape)
            offset = array.offset if isinstance(array, np.memmap) else os.path.getsize(self.folder / name)
            del array
            handle = open(self.folder / name, "r+b")  # closed by finish() or close()
            handle.seek(offset)
            self._files[name], self._dtypes[name] = handle, dtype
        self.videos = self.labels = self.frames = 0
        self.frames_promised = 0  # frames owned by the videos appended so far (frame_offsets written)
        self._put("labels_indptr.npy", np.zeros(1, np.int64))
        if manifest.level == "frame":
            self._put("frame_offsets.npy", np.zeros(1, np.int64))

    def _put(self, name: str, values) -> None:
        np.ascontiguousarray(values, dtype=self._dtypes[name]).tofile(self._files[name])

    def append_videos(self, ids, label_counts, label_indices, video, num_frames=None) -> None:
        """Append videos: ids (bytes or str), labels as counts + concatenated ids, video (n, 1152)."""
        ids = [i.encode("utf-8") if isinstance(i, str) else i for i in np.asarray(ids).tolist()]
        self._put("ids.npy", np.array(ids, dtype=self._dtypes["ids.npy"]))
        label_counts = np.asarray(label_counts, dtype=np.int64)
        self._put("labels_indptr.npy", self.labels + np.cumsum(label_counts))
        self._put("labels_indices.npy", label_indices)
        self._put("video.npy", np.asarray(video).reshape(-1, FEATURE_SIZE))
        self.videos += len(ids)
        self.labels += int(label_counts.sum())
        if self.manifest.level == "frame":
            num_frames = np.asarray(num_frames, dtype=np.int64)
            self._put("frame_offsets.npy", self.frames_promised + np.cumsum(num_frames))
            self.frames_promised += int(num_frames.sum())

    def append_frames(self, rows) -> None:
        """Append frame rows uint8 (f, 1152), in the same video order as append_videos."""
        rows = np.asarray(rows).reshape(-1, FEATURE_SIZE)
        self._put("frames.npy", rows)
        self.frames += len(rows)

    def finish(self) -> None:
        """Check every file got exactly what the manifest promised, close them, write manifest.json."""
        m = self.manifest
        for handle in self._files.values():
            handle.close()
        got = (self.videos, self.labels, self.frames if m.level == "frame" else None)
        want = (m.num_videos, m.num_labels, m.num_frames)
        if got != want or (m.level == "frame" and self.frames_promised != m.num_frames):
            raise RuntimeError(f"store writer got (videos, labels, frames) {got}, manifest says {want}")
        m.save(self.folder)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def id_width(ids) -> int:
    """Bytes needed for the longest id (at least 1)."""
    return max([len(i.encode("utf-8") if isinstance(i, str) else i) for i in ids] + [1])


def create_store(path, ids, labels, video, *, frames=None, num_frames=None, num_classes: int,
                 has_labels: bool = True, sources=()) -> Store:
    """Write a complete store from in-memory arrays (atomically) and open it.

    labels: one int array per video (ignored when has_labels is False). Frame level: frames (F, 1152)
    uint8 end to end and num_frames (N,); video may then be None to use the mean of the frames.
    """
    ids = list(np.asarray(ids).tolist())
    n = len(ids)
    rows = [np.asarray(x, dtype=np.int64).reshape(-1) for x in labels] if has_labels else [[]] * n
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    indices = np.concatenate(rows) if n else np.zeros(0, np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if frames is not None:
        frames = np.asarray(frames, dtype=np.uint8).reshape(-1, FEATURE_SIZE)
        num_frames = np.asarray(num_frames, dtype=np.int64)
        if num_frames.sum() != len(frames) or (num_frames > MAX_FRAMES).any():
            raise ValueError(f"num_frames must sum to len(frames) with at most {MAX_FRAMES} per video")
        if video is None:
            video = frame_means(frames, num_frames)
    video = np.asarray(video, dtype=np.float32).reshape(n, FEATURE_SIZE)
    manifest = Manifest(
        level="video" if frames is None else "frame",
        version={c: v for v, c in NUM_CLASSES.items()}.get(num_classes),
        num_videos=n,
        num_labels=int(counts.sum()),
        num_frames=None if frames is None else len(frames),
        max_frames=None if frames is None else MAX_FRAMES,
        id_width=id_width(ids),
        num_classes=num_classes,
        has_labels=has_labels,
        sources=[s if isinstance(s, Source) else Source(**s) for s in sources],
    )
    with atomic_path(path) as tmp:
        writer = StoreWriter(tmp, manifest)
        try:
            writer.append_videos(ids, counts, indices, video, num_frames)
            if frames is not None:
                writer.append_frames(frames)
            writer.finish()
        finally:
            writer.close()
    return Store(path)
