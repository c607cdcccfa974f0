"""`python -m evaluation`: --help on every level, and a missing file is one clear line with exit 2."""

import subprocess
import sys

import pytest

from common.cli import run
from evaluation.__main__ import main
from tests.conftest import REPO


@pytest.mark.parametrize("argv", [["--help"], ["score", "--help"], ["leaderboard", "--help"]])
def test_help_on_every_level(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: python -m evaluation" in capsys.readouterr().out


def test_missing_submission_is_one_line(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("VideoId,Labels\na,1\n")
    assert run(main, ["score", "--submission", str(tmp_path / "nope.csv"), "--truth", str(truth)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.csv'}: no such file or folder\n"


def test_runs_as_a_module(tmp_path):
    sub, truth = tmp_path / "r_validate.csv", tmp_path / "truth.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.9\nb,7 0.5\n")
    truth.write_text("VideoId,Labels\na,1\nb,2\n")
    done = subprocess.run([sys.executable, "-m", "evaluation", "score", "--submission", str(sub), "--truth",
                           str(truth), "--classes", "5"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == f"error: {sub}: line 3: label 7 is outside the 5-class vocabulary (0..4)\n"


def test_classes_zero_is_refused_not_ignored(tmp_path, capsys):
    sub, truth = tmp_path / "r_validate.csv", tmp_path / "truth.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.9\n")
    truth.write_text("VideoId,Labels\na,1\n")
    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth), "--classes", "0"]) == 2
    assert capsys.readouterr().err == "error: --classes: the vocabulary needs at least 1 class, not 0\n"
