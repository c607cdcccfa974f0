"""The one way a feature store is written: shard by shard into `<store>.parts/`, then published at once.

`<store>.parts/` holds the store's arrays as they grow, one `<name>.grow` file each (the numeric ones keep
room at their start for the .npy header, whose length does not depend on the row count, so publishing writes
the header and renames them: every frame is written once), and `journal.jsonl`: its first line says what
store this is, then one line per finished shard records the size of every file after it. A line is
appended only once the shard's rows are on their way to disk, so a run killed at any moment (kill -9)
leaves a journal whose every complete line vouches for data in the files. The next run keeps the shards it
lists when they are the same files in the same order (`start`), cuts the files after the last of them and
goes on. Publishing builds the store under a temporary name and renames it, so an old store stays until
the new one is complete.
"""

import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from common.errors import InputError
from common.files import atomic_path
from data.formats import FEATURE_SIZE, MAX_FRAMES, NUM_CLASSES
from data.quantization import frame_means
from data.reader import Batch
from features.store import FORMAT, Manifest, Source, Store, labels_dtype

JOURNAL = "journal.jsonl"
IN_FLIGHT = 4  # appends handed to the writer thread and not yet written, at most (bounds their memory)


def parts_folder(out) -> Path:
    """Where the store `out` grows while it is written."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _npy_header(dtype, shape) -> bytes:
    """The .npy (version 1.0) header numpy writes for this dtype and shape."""
    out = io.BytesIO()
    npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                     "shape": tuple(shape)})
    return out.getvalue()


class StoreWriter:
    """Appends videos shard by shard to a growing store, then publishes it as `out` (see the module doc)."""

    def __init__(self, out, *, level: str, num_classes: int, has_labels: bool = True, version: int | None = None):
        self.out, self.parts = Path(out), parts_folder(out)
        self.identity = {"format": FORMAT, "level": level, "version": version, "num_classes": num_classes,
                         "has_labels": has_labels}
        self.columns = {"labels_indptr": (np.dtype(np.int64), ()), "labels_indices": (labels_dtype(num_classes), ()),
                        "video": (np.dtype(np.float32), (FEATURE_SIZE,))}  # name -> (dtype, shape of a row)
        if level == "frame":
            self.columns |= {"frame_offsets": (np.dtype(np.int64), ()), "frames": (np.dtype(np.uint8), (FEATURE_SIZE,))}
        self.sources: list[Source] = []  # finished shards
        self.sizes: dict[str, int] = {}  # bytes of every .grow file, appends in flight included
        self.totals = {"labels": 0, "frames": 0}  # rows appended to labels_indices and frames
        self.files, self.writes, self.thread = {}, [], None

    # -- starting -----------------------------------------------------------------------------------
    def start(self, sources: list[Source] = (), usable=None) -> int:
        """Open the files for appending, keeping the leading shards of `sources` that an interrupted run
        finished (`usable(journaled, now)` decides for each; the files are cut after them); return how many
        were kept. Whatever else is in the parts folder is removed."""
        kept, sizes = [], None
        for entry in self._journal()[1:]:
            if len(kept) == len(sources) or not usable(Source(**entry["source"]), sources[len(kept)]):
                break
            kept.append(entry)
            sizes = entry["sizes"]
        if sizes and all(self._size_on_disk(name) >= size for name, size in sizes.items()):
            self._open(kept, sizes)
        else:
            kept = []
            shutil.rmtree(self.parts, ignore_errors=True)
            self._open([], None)
        return len(kept)

    def _journal(self) -> list[dict]:
        """The journal's complete lines if it belongs to this store ([] otherwise); a cut last line is dropped."""
        try:
            lines = (self.parts / JOURNAL).read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return entries if entries and entries[0] == self.identity else []

    def _size_on_disk(self, name: str) -> int:
        path = self.parts / f"{name}.grow"
        return path.stat().st_size if path.is_file() else -1

    def _open(self, kept: list[dict], sizes: dict | None) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        for path in self.parts.iterdir():
            if path.name != JOURNAL and (sizes is None or path.stem not in sizes):
                path.unlink()
        if sizes is None:  # a new store: the numeric files start with room for their header
            sizes = {"ids": 0}
            for name, (dtype, _) in self.columns.items():
                start = np.zeros(1 if name.endswith(("_indptr", "_offsets")) else 0, dtype).tobytes()
                (self.parts / f"{name}.grow").write_bytes(bytes(self._header_bytes(name)) + start)
                sizes[name] = self._header_bytes(name) + len(start)
            (self.parts / "ids.grow").write_bytes(b"")
        for name, size in sizes.items():
            os.truncate(self.parts / f"{name}.grow", size)
            self.files[name] = open(self.parts / f"{name}.grow", "ab")
        self.sizes = dict(sizes)
        self.sources = [Source(**entry["source"]) for entry in kept]
        self.totals = {"labels": self._rows("labels_indices"), "frames": self._rows("frames")}
        lines = [self.identity] + kept
        with open(self.parts / JOURNAL, "w") as journal:  # rewritten whole: only the kept lines stay
            journal.write("".join(json.dumps(line) + "\n" for line in lines))
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    def _header_bytes(self, name: str) -> int:
        dtype, row = self.columns[name]
        return len(_npy_header(dtype, (0, *row)))

    def _rows(self, name: str) -> int:
        """Rows appended to a numeric file so far (0 for a file this level does not have)."""
        if name not in self.columns:
            return 0
        dtype, row = self.columns[name]
        return (self.sizes[name] - self._header_bytes(name)) // (dtype.itemsize * int(np.prod(row, dtype=int)))

    # -- appending ----------------------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        """Append a batch of videos (frames and frame counts at frame level)."""
        ids = [i.encode("utf-8") for i in batch.ids]
        if any(b"\n" in i for i in ids):
            raise InputError(self.out, "a video id holds a line break")
        counts = np.fromiter(map(len, batch.labels), dtype=np.int64, count=len(batch.labels))
        self._append("ids", b"".join(i + b"\n" for i in ids))
        self._append("labels_indptr", self.totals["labels"] + np.cumsum(counts))
        self._append("labels_indices", np.concatenate(batch.labels) if batch.labels else np.zeros(0))
        self._append("video", batch.video)
        self.totals["labels"] += int(counts.sum())
        if "frames" in self.columns:
            self._append("frame_offsets", self.totals["frames"] + np.cumsum(batch.num_frames))
            self._append("frames", batch.frames)
            self.totals["frames"] += len(batch.frames)

    def _append(self, name: str, data) -> None:
        if name != "ids":  # handed over as a flat view of bytes: no copy unless the dtype changes
            data = np.ascontiguousarray(data, dtype=self.columns[name][0]).reshape(-1).view(np.uint8)
        if len(self.writes) >= IN_FLIGHT:
            self.writes.pop(0).result()
        self.writes.append(self.thread.submit(self.files[name].write, data))
        self.sizes[name] += len(data)

    def _flush(self) -> None:
        """Wait for the writes in flight (raising a failed one's error) and hand them to the OS."""
        while self.writes:
            self.writes.pop(0).result()
        for handle in self.files.values():
            handle.flush()

    def end_shard(self, source: Source | None) -> None:
        """The shard's videos are all added: journal it (after its rows), so a later run can keep it."""
        self._flush()
        if source is not None:
            self.sources.append(source)
        entry = {"source": asdict(source) if source else None, "sizes": self.sizes}
        with open(self.parts / JOURNAL, "a") as journal:
            journal.write(json.dumps(entry) + "\n")

    # -- finishing ----------------------------------------------------------------------------------
    def publish(self) -> Manifest:
        """Turn the parts into the store `out` (atomically) and remove the parts folder."""
        self._flush()
        self._close_files()
        ids = (self.parts / "ids.grow").read_bytes().split(b"\n")[:-1]
        width = max([len(i) for i in ids] + [1])
        level = self.identity["level"]
        manifest = Manifest(
            level=level, version=self.identity["version"], num_videos=len(ids), num_labels=self.totals["labels"],
            num_frames=self.totals["frames"] if level == "frame" else None,
            max_frames=MAX_FRAMES if level == "frame" else None, id_width=width,
            num_classes=self.identity["num_classes"], has_labels=self.identity["has_labels"],
            sources=self.sources)
        rows = {"labels_indptr": len(ids) + 1, "labels_indices": manifest.num_labels, "video": len(ids),
                "frame_offsets": len(ids) + 1, "frames": manifest.num_frames}
        with atomic_path(self.out) as tmp:
            tmp.mkdir()
            np.save(tmp / "ids.npy", np.array(ids, dtype=f"S{width}"))
            for name, (dtype, row) in self.columns.items():
                grow = self.parts / f"{name}.grow"
                with open(grow, "r+b") as f:
                    f.write(_npy_header(dtype, (rows[name], *row)))
                os.replace(grow, tmp / f"{name}.npy")
            manifest.save(tmp)
            Store(tmp)  # refuse to publish a store that does not open
        shutil.rmtree(self.parts, ignore_errors=True)
        return manifest

    def close(self) -> None:
        """After a failure: stop writing; the parts stay for the next run if a shard was finished."""
        try:
            self._flush()
        except OSError:
            pass
        self._close_files()
        if not self.sources and self.parts.is_dir():
            shutil.rmtree(self.parts, ignore_errors=True)

    def _close_files(self) -> None:
        if self.thread is not None:
            self.thread.shutdown(wait=True)
        for handle in self.files.values():
            handle.close()
        self.files, self.writes = {}, []


