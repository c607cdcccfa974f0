"""GAP@k, Hit@1 and PERR as the YouTube-8M challenges define them: vectorized NumPy, float64.

Definitions (k = 20 unless told). Every metric is computed from each video's top k (label, score) pairs, the
way a submission file is scored, so scoring dense predictions and scoring the CSV written from them agree.
- GAP@k: the top k pairs of every video are pooled and sorted by score, descending; the average precision
  of that list is divided by the total number of true labels, including those in no video's top k:
  GAP = sum over true pairs in the pool of precision@rank / num_positives.
- Hit@1: the share of videos whose first pair is a true label.
- PERR: a video with G true labels scores the share of its first G pairs that are true and have a score
  above 0 (missing pairs count as wrong, so a video with G > k scores at most k/G); the mean over videos.
  A video with no true label scores 0 on Hit@1 and PERR (as in the official eval_util).

Tie rule (results never depend on the order of videos, or of pairs within a video):
- Within a video, pairs are ranked by score descending, then by label id ascending. This chooses the top k
  from dense scores, the first pair for Hit@1 and the first G pairs for PERR.
- In the pooled GAP list, pairs with equal scores form one block: every true pair of the block is credited
  with the precision at the block's end (tp / (tp + fp) counting the whole block), the rule of
  sklearn.metrics.average_precision_score. Without ties this is exactly the official definition.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

K = 20
CHUNK = 4096  # videos per internal step: bounds the (chunk, C) temporaries to a few MB


@dataclass
class Scores:
    """The three challenge metrics over `num_videos` videos holding `num_positives` true labels."""

    gap: float
    hit_at_one: float
    perr: float
    num_videos: int
    num_positives: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabelSets:
    """The true labels of many videos in CSR form: video i has indices[indptr[i]:indptr[i + 1]]."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_lists(cls, lists: Sequence) -> "LabelSets":
        counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = np.concatenate([np.asarray(x, dtype=np.int64).ravel() for x in lists] or [np.zeros(0)])
        return cls(indptr, indices.astype(np.int64))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def take(self, rows: np.ndarray) -> "LabelSets":
        """The label sets of `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        positions = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1])
        return LabelSets(indptr, np.asarray(self.indices)[positions].astype(np.int64))

    def codes(self, num_classes: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Sorted distinct `row * num_classes + label` of videos start..stop (rows counted from start)."""
        stop = len(self) if stop is None else stop
        lo, hi = self.indptr[start], self.indptr[stop]
        rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(self.indptr[start : stop + 1]))
        codes = np.sort(rows * num_classes + np.asarray(self.indices[lo:hi], dtype=np.int64))
        return codes[np.append(True, codes[1:] != codes[:-1])] if codes.size else codes


