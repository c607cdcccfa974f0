"""Scoring CSVs: equal to scoring the dense predictions they came from; missing/extra videos; the CLI."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from common.cli import run
from common.errors import InputError
from evaluation.__main__ import main
from evaluation.metrics import evaluate, top_k
from evaluation.score import run_and_split, save_report, score_files
from features.writer import create_store
from tests.test_evaluation_metrics import official_gap, official_hit_and_perr


def write_submission(path, ids, scores, k=20, order=None):
    """A Kaggle CSV of each row's top k, scores written exactly (repr), rows in `order`."""
    labels, best = top_k(scores, k)
    lines = ["VideoId,LabelConfidencePairs"]
    for row in order if order is not None else range(len(ids)):
        pairs = " ".join(f"{label} {score!r}" for label, score in zip(labels[row].tolist(), best[row].tolist(),
                                                                      strict=True))
        lines.append(f"{ids[row]},{pairs}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_truth(path, ids, truth):
    lines = ["VideoId,Labels"] + [f"{vid}," + " ".join(map(str, np.flatnonzero(row))) for vid, row in
                                  zip(ids, truth, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_scoring_a_csv_equals_scoring_its_dense_predictions(tmp_path_factory, data):
    videos = data.draw(st.integers(1, 15))
    classes = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 6))
    values = st.one_of(st.sampled_from([0.0, 0.25, 0.5, -0.5]), st.floats(-1, 1, allow_nan=False))  # ties too
    scores = data.draw(hnp.arrays(np.float64, (videos, classes), elements=values))
    truth = data.draw(hnp.arrays(np.float32, (videos, classes), elements=st.sampled_from([0.0, 1.0])))
    order = data.draw(st.permutations(range(videos)))  # rows written in any order
    folder = tmp_path_factory.mktemp("score")
    ids = [f"v{i:03d}" for i in range(videos)]
    sub = write_submission(folder / "m_validate.csv", ids, scores, k, order)
    got = score_files(sub, write_truth(folder / "truth.csv", ids, truth), num_classes=classes, k=k)
    assert got.scores == evaluate(scores, truth, k)
    assert got.num_missing == 0


def test_missing_videos_are_misses_and_reported(tmp_path):
    ids = ["a", "b", "c", "d"]
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.3, 0.2, 0.1], [0.5, 0.4, 0.0]])
    truth_csv = write_truth(tmp_path / "truth.csv", ids, truth)
    sub = write_submission(tmp_path / "m_validate.csv", ids, scores, k=2, order=[0, 1])  # c, d missing
    got = score_files(sub, truth_csv, num_classes=3)
    # Pool: a (0.9 T, 0.1 F), b (0.8 T, 0.2 F) -> sorted 0.9 T, 0.8 T, 0.2 F, 0.1 F: AP sum 1 + 1 = 2.
    # Positives: 1 + 1 + 1 (c) + 2 (d) = 5 -> GAP 0.4; Hit@1 2/4; PERR (1 + 1 + 0 + 0) / 4
    assert got.num_missing == 2 and got.scores.num_videos == 4 and got.scores.num_positives == 5
    assert got.scores.gap == pytest.approx(0.4) and got.scores.hit_at_one == 0.5 and got.scores.perr == 0.5
    assert "2 missing from the submission" in got.text()


def test_extra_videos_are_an_error_unless_ignored(tmp_path):
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("VideoId,Labels\na,1\n")
    sub = tmp_path / "m_validate.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.5\nzz,2 0.5\n")
    with pytest.raises(InputError, match=r"line 3: video 'zz' is not in the ground truth"):
        score_files(sub, truth_csv)
    got = score_files(sub, truth_csv, ignore_extra=True)
    assert got.num_ignored == 1 and got.scores.gap == 1.0 and got.scores.num_videos == 1


def test_truth_store_and_saved_json(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"vid{i}" for i in range(50)]
    truth = (rng.random((50, 30)) < 0.1).astype(np.float32)
    scores = rng.random((50, 30)).astype(np.float32)
    store = create_store(tmp_path / "store", ids, [np.flatnonzero(r) for r in truth],
                         np.zeros((50, 1152), np.float32), num_classes=30)
    sub = write_submission(tmp_path / "my_run_validate.csv", ids, scores)
    report = score_files(sub, store.path)
    assert report.scores == evaluate(scores, truth)
    saved = save_report(report, tmp_path / "ws")
    assert saved == tmp_path / "ws" / "evaluation" / "scores" / "my_run_validate.json"
    data = json.loads(saved.read_text())
    assert (data["run"], data["split"], data["gap"]) == ("my_run", "validate", report.scores.gap)
    assert run_and_split("qrnn_2_test.csv") == ("qrnn_2", "test") and run_and_split("x.csv") == ("x", "")


