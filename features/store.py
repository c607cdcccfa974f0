"""Feature stores: a folder of .npy files (opened as memmaps) plus manifest.json describing them.

Layout (docs/features.md): ids.npy (N,) fixed-width bytes; labels_indptr.npy (N+1,) int64 and
labels_indices.npy (nnz,) int16/int32 (CSR); video.npy (N, 1152) float32; frame level adds
frames.npy (F, 1152) uint8 (all kept frames end to end) and frame_offsets.npy (N+1,) int64.
"""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.files import write_json_atomic
from data.formats import AUDIO_SIZE, FEATURE_SIZE, MAX_FRAMES, RGB_SIZE

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
    skipped: int = 0  # bad records left out (--skip-corrupt); an unreadable shard counts as one
    fingerprint: str = ""  # hash of every record's length and CRC (data.stream.scan_shard)

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
