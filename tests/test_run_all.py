"""run_all.sh end to end on a tiny synthetic dataset: every stage, its files, a second run in which every
command says it is up to date and that submits (to a fake kaggle client), and a failing stage named in the
error."""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from submissions.validate import check_submission
from tests.fake_kaggle import install

REPO = Path(__file__).resolve().parents[1]
MODELS = ("qrnn", "nextvlad", "lstm", "moe", "logistic")
RUNS = (*MODELS, "ensemble")  # the ensemble of every model trained comes last
TINY = ("--videos", "40", "--epochs", "1")


def run_all(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "run_all.sh"), *args], capture_output=True, text=True, env=env,
                          timeout=1200)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One complete tiny run; the environment points kaggle at the fake client and a throw-away HOME."""
    root = tmp_path_factory.mktemp("run_all")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "YT8M_"))}
    env.update(PYTHONPATH=str(install(root / "fake")), HOME=str(root / "home"), KAGGLE_USERNAME="someone",
               KAGGLE_KEY="not-a-real-key", FAKE_KAGGLE_LOG=str(root / "kaggle.jsonl"))
    work = root / "work"
    first = run_all("--workdir", str(work), *TINY, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return work, first, env, root / "kaggle.jsonl"


@pytest.mark.slow
def test_first_run_writes_every_stage_s_files(pipeline):
    work, first, _, _ = pipeline
    features = work / "features" / "synthetic"
    for split in ("train", "validate", "test"):
        assert list((work / "data" / "synthetic" / split).glob("*.tfrecord"))
        assert (features / split / "manifest.json").is_file()
    for model in RUNS:
        run = f"synthetic-{model}"
        card = json.loads((work / "models" / run / "card.json").read_text())
        assert card["model"] == model and card["inference_videos_per_second"] > 0
        for split in ("validate", "test"):  # each CSV passes the upload validation, every video once
            checked = check_submission(work / "submissions" / f"{run}_{split}.csv", "youtube8m-2018",
                                       features / split)
            assert checked.rows == 10  # --videos 40: validate and test get max(40 / 5, 10)
        scores = json.loads((work / "evaluation" / "scores" / f"{run}_validate.json").read_text())
        assert scores["num_videos"] == 10 and 0 <= scores["gap"] <= 1
    members = json.loads((work / "models" / "synthetic-ensemble" / "card.json").read_text())["ensemble"]["members"]
    assert [m["run"] for m in members] == [f"synthetic-{m}" for m in MODELS]
    with open(work / "evaluation" / "leaderboard.csv") as f:
        runs = {row["run"] for row in csv.DictReader(f)}
    assert {f"synthetic-{m}" for m in RUNS} <= runs
    assert (work / "evaluation" / "leaderboard.md").is_file()
    assert "| synthetic-qrnn |" in first.stdout  # the table is printed at the end
    assert f"leaderboard    {work}/evaluation/leaderboard.md" in first.stdout


@pytest.mark.slow
def test_second_run_skips_every_stage_and_submits_the_best_test_csv(pipeline):
    work, _, env, kaggle_log = pipeline
    second = run_all("--workdir", str(work), *TINY, "--submit", "youtube8m-2018", env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    blocks = ("\n" + second.stdout).split("\n== ")[1:]  # each stage's header and what its command printed
    stages = [b for b in blocks if not b.startswith(("leaderboard", "submit"))]
    assert len(stages) == 3 + 3 + 4 * 6  # data, features, then train/predict x2/score per run
    assert all("up to date" in b for b in stages), [b for b in stages if "up to date" not in b]
    assert not (work / ".run_all").exists()  # no stamps: each command's own check is the skip rule
    scores = {m: json.loads((work / "evaluation" / "scores" / f"synthetic-{m}_validate.json").read_text())["gap"]
              for m in RUNS}
    best = max(scores, key=scores.get)
    uploads = [json.loads(line) for line in kaggle_log.read_text().splitlines()]
    assert uploads[-1]["call"] == "competition_submit"
    assert uploads[-1]["file_name"] == str(work / "submissions" / f"synthetic-{best}_test.csv")
    assert uploads[-1]["competition"] == "youtube8m-2018" and uploads[-1]["rows"] == 10


@pytest.mark.slow
def test_a_failing_stage_stops_the_run_and_is_named(pipeline):
    work, _, env, _ = pipeline
    bogus = work / "evaluation" / "scores" / "zzz_validate.json"
    bogus.write_text("{}")
    try:
        failed = run_all("--workdir", str(work), *TINY, "--models", "logistic", env=env)
    finally:
        bogus.unlink()
    assert failed.returncode == 2
    assert f"error: {bogus}: a score file needs numbers" in failed.stderr
    assert 'run_all: stage "leaderboard" failed (exit 2)' in failed.stderr


def test_an_unknown_model_is_refused_before_any_stage(tmp_path):
    refused = run_all("--workdir", str(tmp_path / "w"), "--models", "qrnn,nosuch")
    assert refused.returncode == 2 and "== " not in refused.stdout
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "run_all: --models: unknown model 'nosuch' (known: logistic,moe,lstm,qrnn,")
    assert not (tmp_path / "w").exists()


def test_help_and_bad_options():
    shown = run_all("--help")
    assert shown.returncode == 0 and "--source" in shown.stdout and "--submit SLUG" in shown.stdout
    bad = run_all("--videos", "many")
    assert bad.returncode == 2 and "whole number" in bad.stderr
    unknown = run_all("--colour", "blue")
    assert unknown.returncode == 2 and "unknown option --colour" in unknown.stderr


def test_checks_that_need_no_pipeline_fail_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "YT8M_"))}
    env["HOME"] = str(tmp_path / "home")  # no ~/.kaggle here
    no_credentials = run_all("--workdir", str(tmp_path / "w"), "--submit", "youtube8m-2018", env=env)
    assert no_credentials.returncode == 1 and "no Kaggle credentials found" in no_credentials.stderr
    assert not (tmp_path / "w").exists()
    (tmp_path / "shards" / "validate").mkdir(parents=True)
    (tmp_path / "shards" / "validate" / "validate0000.tfrecord").write_bytes(b"")
    no_train = run_all("--workdir", str(tmp_path / "w"), "--source", str(tmp_path / "shards"), env=env)
    assert no_train.returncode == 2 and "no train shards" in no_train.stderr
