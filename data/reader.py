"""Read official YouTube-8M shards of both levels and both versions, fast and with precise errors.

Records are framed by TensorFlow's record reader (which checks every CRC) and parsed a batch at a
time by `tf.io.parse_example` / `tf.io.parse_sequence_example`. When a batch fails, its records are
re-examined one by one with the protobuf classes to name the bad record (0-based index in its file).
"""

import functools
import glob
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import InputError
from data.formats import AUDIO_SIZE, FEATURE_SIZE, MAX_FRAMES, RGB_SIZE, ShardFormat, Video
from data.quantization import frame_means

DEFAULT_BATCH = {"video": 1024, "frame": 32}


@dataclass
class Batch:
    """Consecutive good records of one shard, already as arrays (see the module docstring)."""

    first_record: int
    ids: list[str]
    labels: list[np.ndarray]
    video: np.ndarray  # float32 (B, 1152): mean_rgb|mean_audio, or the mean of the kept frames
    frames: np.ndarray | None = None  # uint8 (F, 1152), frame level only
    num_frames: np.ndarray | None = None  # int64 (B,), frame level only

    def split(self, n: int) -> tuple["Batch", "Batch"]:
        """The first n videos and the rest, as two Batches (views, no copies)."""
        if self.frames is None:
            return (Batch(self.first_record, self.ids[:n], self.labels[:n], self.video[:n]),
                    Batch(self.first_record + n, self.ids[n:], self.labels[n:], self.video[n:]))
        f = int(self.num_frames[:n].sum())
        return (Batch(self.first_record, self.ids[:n], self.labels[:n], self.video[:n], self.frames[:f],
                      self.num_frames[:n]),
                Batch(self.first_record + n, self.ids[n:], self.labels[n:], self.video[n:], self.frames[f:],
                      self.num_frames[n:]))


@dataclass
class ReadReport:
    """What a read saw: records read, records skipped (with --skip-corrupt) and why."""

    records: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def list_shards(dir_or_glob) -> list[Path]:
    """The .tfrecord files of a folder, or the files matching a glob, sorted by name."""
    source = str(dir_or_glob)
    if Path(source).is_dir():
        paths = sorted(Path(source).glob("*.tfrecord"))
    else:
        paths = sorted(Path(p) for p in glob.glob(source) if Path(p).is_file())
    if not paths:
        raise InputError(source, "no .tfrecord shards found")
    return paths


def _tf():
    import tensorflow as tf

    return tf


def _records(path: Path) -> Iterator[bytes]:
    """The serialized records of a TFRecord file, CRCs checked (TensorFlow's C++ record reader).

    `tf.compat.v1.io.tf_record_iterator` starts far faster than a `tf.data.TFRecordDataset`, whose set-up
    dominates on many small shards (benchmarks/RESULTS.md, development measurements). It is marked
    deprecated in favour of tf.data: the undecorated function skips the notice without touching shared
    logger state, so threads can read at the same time.
    """
    iterate = _tf().compat.v1.io.tf_record_iterator
    yield from getattr(iterate, "__wrapped__", iterate)(str(path))


def _first_record(path: Path) -> bytes | None:
    tf = _tf()
    try:
        return next(_records(path), None)
    except tf.errors.OpError as err:
        raise InputError(path, f"not a readable TFRecord file ({_short(err)})", record=0) from None


def _short(err) -> str:
    """The first line of a TensorFlow error, without its op-name noise."""
    text = getattr(err, "message", str(err)).strip().splitlines()[0]
    return text.split(" [Op:")[0]


def detect_format(path) -> ShardFormat:
    """Level, version and whether labels are present, from the keys of the shard's first record."""
    tf = _tf()
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such shard")
    raw = _first_record(path)
    if raw is None:
        raise InputError(path, "empty shard (no records)")
    try:
        record = tf.train.SequenceExample.FromString(raw)
    except Exception:
        raise InputError(path, "not a tf.train.Example or SequenceExample", record=0) from None
    keys = set(record.context.feature)
    if "id" in keys:
        version = 2018
    elif "video_id" in keys:
        version = 2017
    else:
        raise InputError(path, "missing feature 'id' (2018) or 'video_id' (2017)", record=0)
    if "rgb" in record.feature_lists.feature_list:
        level = "frame"
    elif "mean_rgb" in keys:
        level = "video"
    else:
        raise InputError(path, "neither frame features 'rgb' nor video feature 'mean_rgb'", record=0)
    return ShardFormat(level=level, version=version, has_labels="labels" in keys)


