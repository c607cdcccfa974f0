"""`python -m submissions submit|status` against a fake kaggle package: calls, errors, no secrets shown."""

import json
import sys

import pytest

from common.errors import InputError
from evaluation.leaderboard import kaggle_scores
from submissions.__main__ import main
from submissions.kaggle_client import credential_source
from tests.fake_kaggle import install

SECRET = "0123456789abcdef-secret"
CREDENTIAL_VARS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME")


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """The fake client on sys.path, credentials in the environment, a clean HOME; yields the call log."""
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(install(tmp_path / "fake")))
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_KAGGLE_MODE", "ok")
    yield tmp_path / "calls.jsonl"
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        del sys.modules[name]  # the fake must not leak into other tests


def calls(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "synthetic-qrnn_test.csv"
    path.write_text("VideoId,LabelConfidencePairs\na,1 0.9 2 0.5\nb,3 0.7\n")
    return path


def submit(csv, *extra):
    return main(["submit", "--competition", "youtube8m-2018", "--file", str(csv), "--message", "qrnn run 1",
                 *extra])


def test_submit_validates_then_uploads_and_prints_the_reference(kaggle, csv, capsys):
    assert submit(csv) == 0
    out, err = capsys.readouterr()
    assert [c["call"] for c in calls(kaggle)] == ["authenticate", "competition_submit"]
    upload = calls(kaggle)[1]
    assert (upload["file_name"], upload["message"], upload["competition"], upload["rows"]) == (
        str(csv), "qrnn run 1", "youtube8m-2018", 2)
    assert "valid: 2 videos" in out and "submission ref 4242" in out
    assert SECRET not in out + err


def test_dry_run_validates_without_importing_kaggle(kaggle, csv, capsys):
    assert submit(csv, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "youtube8m-2018" in out and "'qrnn run 1'" in out and "2 rows" in out
    assert "kaggle" not in sys.modules and calls(kaggle) == []


def test_an_invalid_file_is_never_uploaded(kaggle, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("VideoId,LabelConfidencePairs\na,99999 0.5\n")
    with pytest.raises(InputError, match="line 2: label 99999 is outside"):
        submit(bad)
    assert calls(kaggle) == []


@pytest.mark.parametrize("mode, message", [
    ("forbidden", "HTTP 403: not allowed (have you accepted the rules"),
    ("offline", "cannot reach Kaggle (no network?)"),
    ("rejected", "did not accept the upload: Could not submit to competition"),
    ("badauth", "did not accept the credentials from KAGGLE_USERNAME and KAGGLE_KEY"),
])
def test_failures_are_one_line_with_a_nonzero_exit_and_the_csv_untouched(kaggle, csv, capsys, monkeypatch,
                                                                          mode, message):
    monkeypatch.setenv("FAKE_KAGGLE_MODE", mode)
    before = (csv.read_bytes(), csv.stat().st_mtime_ns)
    assert submit(csv) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Authentication required" not in out  # the client's own help text is replaced by our line
    assert SECRET not in out + err
    assert (csv.read_bytes(), csv.stat().st_mtime_ns) == before


def test_no_credentials_stops_before_the_client(kaggle, csv, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert submit(csv) == 1
    err = capsys.readouterr().err
    assert "no Kaggle credentials found" in err and "kaggle.json" in err
    assert calls(kaggle) == [] and "kaggle" not in sys.modules


def test_credential_sources_mirror_the_client(tmp_path):
    home = tmp_path / "home"
    assert credential_source({"HOME": str(home)}) is None
    assert credential_source({"HOME": str(home), "KAGGLE_API_TOKEN": "x"}) == "KAGGLE_API_TOKEN"
    assert credential_source({"HOME": str(home), "KAGGLE_USERNAME": "u"}) is None  # a key is needed too
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text("{}")
    assert credential_source({"HOME": str(home)}) == str(home / ".kaggle" / "kaggle.json")
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    assert credential_source({"HOME": str(home), "KAGGLE_CONFIG_DIR": str(elsewhere)}) is None
    (elsewhere / "kaggle.json").write_text("{}")
    assert credential_source({"HOME": str(home), "KAGGLE_CONFIG_DIR": str(elsewhere)}) == str(
        elsewhere / "kaggle.json")


def test_status_lists_and_saves_what_the_leaderboard_reads(kaggle, tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["status", "--competition", "youtube8m-2018", "--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    assert "synthetic-qrnn_test.csv" in out and "0.8123" in out and "pending" in out
    saved = json.loads((work / "submissions" / "kaggle" / "youtube8m-2018.json").read_text())
    assert saved[0] == {"fileName": "synthetic-qrnn_test.csv", "date": "2018-08-01T12:30:00+00:00",
                        "description": "qrnn", "status": "complete", "publicScore": "0.8123",
                        "privateScore": "0.8101", "ref": 2}
    assert saved[1]["publicScore"] is None and saved[1]["status"] == "pending"
    assert kaggle_scores(work) == {("synthetic-qrnn", "test"): (0.8123, 0.8101)}


def test_status_offline_is_one_line(kaggle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_MODE", "offline")
    assert main(["status", "--competition", "youtube8m-2018", "--workdir", str(tmp_path / "w")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "w" / "submissions" / "kaggle").exists()
