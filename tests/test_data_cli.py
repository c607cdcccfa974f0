"""`python -m data ...` as a user runs it: summaries on success, one-line errors and exit 2 on bad input."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_data_download import server  # noqa: F401  (the local HTTP server fixture)


def _run(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "data", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _error_line(result) -> str:
    """The one `error:` line of stderr (TensorFlow may print start-up chatter before it)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "train"
    result = _run("synth", "--out", out, "--level", "frame", "--split", "train", "--videos", 12,
                  "--seed", 2, "--classes", 100)
    assert result.returncode == 0, result.stderr
    assert "wrote 12 frame-level videos (train, seed 2, 100 classes)" in result.stdout
    return out


def test_synth_then_check_prints_the_summary(shards):
    result = _run("check", "--shards", shards)
    assert result.returncode == 0, result.stderr
    summary = json.loads((shards / "train.synth.json").read_text())
    assert "format: frame level 2018 (id key" in result.stdout and "videos: 12" in result.stdout
    assert f"frames: {summary['frames']:,}" in result.stdout
    assert f"labels/video: mean {summary['labels_mean']:.2f}, max {summary['labels_max']}" in result.stdout
    assert "skipped: 0" in result.stdout


def test_check_of_an_empty_folder_is_one_error_line(tmp_path):
    result = _run("check", "--shards", tmp_path)
    assert result.returncode == 2
    assert _error_line(result) == f"error: {tmp_path}: no .tfrecord shards found"


def test_check_of_a_truncated_shard_names_file_and_record(shards, tmp_path):
    data = (shards / "train0000.tfrecord").read_bytes()
    broken = tmp_path / "train0000.tfrecord"
    broken.write_bytes(data[: len(data) - 1000])
    result = _run("check", "--shards", tmp_path)
    assert result.returncode == 2
    assert _error_line(result).startswith(f"error: {broken}: record 11: ")
    skipping = _run("check", "--shards", tmp_path, "--skip-corrupt")
    assert skipping.returncode == 0, skipping.stderr
    assert "videos: 11" in skipping.stdout and "skipped: 1" in skipping.stdout


def test_check_skip_corrupt_skips_an_unreadable_shard_like_a_bad_record(shards, tmp_path):
    shutil.copy(shards / "train0000.tfrecord", tmp_path / "train0001.tfrecord")
    data = bytearray((shards / "train0000.tfrecord").read_bytes())
    data[40] ^= 0xFF  # record 0's CRC no longer matches
    (tmp_path / "train0000.tfrecord").write_bytes(bytes(data))
    (tmp_path / "train0002.tfrecord").write_bytes(b"")
    result = _run("check", "--shards", tmp_path)
    assert _error_line(result).startswith(f"error: {tmp_path / 'train0000.tfrecord'}: record 0: ")
    skipping = _run("check", "--shards", tmp_path, "--skip-corrupt")
    assert skipping.returncode == 0, skipping.stderr
    assert "videos: 12" in skipping.stdout and "skipped: 2" in skipping.stdout
    assert "train0000.tfrecord: record 0: corrupt" in skipping.stdout and "train0002.tfrecord: empty" in skipping.stdout


def test_download_md5_mismatch_exits_2_with_one_line(server, tmp_path):  # noqa: F811
    site = server.site
    (site / "2" / "download_plans").mkdir(parents=True)
    (site / "2" / "frame" / "validate").mkdir(parents=True)
    (site / "2" / "frame" / "validate" / "validateaa.tfrecord").write_bytes(b"good")
    (site / "2" / "frame" / "validate" / "validateab.tfrecord").write_bytes(b"corrupted")
    plan = {"validateaa.tfrecord": hashlib.md5(b"good").hexdigest(), "validateab.tfrecord": "f" * 32}
    (site / "2" / "download_plans" / "frame_validate.json").write_text(json.dumps({"files": plan}))
    env = {"YT8M_DOWNLOAD_URL": f"http://127.0.0.1:{server.server_port}"}
    result = _run("download", "--partition", "2/frame/validate", "--shards", "1,1", "--mirror", "eu",
                  "--out", tmp_path, env=env)
    assert result.returncode == 2
    assert _error_line(result).startswith(f"error: {tmp_path / 'validate0001.tfrecord'}: md5 mismatch")
    assert (tmp_path / "validate0000.tfrecord").read_bytes() == b"good"
    assert not (tmp_path / "validate0001.tfrecord").exists()


def test_help_and_bad_arguments():
    for args in ([], ["synth"], ["download"], ["check"]):
        assert _run(*args, "--help").returncode == 0
    bad = _run("synth", "--out", "x", "--level", "frame", "--split", "train", "--videos", 0)
    assert bad.returncode == 2 and "--videos: must be in 1.." in bad.stderr
    escape = _run("synth", "--out", "x", "--level", "frame", "--split", "../up", "--videos", 1)
    assert escape.returncode == 2 and "--split: must be a plain name" in escape.stderr