def common_format(paths: list[Path], skip_corrupt: bool = False) -> ShardFormat:
    """The one format of all the shards (a mix is an InputError). With skip_corrupt, a shard whose first
    record cannot be read is left to the reader, which skips and reports its bad records like any others."""
    found, problem = None, None
    for path in paths:
        try:
            fmt = detect_format(path)
        except InputError as err:
            if not skip_corrupt:
                raise
            problem = problem or err
            continue
        if found is not None and fmt != found[1]:
            raise InputError(path, f"is {fmt} but {found[0].name} is {found[1]}: one level and version at a time")
        found = found or (path, fmt)
    if found is None:
        raise InputError(problem.path, f"no shard can be read ({problem.problem})")
    return found[1]


@functools.lru_cache(maxsize=8)
def batch_parser(fmt: ShardFormat, max_frames: int = MAX_FRAMES):
    """A tf.function that parses a batch of serialized records of format `fmt` into tensors.

    Built once per format (cached), so it is traced once rather than once per shard."""
    tf = _tf()
    context = {fmt.id_key: tf.io.FixedLenFeature([], tf.string)}
    if fmt.has_labels:
        context["labels"] = tf.io.VarLenFeature(tf.int64)

    if fmt.level == "video":
        features = dict(
            context,
            mean_rgb=tf.io.FixedLenFeature([RGB_SIZE], tf.float32),
            mean_audio=tf.io.FixedLenFeature([AUDIO_SIZE], tf.float32),
        )

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def parse(raw):
            parsed = tf.io.parse_example(raw, features)
            out = {"id": parsed[fmt.id_key], "video": tf.concat([parsed["mean_rgb"], parsed["mean_audio"]], 1)}
            if fmt.has_labels:
                labels = tf.RaggedTensor.from_sparse(parsed["labels"])
                out["label_values"], out["label_splits"] = labels.values, labels.row_splits
            return out

        return parse

    sequence = {
        "rgb": tf.io.FixedLenSequenceFeature([], tf.string),
        "audio": tf.io.FixedLenSequenceFeature([], tf.string),
    }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def parse(raw):
        ctx, lists, lengths = tf.io.parse_sequence_example(raw, context_features=context,
                                                            sequence_features=sequence)
        tf.debugging.assert_equal(lengths["rgb"], lengths["audio"], "rgb and audio frame counts differ")
        num_frames = tf.minimum(lengths["rgb"], max_frames)
        keep = tf.sequence_mask(num_frames, tf.shape(lists["rgb"])[1])
        rgb = tf.boolean_mask(lists["rgb"], keep)
        audio = tf.boolean_mask(lists["audio"], keep)
        tf.debugging.assert_equal(tf.strings.length(rgb), RGB_SIZE, "rgb frame of the wrong size")
        tf.debugging.assert_equal(tf.strings.length(audio), AUDIO_SIZE, "audio frame of the wrong size")
        frames = tf.concat([tf.io.decode_raw(rgb, tf.uint8), tf.io.decode_raw(audio, tf.uint8)], 1)
        out = {"id": ctx[fmt.id_key], "frames": frames, "num_frames": num_frames}
        if fmt.has_labels:
            labels = tf.RaggedTensor.from_sparse(ctx["labels"])
            out["label_values"], out["label_splits"] = labels.values, labels.row_splits
        return out

    return parse


