"""Shards -> store: equal to the shards, identical for any worker count, resumable after kill -9, bad shards
named or skipped, nothing left behind."""

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import InputError
from data.formats import AUDIO_SIZE, MAX_FRAMES, RGB_SIZE, ShardFormat, Video
from data.quantization import frame_means
from data.reader import read_shard
from data.stream import scan_shard
from data.writer import write_shard
from features.convert import convert
from features.store import Store

REPO = Path(__file__).resolve().parents[1]
FRAME_2018 = ShardFormat("frame", 2018, True)
VIDEO_2018 = ShardFormat("video", 2018, True)


def random_videos(seed: int, count: int, level: str = "frame", max_len: int = 40) -> list[Video]:
    """Videos with random bytes; one of each shard is longer than MAX_FRAMES and one has no frames."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        length = [MAX_FRAMES + 7, 0][i] if i < 2 else int(rng.integers(1, max_len))
        labels = rng.choice(3862, size=int(rng.integers(0, 5)), replace=False)
        if level == "frame":
            rgb = rng.integers(0, 256, (length, RGB_SIZE), dtype=np.uint8)
            audio = rng.integers(0, 256, (length, AUDIO_SIZE), dtype=np.uint8)
        else:
            rgb, audio = rng.standard_normal(RGB_SIZE), rng.standard_normal(AUDIO_SIZE)
        videos.append(Video(f"s{seed}v{i:02d}", labels, rgb, audio))
    return videos


def store_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(path).iterdir())}


def log_to(lines: list[str]):
    return lines.append


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory):
    """Five small frame-level shards and the videos written into them."""
    folder = tmp_path_factory.mktemp("frame_shards")
    videos = {}
    for seed in range(5):
        videos[f"train{seed:04d}.tfrecord"] = random_videos(seed, 6)
        write_shard(folder / f"train{seed:04d}.tfrecord", videos[f"train{seed:04d}.tfrecord"], FRAME_2018)
    return folder, videos


@pytest.fixture(scope="module")
def frame_store(frame_shards, tmp_path_factory):
    """The frame shards converted in this process (one worker): the reference every variant must equal."""
    out = tmp_path_factory.mktemp("frame_store") / "store"
    convert(frame_shards[0], out, workers=1, log=log_to([]))
    return out


@pytest.fixture(scope="module")
def real_2018_store(yt8m_2018_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "validate"
    convert(yt8m_2018_dir, out, workers=1, log=log_to([]))
    return out


def test_real_2018_shards_convert_to_equal_features(real_2018_store, yt8m_2018_dir):
    import tensorflow as tf

    store = Store(real_2018_store)
    assert len(store) == 28_792 and store.level == "video" and store.has_labels
    assert store.manifest.version == 2018 and store.num_classes == 3862 and store.manifest.id_width == 4
    assert [s.name for s in store.manifest.sources] == [f"validate{i:04d}.tfrecord" for i in range(100)]
    assert sum(s.records for s in store.manifest.sources) == 28_792
    spec = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64),
            "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
            "mean_audio": tf.io.FixedLenFeature([128], tf.float32)}
    shards = sorted(str(p) for p in yt8m_2018_dir.glob("*.tfrecord"))
    start = 0
    for batch in tf.data.TFRecordDataset(shards).batch(4096):  # the shards, parsed independently
        parsed = tf.io.parse_example(batch, spec)
        n = len(parsed["id"])
        rows = np.arange(start, start + n)
        assert store.id_strings(rows) == [i.decode() for i in parsed["id"].numpy()]
        np.testing.assert_array_equal(store.video(rows)[:, :1024], parsed["mean_rgb"].numpy())
        np.testing.assert_array_equal(store.video(rows)[:, 1024:], parsed["mean_audio"].numpy())
        labels = tf.RaggedTensor.from_sparse(parsed["labels"]).numpy()
        assert all(store.labels(r).tolist() == list(x) for r, x in zip(rows, labels, strict=True))
        start += n
    assert start == 28_792


def test_unchanged_store_is_not_rewritten(real_2018_store, yt8m_2018_dir):
    before = {p.name: p.stat().st_mtime_ns for p in real_2018_store.iterdir()}
    lines = []
    convert(yt8m_2018_dir, real_2018_store, log=log_to(lines))
    assert lines == [f"{real_2018_store}: up to date (28,792 videos from 100 shards)"]
    assert {p.name: p.stat().st_mtime_ns for p in real_2018_store.iterdir()} == before


def test_2017_test_shards_have_no_labels(yt8m_2017_dir, tmp_path):
    convert(str(yt8m_2017_dir / "testa*.tfrecord"), tmp_path / "test", workers=1, log=log_to([]))
    store = Store(tmp_path / "test")
    assert len(store) == 1709 and not store.has_labels and store.manifest.version == 2017
    assert store.num_classes == 4716 and store.labels_indices.shape == (0,)
    expected = [v.id for path in sorted(yt8m_2017_dir.glob("testa*.tfrecord")) for v in read_shard(path)]
    assert store.id_strings() == expected and store.manifest.id_width == max(len(i) for i in expected)


def test_frame_shards_convert_to_their_bytes(frame_shards, frame_store):
    folder, videos = frame_shards
    store = Store(frame_store)
    everything = [v for name in sorted(videos) for v in videos[name]]
    assert len(store) == len(everything) == 30 and store.level == "frame"
    assert store.manifest.max_frames == MAX_FRAMES
    for i, video in enumerate(everything):
        kept = np.concatenate([video.rgb, video.audio], axis=1)[:MAX_FRAMES]
        batch, lengths = store.frames([i])
        assert store.id_strings([i]) == [video.id] and lengths[0] == len(kept)
        np.testing.assert_array_equal(batch[0, :len(kept)], kept)
        np.testing.assert_array_equal(store.labels(i), video.labels)
        np.testing.assert_array_equal(store.video([i]), frame_means(kept, [len(kept)]))
    assert store.num_frames[0] == MAX_FRAMES and store.num_frames[1] == 0  # 307 frames cut to 300
    sources = store.manifest.sources
    assert [s.name for s in sources] == sorted(videos) and [s.videos for s in sources] == [6] * 5
    assert sources[0].fingerprint == scan_shard(folder / sorted(videos)[0]).fingerprint != ""


def test_any_worker_count_and_listing_order_give_the_same_bytes(frame_shards, frame_store, tmp_path):
    shards = list(frame_shards[0].glob("*.tfrecord"))
    random.Random(3).shuffle(shards)
    convert(shards, tmp_path / "two", workers=2, log=log_to([]))
    assert store_bytes(tmp_path / "two") == store_bytes(frame_store)
    assert not (tmp_path / "two.parts").exists()


def finished_shards(parts: Path) -> int:
    """Shards the journal of a growing store vouches for (its complete lines after the first)."""
    try:
        lines = (parts / "journal.jsonl").read_text().split("\n")[:-1]  # a cut last line does not count
    except FileNotFoundError:
        return 0
    return max(len(lines) - 1, 0)


def test_killed_conversion_resumes_to_the_same_store(frame_shards, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    one = frame_shards[0] / "train0000.tfrecord"
    write_shard(shards / "big0.tfrecord", random_videos(9, 40, max_len=300), FRAME_2018)
    for i in range(1, 12):  # bigger shards, so the kill lands while shards are still being converted
        shutil.copy(shards / "big0.tfrecord", shards / f"big{i}.tfrecord")
    shutil.copy(one, shards / "small.tfrecord")
    out = tmp_path / "store"
    command = [sys.executable, "-m", "features", "convert", "--shards", str(shards), "--out", str(out),
               "--workers", "1"]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "store.parts"
    deadline = time.time() + 120
    while finished_shards(parts) < 2 and child.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists(), "the conversion finished before it could be killed"
    done = finished_shards(parts)
    assert 2 <= done < 13

    lines = []
    convert(shards, out, workers=1, log=log_to(lines))
    assert f"({13 - done} converted, {done} kept from an interrupted run)" in lines[-1]
    assert not parts.exists() and not list(tmp_path.glob(".store*"))
    reference = tmp_path / "reference"
    convert(shards, reference, workers=1, log=log_to([]))
    assert store_bytes(out) == store_bytes(reference)


def test_changed_added_and_removed_shards_rebuild_the_store(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for seed in range(3):
        write_shard(shards / f"v{seed}.tfrecord", random_videos(seed, 5, "video"), VIDEO_2018)
    out = tmp_path / "store"
    convert(shards, out, workers=1, log=log_to([]))
    changed = random_videos(1, 5, "video")
    changed[2].rgb = changed[2].rgb + 1.0
    write_shard(shards / "v1.tfrecord", changed, VIDEO_2018)  # same size and record count, other bytes
    write_shard(shards / "v3.tfrecord", random_videos(3, 4, "video"), VIDEO_2018)
    assert scan_shard(shards / "v1.tfrecord").bytes == Store(out).manifest.sources[1].bytes
    lines = []
    convert(shards, out, workers=1, log=log_to(lines))
    assert "(4 converted, 0 kept from an interrupted run)" in lines[-1]
    convert(shards, tmp_path / "fresh", workers=1, log=log_to([]))
    assert store_bytes(out) == store_bytes(tmp_path / "fresh")
    (shards / "v0.tfrecord").unlink()
    convert(shards, out, workers=1, log=log_to(lines))
    assert "(3 converted, 0 kept" in lines[-1] and len(Store(out)) == 14


def test_mixed_levels_and_versions_are_refused(frame_shards, yt8m_2018_dir, yt8m_2017_dir, tmp_path):
    frame = frame_shards[0] / "train0000.tfrecord"
    video = yt8m_2018_dir / "validate0000.tfrecord"
    with pytest.raises(InputError, match="validate0000.tfrecord: is video level 2018 but train0000"):
        convert([frame, video], tmp_path / "a", workers=1, log=log_to([]))
    with pytest.raises(InputError, match="validatea0.tfrecord: is video level 2017 but .*video level 2018"):
        convert([video, yt8m_2017_dir / "validatea0.tfrecord"], tmp_path / "b", workers=1, log=log_to([]))
    with pytest.raises(InputError, match="validatea0.tfrecord: is video level 2017 but testa0.tfrecord is"):
        convert(sorted(yt8m_2017_dir.glob("*a0.tfrecord")), tmp_path / "c", workers=1, log=log_to([]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_record_is_named_or_skipped(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    videos = random_videos(0, 6, "video")
    videos[3].labels = np.array([2, 5000])  # outside the 2018 vocabulary
    write_shard(shards / "bad.tfrecord", videos, VIDEO_2018)
    write_shard(shards / "good.tfrecord", random_videos(1, 3, "video"), VIDEO_2018)
    old = tmp_path / "store"
    convert([shards / "good.tfrecord"], old, workers=1, log=log_to([]))
    before = store_bytes(old)
    with pytest.raises(InputError, match=r"bad.tfrecord: record 3: label 5000 out of range"):
        convert(shards, old, workers=1, log=log_to([]))
    assert store_bytes(old) == before  # a failed run leaves the old store as it was
    convert(shards, old, workers=1, skip_corrupt=True, log=log_to([]))
    store = Store(old)
    assert len(store) == 8 and store.manifest.sources[0].skipped == 1
    assert store.id_strings()[:5] == [v.id for i, v in enumerate(videos) if i != 3]


def test_truncated_shard_is_named_with_its_record_and_leaves_nothing_behind(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "cut.tfrecord", random_videos(0, 4, "frame", max_len=20), FRAME_2018)
    data = (shards / "cut.tfrecord").read_bytes()
    (shards / "cut.tfrecord").write_bytes(data[:-500])
    with pytest.raises(InputError, match=r"cut.tfrecord: record 3: corrupt or truncated"):
        convert(shards, tmp_path / "store", workers=1, log=log_to([]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # no store, no store.parts


def test_a_failure_after_finished_shards_keeps_them_and_says_so(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "a.tfrecord", random_videos(0, 4, "video"), VIDEO_2018)
    videos = random_videos(1, 4, "video")
    videos[2].labels = np.array([9000])
    write_shard(shards / "b.tfrecord", videos, VIDEO_2018)
    lines = []
    with pytest.raises(InputError, match=r"b.tfrecord: record 2: label 9000"):
        convert(shards, tmp_path / "store", workers=1, log=log_to(lines))
    assert lines == [f"{tmp_path / 'store.parts'}: the 1 shards finished are kept; re-running the same command "
                     "goes on from there"]
    convert(shards, tmp_path / "store", workers=1, skip_corrupt=True, log=log_to(lines))
    assert "(1 converted, 1 kept from an interrupted run)" in lines[-1]
    assert lines[-1].endswith("; 1 bad records or shards skipped")
    assert not (tmp_path / "store.parts").exists() and len(Store(tmp_path / "store")) == 7


def bad_crc_at_record_0(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first record's data: its CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("spoil, problem", [
    (bad_crc_at_record_0, "record 0: corrupt or truncated TFRecord"),
    (lambda path: path.write_bytes(b""), "empty shard"),
    (lambda path: path.write_bytes(b"not a TFRecord file at all, just some text"), "record 0: corrupt or truncated"),
])
def test_skip_corrupt_skips_an_unreadable_shard_like_a_bad_record(tmp_path, spoil, problem):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        write_shard(shards / f"{name}.tfrecord", random_videos(seed, 3, "frame", max_len=10), FRAME_2018)
    spoil(shards / "a.tfrecord")
    with pytest.raises(InputError, match="a.tfrecord: "):
        convert(shards, tmp_path / "store", workers=2, log=log_to([]))
    lines = []
    convert(shards, tmp_path / "store", workers=2, skip_corrupt=True, log=log_to(lines))
    store = Store(tmp_path / "store")
    assert store.id_strings() == [v.id for seed in (1, 2) for v in random_videos(seed, 3)]
    assert [(s.name, s.videos, s.skipped) for s in store.manifest.sources] == [
        ("a.tfrecord", 0, 1), ("b.tfrecord", 3, 0), ("c.tfrecord", 3, 0)]
    assert lines[-1].endswith("; 1 bad records or shards skipped")
    again = []
    convert(shards, tmp_path / "store", workers=2, skip_corrupt=True, log=log_to(again))
    assert again == [f"{tmp_path / 'store'}: up to date (6 videos from 3 shards)"]
    with pytest.raises(InputError, match="a.tfrecord: "):  # without --skip-corrupt it is not up to date
        convert(shards, tmp_path / "store", workers=2, log=log_to([]))


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "features", "convert", "--shards", str(tmp_path / "none"),
                             "--out", str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'none'}: no .tfrecord shards found"


def test_store_caught_mid_rename_is_restored_and_other_folders_are_kept(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "v0.tfrecord", random_videos(0, 3, "video"), VIDEO_2018)
    out = tmp_path / "store"
    convert(shards, out, workers=1, log=log_to([]))
    out.rename(tmp_path / ".store.old")  # killed between moving the old store aside and renaming the new
    (tmp_path / ".store.x1y2.tmp").mkdir()  # a half-written store of that killed run
    lines = []
    convert(shards, out, workers=1, log=log_to(lines))
    assert lines == [f"{out}: up to date (3 videos from 1 shards)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards", "store"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="notes: exists and is not a feature store"):
        convert(shards, notes, workers=1, log=log_to([]))
    assert (notes / "keep.txt").read_text() == "mine"
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(InputError, match="a-file: exists and is not a feature store"):
        convert(shards, tmp_path / "a-file", workers=1, log=log_to([]))
    assert (tmp_path / "a-file").read_text() == "mine"


def test_bad_shard_between_good_ones_is_read_record_by_record(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        write_shard(shards / f"{name}.tfrecord", random_videos(seed, 5, "frame", max_len=20), FRAME_2018)
    data = (shards / "b.tfrecord").read_bytes()
    (shards / "b.tfrecord").write_bytes(data[:-300])  # its last record is cut
    convert(shards, tmp_path / "store", workers=2, skip_corrupt=True, log=log_to([]))
    store = Store(tmp_path / "store")
    expected = [v for name in "abc" for v in read_shard(shards / f"{name}.tfrecord", skip_corrupt=True)]
    assert store.id_strings() == [v.id for v in expected] and len(expected) == 14
    for i, video in enumerate(expected):
        batch, lengths = store.frames([i])
        np.testing.assert_array_equal(batch[0, :lengths[0]], np.concatenate([video.rgb, video.audio], 1))
    assert [s.skipped for s in store.manifest.sources] == [0, 1, 0]


def test_run_stopped_before_publishing_resumes_after_a_shard_is_removed(tmp_path, monkeypatch):
    from features.writer import StoreWriter

    shards = tmp_path / "shards"
    shards.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        write_shard(shards / f"{name}.tfrecord", random_videos(seed, 4, "frame", max_len=20), FRAME_2018)
    out = tmp_path / "store"

    def stop(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(StoreWriter, "publish", stop)
        with pytest.raises(KeyboardInterrupt):
            convert(shards, out, workers=1, log=log_to([]))
    assert finished_shards(tmp_path / "store.parts") == 3
    (shards / "b.tfrecord").unlink()  # c's rows now follow a's: c must be converted again
    lines = []
    convert(shards, out, workers=1, log=log_to(lines))
    assert "(1 converted, 1 kept from an interrupted run)" in lines[-1]
    convert(shards, tmp_path / "fresh", workers=1, log=log_to([]))
    assert store_bytes(out) == store_bytes(tmp_path / "fresh")