def create_store(path, ids, labels, video, *, frames=None, num_frames=None, num_classes: int,
                 has_labels: bool = True, source: Source | None = None) -> Store:
    """Write a store from in-memory arrays with the StoreWriter (as one shard) and open it.

    labels: one int array per video (ignored when has_labels is False). Frame level: frames (F, 1152)
    uint8 end to end and num_frames (N,); video may then be None to use the mean of the frames.
    """
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in np.asarray(ids).tolist()]
    if not has_labels:
        labels = [()] * len(ids)
    rows = [np.asarray(x, dtype=np.int64).reshape(-1) for x in labels]
    if any(len(r) and (r.min() < 0 or r.max() >= num_classes) for r in rows):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if frames is not None:
        frames = np.asarray(frames, dtype=np.uint8).reshape(-1, FEATURE_SIZE)
        num_frames = np.asarray(num_frames, dtype=np.int64)
        if num_frames.sum() != len(frames) or (num_frames > MAX_FRAMES).any():
            raise ValueError(f"num_frames must sum to len(frames) with at most {MAX_FRAMES} per video")
        if video is None:
            video = frame_means(frames, num_frames)
    video = np.asarray(video, dtype=np.float32).reshape(len(ids), FEATURE_SIZE)
    writer = StoreWriter(path, level="video" if frames is None else "frame", num_classes=num_classes,
                         has_labels=has_labels, version={c: v for v, c in NUM_CLASSES.items()}.get(num_classes))
    writer.start()
    try:
        writer.add(Batch(0, ids, rows, video, frames, num_frames))
        writer.end_shard(source)
        writer.publish()
    finally:
        writer.close()
    return Store(path)
