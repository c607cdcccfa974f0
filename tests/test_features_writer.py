"""The one store writer: what an interrupted run left is kept only when the journal vouches for it."""

import numpy as np

from data.formats import FEATURE_SIZE
from data.reader import Batch
from features.store import Source, Store
from features.writer import JOURNAL, StoreWriter, create_store, parts_folder

SOURCES = [Source("a.tfrecord", 100, 2, fingerprint="a"), Source("b.tfrecord", 100, 3, fingerprint="b")]


def batch(first: int, count: int) -> Batch:
    """Frame-level videos first..first+count-1 with 3 frames each and one label."""
    rng = np.random.default_rng(first)
    frames = rng.integers(0, 256, (3 * count, FEATURE_SIZE), dtype=np.uint8)
    return Batch(0, [f"v{first + i}" for i in range(count)], [np.array([first + i]) for i in range(count)],
                 rng.standard_normal((count, FEATURE_SIZE)).astype(np.float32), frames, np.full(count, 3))


def writer(out) -> StoreWriter:
    return StoreWriter(out, level="frame", num_classes=10, version=None)


def same(old: Source, new: Source) -> bool:
    return old.same_file(new)


def store_bytes(path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def straight(out) -> dict:
    w = writer(out)
    w.start(SOURCES, same)
    w.add(batch(0, 2))
    w.end_shard(SOURCES[0])
    w.add(batch(2, 3))
    w.end_shard(SOURCES[1])
    w.publish()
    return store_bytes(out)


def test_a_cut_journal_line_and_rows_after_the_last_full_line_are_dropped(tmp_path):
    out = tmp_path / "store"
    w = writer(out)
    assert w.start(SOURCES, same) == 0
    w.add(batch(0, 2))
    w.end_shard(SOURCES[0])
    w.add(batch(2, 1))  # shard b half written: rows on disk, no journal line
    w._flush()
    with open(parts_folder(out) / JOURNAL, "a") as journal:
        journal.write('{"source": {"name": "b.tfrec')  # killed while appending b's line
    again = writer(out)
    assert again.start(SOURCES, same) == 1
    again.add(batch(2, 3))
    again.end_shard(SOURCES[1])
    manifest = again.publish()
    assert manifest.num_videos == 5 and [s.name for s in manifest.sources] == ["a.tfrecord", "b.tfrecord"]
    assert not parts_folder(out).exists()
    assert store_bytes(out) == straight(tmp_path / "reference")


def test_parts_the_journal_cannot_vouch_for_are_removed(tmp_path):
    out = tmp_path / "store"
    w = writer(out)
    w.start(SOURCES, same)
    w.add(batch(0, 2))
    w.end_shard(SOURCES[0])
    w.close()
    frames = parts_folder(out) / "frames.grow"
    frames.write_bytes(frames.read_bytes()[:-10])  # shorter than the journal says
    assert writer(out).start(SOURCES, same) == 0
    assert sorted(p.name for p in parts_folder(out).iterdir()) == [
        "frame_offsets.grow", "frames.grow", "ids.grow", JOURNAL, "labels_indices.grow", "labels_indptr.grow",
        "video.grow"]
    assert len((parts_folder(out) / JOURNAL).read_text().splitlines()) == 1  # started over: no shard yet
    other = StoreWriter(out, level="video", num_classes=10)  # another kind of store: nothing is kept
    assert other.start(SOURCES, same) == 0


def test_a_failure_before_any_finished_shard_leaves_nothing(tmp_path):
    out = tmp_path / "store"
    w = writer(out)
    w.start(SOURCES, same)
    w.add(batch(0, 2))
    w.close()
    assert not parts_folder(out).exists()


def test_create_store_goes_through_the_writer(tmp_path):
    store = create_store(tmp_path / "s", ["x", "yy"], [[1], []], np.ones((2, FEATURE_SIZE)), num_classes=5)
    assert isinstance(store, Store) and store.manifest.id_width == 2 and store.manifest.sources == []
    assert not parts_folder(tmp_path / "s").exists()
