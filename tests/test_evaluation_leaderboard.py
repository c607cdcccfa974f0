"""The leaderboard from a workspace with two trained models, their scores and a Kaggle listing."""

import csv
import json

import pytest

from common.card import Card
from common.cli import run
from common.errors import InputError
from evaluation.__main__ import main
from evaluation.leaderboard import PUBLISHED_NOTE, gather, markdown, write_leaderboard


def card(run_name, model, gap, inference=None):
    return Card(run=run_name, model=model, level="frame", parameters=1_234_567, file_bytes=5_000_000,
                num_classes=3862, train_videos=1000, epochs=3, best_epoch=2, train_seconds=12.5,
                train_videos_per_second=240.0, validation={"gap": gap, "hit_at_one": 0.5, "perr": 0.4},
                inference_videos_per_second=inference, created=Card.now())


@pytest.fixture
def workspace(tmp_path):
    for run_name, model, gap in [("qrnn", "qrnn", 0.61), ("logistic", "logistic", 0.52), ("moe", "moe", 0.3)]:
        folder = tmp_path / "models" / run_name
        folder.mkdir(parents=True)
        card(run_name, model, gap, inference=900.0).save(folder)
    scores = tmp_path / "evaluation" / "scores"
    scores.mkdir(parents=True)
    for run_name, gap in [("qrnn", 0.7), ("logistic", 0.55)]:
        (scores / f"{run_name}_validate.json").write_text(json.dumps(
            {"run": run_name, "split": "validate", "gap": gap, "hit_at_one": 0.8, "perr": 0.6,
             "num_videos": 10, "num_positives": 30}))
    kaggle = tmp_path / "submissions" / "kaggle"
    kaggle.mkdir(parents=True)
    (kaggle / "youtube8m-2018.json").write_text(json.dumps([
        {"fileName": "qrnn_test.csv", "date": "2026-01-01T10:00:00", "description": "old", "status": "complete",
         "publicScore": "0.60000", "privateScore": "0.59000", "ref": 1},
        {"fileName": "qrnn_test.csv", "date": "2026-01-02T10:00:00", "description": "new", "status": "complete",
         "publicScore": "0.65000", "privateScore": "0.64000", "ref": 2},
        {"fileName": "qrnn_test.csv", "date": "2026-01-03T10:00:00", "description": "pending",
         "status": "pending", "publicScore": None, "privateScore": None, "ref": 3},
        {"fileName": "someone_else.csv", "date": "2026-01-03T10:00:00", "description": "", "status": "complete",
         "publicScore": "0.9", "privateScore": "0.9", "ref": 4},
    ]))
    return tmp_path


def test_rows_sorted_by_gap_with_cards_and_kaggle(workspace):
    rows = gather(workspace)
    assert [(r.run, r.split) for r in rows] == [
        ("qrnn", "validate"), ("logistic", "validate"), ("moe", "validate"), ("qrnn", "test")]
    top = rows[0]
    assert (top.model, top.gap, top.parameters, top.size_mb, top.inference_videos_per_second) == (
        "qrnn", 0.7, 1_234_567, 5.0, 900.0)
    assert rows[2].gap == 0.3 and rows[2].note == "from training"  # moe has no score file: its card
    assert (rows[3].kaggle_public, rows[3].kaggle_private) == (0.65, 0.64)  # the latest scored entry
    assert rows[3].gap is None


def test_files_written_and_table_printed(workspace, capsys):
    assert run(main, ["leaderboard", "--workdir", str(workspace)]) == 0
    out = capsys.readouterr().out
    folder = workspace / "evaluation"
    md = (folder / "leaderboard.md").read_text()
    assert md.strip() in out
    assert "| qrnn | qrnn | validate | 70.000 | 80.000 | 60.000 | 1,234,567 | 5.00 | 12.5 | 240 | 900 |  |  |" in md
    assert "| qrnn | qrnn | test |  |  |  | 1,234,567 | 5.00 | 12.5 | 240 | 900 | 65.000 | 64.000 |" in md
    assert "| seed paper: QRNN | qrnn |  | 80.800 | 85.400 | 75.600 |" in md
    assert "| 2017 challenge: 1st place |  | test | 84.966 |" in md
    with open(folder / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table[:4]] == ["qrnn", "logistic", "moe", "qrnn"]
    assert float(table[0]["gap"]) == 0.7 and table[3]["kaggle_public"] == "0.65"
    assert sum(r["note"] == PUBLISHED_NOTE for r in table) == 7
    assert (folder / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_workspace_shows_only_published_rows(tmp_path):
    rows, written = write_leaderboard(tmp_path)
    assert rows == [] and "png" not in written
    assert "(no model cards or scores found)" in markdown(rows) and "seed paper: LSTM" in markdown(rows)


def test_bad_score_file_is_a_clear_error(workspace):
    (workspace / "evaluation" / "scores" / "broken_validate.json").write_text('{"gap": "x"}')
    with pytest.raises(InputError, match="broken_validate.json: a score file needs numbers"):
        gather(workspace)
    (workspace / "evaluation" / "scores" / "broken_validate.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        gather(workspace)


def test_a_bar_in_a_run_name_does_not_break_the_markdown_table(tmp_path):
    folder = tmp_path / "models" / "a|b"
    folder.mkdir(parents=True)
    card("a|b", "qrnn", 0.5).save(folder)
    row = next(line for line in markdown(gather(tmp_path)).splitlines() if line.startswith("| a"))
    assert row.startswith("| a\\|b | qrnn | validate | 50.000 |")
    assert row.replace("\\|", "").count("|") == 14  # 13 columns


def test_ensembles_are_listed_apart_from_single_models_with_the_caveat_of_their_fitted_weights(workspace):
    assert "## Ensembles" not in markdown(gather(workspace))
    folder = workspace / "models" / "all"
    folder.mkdir()
    card("all", "ensemble", 0.99).save(folder)
    text = markdown(gather(workspace))
    singles, ensembles = text.split("## Ensembles")
    assert "| all |" not in singles and "| all |" in ensembles.split("## Published")[0]
    assert "fitted on its validation store" in ensembles
