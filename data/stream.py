"""Many shards read as one stream of Batches, in order, for conversion.

`scan_shard` reads only the TFRecord framing: a shard's size, record count and a fingerprint (what the
feature store's skip rule compares). `stream_shards` sends the records of all shards through one
`tf.data` pipeline that parses batches in parallel threads (results in order); its batches may span two
shards and are cut where a shard ends, by the scanned record counts. A shard where anything goes wrong is
read on from the record where the stream stopped by `data.reader.read_batches`, which names the bad record
(or skips it), and the stream starts again at the next shard.
"""

import dataclasses
import hashlib
import mmap
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from data.formats import ShardFormat
from data.reader import DEFAULT_BATCH, Batch, ReadReport, batch_parser, read_batches, to_batch


@dataclass(frozen=True)
class Shard:
    """A shard as its framing shows it, before any record is parsed."""

    path: Path
    bytes: int
    records: int  # complete records framed in the file (a cut last record is not counted)
    fingerprint: str  # hash of the size and every record's length and CRCs


def scan_shard(path) -> Shard:
    """Size, record count and fingerprint of a shard, reading only the record headers."""
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
    return Shard(path, size, records, hashlib.sha1(b"".join(hashed)).hexdigest()[:20])


class _Retry(Exception):
    """The stream met something it does not diagnose (a label out of range): the precise reader takes over."""


def stream_shards(shards: list[Shard], fmt: ShardFormat, *, workers: int = 1, skip_corrupt: bool = False,
                  reports: list[ReadReport] | None = None) -> Iterator[tuple[int, Batch | None]]:
    """Yield (i, batch) for the records of shards[i], in order, and (i, None) once shard i is complete.

    `reports[i]` counts the records read from shard i and the ones skipped (with skip_corrupt), and why.
    A bad record raises InputError naming it unless skip_corrupt; a shard without records counts as bad."""
    import tensorflow as tf

    reports = reports if reports is not None else [ReadReport() for _ in shards]

    def precise(i: int, start: int):
        for batch in read_batches(shards[i].path, fmt, start=start, skip_corrupt=skip_corrupt, report=reports[i]):
            yield i, batch
        yield i, None

    first = 0
    while first < len(shards):
        if shards[first].records == 0:
            yield from precise(first, 0)
            first += 1
            continue
        current, done = first, 0  # the shard being read, and its records yielded so far
        try:
            for parsed in _parsed_batches([s.path for s in shards[first:]], fmt, workers):
                batch, bad = to_batch(parsed, 0, fmt)
                if bad is not None:
                    raise _Retry
                while len(batch.ids):
                    if done == shards[current].records:
                        yield current, None
                        current, done = current + 1, 0
                        while shards[current].records == 0:  # adds nothing to the stream: read it alone
                            yield from precise(current, 0)
                            current += 1
                    head, batch = batch.split(min(shards[current].records - done, len(batch.ids)))
                    reports[current].records += len(head.ids)
                    yield current, dataclasses.replace(head, first_record=done)
                    done += len(head.ids)
            if done < shards[current].records:
                raise _Retry
            yield current, None
        except (tf.errors.OpError, _Retry):
            yield from precise(current, done)
        first = current + 1


def _parsed_batches(paths: list[Path], fmt: ShardFormat, workers: int):
    """The records of the shards, in order, as parsed batches; `workers` batches are parsed at a time."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset([str(p) for p in paths], buffer_size=8 << 20)
    batches = records.batch(DEFAULT_BATCH[fmt.level]).map(batch_parser(fmt), num_parallel_calls=workers)
    yield from batches.prefetch(workers)