def top_k(scores: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (labels int64, scores float64), by score descending then label id ascending."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (videos, classes), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    num_videos, num_classes = scores.shape
    k = min(k, num_classes)
    if num_videos == 0 or k == 0:
        return np.zeros((num_videos, k), np.int64), np.zeros((num_videos, k), np.float64)
    kth = np.partition(scores, num_classes - k, axis=1)[:, num_classes - k, None]  # k-th largest per row
    chosen = scores >= kth
    surplus = np.count_nonzero(chosen, axis=1) - k
    tied = np.flatnonzero(surplus > 0)  # rows with ties at the k-th score: keep the lowest label ids
    if tied.size:
        equal = scores[tied] == kth[tied]
        keep = np.cumsum(equal, axis=1, dtype=np.int32) <= (equal.sum(axis=1) - surplus[tied])[:, None]
        chosen[tied] = (scores[tied] > kth[tied]) | (equal & keep)
    labels = np.nonzero(chosen)[1].reshape(num_videos, k)  # row-major: label ids ascending
    best = np.take_along_axis(scores, labels, axis=1).astype(np.float64)
    order = np.argsort(-best, axis=1, kind="stable")  # stable: equal scores stay in label order
    return np.take_along_axis(labels, order, axis=1), np.take_along_axis(best, order, axis=1)


def rank_pairs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row's pairs by score descending then label ascending; padding (label < 0) goes last."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.where(labels >= 0, np.asarray(scores, dtype=np.float64), -np.inf)
    if labels.shape[1] < 2:
        return labels, scores
    a_lab, b_lab, a_sc, b_sc = labels[:, :-1], labels[:, 1:], scores[:, :-1], scores[:, 1:]
    in_order = (b_lab < 0) | ((a_lab >= 0) & ((a_sc > b_sc) | ((a_sc == b_sc) & (a_lab < b_lab))))
    rows = np.flatnonzero(~in_order.all(axis=1))
    if rows.size:  # only rows out of order are sorted (a submission's rows usually are in order)
        labels, scores = labels.copy(), scores.copy()
        sub_l, sub_s = labels[rows], scores[rows]
        order = np.lexsort((sub_l, -sub_s, sub_l < 0), axis=-1)
        labels[rows] = np.take_along_axis(sub_l, order, axis=1)
        scores[rows] = np.take_along_axis(sub_s, order, axis=1)
    return labels, scores


def pooled_average_precision(positive: np.ndarray, negative: np.ndarray, num_positives: int) -> float:
    """AP of a pooled list given the scores of its true and false pairs, over `num_positives` labels.

    Equal scores are one block: each true pair gets tp / (tp + fp) counted over every pair scoring >= it.
    """
    if num_positives == 0 or len(positive) == 0:
        return 0.0
    thresholds, counts = np.unique(np.asarray(positive, dtype=np.float64), return_counts=True)
    true_at_or_above = np.cumsum(counts[::-1])[::-1]
    negative = np.sort(np.asarray(negative, dtype=np.float64))
    false_at_or_above = negative.size - np.searchsorted(negative, thresholds, side="left")
    precision = true_at_or_above / (true_at_or_above + false_at_or_above)
    return float(np.sum(counts * precision) / num_positives)


class Accumulator:
    """Collects videos batch by batch and returns their Scores; holds only k pairs per video, never N x C."""

    def __init__(self, num_classes: int, k: int = K):
        self.num_classes, self.k = num_classes, k
        self._positive: list[np.ndarray] = []  # scores of pooled pairs whose label is true
        self._negative: list[np.ndarray] = []  # scores of the other pooled pairs
        self._hits = self._videos = self._positives = 0
        # PERR numerators by a video's number of true labels G: sums of integers, so the mean is exact
        # and does not depend on the order (or batching) in which videos arrive
        self._correct_by_g = np.zeros(1, dtype=np.int64)

    def add(self, scores: np.ndarray, truth: np.ndarray) -> None:
        """Add dense predictions (B, C) and dense 0/1 truth (B, C); values > 0 in truth are true labels."""
        scores, truth = np.asarray(scores), np.asarray(truth)
        if scores.shape != truth.shape or scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"scores {scores.shape} and truth {truth.shape} must both be (B, {self.num_classes})")
        for start in range(0, len(scores), CHUNK):
            labels, best = top_k(scores[start : start + CHUNK], self.k)
            is_true = truth[start : start + CHUNK] > 0
            self._add_ranked(labels, best, np.take_along_axis(is_true, labels, axis=1),
                             np.count_nonzero(is_true, axis=1))

    def add_top_k(self, top_labels: np.ndarray, top_scores: np.ndarray, truth_lists, ranked: bool = False) -> None:
        """Add top-k lists (B, k) (label -1 marks padding) and each video's true labels.

        `truth_lists`: a list of int arrays or a LabelSets. The labels of one row must be distinct.
        ranked=True promises rows already in rank_pairs order (as read_submission returns them).
        """
        top_labels, top_scores = np.asarray(top_labels), np.asarray(top_scores)
        truth = truth_lists if isinstance(truth_lists, LabelSets) else LabelSets.from_lists(truth_lists)
        if top_labels.shape != top_scores.shape or top_labels.ndim != 2 or len(top_labels) != len(truth):
            raise ValueError("top_labels and top_scores must be (B, k) with one truth list per row")
        if top_labels.size and top_labels.max() >= self.num_classes:
            raise ValueError(f"a label is outside 0..{self.num_classes - 1}")
        self._check_truth(truth)
        labels, scores = (top_labels, top_scores) if ranked else rank_pairs(top_labels, top_scores)
        labels, scores = labels[:, : self.k], scores[:, : self.k]
        lookup = np.zeros(min(CHUNK, len(labels)) * self.num_classes, dtype=bool)  # reused, reset after use
        for start in range(0, len(labels), CHUNK):
            stop = min(start + CHUNK, len(labels))
            chunk_labels = labels[start:stop]
            codes = truth.codes(self.num_classes, start, stop)
            lookup[codes] = True
            valid = chunk_labels >= 0
            asked = np.arange(stop - start)[:, None] * self.num_classes + np.where(valid, chunk_labels, 0)
            is_true = lookup[asked] & valid
            lookup[codes] = False
            num_true = np.bincount(codes // self.num_classes, minlength=stop - start)
            self._add_ranked(chunk_labels, scores[start:stop], is_true, num_true)

    def add_missing(self, truth_lists) -> None:
        """Add videos that got no prediction at all: every one of their labels is a miss."""
        truth = truth_lists if isinstance(truth_lists, LabelSets) else LabelSets.from_lists(truth_lists)
        self._check_truth(truth)
        self._positives += len(truth.codes(self.num_classes))
        self._videos += len(truth)

    def _check_truth(self, truth: LabelSets) -> None:
        if len(truth.indices) and not 0 <= truth.indices.min() <= truth.indices.max() < self.num_classes:
            raise ValueError(f"a true label is outside 0..{self.num_classes - 1}")

    def _add_ranked(self, labels: np.ndarray, scores: np.ndarray, is_true: np.ndarray, num_true) -> None:
        """Credit ranked rows (B, k) whose pairs are true where `is_true`, for videos with num_true labels."""
        valid = labels >= 0
        self._positive.append(scores[is_true])
        self._negative.append(scores[valid & ~is_true])
        if labels.shape[1]:
            self._hits += int(is_true[:, 0].sum())
        first_g = np.arange(labels.shape[1])[None, :] < num_true[:, None]
        correct = np.count_nonzero(is_true & (scores > 0) & first_g, axis=1)
        by_g = np.bincount(num_true, weights=correct).astype(np.int64)
        if len(by_g) > len(self._correct_by_g):
            self._correct_by_g = np.pad(self._correct_by_g, (0, len(by_g) - len(self._correct_by_g)))
        self._correct_by_g[: len(by_g)] += by_g
        self._videos += len(labels)
        self._positives += int(num_true.sum())

    def result(self) -> Scores:
        positive = np.concatenate(self._positive) if self._positive else np.zeros(0)
        negative = np.concatenate(self._negative) if self._negative else np.zeros(0)
        videos = max(self._videos, 1)
        return Scores(
            gap=pooled_average_precision(positive, negative, self._positives),
            hit_at_one=self._hits / videos,
            perr=float(np.sum(self._correct_by_g[1:] / np.arange(1, len(self._correct_by_g)))) / videos,
            num_videos=self._videos,
            num_positives=self._positives,
        )


def evaluate(scores: np.ndarray, truth: np.ndarray, k: int = K) -> Scores:
    """Scores of dense predictions (N, C) against dense 0/1 truth (N, C)."""
    acc = Accumulator(np.asarray(scores).shape[1], k)
    acc.add(scores, truth)
    return acc.result()


def evaluate_top_k(top_labels, top_scores, truth_lists, num_classes: int, k: int = K) -> Scores:
    """Scores of top-k lists (label -1 = padding) against each video's true labels."""
    acc = Accumulator(num_classes, k)
    acc.add_top_k(top_labels, top_scores, truth_lists)
    return acc.result()
