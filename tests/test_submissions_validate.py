"""submissions.validate: what `submit` refuses before anything is uploaded, with the file and line."""

import numpy as np
import pytest

from common.errors import InputError
from features.writer import create_store
from submissions.validate import check_submission


def write_csv(path, rows, header="VideoId,LabelConfidencePairs"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def pairs(n, start=0):
    return " ".join(f"{start + i} {1 - i / 100:.4f}" for i in range(n))


def small_store(path, ids, has_labels=True, num_classes=3862):
    video = np.zeros((len(ids), 1152), np.float32)
    labels = [np.array([i % num_classes]) for i in range(len(ids))]
    return create_store(path, ids, labels, video, num_classes=num_classes, has_labels=has_labels)


def test_a_valid_file_is_counted(tmp_path):
    csv = write_csv(tmp_path / "s.csv", [f"a,{pairs(20)}", f"b,{pairs(3)}", "c,"])
    checked = check_submission(csv, "youtube8m-2018")
    assert (checked.rows, checked.pairs, checked.num_classes) == (3, 23, 3862)
    assert checked.size_bytes == csv.stat().st_size


@pytest.mark.parametrize("rows, header, problem, line", [
    (["a,1 0.5"], "VideoId,Labels", "header", 1),
    (["a,1 0.5", "b,2 0.5", "a,3 0.5"], None, "already on line 2", 4),
    ([f"a,{pairs(21)}"], None, "more than 20", 2),
    (["a,1 0.5", "b,3862 0.4"], None, "outside the 3862-class vocabulary", 3),
    (["a,1 nan"], None, "not a finite number", 2),
    (["a,1 0.5 2"], None, "without its score", 2),
])
def test_bad_files_name_the_line_and_the_problem(tmp_path, rows, header, problem, line):
    csv = write_csv(tmp_path / "bad.csv", rows, header or "VideoId,LabelConfidencePairs")
    with pytest.raises(InputError, match=problem) as err:
        check_submission(csv, "youtube8m-2018")
    assert err.value.line == line and err.value.path == str(csv)


def test_the_vocabulary_follows_the_competition(tmp_path):
    csv = write_csv(tmp_path / "s.csv", ["a,4000 0.5"])
    assert check_submission(csv, "youtube8m").num_classes == 4716  # the 2017 challenge
    with pytest.raises(InputError, match="3862-class"):
        check_submission(csv, "youtube8m-2018")
    with pytest.raises(InputError, match="unknown competition 'youtube8m-2099'"):
        check_submission(csv, "youtube8m-2099")


def test_truth_store_requires_every_video_exactly_once(tmp_path):
    store = small_store(tmp_path / "test", ["a", "b", "c"], has_labels=False)  # a test split: no labels
    ok = write_csv(tmp_path / "ok.csv", ["c,1 0.5", "a,1 0.5", "b,1 0.5"])
    assert check_submission(ok, "youtube8m-2018", store.path).truth == str(store.path)
    missing = write_csv(tmp_path / "missing.csv", ["a,1 0.5"])
    with pytest.raises(InputError, match="2 videos of .* are missing \\(first: 'b'\\)"):
        check_submission(missing, "youtube8m-2018", store.path)
    extra = write_csv(tmp_path / "extra.csv", ["a,1 0.5", "b,1 0.5", "c,1 0.5", "zz,1 0.5"])
    with pytest.raises(InputError, match="1 videos are not in .*first: 'zz'"):
        check_submission(extra, "youtube8m-2018", store.path)


def test_truth_store_sets_the_vocabulary_and_must_match_the_competition(tmp_path):
    store = small_store(tmp_path / "small", ["a"], num_classes=10)
    csv = write_csv(tmp_path / "s.csv", ["a,9 0.5"])
    assert check_submission(csv, "my-own-benchmark", store.path).num_classes == 10
    with pytest.raises(InputError, match="10 classes but competition youtube8m-2018 has 3862"):
        check_submission(csv, "youtube8m-2018", store.path)


def test_truth_csv(tmp_path):
    truth = write_csv(tmp_path / "truth.csv", ["a,1 2", "b,3"], header="VideoId,Labels")
    csv = write_csv(tmp_path / "s.csv", ["b,1 0.5", "a,1 0.5"])
    assert check_submission(csv, "youtube8m-2018", truth).rows == 2
    with pytest.raises(InputError, match="missing"):
        check_submission(write_csv(tmp_path / "t.csv", ["b,1 0.5"]), "youtube8m-2018", truth)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such submission file"):
        check_submission(tmp_path / "nope.csv", "youtube8m-2018")
    with pytest.raises(InputError, match="no rows"):
        check_submission(write_csv(tmp_path / "empty.csv", []), "youtube8m-2018")
