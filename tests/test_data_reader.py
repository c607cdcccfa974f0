"""The shard reader: every real shard reads as tf.io.parse_example reads it; bad input is named precisely."""

import numpy as np
import pytest
import tensorflow as tf

from common.errors import InputError
from data.formats import ShardFormat, Video
from data.reader import ReadReport, detect_format, list_shards, read_batches, read_shard
from data.writer import encode_video, write_shard

FRAME_2018 = ShardFormat("frame", 2018)
VIDEO_2018 = ShardFormat("video", 2018)


def _parse_with_tf(paths, id_key, has_labels):
    """Reference: a plain tf.data pipeline with tf.io.parse_example."""
    features = {
        id_key: tf.io.FixedLenFeature([], tf.string),
        "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
        "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
    }
    if has_labels:
        features["labels"] = tf.io.VarLenFeature(tf.int64)
    ids, labels, feats = [], [], []
    for raw in tf.data.TFRecordDataset([str(p) for p in paths]).batch(512):
        parsed = tf.io.parse_example(raw, features)
        ids += [i.decode() for i in parsed[id_key].numpy()]
        if has_labels:
            labels += list(tf.RaggedTensor.from_sparse(parsed["labels"]).numpy())
        feats.append(np.concatenate([parsed["mean_rgb"].numpy(), parsed["mean_audio"].numpy()], 1))
    return ids, labels, np.concatenate(feats)


def _read_all(paths):
    ids, labels, feats = [], [], []
    for path in paths:
        for batch in read_batches(path):
            ids += batch.ids
            labels += batch.labels
            feats.append(batch.video)
    return ids, labels, np.concatenate(feats)


def test_real_2018_shards_equal_parse_example(yt8m_2018_dir):
    paths = list_shards(yt8m_2018_dir)
    assert len(paths) == 100
    assert detect_format(paths[0]) == ShardFormat("video", 2018, has_labels=True)
    ids, labels, feats = _read_all(paths)
    ref_ids, ref_labels, ref_feats = _parse_with_tf(paths, "id", True)
    assert len(ids) == 28_792
    assert ids == ref_ids
    assert all(np.array_equal(a, b) for a, b in zip(labels, ref_labels, strict=True))
    np.testing.assert_array_equal(feats, ref_feats)
    assert np.mean([len(x) for x in labels]) == pytest.approx(3.01, abs=0.01)


def test_real_2017_validate_and_test_shards(yt8m_2017_dir):
    validate = list_shards(yt8m_2017_dir / "validatea*.tfrecord")
    test = list_shards(str(yt8m_2017_dir / "testa*.tfrecord"))
    assert detect_format(validate[0]) == ShardFormat("video", 2017, has_labels=True)
    assert detect_format(test[0]) == ShardFormat("video", 2017, has_labels=False)
    ids, labels, feats = _read_all(validate)
    ref_ids, ref_labels, ref_feats = _parse_with_tf(validate, "video_id", True)
    assert len(ids) == 3_419 and ids == ref_ids and all(len(i) == 11 for i in ids)
    assert all(np.array_equal(a, b) for a, b in zip(labels, ref_labels, strict=True))
    np.testing.assert_array_equal(feats, ref_feats)
    assert max(int(x.max()) for x in labels) < 4716
    test_ids, test_labels, test_feats = _read_all(test)
    assert len(test_ids) == 1_709 and all(len(x) == 0 for x in test_labels)
    np.testing.assert_array_equal(test_feats, _parse_with_tf(test, "video_id", False)[2])


def _frame_videos(rng, lengths):
    return [
        Video(f"v{i:03d}", rng.integers(0, 3862, size=rng.integers(1, 6)),
              rng.integers(0, 256, (t, 1024), dtype=np.uint8), rng.integers(0, 256, (t, 128), dtype=np.uint8))
        for i, t in enumerate(lengths)
    ]


