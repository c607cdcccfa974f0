"""Score a submission CSV against ground truth, and save the result where the leaderboard finds it."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import InputError
from common.files import digest, write_json_atomic
from data.formats import NUM_CLASSES
from evaluation.metrics import Accumulator, K, Scores
from evaluation.submission_csv import FIRST_DATA_LINE, Submission, Truth, read_submission, read_truth

DEFAULT_CLASSES = NUM_CLASSES[2018]  # vocabulary assumed for a ground-truth CSV unless told otherwise


@dataclass
class ScoreReport:
    """The scores of one submission, with how many truth videos it missed and extra videos it ignored."""

    scores: Scores
    submission: str
    truth: str
    num_missing: int  # videos of the truth absent from the submission (counted as all misses)
    num_ignored: int  # submission videos not in the truth (only with ignore_extra)
    k: int = K

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(), "num_missing": self.num_missing, "num_ignored": self.num_ignored,
                "k": self.k, "submission": self.submission, "truth": self.truth}

    def text(self) -> str:
        """A short readable report."""
        s = self.scores
        lines = [
            f"submission  {self.submission}",
            f"truth       {self.truth}",
            f"videos      {s.num_videos:,} ({self.num_missing:,} missing from the submission, counted as misses)",
            f"labels      {s.num_positives:,}",
            f"GAP@{self.k:<7d} {s.gap:.6f}",
            f"Hit@1       {s.hit_at_one:.6f}",
            f"PERR        {s.perr:.6f}",
        ]
        if self.num_ignored:
            lines.insert(3, f"ignored     {self.num_ignored:,} submission videos that are not in the truth")
        return "\n".join(lines)


def score_submission(submission: Submission, truth: Truth, *, ignore_extra: bool = False,
                     num_classes: int = DEFAULT_CLASSES, k: int = K) -> ScoreReport:
    """Match submission rows (ranked, as read_submission returns them) to truth videos by id; the metrics
    cover every truth video, those without a row counting as all misses."""
    index = pd.Index(truth.ids)
    if not index.is_unique:
        raise InputError(truth.path, f"video id {index[index.duplicated()][0]!r} appears more than once")
    rows_in_truth = index.get_indexer(submission.ids)
    extra = rows_in_truth < 0
    if extra.any() and not ignore_extra:
        row = int(np.argmax(extra))
        raise InputError(submission.path, f"video {submission.ids[row]!r} is not in the ground truth "
                         f"{truth.path} ({int(extra.sum()):,} such videos; --ignore-extra skips them)",
                         line=row + FIRST_DATA_LINE)
    matched = rows_in_truth[~extra]
    missing = np.ones(len(truth), dtype=bool)
    missing[matched] = False
    acc = Accumulator(num_classes, k)
    keep = ~extra
    acc.add_top_k(submission.labels[keep], submission.scores[keep], truth.labels.take(matched), ranked=True)
    acc.add_missing(truth.labels.take(np.flatnonzero(missing)))
    return ScoreReport(acc.result(), submission.path, truth.path, int(missing.sum()), int(extra.sum()), k)


def score_files(submission_csv, truth_source, *, ignore_extra: bool = False, num_classes: int | None = None,
                k: int = K) -> ScoreReport:
    """Read both files and score; the vocabulary comes from a store, for a CSV from `num_classes` (3862)."""
    truth_source = Path(truth_source)
    if num_classes is not None and num_classes < 1:
        raise InputError("--classes", f"the vocabulary needs at least 1 class, not {num_classes}")
    if truth_source.is_dir():
        truth = read_truth(truth_source)
        if num_classes is not None and num_classes != truth.num_classes:
            raise InputError(truth_source, f"this store has {truth.num_classes} classes, not {num_classes}")
        num_classes = truth.num_classes
    else:
        num_classes = DEFAULT_CLASSES if num_classes is None else num_classes
        truth = read_truth(truth_source, num_classes)
    submission = read_submission(submission_csv, num_classes, k)
    return score_submission(submission, truth, ignore_extra=ignore_extra, num_classes=num_classes, k=k)


def run_and_split(submission_csv) -> tuple[str, str]:
    """`<run>_<split>.csv` -> (run, split): the split is the text after the last underscore."""
    run, _, split = Path(submission_csv).stem.rpartition("_")
    return (run, split) if run else (split, "")


def report_path(workdir, submission_csv) -> Path:
    """workspace/evaluation/scores/<csv stem>.json: where the leaderboard finds a CSV's scores."""
    return Path(workdir) / "evaluation" / "scores" / f"{Path(submission_csv).stem}.json"


def score_inputs(submission_csv, truth_source, *, ignore_extra: bool = False, num_classes: int | None = None,
                 k: int = K) -> dict | None:
    """What decides a score: both files' paths and SHA-256 (a store's manifest names every shard), the options;
    None when a file cannot be read (scoring then says what is wrong)."""
    truth = Path(truth_source)
    try:
        return {"submission": str(submission_csv), "submission_sha256": digest(submission_csv),
                "truth": str(truth_source),
                "truth_sha256": digest(truth / "manifest.json" if truth.is_dir() else truth),
                "ignore_extra": ignore_extra, "classes": num_classes, "k": k}
    except OSError:
        return None


def saved_report(workdir, inputs: dict) -> ScoreReport | None:
    """The saved report of exactly these inputs (None when there is none, or it was made from others)."""
    try:
        data = json.loads(report_path(workdir, inputs["submission"]).read_text())
        if data.get("inputs") != inputs:
            return None
        scores = Scores(**{f.name: data[f.name] for f in dataclasses.fields(Scores)})
        return ScoreReport(scores, data["submission"], data["truth"], data["num_missing"], data["num_ignored"],
                           data["k"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_report(report: ScoreReport, workdir, inputs: dict | None = None) -> Path:
    """Write workspace/evaluation/scores/<csv stem>.json (atomically), with the inputs that made it."""
    run, split = run_and_split(report.submission)
    path = report_path(workdir, report.submission)
    write_json_atomic(path, {"run": run, "split": split, **report.to_dict(), "inputs": inputs})
    return path
