"""`python -m features info`: counts, bytes, labels and frames per video, the most frequent labels by name."""

import numpy as np
import pytest

from common.errors import InputError
from data.formats import FEATURE_SIZE
from features.__main__ import main
from features.info import describe_store, read_vocabulary
from features.writer import create_store


@pytest.fixture
def store_dir(tmp_path):
    lengths = np.array([3, 300, 0, 9])
    frames = np.arange(lengths.sum() * FEATURE_SIZE, dtype=np.int64).astype(np.uint8).reshape(-1, FEATURE_SIZE)
    labels = [[0, 2], [2], [], [2, 0, 5]]
    create_store(tmp_path / "store", ["a", "b", "c", "d"], labels, None, frames=frames, num_frames=lengths,
                 num_classes=3862)
    return tmp_path / "store"


def test_describe_counts_frames_and_top_labels(store_dir, vocabulary_csv):
    text = describe_store(store_dir, vocabulary_csv)
    assert "frame (from 2018 shards), 4 videos from 0 shards" in text
    assert "frames    312 (78.0 mean, 0 min, 300 max per video; at most 300 kept)" in text
    assert "labels    6 (1.50 per video, max 3), 3 of 3,862 classes used" in text
    top = text.split("top 3 labels (videos, share of videos):\n")[1].splitlines()
    assert [line.split()[:3] for line in top] == [["2", "3", "75.0%"], ["0", "2", "50.0%"], ["5", "1", "25.0%"]]
    names = read_vocabulary(vocabulary_csv)
    assert top[0].endswith(names[2]) and top[1].endswith("Game") and len(names) == 3862
    assert "frames.npy 351.1 KB" in text  # 312 x 1152 bytes plus the header


def test_cli_prints_the_description(store_dir, capsys):
    assert main(["info", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"store     {store_dir}\n") and "top 3 labels" in out


def test_unlabelled_store_and_bad_vocabulary(tmp_path):
    create_store(tmp_path / "test", ["x"], None, np.zeros((1, FEATURE_SIZE)), num_classes=3862, has_labels=False)
    assert describe_store(tmp_path / "test").endswith("labels    none (a test split)")
    bad = tmp_path / "vocabulary.csv"
    bad.write_text("Index,Name\n0,Game\nzero,Car\n")
    with pytest.raises(InputError, match="vocabulary.csv: line 3: Index 'zero' is not an integer"):
        read_vocabulary(bad)