def test_frame_level_round_trip_and_truncation(tmp_path):
    videos = _frame_videos(np.random.default_rng(0), [1, 7, 300, 310, 42])
    path = tmp_path / "train0000.tfrecord"
    assert write_shard(path, videos, FRAME_2018) == 5
    assert detect_format(path) == FRAME_2018
    back = list(read_shard(path))
    for want, got in zip(videos, back, strict=True):
        assert got.id == want.id
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.rgb, want.rgb[:300])  # at most 300 frames are used
        np.testing.assert_array_equal(got.audio, want.audio[:300])
    batch = next(read_batches(path, batch_size=2))
    assert batch.num_frames.tolist() == [1, 7] and batch.frames.shape == (8, 1152)
    deq = videos[1].rgb.astype(np.float64) * 4 / 255 + 4 / 512 - 2  # the official dequantization
    np.testing.assert_allclose(batch.video[1, :1024], deq.mean(0), atol=1e-6)
    assert [len(v.rgb) for v in read_shard(path, max_frames=5)] == [1, 5, 5, 5, 5]


def test_writer_is_deterministic(tmp_path):
    videos = _frame_videos(np.random.default_rng(1), [3, 4])
    write_shard(tmp_path / "a.tfrecord", videos, FRAME_2018)
    write_shard(tmp_path / "b.tfrecord", videos, FRAME_2018)
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "b.tfrecord").read_bytes()


# --- bad input: each case names the file and the record, or is skipped and counted -----------------

def _video(i, labels=(1, 2), rgb_size=1024):
    return Video(f"id{i:02d}", np.array(labels), np.full(rgb_size, 0.5, np.float32), np.zeros(128, np.float32))


def _write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for raw in records:
            writer.write(raw)
    return path


def _example_without(key, i=0):
    record = tf.train.Example.FromString(encode_video(_video(i), VIDEO_2018))
    del record.features.feature[key]
    return record.SerializeToString()


@pytest.mark.parametrize(
    "bad_record, problem",
    [
        (lambda: _example_without("mean_rgb"), "missing feature 'mean_rgb'"),
        (lambda: encode_video(_video(5, rgb_size=1000), ShardFormat("video", 2018, False)),
         "feature 'mean_rgb' has 1000 values, expected 1024"),
        (lambda: encode_video(_video(5, labels=(3, 3862)), VIDEO_2018), "label 3862 out of range [0, 3862)"),
        (lambda: b"not a protocol buffer \xff\xff", "not a tf.train.Example or SequenceExample"),
    ],
)
def test_bad_record_is_named_or_skipped(tmp_path, bad_record, problem):
    records = [encode_video(_video(i), VIDEO_2018) for i in range(7)]
    records[5] = bad_record()
    path = _write_records(tmp_path / "bad.tfrecord", records)
    with pytest.raises(InputError) as err:
        list(read_batches(path, batch_size=4))
    assert str(err.value) == f"{path}: record 5: {problem}"
    report = ReadReport()
    ids = [v.id for v in read_shard(path, batch_size=4, skip_corrupt=True, report=report)]
    assert ids == ["id00", "id01", "id02", "id03", "id04", "id06"]
    assert (report.records, report.skipped) == (6, 1)
    assert "record 5" in report.problems[0]


def test_frame_of_wrong_size_is_named(tmp_path):
    videos = _frame_videos(np.random.default_rng(2), [3, 3, 3])
    good = [encode_video(v, FRAME_2018) for v in videos]
    record = tf.train.SequenceExample.FromString(good[2])
    record.feature_lists.feature_list["rgb"].feature[1].bytes_list.value[0] = b"\x00" * 1000
    path = _write_records(tmp_path / "frames.tfrecord", good[:2] + [record.SerializeToString()])
    with pytest.raises(InputError, match=r"frames.tfrecord: record 2: frame 1 of 'rgb' has 1000 bytes"):
        list(read_batches(path))


