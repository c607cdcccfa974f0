"""The synthetic dataset: official formats, determinism, a shared task across splits, YouTube-8M-like statistics."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest

import data.writer
from data import synth
from data.formats import MAX_FRAMES, NUM_CLASSES, RGB_SIZE, ShardFormat
from data.quantization import SCALE, frame_means, quantize
from data.reader import detect_format, list_shards, read_shard
from data.synth import (
    BLOCK,
    ORDER_AB,
    ORDER_BA,
    STRETCH,
    Knobs,
    _noise_table,
    _segments,
    generate,
    make_block,
    make_world,
    prefetched_blocks,
    quantized_frames,
    video_ids,
)

CLASSES = 400  # a smaller vocabulary keeps the world cheap; the generator's logic is the same


def _blocks(seed, split, videos, classes=CLASSES):
    return list(prefetched_blocks(make_world(seed, classes), seed, split, videos, Knobs()))


def _digest(folder) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in list_shards(folder))).hexdigest()


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "frame"
    generate(out, "frame", "train", 130, seed=3, classes=CLASSES, progress=False)
    return out


def test_frame_level_round_trip(frame_dir):
    """What the reader gets back is exactly what the generator drew, in the official 2018 frame format."""
    assert [p.name for p in list_shards(frame_dir)] == ["train0000.tfrecord"]
    assert detect_format(frame_dir / "train0000.tfrecord") == ShardFormat("frame", 2018, True)
    expected = [v for block in _blocks(3, "train", 130) for v in block.videos("frame")]
    got = list(read_shard(frame_dir / "train0000.tfrecord"))
    assert len(got) == 130
    for want, have in zip(expected, got, strict=True):
        assert have.id == want.id
        np.testing.assert_array_equal(have.labels, want.labels)
        np.testing.assert_array_equal(have.rgb, want.rgb)
        np.testing.assert_array_equal(have.audio, want.audio)


def test_video_level_means_equal_the_frame_level_twin(tmp_path, frame_dir):
    generate(tmp_path, "video", "train", 130, seed=3, classes=CLASSES, progress=False)
    assert detect_format(tmp_path / "train0000.tfrecord") == ShardFormat("video", 2018, True)
    frames = list(read_shard(frame_dir / "train0000.tfrecord"))
    means = list(read_shard(tmp_path / "train0000.tfrecord"))
    for f, v in zip(frames, means, strict=True):
        assert f.id == v.id
        np.testing.assert_array_equal(f.labels, v.labels)
        expected = frame_means(np.concatenate([f.rgb, f.audio], 1), np.array([len(f.rgb)]))[0]
        np.testing.assert_array_equal(np.concatenate([v.rgb, v.audio]), expected)


def test_shards_hold_at_most_1000_videos_and_stale_ones_are_removed(tmp_path, monkeypatch):
    assert synth.VIDEOS_PER_SHARD == 1000
    monkeypatch.setattr(synth, "VIDEOS_PER_SHARD", 10)  # the same logic, with fewer videos to generate
    monkeypatch.setattr(synth, "BLOCK", 5)
    summary = generate(tmp_path, "video", "validate", 21, seed=0, classes=50, progress=False)
    assert summary.shards == ["validate0000.tfrecord", "validate0001.tfrecord", "validate0002.tfrecord"]
    assert summary.videos == 21 and summary.bytes == sum(p.stat().st_size for p in list_shards(tmp_path))
    assert [len(list(read_shard(p))) for p in list_shards(tmp_path)] == [10, 10, 1]
    generate(tmp_path, "video", "validate", 5, seed=0, classes=50, progress=False)
    assert [p.name for p in list_shards(tmp_path)] == ["validate0000.tfrecord"]


def test_same_arguments_same_bytes_and_other_seed_other_bytes(tmp_path, frame_dir, capsys):
    generate(tmp_path / "again", "frame", "train", 130, seed=3, classes=CLASSES, progress=False)
    assert _digest(tmp_path / "again") == _digest(frame_dir)
    generate(tmp_path / "again", "frame", "train", 130, seed=3, classes=CLASSES, progress=False)
    assert "up to date" in capsys.readouterr().out  # a complete earlier run is not redone
    generate(tmp_path / "other", "frame", "train", 130, seed=4, classes=CLASSES, progress=False)
    assert _digest(tmp_path / "other") != _digest(frame_dir)


def test_ids_are_unique_within_and_across_splits_and_prefix_stable():
    ids = {split: video_ids(7, split, 0, 3000) for split in ("train", "validate", "test", "extra")}
    for values in ids.values():
        assert len(set(values)) == 3000 and all(len(v) == 4 and v.isalnum() for v in values)
    together = [v for values in ids.values() for v in values]
    assert len(set(together)) == len(together)
    small, large = _blocks(1, "test", 30), _blocks(1, "test", 2 * BLOCK + 5)
    assert small[0].ids == large[0].ids[:30]
    np.testing.assert_array_equal(small[0].frames, large[0].frames[: small[0].num_frames.sum()])


def test_statistics_look_like_youtube8m():
    world = make_world(0, NUM_CLASSES[2018])
    blocks = _blocks(0, "train", 800, classes=NUM_CLASSES[2018])
    counts = np.array([len(x) for b in blocks for x in b.labels])
    assert counts.min() >= 1 and counts.max() <= 23 and 2.7 <= counts.mean() <= 3.3
    assert all(len(np.unique(x)) == len(x) and (np.diff(x) > 0).all() for b in blocks for x in b.labels)
    per_class = np.bincount(np.concatenate([x for b in blocks for x in b.labels]), minlength=world.num_classes)
    head = np.sort(per_class)[::-1]
    assert head[0] > 0.1 * len(counts)  # a few classes are in a large share of the videos ...
    assert head[:39].sum() > 0.3 * head.sum()  # ... the top 1% of classes hold a third of all labels ...
    assert (per_class <= 1).mean() > 0.5  # ... and most classes are rare
    same = [np.unique(world.groups[x]).size == 1 for b in blocks for x in b.labels if len(x) > 1]
    assert np.mean(same) > 0.4  # labels co-occur within groups (verticals)
    frames = np.concatenate([b.num_frames for b in blocks])
    assert frames.min() >= 1 and frames.max() == MAX_FRAMES
    assert 0.01 < (frames < 120).mean() < 0.15 and 180 < frames.mean() < 260


def test_world_depends_on_seed_and_classes_only_and_the_task_transfers_across_splits():
    """A nearest-centroid model fitted on train predicts validate of the same seed, not of another seed."""
    def means_and_labels(seed, split):
        blocks = _blocks(seed, split, 150, classes=60)
        video = np.concatenate([frame_means(b.frames, b.num_frames) for b in blocks])
        dense = np.zeros((len(video), 60))
        for i, x in enumerate(x for b in blocks for x in b.labels):
            dense[i, x] = 1
        return video, dense

    a, b = make_world(5, 60), make_world(5, 60)
    np.testing.assert_array_equal(a.prototypes, b.prototypes)
    np.testing.assert_array_equal(a.roles, b.roles)
    x_train, y_train = means_and_labels(5, "train")
    seen = y_train.sum(0) >= 5
    centroids = (y_train[:, seen].T @ x_train) / y_train[:, seen].sum(0)[:, None]
    centroids -= x_train.mean(0)

    def hit_at_one(seed):
        x, y = means_and_labels(seed, "validate")
        scores = (x - x.mean(0)) @ centroids.T
        return y[:, seen][np.arange(len(x)), scores.argmax(1)].mean()

    assert hit_at_one(5) > hit_at_one(6) + 0.2


def test_frames_are_the_quantized_segments_plus_noise():
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 0.8, (4, 1152)).astype(np.float32)
    lengths = np.array([1, 5, 0, 3])
    noise = rng.integers(0, 256, (9, 1152), dtype=np.uint8)
    knobs = Knobs()
    steps = np.concatenate([_noise_table(knobs.frame_noise_std)[noise[:, :RGB_SIZE]],
                            _noise_table(knobs.frame_noise_std * knobs.audio_scale)[noise[:, RGB_SIZE:]]], 1)
    expected = quantize(np.repeat(vectors, lengths, axis=0).astype(np.float64) + steps * SCALE)
    got = quantized_frames(vectors, lengths, noise, knobs)
    assert got.dtype == np.uint8 and got.shape == (9, 1152)
    assert np.abs(got.astype(int) - expected).max() <= 1 and (got != expected).mean() < 1e-4  # float rounding
    assert np.std(steps[:, :RGB_SIZE] * SCALE) == pytest.approx(knobs.frame_noise_std, rel=0.1)


def _clean_frames(world, knobs, label, length, seed=0):
    """A video with one label and no noise at all, as float frames."""
    vectors, lengths = _segments(np.random.default_rng(seed), world, knobs, np.array([label]), length)
    return np.repeat(vectors, lengths, axis=0) - world.mean


def test_stretch_classes_show_evidence_only_in_a_stretch():
    world = make_world(2, 200)
    knobs = replace(Knobs(), video_std=0, scene_std=0, missing_evidence=0, distractors=0)
    label = int(np.flatnonzero(world.roles == STRETCH)[0])
    for seed in range(5):
        frames = _clean_frames(world, knobs, label, 200, seed)
        active = np.flatnonzero(np.abs(frames).sum(1) > 0)
        low, high = knobs.stretch_share_of_video
        assert low * 200 - 1 <= len(active) <= high * 200 + 1
        assert (np.diff(active) == 1).all()  # one contiguous stretch
        proto = world.prototypes[label]
        cosine = frames[active] @ proto / np.linalg.norm(frames[active], axis=1) / np.linalg.norm(proto)
        np.testing.assert_allclose(cosine, 1, atol=1e-4)


def test_order_classes_differ_only_in_order():
    world = make_world(2, 200)
    knobs = replace(Knobs(), video_std=0, scene_std=0, missing_evidence=0, distractors=0, amplitude=(1, 1))
    x = int(np.flatnonzero(world.roles == ORDER_AB)[0])
    assert world.roles[x + 1] == ORDER_BA and world.order_pair[x] == world.order_pair[x + 1]
    a, b = world.contents[world.order_pair[x]]
    ab, ba = _clean_frames(world, knobs, x, 100), _clean_frames(world, knobs, x + 1, 100)
    np.testing.assert_allclose(ab[0], a, atol=1e-5)
    np.testing.assert_allclose(ab[-1], b, atol=1e-5)
    np.testing.assert_allclose(ba[0], b, atol=1e-5)
    np.testing.assert_allclose(ba[-1], a, atol=1e-5)
    # Over many videos the means of "A then B" and "B then A" are the same: only order tells them apart.
    mean_ab = np.mean([_clean_frames(world, knobs, x, 100, s).mean(0) @ (a - b) for s in range(200)])
    mean_ba = np.mean([_clean_frames(world, knobs, x + 1, 100, s).mean(0) @ (a - b) for s in range(200)])
    assert abs(mean_ab - mean_ba) < 0.05 * np.linalg.norm(a - b) ** 2


def test_video_blocks_are_deterministic():
    world = make_world(9, CLASSES)
    one, two = make_block(world, 9, "train", 20, 10), make_block(world, 9, "train", 20, 10)
    np.testing.assert_array_equal(one.frames, two.frames)
    assert one.ids == two.ids and all((p == q).all() for p, q in zip(one.labels, two.labels, strict=True))
    other = make_block(world, 9, "validate", 20, 10)
    assert other.ids != one.ids and other.frames.shape != one.frames.shape or (other.frames != one.frames).any()


def test_a_failed_run_leaves_the_earlier_shards_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "VIDEOS_PER_SHARD", 10)
    monkeypatch.setattr(synth, "BLOCK", 5)
    generate(tmp_path, "video", "train", 25, seed=1, classes=50, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write = data.writer.write_shard
    calls = []

    def failing_write(path, videos, fmt):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, videos, fmt)

    monkeypatch.setattr(data.writer, "write_shard", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate(tmp_path, "video", "train", 25, seed=2, classes=50, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary folder either


def test_the_staging_folder_of_a_killed_run_is_removed_by_the_next(tmp_path):
    killed = tmp_path / ".train.k1ll3d.tmp"  # what `data synth` leaves when it is killed while writing
    killed.mkdir()
    (killed / "train0000.tfrecord").write_bytes(b"half a shard")
    (tmp_path / ".validate.other.tmp").mkdir()  # another split's run may still be writing: left alone
    generate(tmp_path, "video", "train", 5, seed=1, classes=50, progress=False)
    assert not killed.exists() and (tmp_path / ".validate.other.tmp").is_dir()
