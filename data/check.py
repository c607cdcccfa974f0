"""Validate shards by reading every record: the summary `python -m data check` prints."""

from dataclasses import dataclass, field

import numpy as np

from data.formats import ShardFormat


@dataclass
class CheckSummary:
    """Counts over all records of a set of shards that share one format."""

    format: ShardFormat
    shards: int = 0
    videos: int = 0
    frames: int = 0
    label_counts: list[int] = field(default_factory=list)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        fmt = self.format
        counts = np.asarray(self.label_counts or [0])
        lines = [
            f"format: {fmt} (id key '{fmt.id_key}', {fmt.num_classes} classes)",
            f"shards: {self.shards}",
            f"videos: {self.videos:,}",
        ]
        if fmt.level == "frame":
            lines.append(f"frames: {self.frames:,} ({self.frames / max(self.videos, 1):.1f} per video)")
        if fmt.has_labels:
            lines.append(f"labels/video: mean {counts.mean():.2f}, max {counts.max()}")
        lines.append(f"skipped: {self.skipped}")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def check_shards(dir_or_glob, skip_corrupt: bool = False) -> CheckSummary:
    """Read every record of the shards (all of one format); raise InputError on the first bad one, or with
    skip_corrupt skip and report bad records and unreadable shards."""
    from tqdm import tqdm

    from data.reader import ReadReport, common_format, list_shards, read_batches

    paths = list_shards(dir_or_glob)
    summary = CheckSummary(common_format(paths, skip_corrupt))
    for path in tqdm(paths, unit="shard", desc="check", leave=False, disable=len(paths) < 2):
        report = ReadReport()
        for batch in read_batches(path, summary.format, skip_corrupt=skip_corrupt, report=report):
            summary.videos += len(batch.ids)
            summary.label_counts.extend(len(x) for x in batch.labels)
            if batch.num_frames is not None:
                summary.frames += int(batch.num_frames.sum())
        summary.shards += 1
        summary.skipped += report.skipped
        summary.problems += report.problems
    return summary
