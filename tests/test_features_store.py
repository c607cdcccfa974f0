"""Feature stores: create_store round trips, padded and sampled frame batches, refusing broken stores."""

import json

import numpy as np
import pytest

from common.errors import InputError
from data.formats import FEATURE_SIZE, MAX_FRAMES
from data.quantization import frame_means
from features.store import Source, Store
from features.writer import create_store


def _frame_data(rng, lengths):
    lengths = np.asarray(lengths, dtype=np.int64)
    frames = rng.integers(0, 256, (int(lengths.sum()), FEATURE_SIZE), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return frames, offsets


@pytest.fixture
def frame_store(tmp_path):
    rng = np.random.default_rng(1)
    lengths = [5, 0, 300, 17, 1]
    frames, offsets = _frame_data(rng, lengths)
    labels = [np.array([3, 1]), np.array([], np.int64), np.array([3861]), np.array([0, 5, 7]), np.array([2])]
    store = create_store(tmp_path / "frames", [f"id{i}" for i in range(5)], labels, None, frames=frames,
                         num_frames=lengths, num_classes=3862, source=Source("a.tfrecord", 10, 5))
    return store, frames, offsets, labels


def test_video_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    video = rng.standard_normal((4, FEATURE_SIZE)).astype(np.float32)
    labels = [np.array([1, 4715]), np.array([2]), np.array([], np.int64), np.array([7, 8, 9])]
    store = create_store(tmp_path / "s", ["abc", "d", "efghijklmno", "x"], labels, video, num_classes=4716)
    again = Store(tmp_path / "s")
    assert len(again) == 4 and again.level == "video" and again.has_labels
    assert again.manifest.version == 2017 and again.manifest.id_width == 11
    assert again.ids.dtype == np.dtype("S11") and again.labels_indices.dtype == np.int16
    assert again.id_strings() == ["abc", "d", "efghijklmno", "x"]
    assert again.id_strings([3, 0]) == ["x", "abc"]
    np.testing.assert_array_equal(again.video([2, 0]), video[[2, 0]])
    assert [again.labels(i).tolist() for i in range(4)] == [x.tolist() for x in labels]
    dense = again.dense_labels([0, 2, 3])
    assert dense.shape == (3, 4716) and dense.dtype == np.float32
    assert dense.sum() == 5 and dense[0, 4715] == 1 and dense[2, [7, 8, 9]].tolist() == [1, 1, 1]
    assert isinstance(store.ids, np.memmap) and isinstance(again.labels_indices, np.memmap)
    with pytest.raises(ValueError, match="no frames"):
        again.frames([0])


def test_files_and_manifest_follow_the_design(frame_store, tmp_path):
    store, frames, offsets, _ = frame_store
    names = sorted(p.name for p in store.path.iterdir())
    assert names == ["frame_offsets.npy", "frames.npy", "ids.npy", "labels_indices.npy", "labels_indptr.npy",
                     "manifest.json", "video.npy"]
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["level"] == "frame" and manifest["num_videos"] == 5 and manifest["num_frames"] == 323
    assert manifest["max_frames"] == MAX_FRAMES and manifest["features"] == {"rgb": 1024, "audio": 128}
    assert manifest["has_labels"] and manifest["num_classes"] == 3862 and manifest["version"] == 2018
    assert manifest["sources"] == [{"name": "a.tfrecord", "bytes": 10, "records": 5, "videos": None,
                                    "skipped": 0, "fingerprint": ""}]
    np.testing.assert_array_equal(np.load(store.path / "frames.npy"), frames)
    np.testing.assert_array_equal(np.load(store.path / "frame_offsets.npy"), offsets)
    np.testing.assert_array_equal(store.num_frames, [5, 0, 300, 17, 1])
    np.testing.assert_array_equal(store.video(range(5)), frame_means(frames, np.diff(offsets)))


def test_frames_first_frames_padded(frame_store):
    store, frames, offsets, _ = frame_store
    batch, lengths = store.frames([3, 1, 2])
    assert batch.shape == (3, MAX_FRAMES, FEATURE_SIZE) and batch.dtype == np.uint8
    assert lengths.dtype == np.int32 and lengths.tolist() == [17, 0, 300]
    np.testing.assert_array_equal(batch[0, :17], frames[offsets[3]:offsets[4]])
    assert not batch[0, 17:].any() and not batch[1].any()
    np.testing.assert_array_equal(batch[2], frames[offsets[2]:offsets[3]])
    short, lengths = store.frames([2, 0], max_frames=8)
    assert short.shape == (2, 8, FEATURE_SIZE) and lengths.tolist() == [8, 5]
    np.testing.assert_array_equal(short[0], frames[offsets[2]:offsets[2] + 8])


def _positions(batch, frames, lo, hi):
    """Index within [lo, hi) of each row of `batch` (rows are random bytes, so each is unique)."""
    lookup = {frames[i].tobytes(): i - lo for i in range(lo, hi)}
    return [lookup[row.tobytes()] for row in batch]


def test_random_sampling_sorted_distinct_then_with_replacement(frame_store):
    store, frames, offsets, _ = frame_store
    rng = np.random.default_rng(7)
    batch, lengths = store.frames([2, 3, 1, 4], sample="random", num_samples=20, rng=rng)
    assert batch.shape == (4, 20, FEATURE_SIZE) and lengths.tolist() == [20, 20, 0, 20]
    long = _positions(batch[0], frames, offsets[2], offsets[3])
    assert long == sorted(long) and len(set(long)) == 20  # 300 frames: 20 distinct ones
    short = _positions(batch[1], frames, offsets[3], offsets[4])
    assert short == sorted(short) and len(set(short)) < 20  # 17 frames: drawn with replacement
    assert not batch[2].any()
    assert _positions(batch[3], frames, offsets[4], offsets[5]) == [0] * 20
    again, _ = store.frames([2, 3, 1, 4], sample="random", num_samples=20, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again, batch)  # the generator alone decides the draw


def test_even_sampling_spreads_over_the_video(frame_store):
    store, frames, offsets, _ = frame_store
    batch, lengths = store.frames([2, 0], sample="even", num_samples=10)
    assert lengths.tolist() == [10, 10]
    assert _positions(batch[0], frames, offsets[2], offsets[3]) == list(range(15, 300, 30))
    assert _positions(batch[1], frames, offsets[0], offsets[1]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="sample"):
        store.frames([0], sample="middle")


def test_unlabelled_store(tmp_path):
    store = create_store(tmp_path / "test", ["a", "b"], None, np.zeros((2, FEATURE_SIZE)), num_classes=3862,
                         has_labels=False)
    assert not store.has_labels and store.labels_indices.shape == (0,)
    assert store.labels(1).tolist() == [] and not store.dense_labels([0, 1]).any()


def test_truncated_npy_is_refused(frame_store):
    store, *_ = frame_store
    path = store.path / "frames.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match="frames.npy"):
        Store(store.path)


@pytest.mark.parametrize("change, message", [
    ({"num_videos": 6}, "ids.npy"),
    ({"num_labels": 9}, "labels_indices.npy"),
    ({"num_frames": 324}, "frames.npy"),
    ({"format": 99}, "format 99"),
    ({"bogus": 1}, "unknown keys"),
])
def test_manifest_disagreeing_with_files_is_refused(frame_store, change, message):
    store, *_ = frame_store
    path = store.path / "manifest.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **change)))
    with pytest.raises(InputError, match=message):
        Store(store.path)


def test_missing_store_and_file(tmp_path, frame_store):
    with pytest.raises(InputError, match="no such store folder"):
        Store(tmp_path / "nowhere")
    store, *_ = frame_store
    (store.path / "video.npy").unlink()
    with pytest.raises(InputError, match="video.npy: missing"):
        Store(store.path)


def test_bad_offsets_are_refused(frame_store):
    store, *_ = frame_store
    path = store.path / "frame_offsets.npy"
    offsets = np.load(path)
    offsets[2], offsets[3] = offsets[3], offsets[2]
    np.save(path, offsets)
    with pytest.raises(InputError, match="frame_offsets.npy: offsets must rise"):
        Store(store.path)


def test_create_store_refuses_bad_arrays(tmp_path):
    video = np.zeros((1, FEATURE_SIZE))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        create_store(tmp_path / "a", ["x"], [[10]], video, num_classes=10)
    with pytest.raises(ValueError, match="num_frames"):
        create_store(tmp_path / "b", ["x"], [[1]], None, frames=np.zeros((301, FEATURE_SIZE)), num_frames=[301],
                     num_classes=10)
    assert not list(tmp_path.iterdir())
