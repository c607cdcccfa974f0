"""Reading submission and ground-truth files: values, padding, every error with its line number."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InputError
from evaluation.submission_csv import HEADER, _body, _read_slow, read_submission, read_truth
from features.writer import create_store


def write(tmp_path, lines, name="run_validate.csv", header=HEADER, newline="\n"):
    path = tmp_path / name
    path.write_bytes((newline.join([header, *lines]) + newline).encode())
    return path


def test_reads_rows_pads_and_ranks(tmp_path):
    path = write(tmp_path, ["007,3 0.25 1 0.75", "x1,", "abc,2 0.5 0 0.5 4 1e-3"])
    sub = read_submission(path, num_classes=5, k=3)
    assert sub.ids == ["007", "x1", "abc"]  # ids stay strings
    assert sub.labels.tolist() == [[1, 3, -1], [-1, -1, -1], [0, 2, 4]]  # equal scores: label id order
    assert sub.scores[0, :2].tolist() == [0.75, 0.25] and sub.scores[2].tolist() == [0.5, 0.5, 0.001]
    assert np.isneginf(sub.scores[1]).all()


def test_crlf_and_trailing_blank_lines_are_fine(tmp_path):
    path = write(tmp_path, ["a,1 0.5", "b,2 0.25", "", ""], newline="\r\n")
    sub = read_submission(path, num_classes=3, k=20)
    assert sub.ids == ["a", "b"] and sub.labels[:, 0].tolist() == [1, 2]


def test_empty_submission(tmp_path):
    assert len(read_submission(write(tmp_path, []), num_classes=3)) == 0


@pytest.mark.parametrize(
    "lines, line, problem",
    [
        (["a,1 0.5", "b 1 0.5"], 3, "no comma"),
        (["a,1 0.5,2 0.1"], 2, "more than one comma"),
        (["a,1 0.5", "b,1 0.5 2"], 3, "a label without its score"),
        (["a,1 0.5 2 0.4 3 0.3"], 2, "3 label/score pairs, more than 2"),
        (["a,1 0.5", "b,1 0.5 2 0.4 3 0.3 4 0.2 0 0.1"], 3, "5 label/score pairs, more than 2"),
        (["a,1 nan"], 2, "score 'nan' of label 1 is not a finite number"),
        (["a,1 0.5", "b,2 -inf"], 3, "score '-inf' of label 2 is not a finite number"),
        (["a,1 1e400"], 2, "score '1e400' of label 1 is not a finite number"),
        (["a,1 high"], 2, "score 'high' of label 1 is not a number"),
        (["a,1 0.5", "b,5 0.5"], 3, "label 5 is outside the 5-class vocabulary"),
        (["a,-1 0.5"], 2, "label '-1' is not a class id written in digits"),
        (["a,1.5 0.5"], 2, "label '1.5' is not a class id written in digits"),
        (["a,one 0.5"], 2, "label 'one' is not a class id written in digits"),
        (["a,1 0.5 2 0.4", "b,4.0 0.5"], 3, "label '4.0' is not a class id written in digits (such as 405)"),
        (["a,1 0.5", "b,+2 0.5 3 0.1"], 3, "label '+2' is not a class id"),
        (["a,1 0.5", "b,3 0.5 2e0 0.1"], 3, "label '2e0' is not a class id"),
        (["a,1 0.5 1 0.4"], 2, "label 1 appears twice"),
        (["a,1 0.5", "b,2 0.5", "a,3 0.5"], 4, "video id 'a' already on line 2"),
        (["a,1 0.5", "", "b,2 0.5"], 3, "empty line"),
        (["a b,1 0.5"], 2, "bad video id 'a b'"),
        ([",1 0.5"], 2, "bad video id ''"),
    ],
)
def test_errors_name_the_line_and_the_problem(tmp_path, lines, line, problem):
    path = write(tmp_path, lines)
    with pytest.raises(InputError) as err:
        read_submission(path, num_classes=5, k=2)
    assert err.value.line == line and problem in err.value.problem
    assert str(err.value).startswith(f"{path}: line {line}: ")


def test_a_folder_is_not_a_submission(tmp_path):
    with pytest.raises(InputError, match="cannot read it as a CSV file"):
        read_submission(tmp_path, num_classes=5)


def test_an_over_long_line_is_refused_before_parsing(tmp_path):
    submission = write(tmp_path, ["a,1 0.5", "b," + "1 0.5 " * 2_000_000, "c,2 0.5"])
    with pytest.raises(InputError, match=r"line 3: 12,000,002 bytes on one line, far more than any valid line"):
        read_submission(submission, num_classes=5)
    truth = tmp_path / "truth.csv"
    truth.write_text("VideoId,Labels\n" + "a," + "1 " * 600_000 + "\n")
    with pytest.raises(InputError, match=r"line 2: 1,200,001 bytes on one line"):
        read_truth(truth)


def test_bad_header(tmp_path):
    for header in ("VideoId,Labels", "id,pairs", ""):
        with pytest.raises(InputError, match="line 1: the first line must be the header"):
            read_submission(write(tmp_path, ["a,1 0.5"], header=header), num_classes=5)


def test_error_deep_in_a_large_file(tmp_path):
    lines = [f"v{i},{i % 7} 0.5 {(i + 1) % 7} 0.25" for i in range(5000)]
    lines[4321] = "v4321,3 0.5 9 0.25"
    with pytest.raises(InputError) as err:
        read_submission(write(tmp_path, lines), num_classes=7)
    assert err.value.line == 4323 and "label 9 is outside" in err.value.problem


pair = st.tuples(st.integers(0, 9), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(pair, max_size=4, unique_by=lambda p: p[0]), max_size=12))
def test_fast_reader_equals_line_by_line_reader(tmp_path_factory, rows):
    lines = [f"id{i}," + " ".join(f"{label} {score!r}" for label, score in row) for i, row in enumerate(rows)]
    path = write(tmp_path_factory.mktemp("csv"), lines)
    fast = read_submission(path, num_classes=10, k=4)
    ids, labels, scores = _read_slow(path, _body(path, HEADER), 10, 4)
    assert fast.ids == ids
    for row, pairs in enumerate(rows):
        assert sorted(zip(fast.labels[row], fast.scores[row], strict=True)) == sorted(
            zip(labels[row], scores[row], strict=True))
        assert {(int(a), float(b)) for a, b in pairs} == {
            (int(a), float(b)) for a, b in zip(fast.labels[row], fast.scores[row], strict=True) if a >= 0}


def test_truth_csv(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("VideoId,Labels\nv1,3 1\nv2,\nv3,0\n")
    truth = read_truth(path, num_classes=4)
    assert truth.ids == ["v1", "v2", "v3"]
    assert truth.labels.indptr.tolist() == [0, 2, 2, 3] and truth.labels.indices.tolist() == [3, 1, 0]
    path.write_text("VideoId,Labels\nv1,3 1\nv1,2\n")
    with pytest.raises(InputError, match="line 3: video id 'v1' already on line 2"):
        read_truth(path)
    path.write_text("VideoId,Labels\nv1,3 x\n")
    with pytest.raises(InputError, match="line 2: labels must be whole numbers"):
        read_truth(path)
    path.write_text("VideoId,Labels\nv1,3 405.0\n")
    with pytest.raises(InputError, match="line 2: labels must be whole numbers, got '3 405.0'"):
        read_truth(path)
    path.write_text("VideoId,Labels\nv1,3 4\n")
    with pytest.raises(InputError, match="line 2: label 4 is outside the 4-class vocabulary"):
        read_truth(path, num_classes=4)


def test_truth_from_a_store(tmp_path):
    ids = ["a", "bb", "c"]
    video = np.zeros((3, 1152), np.float32)
    create_store(tmp_path / "store", ids, [[5, 1], [], [7]], video, num_classes=10)
    truth = read_truth(tmp_path / "store")
    assert truth.ids == ids and truth.num_classes == 10
    assert truth.labels.take(np.array([2, 0])).indices.tolist() == [7, 5, 1]
    create_store(tmp_path / "test", ids, [], video, num_classes=10, has_labels=False)
    with pytest.raises(InputError, match="has no labels"):
        read_truth(tmp_path / "test")


def test_well_formed_files_take_the_vectorized_path(tmp_path, monkeypatch):
    import evaluation.submission_csv as module

    def refuse(*args):
        raise AssertionError("the line-by-line reader should not be needed")

    monkeypatch.setattr(module, "_read_slow", refuse)
    lines = [f"v{i}," + " ".join(f"{(i + j) % 50} {1 - j / 40}" for j in range(20)) for i in range(300)]
    sub = read_submission(write(tmp_path, lines), num_classes=50, k=20)
    assert len(sub) == 300 and sub.labels[299, 0] == 299 % 50


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5000), max_size=5), max_size=10), st.sampled_from(["\n", "\r\n"]))
def test_truth_fast_reader_equals_line_by_line_reader(tmp_path_factory, rows, newline):
    from evaluation.submission_csv import TRUTH_HEADER, _read_truth_slow

    lines = [f"id{i}," + " ".join(map(str, row)) for i, row in enumerate(rows)]
    path = write(tmp_path_factory.mktemp("truth"), lines, "truth.csv", TRUTH_HEADER, newline)
    fast = read_truth(path)
    ids, labels = _read_truth_slow(path, _body(path, TRUTH_HEADER), None)
    assert fast.ids == ids == [f"id{i}" for i in range(len(rows))]
    assert fast.labels.indptr.tolist() == labels.indptr.tolist()
    assert fast.labels.indices.tolist() == labels.indices.tolist() == [x for row in rows for x in row]


def test_well_formed_truth_takes_the_vectorized_path(tmp_path, monkeypatch):
    import evaluation.submission_csv as module

    def refuse(*args):
        raise AssertionError("the line-by-line reader should not be needed")

    monkeypatch.setattr(module, "_read_truth_slow", refuse)
    path = tmp_path / "truth.csv"
    path.write_text("VideoId,Labels\nAbCd,3861 0 17\nvidéo,12\nx,\n")  # a non-ASCII id too
    truth = read_truth(path, num_classes=3862)
    assert truth.ids == ["AbCd", "vidéo", "x"]
    assert truth.labels.indptr.tolist() == [0, 3, 4, 4] and truth.labels.indices.tolist() == [3861, 0, 17, 12]
