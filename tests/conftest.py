"""Shared fixtures: where the real YouTube-8M samples are, skipping when they are absent."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YT8M_SHARED", REPO.parent / "shared" / "yt8m"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real YouTube-8M samples not found at {path} (../shared/yt8m beside the repo)")
    return path


@pytest.fixture(scope="session")
def yt8m_2018_dir() -> Path:
    """Folder of the 100 real 2018 video-level validate shards."""
    return _need(SHARED / "video-2018-validate")


@pytest.fixture(scope="session")
def yt8m_2017_dir() -> Path:
    """Folder of the real 2017 video-level validate and test shards."""
    return _need(SHARED / "video-2017")


@pytest.fixture(scope="session")
def vocabulary_csv() -> Path:
    return _need(SHARED / "vocabulary.csv")
