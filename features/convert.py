"""Shards -> feature store: read (data.stream) -> write (features.writer), in shard order.

Shards are sorted by name and their videos go into the store in that order, so the store is byte for byte
the same for any worker count or listing order. A store whose manifest lists exactly these shards (same
size, record count and fingerprint) is up to date and left alone. Otherwise the store is written anew;
the only earlier work reused is what an interrupted run (killed, failed or stopped) finished, kept in
`<store>.parts/` (see features.writer).
"""

import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from common.errors import InputError
from data.formats import MAX_FRAMES
from data.reader import ReadReport, common_format, list_shards
from data.stream import Shard, scan_shard, stream_shards
from features.store import FORMAT, Manifest, Source, Store
from features.writer import StoreWriter, parts_folder


def convert(shards, out, *, workers: int | None = None, skip_corrupt: bool = False, log=print) -> Manifest:
    """Convert shards (a folder, a glob, or a list of paths) into the store `out`; return its manifest.

    `workers`: threads parsing records (default: the number of cores). `skip_corrupt`: skip and report bad
    records and unreadable shards instead of stopping at the first."""
    paths = list_shards(shards) if isinstance(shards, str | Path) else [Path(p) for p in shards]
    out = Path(out)
    _recover(out)
    scans = [scan_shard(p) for p in _sorted_unique(paths)]
    old = _open_old(out, log)
    if old is not None and up_to_date(old.manifest, scans, skip_corrupt):
        log(f"{out}: up to date ({len(old):,} videos from {len(scans)} shards)")
        shutil.rmtree(parts_folder(out), ignore_errors=True)  # left if a run was killed right after publishing
        return old.manifest

    started = time.time()
    fmt = common_format([s.path for s in scans], skip_corrupt)
    writer = StoreWriter(out, level=fmt.level, version=fmt.version, num_classes=fmt.num_classes,
                         has_labels=fmt.has_labels)
    kept = writer.start([_source(s) for s in scans], lambda done, now: _usable(done, now, skip_corrupt))
    todo = scans[kept:]
    reports = [ReadReport() for _ in todo]
    bar = tqdm(total=sum(s.bytes for s in todo), unit="B", unit_scale=True, desc="converting", dynamic_ncols=True)
    counted = [0] * len(todo)  # bytes of each shard shown on the bar so far
    try:
        with bar:
            for i, batch in stream_shards(todo, fmt, workers=max(1, workers or os.cpu_count() or 1),
                                          skip_corrupt=skip_corrupt, reports=reports):
                if batch is not None:
                    writer.add(batch)
                    step = todo[i].bytes * len(batch.ids) // max(todo[i].records, 1)
                else:
                    report = reports[i]
                    writer.end_shard(_source(todo[i], report))
                    for problem in report.problems:
                        tqdm.write(f"skipped: {problem}")
                    step = todo[i].bytes - counted[i]
                    bar.set_postfix_str(f"{kept + i + 1}/{len(scans)} shards", refresh=False)
                counted[i] += step
                bar.update(step)
        manifest = writer.publish()
    except BaseException:
        writer.close()
        if writer.sources:
            log(f"{parts_folder(out)}: the {len(writer.sources)} shards finished are kept; "
                "re-running the same command goes on from there")
        raise
    skipped = sum(s.skipped for s in manifest.sources)
    log(f"{out}: {manifest.num_videos:,} videos from {len(scans)} shards ({len(todo)} converted, {kept} kept "
        f"from an interrupted run) in {time.time() - started:.1f} s"
        + (f"; {skipped} bad records or shards skipped" if skipped else ""))
    return manifest


def _source(shard: Shard, report: ReadReport | None = None) -> Source:
    """What the manifest records of a shard (videos and skipped records once it is converted)."""
    return Source(shard.path.name, shard.bytes, shard.records, fingerprint=shard.fingerprint,
                  videos=report.records if report else None, skipped=report.skipped if report else 0)


def _usable(done: Source, now: Source, skip_corrupt: bool) -> bool:
    """Whether what was converted from the shard `done` stands for the shard `now`."""
    return done.same_file(now) and (skip_corrupt or done.skipped == 0)


def up_to_date(manifest: Manifest, scans: list[Shard], skip_corrupt: bool) -> bool:
    """The store holds exactly these shards, converted by this code (and skipped nothing unless allowed)."""
    return (manifest.format == FORMAT and manifest.max_frames in (None, MAX_FRAMES)
            and len(manifest.sources) == len(scans)
            and all(_usable(old, _source(new), skip_corrupt) for old, new in zip(manifest.sources, scans, strict=True)))


def _sorted_unique(paths: list[Path]) -> list[Path]:
    """Shards sorted by file name (the store's order); two shards with one name are refused."""
    paths = sorted(paths, key=lambda p: (p.name, str(p)))
    for a, b in zip(paths, paths[1:], strict=False):
        if a.name == b.name:
            raise InputError(b, f"two shards named {b.name} (also in {a.parent}): names must be unique")
    return paths


def _recover(out: Path) -> None:
    """Undo what a run killed while publishing left: restore a store caught mid-rename, drop temporaries."""
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and not out.exists():
        os.replace(old, out)
    shutil.rmtree(old, ignore_errors=True)
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def _open_old(out: Path, log) -> Store | None:
    """The existing store at `out` if it opens; never replace a file or a folder that is not a store."""
    if not out.exists():
        return None
    if not out.is_dir() or (not (out / "manifest.json").is_file() and any(out.iterdir())):
        raise InputError(out, "exists and is not a feature store: refusing to replace it")
    try:
        return Store(out)
    except InputError as err:
        log(f"{out}: rebuilding an unusable store ({err})")
        return None
