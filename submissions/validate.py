"""Check a submission CSV before it is uploaded: the rules Kaggle applies, and optionally the video list."""

from dataclasses import dataclass
from pathlib import Path

from common.errors import InputError
from data.formats import NUM_CLASSES
from evaluation.metrics import K
from evaluation.submission_csv import read_submission, read_truth

COMPETITIONS = {"youtube8m": NUM_CLASSES[2017], "youtube8m-2018": NUM_CLASSES[2018]}  # slug -> vocabulary


@dataclass
class CheckedSubmission:
    """A submission that passed validation, and what would be sent."""

    path: Path
    size_bytes: int
    rows: int
    pairs: int  # label/score pairs in all rows
    num_classes: int
    truth: str | None  # the video list it was checked against, if any


def vocabulary_size(competition: str, truth=None) -> int:
    """Number of classes: the truth store's when given, else the competition's (youtube8m, youtube8m-2018)."""
    truth = Path(truth) if truth else None
    if truth is not None and truth.is_dir():
        from features.store import Store

        classes = Store(truth).num_classes
        if competition in COMPETITIONS and COMPETITIONS[competition] != classes:
            raise InputError(truth, f"the store has {classes} classes but competition {competition} "
                                    f"has {COMPETITIONS[competition]}")
        return classes
    if competition not in COMPETITIONS:
        known = ", ".join(f"{slug} ({n} classes)" for slug, n in COMPETITIONS.items())
        raise InputError("--competition", f"unknown competition {competition!r}; known: {known} "
                                          "(or pass --truth STORE to take the vocabulary from a store)")
    return COMPETITIONS[competition]


def truth_ids(truth) -> list[str]:
    """Video ids of a feature store (labels not needed: a test split works) or a `VideoId,Labels` CSV."""
    truth = Path(truth)
    if truth.is_dir():
        from features.store import Store

        return Store(truth).id_strings()
    return read_truth(truth).ids


def check_submission(csv, competition: str, truth=None) -> CheckedSubmission:
    """Validate `csv` for `competition`: header, unique ids, <= 20 pairs, labels in the vocabulary, finite
    scores; with `truth`, every one of its videos exactly once. InputError names the file and line."""
    csv = Path(csv)
    if not csv.is_file():
        raise InputError(csv, "no such submission file")
    num_classes = vocabulary_size(competition, truth)
    submission = read_submission(csv, num_classes, k=K)
    if len(submission) == 0:
        raise InputError(csv, "the submission has a header but no rows")
    if truth is not None:
        expected = truth_ids(truth)
        given = set(submission.ids)
        missing = [vid for vid in expected if vid not in given]
        wanted = set(expected)
        extra = [vid for vid in submission.ids if vid not in wanted]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing):,} videos of {truth} are missing (first: {missing[0]!r})")
            if extra:
                parts.append(f"{len(extra):,} videos are not in {truth} (first: {extra[0]!r})")
            raise InputError(csv, "; ".join(parts))
    pairs = int((submission.labels >= 0).sum())
    return CheckedSubmission(csv, csv.stat().st_size, len(submission), pairs, num_classes,
                             str(truth) if truth is not None else None)