def record_problem(raw: bytes, fmt: ShardFormat) -> str | None:
    """Why one serialized record does not fit `fmt` (None if it does): the slow, precise check."""
    tf = _tf()
    try:
        record = tf.train.SequenceExample.FromString(raw)
    except Exception:
        return "not a tf.train.Example or SequenceExample"
    ctx = record.context.feature

    def values(features, key, kind):
        if key not in features:
            return None
        feature = features[key]
        if feature.WhichOneof("kind") != kind:
            return "wrong type"
        return getattr(feature, kind).value

    ident = values(ctx, fmt.id_key, "bytes_list")
    if ident is None:
        return f"missing feature '{fmt.id_key}'"
    if isinstance(ident, str) or len(ident) != 1:
        return f"feature '{fmt.id_key}' must hold one byte string"
    if fmt.has_labels:
        labels = values(ctx, "labels", "int64_list")
        if isinstance(labels, str):
            return "feature 'labels' must be an int64 list"
        bad = [x for x in labels or [] if not 0 <= x < fmt.num_classes]
        if bad:
            return f"label {bad[0]} out of range [0, {fmt.num_classes})"
    if fmt.level == "video":
        for key, size in (("mean_rgb", RGB_SIZE), ("mean_audio", AUDIO_SIZE)):
            got = values(ctx, key, "float_list")
            if got is None:
                return f"missing feature '{key}'"
            if isinstance(got, str):
                return f"feature '{key}' must be a float list"
            if len(got) != size:
                return f"feature '{key}' has {len(got)} values, expected {size}"
        return None
    lists = record.feature_lists.feature_list
    counts = {}
    for key, size in (("rgb", RGB_SIZE), ("audio", AUDIO_SIZE)):
        if key not in lists:
            return f"missing feature list '{key}'"
        counts[key] = len(lists[key].feature)
        for t, feature in enumerate(lists[key].feature):
            got = feature.bytes_list.value if feature.WhichOneof("kind") == "bytes_list" else None
            if got is None or len(got) != 1 or len(got[0]) != size:
                length = len(got[0]) if got else 0
                return f"frame {t} of '{key}' has {length} bytes, expected {size}"
    if counts["rgb"] != counts["audio"]:
        return f"'rgb' has {counts['rgb']} frames but 'audio' has {counts['audio']}"
    return None


def to_batch(parsed: dict, first: int, fmt: ShardFormat) -> tuple[Batch, int | None]:
    """Tensors to a Batch, and the index of the first video with a label out of range (None if none)."""
    ids = [i.decode("utf-8", "replace") for i in parsed["id"].numpy()]
    bad = None
    if fmt.has_labels:
        values, splits = parsed["label_values"].numpy(), parsed["label_splits"].numpy()
        labels = [values[a:b] for a, b in itertools.pairwise(splits.tolist())]  # np.split is slower
        out_of_range = np.flatnonzero((values < 0) | (values >= fmt.num_classes))
        if len(out_of_range):
            bad = int(np.searchsorted(splits, out_of_range[0], side="right") - 1)
    else:
        labels = [np.zeros(0, np.int64) for _ in ids]
    if fmt.level == "video":
        return Batch(first, ids, labels, parsed["video"].numpy()), bad
    frames = parsed["frames"].numpy()
    num_frames = parsed["num_frames"].numpy().astype(np.int64)
    return Batch(first, ids, labels, frame_means(frames, num_frames), frames, num_frames), bad


def read_batches(path, fmt: ShardFormat | None = None, *, start: int = 0, batch_size: int | None = None,
                 max_frames: int = MAX_FRAMES, skip_corrupt: bool = False,
                 report: ReadReport | None = None) -> Iterator[Batch]:
    """Yield the shard's records from record `start` on as Batches; bad records raise InputError or, with
    skip_corrupt, are skipped and reported.

    A broken TFRecord frame (truncation, bad CRC) ends the file: with skip_corrupt the records before it
    are kept and the rest of the file is reported as skipped. An empty file is a bad shard too.
    """
    path = Path(path)
    report = report if report is not None else ReadReport()
    if path.is_file() and path.stat().st_size == 0:
        if not skip_corrupt:
            raise InputError(path, "empty shard (no records)")
        report.skipped += 1
        report.problems.append(f"{path}: empty shard (no records); skipped")
        return
    fmt = fmt or detect_format(path)
    parse = batch_parser(fmt, max_frames)
    size = batch_size or DEFAULT_BATCH[fmt.level]
    first, head = start, _record_list(path, start, size)
    more = _record_batches(path, start + size, size) if len(head[0]) == size and head[1] is None else []
    for records, broken in itertools.chain([head], more):
        if broken is not None:
            at = first + len(records)
            problem = f"corrupt or truncated TFRecord ({_short(broken)})"
            if not skip_corrupt:
                raise InputError(path, problem, record=at) from None
            report.skipped += 1
            report.problems.append(f"{path}: record {at}: {problem}; rest of the file skipped")
        yield from _checked_batches(path, records, first, fmt, parse, skip_corrupt, report)
        first += len(records)


