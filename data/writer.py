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
        rgb = np.ascontiguousarray(video.rgb, dtype=np.uint8).reshape(-1, RGB_SIZE)
        audio = np.ascontiguousarray(video.audio, dtype=np.uint8).reshape(-1, AUDIO_SIZE)
        lists = {
            "rgb": tf.train.FeatureList(feature=[_bytes([row.tobytes()]) for row in rgb]),
            "audio": tf.train.FeatureList(feature=[_bytes([row.tobytes()]) for row in audio]),
        }
        record = tf.train.SequenceExample(
            context=tf.train.Features(feature=context),
            feature_lists=tf.train.FeatureLists(feature_list=lists),
        )
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
