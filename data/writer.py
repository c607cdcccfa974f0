"""Write shards in the official YouTube-8M TFRecord formats (used by the generator and by tests)."""

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common.files import atomic_path
from data.formats import AUDIO_SIZE, RGB_SIZE, ShardFormat, Video


def _bytes(values) -> "tf.train.Feature":  # noqa: F821
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def encode_video(video: Video, fmt: ShardFormat) -> bytes:
    """One record's bytes: tf.train.Example (video level) or tf.train.SequenceExample (frame level)."""
    import tensorflow as tf

    context = {fmt.id_key: _bytes([video.id.encode()])}
    if fmt.has_labels:
        labels = np.asarray(video.labels, dtype=np.int64).tolist()
        context["labels"] = tf.train.Feature(int64_list=tf.train.Int64List(value=labels))
    if fmt.level == "video":
        rgb = np.asarray(video.rgb, dtype=np.float32).ravel()
        audio = np.asarray(video.audio, dtype=np.float32).ravel()
        context["mean_rgb"] = tf.train.Feature(float_list=tf.train.FloatList(value=rgb.tolist()))
        context["mean_audio"] = tf.train.Feature(float_list=tf.train.FloatList(value=audio.tolist()))
        record = tf.train.Example(features=tf.train.Features(feature=context))
    else:
        record = tf.train.SequenceExample(context=tf.train.Features(feature=context))
        lists = record.feature_lists.feature_list
        for key, size, values in (("rgb", RGB_SIZE, video.rgb), ("audio", AUDIO_SIZE, video.audio)):
            rows = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1, size)
            frames = lists[key].feature  # filled in place: ~3x faster than one tf.train.Feature per frame
            for row in rows:
                frames.add().bytes_list.value.append(row.tobytes())
    return record.SerializeToString(deterministic=True)


def write_shard(path, videos: Iterable[Video], fmt: ShardFormat) -> int:
    """Write `videos` to the TFRecord file `path` (atomically); return the number of records."""
    import tensorflow as tf

    count = 0
    with atomic_path(Path(path)) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for video in videos:
                writer.write(encode_video(video, fmt))
                count += 1
    return count