def test_cli_report_json_and_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("YT8M_WORKDIR", raising=False)
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("VideoId,Labels\na,1\nb,2\n")
    sub = tmp_path / "qrnn_validate.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.9 2 0.1\n")
    ws = tmp_path / "ws"
    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth_csv), "--json",
                      "--workdir", str(ws)]) == 0
    printed = json.loads(capsys.readouterr().out)
    # pool 0.9 T, 0.1 F; positives 2 (b missing) -> GAP 0.5; Hit@1 1/2; PERR 1/2
    assert printed["gap"] == 0.5 and printed["num_missing"] == 1 and printed["num_positives"] == 2
    saved = ws / "evaluation" / "scores" / "qrnn_validate.json"
    assert json.loads(saved.read_text())["gap"] == 0.5

    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth_csv)]) == 0
    assert "GAP@20" in capsys.readouterr().out
    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth_csv), "--workdir", str(ws)]) == 0
    assert capsys.readouterr().out.endswith(f"GAP@20      0.500000\nHit@1       0.500000\nPERR        0.500000\n"
                                            f"{saved}: up to date\n")  # the same inputs: the saved report
    truth_csv.write_text("VideoId,Labels\na,1\nb,1\n")
    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth_csv), "--workdir", str(ws)]) == 0
    assert f"saved       {saved}" in capsys.readouterr().out and json.loads(saved.read_text())["perr"] == 0.5

    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.9 2 inf\n")  # a failed run keeps the old scores
    assert run(main, ["score", "--submission", str(sub), "--truth", str(truth_csv), "--workdir", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {sub}: line 2: score 'inf' of label 2 is not a finite number"
    assert json.loads(saved.read_text())["gap"] == 0.5


@pytest.mark.slow
def test_real_youtube8m_labels(yt8m_2018_dir, tmp_path):
    """Real 2018 validate videos and labels; predictions from the real features through a fixed random
    projection, lifted on some true labels so that the scores are neither trivial nor random."""
    from data.reader import list_shards, read_batches

    ids, labels, video = [], [], []
    for shard in list_shards(yt8m_2018_dir)[:3]:
        for batch in read_batches(shard):
            ids += batch.ids
            labels += batch.labels
            video.append(batch.video)
    video = np.concatenate(video)
    truth = np.zeros((len(ids), 3862), np.float32)
    for row, row_labels in enumerate(labels):
        truth[row, row_labels] = 1
    rng = np.random.default_rng(0)
    logits = video.astype(np.float64) @ rng.standard_normal((1152, 3862)) / 30
    scores = 1 / (1 + np.exp(-logits)) * 0.5 + truth * rng.random(truth.shape) * 0.6  # float64: no ties
    dense = evaluate(scores, truth)
    assert dense.gap == pytest.approx(official_gap(scores, truth, 20), abs=1e-9)
    hit, perr = official_hit_and_perr(scores, truth)  # every real video has at most 17 <= 20 labels
    assert dense.hit_at_one == pytest.approx(hit, abs=1e-12) and dense.perr == pytest.approx(perr, abs=1e-12)
    assert 0.2 < dense.gap < 0.95 and dense.num_positives == sum(len(x) for x in labels)

    store = create_store(tmp_path / "store", ids, labels, video, num_classes=3862)
    sub = write_submission(tmp_path / "real_validate.csv", ids, scores)
    assert score_files(sub, store.path).scores == dense


def test_store_vocabulary_wins(tmp_path):
    store = create_store(tmp_path / "store", ["a"], [[1]], np.zeros((1, 1152), np.float32), num_classes=30)
    sub = tmp_path / "m_validate.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.5 29 0.4\n")
    assert score_files(sub, store.path).scores.gap == 1.0
    with pytest.raises(InputError, match="has 30 classes, not 3862"):
        score_files(sub, store.path, num_classes=3862)


def test_a_store_with_a_repeated_id_is_refused(tmp_path):
    store = create_store(tmp_path / "store", ["a", "a"], [[1], [2]], np.zeros((2, 1152), np.float32),
                         num_classes=5)
    sub = tmp_path / "m_validate.csv"
    sub.write_text("VideoId,LabelConfidencePairs\na,1 0.5\n")
    with pytest.raises(InputError, match="video id 'a' appears more than once"):
        score_files(sub, store.path)