def test_truncated_shard(tmp_path):
    path = tmp_path / "cut.tfrecord"
    write_shard(path, [_video(i) for i in range(5)], VIDEO_2018)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match=r"cut.tfrecord: record 4: corrupt or truncated TFRecord"):
        list(read_batches(path, batch_size=2))
    report = ReadReport()
    assert len(list(read_shard(path, skip_corrupt=True, report=report))) == 4
    assert report.skipped == 1 and "rest of the file skipped" in report.problems[0]


def test_bad_crc(tmp_path):
    path = tmp_path / "crc.tfrecord"
    write_shard(path, [_video(i) for i in range(3)], VIDEO_2018)
    data = bytearray(path.read_bytes())
    record_size = len(data) // 3
    data[record_size + 40] ^= 0xFF  # one flipped byte inside record 1's payload
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"crc.tfrecord: record 1: corrupt or truncated TFRecord"):
        list(read_batches(path))


def test_empty_folder_and_empty_file(tmp_path):
    with pytest.raises(InputError, match="no .tfrecord shards found"):
        list_shards(tmp_path)
    with pytest.raises(InputError, match="no .tfrecord shards found"):
        list_shards(tmp_path / "*.tfrecord")
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.tfrecord: empty shard \(no records\)"):
        detect_format(tmp_path / "empty.tfrecord")
    with pytest.raises(InputError, match=r"empty.tfrecord: empty shard \(no records\)"):
        list(read_batches(tmp_path / "empty.tfrecord", VIDEO_2018))
    report = ReadReport()
    assert list(read_batches(tmp_path / "empty.tfrecord", VIDEO_2018, skip_corrupt=True, report=report)) == []
    assert report.skipped == 1 and report.problems == [f"{tmp_path / 'empty.tfrecord'}: empty shard (no records); "
                                                       "skipped"]


def test_reading_from_a_later_record(tmp_path):
    path = tmp_path / "v.tfrecord"
    write_shard(path, [_video(i) for i in range(7)], VIDEO_2018)
    batches = list(read_batches(path, start=3, batch_size=2))
    assert [b.first_record for b in batches] == [3, 5]
    assert [v for b in batches for v in b.ids] == [_video(i).id for i in range(3, 7)]


def test_unknown_id_key(tmp_path):
    record = tf.train.Example.FromString(encode_video(_video(0), VIDEO_2018))
    record.features.feature["vid"].CopyFrom(record.features.feature.pop("id"))
    path = _write_records(tmp_path / "x.tfrecord", [record.SerializeToString()])
    with pytest.raises(InputError, match=r"x.tfrecord: record 0: missing feature 'id' \(2018\) or 'video_id'"):
        detect_format(path)


def test_later_batches_read_by_tf_data_match_and_name_bad_records(tmp_path):
    path = tmp_path / "many.tfrecord"
    write_shard(path, [_video(i) for i in range(10)], VIDEO_2018)
    whole = next(read_batches(path))
    batches = list(read_batches(path, batch_size=3))  # batches after the first come from tf.data
    assert [b.first_record for b in batches] == [0, 3, 6, 9]
    assert sum((b.ids for b in batches), []) == whole.ids
    np.testing.assert_array_equal(np.concatenate([b.video for b in batches]), whole.video)
    data = bytearray(path.read_bytes())
    data[len(data) // 10 * 7 + 40] ^= 0xFF  # a flipped byte inside record 7
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"many.tfrecord: record 7: corrupt or truncated TFRecord"):
        list(read_batches(path, batch_size=3))
    report = ReadReport()
    assert sum(len(b.ids) for b in read_batches(path, batch_size=3, skip_corrupt=True, report=report)) == 7
    assert report.skipped == 1 and "record 7" in report.problems[0]
    bad = [encode_video(_video(i), VIDEO_2018) for i in range(5)]
    bad[4] = encode_video(_video(4, labels=(1, 9999)), VIDEO_2018)
    with pytest.raises(InputError, match=r"bad.tfrecord: record 4: label 9999 out of range"):
        list(read_batches(_write_records(tmp_path / "bad.tfrecord", bad), batch_size=2))
