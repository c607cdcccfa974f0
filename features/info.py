"""`python -m features info`: what a store holds, in a few lines a person can read."""

import csv
from pathlib import Path

import numpy as np

from common.errors import InputError
from features.store import Store

TOP_LABELS = 10


def read_vocabulary(path) -> dict[int, str]:
    """Label id -> name from a YouTube-8M vocabulary.csv (columns Index and Name)."""
    path = Path(path)
    names = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"Index", "Name"} <= set(reader.fieldnames):
            raise InputError(path, "a vocabulary needs the columns Index and Name", line=1)
        for line, row in enumerate(reader, 2):
            try:
                names[int(row["Index"])] = row["Name"]
            except ValueError:
                raise InputError(path, f"Index {row['Index']!r} is not an integer", line=line) from None
    return names


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def describe_store(path, vocabulary=None) -> str:
    """Counts, bytes per file, labels per video, frames per video and the most frequent labels."""
    store = Store(path)
    m = store.manifest
    n = len(store)
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    sizes = ", ".join(f"{p.name} {_size(p.stat().st_size)}" for p in files)
    lines = [
        f"store     {path}",
        f"level     {m.level} (from {m.version or '?'} shards), {n:,} videos from {len(m.sources)} shards"
        + (f", {sum(s.skipped for s in m.sources)} bad records or shards skipped" if any(s.skipped for s in m.sources)
           else ""),
        f"bytes     {_size(sum(p.stat().st_size for p in files))}: {sizes}",
    ]
    if m.level == "frame":
        per_video = store.num_frames
        stats = f"{per_video.mean():.1f} mean, {per_video.min()} min, {per_video.max()} max" if n else "none"
        lines.append(f"frames    {m.num_frames:,} ({stats} per video; at most {m.max_frames} kept)")
    if not m.has_labels:
        lines.append("labels    none (a test split)")
        return "\n".join(lines)
    per_video = np.diff(store.labels_indptr)
    counts = np.bincount(store.labels_indices, minlength=store.num_classes)
    lines.append(f"labels    {m.num_labels:,} ({per_video.mean() if n else 0:.2f} per video, max "
                 f"{per_video.max() if n else 0}), {int((counts > 0).sum()):,} of {store.num_classes:,} "
                 f"classes used")
    names = read_vocabulary(vocabulary) if vocabulary else {}
    top = np.argsort(-counts, kind="stable")[:TOP_LABELS]
    top = top[counts[top] > 0]
    if len(top):
        lines.append(f"top {len(top)} labels (videos, share of videos):")
    for label in top:
        name = names.get(int(label), "") if names else ""
        lines.append(f"  {label:>5}  {counts[label]:>9,}  {counts[label] / n:6.1%}  {name}".rstrip())
    return "\n".join(lines)