def _record_list(path: Path, first: int, size: int) -> tuple[list[bytes], Exception | None]:
    """Up to `size` records from record `first` on, and the error (an OpError) if a broken TFRecord
    frame came before `size` of them, else None."""
    tf = _tf()
    try:
        return list(itertools.islice(_records(path), first, first + size)), None  # no Python loop per record
    except tf.errors.OpError as err:
        return _records_before_break(path, first, size), err


def _record_batches(path: Path, start: int, size: int) -> Iterator[tuple]:
    """Batches (string tensors) of `size` records from record `start` on, each with None, read ahead by
    tf.data in its own threads: for shards of several batches, where its set-up (milliseconds) is small.
    A broken TFRecord frame ends them with the good records before it and the error, as _record_list."""
    tf = _tf()
    batches = iter(tf.data.TFRecordDataset(str(path), buffer_size=8 << 20).skip(start).batch(size).prefetch(2))
    at = start
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except tf.errors.OpError as err:
            yield _records_before_break(path, at, size), err
            return
        yield batch, None
        at += len(batch)


def _records_before_break(path: Path, first: int, size: int) -> list[bytes]:
    """The good records from record `first` up to a broken TFRecord frame (at most `size`): the slow way."""
    tf = _tf()
    good, reader = [], _records(path)
    for _ in range(first):
        next(reader)
    try:
        while len(good) < size:
            good.append(next(reader))
    except tf.errors.OpError:
        pass
    return good


def _checked_batches(path, records, first, fmt, parse, skip_corrupt, report) -> Iterator[Batch]:
    """Parse `records` (starting at record `first`) as one batch, diagnosing record by record on failure."""
    tf = _tf()
    if len(records) == 0:
        return
    try:
        batch, bad = to_batch(parse(records if tf.is_tensor(records) else tf.constant(records)), first, fmt)
    except (tf.errors.OpError, UnicodeDecodeError):  # TensorFlow's message can hold the record's raw bytes
        bad = -1
    if bad is None:
        report.records += len(records)
        yield batch
        return
    if tf.is_tensor(records):
        records = records.numpy().tolist()
    good, good_index = [], []
    for offset, raw in enumerate(records):
        problem = record_problem(raw, fmt)
        if problem is None:
            good.append(raw)
            good_index.append(offset)
            continue
        if not skip_corrupt:
            raise InputError(path, problem, record=first + offset)
        report.skipped += 1
        report.problems.append(f"{path}: record {first + offset}: {problem}")
    if len(good) == len(records):  # the batch parser disagreed with the precise check: say so plainly
        raise InputError(path, "records could not be parsed", record=first)
    # Good records are parsed again in runs of consecutive indices so each Batch stays contiguous.
    run_start = 0
    for i in range(1, len(good) + 1):
        if i == len(good) or good_index[i] != good_index[i - 1] + 1:
            yield from _checked_batches(path, good[run_start:i], first + good_index[run_start], fmt,
                                        parse, skip_corrupt, report)
            run_start = i


def read_shard(path, fmt: ShardFormat | None = None, **options) -> Iterator[Video]:
    """Yield one Video per record (frame level: uint8 rows per second; video level: float32 means)."""
    fmt = fmt or detect_format(path)
    for batch in read_batches(path, fmt, **options):
        if fmt.level == "video":
            for i, vid in enumerate(batch.ids):
                yield Video(vid, batch.labels[i], batch.video[i, :RGB_SIZE], batch.video[i, RGB_SIZE:])
            continue
        ends = np.cumsum(batch.num_frames)
        for i, vid in enumerate(batch.ids):
            frames = batch.frames[ends[i] - batch.num_frames[i]:ends[i]]
            yield Video(vid, batch.labels[i], frames[:, :RGB_SIZE], frames[:, RGB_SIZE:FEATURE_SIZE])
