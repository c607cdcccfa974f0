"""The downloader against a local HTTP server that plays data.yt8m.org: plan, shards, md5, resume, safety."""

import hashlib
import http.server
import json
import threading
from functools import partial

import pytest

from common.errors import InputError
from data import download as dl

FILES = {"trainaa.tfrecord": b"first shard " * 1000, "trainab.tfrecord": b"second" * 3000,
         "trainAB.tfrecord": b"third" * 10, "train99.tfrecord": bytes(range(256)) * 40}


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/site over HTTP on 127.0.0.1; `.requests` lists the paths asked for."""
    site = tmp_path / "site"
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(site)))
    httpd.requests = []
    httpd.site = site
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _publish(server, monkeypatch, files=FILES, md5s=None, partition="2/video/train"):
    """Put a plan and the shards on the server as data.yt8m.org lays them out."""
    version, level, split = partition.split("/")
    plan = {"files": md5s or {name: hashlib.md5(data).hexdigest() for name, data in files.items()}}
    (server.site / version / "download_plans").mkdir(parents=True, exist_ok=True)
    (server.site / version / "download_plans" / f"{level}_{split}.json").write_text(json.dumps(plan))
    (server.site / partition).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (server.site / partition / name).write_bytes(data)
    monkeypatch.setenv(dl.URL_VARIABLE, f"http://127.0.0.1:{server.server_port}")


def test_downloads_every_file_under_its_official_local_name(server, monkeypatch, tmp_path, capsys):
    _publish(server, monkeypatch)
    out = tmp_path / "out"
    paths = dl.download("2/video/train", out)
    names = {"trainaa.tfrecord": "train0000.tfrecord", "trainab.tfrecord": "train0001.tfrecord",
             "trainAB.tfrecord": "train1639.tfrecord", "train99.tfrecord": "train3843.tfrecord"}
    assert sorted(p.name for p in paths) == sorted(names.values())
    for remote, local in names.items():
        assert (out / local).read_bytes() == FILES[remote]
    assert "/2/download_plans/video_train.json" in server.requests
    assert (out / "2_video_train_download_plan.json").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*names.values(), "2_video_train_download_plan.json"])
    assert "md5 verified" in capsys.readouterr().out


def test_shard_selection_splits_the_plan_like_the_official_script(server, monkeypatch, tmp_path):
    _publish(server, monkeypatch)
    first = {p.name for p in dl.download("2/video/train", tmp_path / "a", shards="1,2")}
    second = {p.name for p in dl.download("2/video/train", tmp_path / "b", shards="2,2")}
    assert first.isdisjoint(second) and len(first | second) == len(FILES)
    for name in FILES:  # int(md5(name), 16) % Y == X - 1
        part = int(hashlib.md5(name.encode()).hexdigest(), 16) % 2 + 1
        assert dl.local_name(name, "plan") in (first if part == 1 else second)


def test_a_second_run_downloads_nothing_and_a_damaged_file_is_fetched_again(server, monkeypatch, tmp_path, capsys):
    _publish(server, monkeypatch)
    out = tmp_path / "out"
    dl.download("2/video/train", out)
    asked = len(server.requests)
    dl.download("2/video/train", out)
    assert len(server.requests) == asked  # verified files (and the saved plan) are not fetched again
    assert capsys.readouterr().out.count("already downloaded and verified") == len(FILES)
    (out / "train0001.tfrecord").write_bytes(b"half a file")
    dl.download("2/video/train", out)
    assert server.requests[asked:] == ["/2/video/train/trainab.tfrecord"]
    assert (out / "train0001.tfrecord").read_bytes() == FILES["trainab.tfrecord"]


def test_md5_mismatch_is_an_error_and_the_file_is_not_kept(server, monkeypatch, tmp_path):
    md5s = {name: hashlib.md5(data).hexdigest() for name, data in FILES.items()}
    md5s["trainab.tfrecord"] = "0" * 32
    _publish(server, monkeypatch, md5s=md5s)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"train0001\.tfrecord: md5 mismatch \(expected 0{32}, got [0-9a-f]{32}\)"):
        dl.download("2/video/train", out)
    assert not (out / "train0001.tfrecord").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert (out / "train0000.tfrecord").read_bytes() == FILES["trainaa.tfrecord"]  # the others still came


@pytest.mark.parametrize("bad", ["../evil.tfrecord", "/tmp/evilaa.tfrecord", "sub/trainaa.tfrecord",
                                 "..\\trainaa.tfrecord", "trainaa"])
def test_a_plan_naming_a_file_outside_the_output_folder_is_refused(server, monkeypatch, tmp_path, bad):
    _publish(server, monkeypatch, files={"trainaa.tfrecord": b"x"},
             md5s={bad: "0" * 32, "trainaa.tfrecord": hashlib.md5(b"x").hexdigest()})
    out = tmp_path / "out"
    with pytest.raises(InputError, match="refusing file name"):
        dl.download("2/video/train", out)
    assert not [r for r in server.requests if "video/train/" in r]  # refused before anything was fetched
    assert not (tmp_path / "evil.tfrecord").exists()


def test_bad_arguments_and_missing_files_are_input_errors(server, monkeypatch, tmp_path):
    _publish(server, monkeypatch)
    with pytest.raises(InputError, match="partition must be"):
        dl.download("2/videos/train", tmp_path)
    with pytest.raises(InputError, match="--shards must be X,Y"):
        dl.download("2/video/train", tmp_path, shards="3,2")
    with pytest.raises(InputError, match="HTTP 404"):
        dl.download("2/frame/validate", tmp_path / "nothing")  # no plan on the server
    assert not (tmp_path / "nothing" / "2_frame_validate_download_plan.json").exists()


def test_official_urls_without_the_override(monkeypatch):
    monkeypatch.delenv(dl.URL_VARIABLE, raising=False)
    part = dl.Partition.parse("2/frame/test")
    assert dl.plan_url(part) == "http://data.yt8m.org/2/download_plans/frame_test.json"
    assert dl.file_url(part, "testAb.tfrecord", "eu") == "http://eu.data.yt8m.org/2/frame/test/testAb.tfrecord"
