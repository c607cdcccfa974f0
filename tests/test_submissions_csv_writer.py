"""submissions.csv_writer: the exact CSV layout, precision that keeps scores apart, atomic writing."""

import numpy as np
import pytest

from evaluation.submission_csv import read_submission
from submissions.csv_writer import HEADER, format_rows, write_submission


def test_rows_are_id_then_label_score_pairs_without_padding():
    labels = np.array([[7, 3, -1], [0, 12, 5]])
    scores = np.array([[0.9, 0.25, -np.inf], [0.5, 0.125, 1e-9]])
    text = format_rows(["aB3d", "x9Yz"], labels, scores)
    assert text == "aB3d,7 0.9 3 0.25\nx9Yz,0 0.5 12 0.125 5 1e-09\n"


def test_written_file_reads_back_with_the_same_pairs(tmp_path):
    rng = np.random.default_rng(0)
    scores = np.sort(rng.random((50, 20)), axis=1)[:, ::-1]
    labels = np.stack([rng.choice(3862, 20, replace=False) for _ in range(50)])
    ids = [f"v{i:03d}" for i in range(50)]
    path = tmp_path / "sub.csv"
    assert write_submission(path, [(ids[:20], labels[:20], scores[:20]), (ids[20:], labels[20:], scores[20:])]) == 50
    assert path.read_text().splitlines()[0] == HEADER
    back = read_submission(path, 3862)
    assert back.ids == ids
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_allclose(back.scores, scores, rtol=1e-5)


def test_tiny_scores_stay_distinct_and_above_zero(tmp_path):
    """Six significant digits, not six decimals: 3e-8 and 2e-8 neither tie nor become 0 (PERR counts score > 0)."""
    path = tmp_path / "tiny.csv"
    write_submission(path, [(["a"], np.array([[4, 9, 1]]), np.array([[3e-8, 2e-8, 1e-8]]))])
    back = read_submission(path, 3862)
    assert list(back.labels[0, :3]) == [4, 9, 1]
    assert np.all(back.scores[0, :3] > 0) and len(set(back.scores[0, :3])) == 3


def test_a_failure_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("old content\n")

    def batches():
        yield ["a"], np.array([[1]]), np.array([[0.5]])
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_submission(path, batches())
    assert path.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]
