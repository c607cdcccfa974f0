"""GAP@k, Hit@1 and PERR: hand-computed cases, scikit-learn, the official definition, ties, batching."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from evaluation.metrics import (
    Accumulator,
    LabelSets,
    evaluate,
    evaluate_top_k,
    pooled_average_precision,
    rank_pairs,
    top_k,
)


def official_gap(scores, truth, k):
    """The challenge's definition, written plainly: pool each video's top k (heap), sort by score,
    sum precision@rank over true pairs, divide by all true labels. Only valid without ties."""
    pool, positives = [], 0
    for row, labels in zip(scores.tolist(), truth.tolist(), strict=True):
        positives += sum(1 for t in labels if t > 0)
        best = heapq.nlargest(k, range(len(row)), key=row.__getitem__)
        pool.extend((row[c], labels[c] > 0) for c in best)
    pool.sort(key=lambda pair: -pair[0])
    found, total = 0, 0.0
    for rank, (_, is_true) in enumerate(pool, start=1):
        if is_true:
            found += 1
            total += found / rank
    return total / positives


def official_hit_and_perr(scores, truth):
    """Hit@1 and PERR as the official eval_util computes them from dense predictions (no ties)."""
    hits = truth[np.arange(len(truth)), scores.argmax(axis=1)] > 0
    perr = []
    for row, labels in zip(scores, truth, strict=True):
        g = int((labels > 0).sum())
        top = np.argsort(-row)[: g] if g else np.arange(len(row))
        perr.append(float(np.sum((labels[top] > 0) & (row[top] > 0))) / len(top))
    return hits.mean(), float(np.mean(perr))


def test_hand_computed_case():
    # 3 videos, 5 classes, k = 2.
    scores = np.array([
        [0.9, 0.1, 0.8, 0.0, 0.3],  # top 2: class 0 (0.9, true), class 2 (0.8, false)
        [0.2, 0.7, 0.1, 0.6, 0.0],  # top 2: class 1 (0.7, false), class 3 (0.6, true)
        [0.5, 0.0, 0.0, 0.0, 0.4],  # top 2: class 0 (0.5, false), class 4 (0.4, false)
    ])
    truth = np.array([
        [1, 0, 0, 0, 1],  # G = 2 (class 4 is not in the top 2: it stays in the denominator)
        [0, 0, 0, 1, 0],  # G = 1
        [0, 1, 0, 0, 0],  # G = 1 (class 1 has score 0, not in the top 2)
    ])
    got = evaluate(scores, truth, k=2)
    # Pool sorted: 0.9 T, 0.8 F, 0.7 F, 0.6 T, 0.5 F, 0.4 F; positives in total = 2 + 1 + 1 = 4.
    # AP sum = 1/1 (rank 1) + 2/4 (rank 4) = 1.5  ->  GAP = 1.5 / 4 = 0.375
    assert got.gap == pytest.approx(0.375, abs=1e-15)
    # Hit@1: video 0 yes (class 0), video 1 no (class 1), video 2 no -> 1/3
    assert got.hit_at_one == pytest.approx(1 / 3, abs=1e-15)
    # PERR: video 0 top 2 = {0 T, 2 F} -> 1/2; video 1 top 1 = {1 F} -> 0; video 2 top 1 = {0 F} -> 0
    # mean = (0.5 + 0 + 0) / 3 = 1/6
    assert got.perr == pytest.approx(1 / 6, abs=1e-15)
    assert (got.num_videos, got.num_positives) == (3, 4)


def test_perr_counts_only_positive_scores_and_at_most_k_of_g():
    # Video 0: G = 2, top 2 = class 1 (0.5, true), class 0 (0.0, true but score 0: does not count) -> 1/2
    # Video 1: G = 3 true labels but k = 2 pairs, both true and > 0 -> 2/3
    scores = np.array([[0.0, 0.5, -1.0], [0.9, 0.8, 0.7]])
    truth = np.array([[1, 1, 0], [1, 1, 1]])
    got = evaluate(scores, truth, k=2)
    assert got.perr == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    # Hit@1 does not need a positive score (the official calculate_hit_at_one does not either): 2/2
    assert got.hit_at_one == 1.0


def test_video_without_labels_scores_zero_but_counts():
    got = evaluate(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([[1, 0], [0, 0]]), k=2)
    # GAP: pool 0.9 T, 0.9 F (tied block: precision 1/2), 0.1 F, 0.1 F -> 0.5 / 1 positive
    assert got.gap == pytest.approx(0.5)
    assert (got.hit_at_one, got.perr, got.num_videos) == (0.5, 0.5, 2)


def test_gap_equals_sklearn_when_k_covers_every_class():
    # With k >= C every (video, class) pair is pooled and the denominator (all true labels) is the number
    # of positives of the flattened arrays, so GAP is the average precision of the flattened problem.
    # sklearn credits tied scores as one threshold, our block rule: equal with and without ties.
    rng = np.random.default_rng(0)
    scores = rng.random((200, 30))
    truth = (rng.random((200, 30)) < 0.1).astype(np.float32)
    for s in (scores, np.round(scores, 1)):  # continuous, then heavily tied
        expected = average_precision_score(truth.ravel(), s.ravel())
        assert evaluate(s, truth, k=30).gap == pytest.approx(expected, abs=1e-12)


def test_gap_equals_official_definition_on_untied_data():
    rng = np.random.default_rng(1)
    scores = rng.random((300, 60))
    truth = (rng.random((300, 60)) < 0.05).astype(np.float32)
    truth[np.arange(300), rng.integers(0, 60, 300)] = 1  # at least one label per video
    for k in (1, 5, 20):
        assert evaluate(scores, truth, k=k).gap == pytest.approx(official_gap(scores, truth, k), abs=1e-12)
    got, (hit, perr) = evaluate(scores, truth, k=20), official_hit_and_perr(scores, truth)
    assert got.hit_at_one == pytest.approx(hit, abs=1e-12) and got.perr == pytest.approx(perr, abs=1e-12)


def test_pooled_average_precision_block_rule():
    # Scores 0.9 T | 0.5 T, 0.5 F, 0.5 F | 0.1 T; 4 positives in all (one never predicted).
    # Block rule: 0.9 -> 1/1; the 0.5 block ends at rank 4 with 2 true -> 2/4 for its one true pair;
    # 0.1 -> 3/5.  GAP = (1 + 0.5 + 0.6) / 4 = 0.525
    got = pooled_average_precision(np.array([0.9, 0.5, 0.1]), np.array([0.5, 0.5]), 4)
    assert got == pytest.approx(0.525, abs=1e-15)
    assert pooled_average_precision(np.array([]), np.array([0.3]), 3) == 0.0
    assert pooled_average_precision(np.array([]), np.array([]), 0) == 0.0


def test_top_k_breaks_ties_by_label_id():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    labels, best = top_k(scores, k=3)
    assert labels.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert best.dtype == np.float64 and best[0].tolist() == [0.8999999761581421, 0.5, 0.5]
    labels, _ = top_k(scores, k=10)  # k larger than C: every class
    assert labels.shape == (2, 5)
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan]]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12), st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_top_k_matches_a_full_sort(videos, classes, k, seed):
    scores = np.random.default_rng(seed).integers(0, 4, (videos, classes)) / 4  # many ties
    labels, best = top_k(scores, k)
    for row in range(videos):
        expected = sorted(range(classes), key=lambda c: (-scores[row, c], c))[: min(k, classes)]
        assert labels[row].tolist() == expected
        assert best[row].tolist() == scores[row, expected].tolist()


def test_rank_pairs_orders_rows_and_puts_padding_last():
    labels = np.array([[3, -1, 1, 2], [0, 1, -1, -1]])
    scores = np.array([[0.5, -np.inf, 0.5, 0.9], [0.9, 0.1, -np.inf, -np.inf]])
    ranked_labels, ranked_scores = rank_pairs(labels, scores)
    assert ranked_labels.tolist() == [[2, 1, 3, -1], [0, 1, -1, -1]]
    assert ranked_scores[0, :3].tolist() == [0.9, 0.5, 0.5]


def shuffled_copies(seed):
    """Predictions with many ties across videos (each video's scores are a permutation of one grid) and
    none within a video, plus the same data with videos shuffled and classes relabelled."""
    rng = np.random.default_rng(seed)
    videos, classes = 120, 25
    grid = np.linspace(0.02, 0.98, classes)
    scores = np.stack([rng.permutation(grid) for _ in range(videos)])
    truth = (rng.random((videos, classes)) < 0.15).astype(np.float32)
    rows, cols = rng.permutation(videos), rng.permutation(classes)
    return (scores, truth), (scores[rows][:, cols], truth[rows][:, cols])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_results_do_not_depend_on_video_or_class_order(seed):
    (scores, truth), (scores2, truth2) = shuffled_copies(seed)
    for k in (3, 20):
        assert evaluate(scores, truth, k) == evaluate(scores2, truth2, k)


def test_a_naive_order_dependent_ap_would_differ_on_these_ties():
    # Guard for the test above: with a position-by-position AP (ties in input order) the shuffle matters.
    (scores, truth), (scores2, truth2) = shuffled_copies(0)

    def naive(s, t, k):
        labels, best = top_k(s, k)
        hits = np.take_along_axis(t, labels, 1).ravel() > 0
        order = np.argsort(-best.ravel(), kind="stable")
        found = np.cumsum(hits[order])
        return np.sum((found / np.arange(1, found.size + 1))[hits[order]]) / t.sum()

    assert naive(scores, truth, 3) != pytest.approx(naive(scores2, truth2, 3), abs=1e-9)


def test_pair_order_within_a_row_does_not_matter():
    rng = np.random.default_rng(3)
    labels = np.array([[4, 2, 7, 1], [0, 3, 5, -1]])
    scores = np.array([[0.5, 0.5, 0.9, 0.2], [0.3, 0.3, 0.3, -np.inf]])
    truth = [np.array([2, 1]), np.array([5])]
    expected = evaluate_top_k(labels, scores, truth, num_classes=8)
    for _ in range(5):
        perm = rng.permutation(4)
        assert evaluate_top_k(labels[:, perm], scores[:, perm], truth, num_classes=8) == expected
    # row 0 ranked: 7 (0.9), 2 (0.5, label 2 before 4), 4 (0.5), 1 (0.2): Hit@1 no; G = 2 -> {7, 2}: 1/2
    # row 1 ranked: 0, 3, 5 (all 0.3): Hit@1 no; G = 1 -> {0}: 0
    assert expected.hit_at_one == 0.0 and expected.perr == pytest.approx(0.25)


def test_accumulator_in_batches_equals_one_shot_and_top_k_input():
    rng = np.random.default_rng(4)
    scores = rng.random((500, 40)).astype(np.float32)
    truth = (rng.random((500, 40)) < 0.08).astype(np.float32)
    one_shot = evaluate(scores, truth, k=20)
    batched = Accumulator(40, k=20)
    for start in range(0, 500, 64):
        batched.add(scores[start : start + 64], truth[start : start + 64])
    assert batched.result() == one_shot
    labels, best = top_k(scores, 20)
    lists = [np.flatnonzero(row) for row in truth]
    from_lists = Accumulator(40, k=20)
    for start in range(0, 500, 100):
        from_lists.add_top_k(labels[start : start + 100], best[start : start + 100], lists[start : start + 100])
    assert from_lists.result() == one_shot


def test_missing_videos_count_as_misses():
    acc = Accumulator(5, k=2)
    acc.add_top_k(np.array([[1, 2]]), np.array([[0.9, 0.8]]), [np.array([1])])
    acc.add_missing([np.array([0, 3]), np.array([4])])
    got = acc.result()
    # One true pair at rank 1 -> AP sum 1; positives 1 + 2 + 1 = 4 -> GAP 0.25; Hit@1 and PERR 1/3
    assert (got.num_videos, got.num_positives) == (3, 4)
    assert got.gap == pytest.approx(0.25) and got.hit_at_one == pytest.approx(1 / 3)
    assert got.perr == pytest.approx(1 / 3)


def test_empty_accumulator_and_bad_shapes():
    assert Accumulator(10).result().to_dict() == {"gap": 0.0, "hit_at_one": 0.0, "perr": 0.0,
                                                  "num_videos": 0, "num_positives": 0}
    with pytest.raises(ValueError):
        Accumulator(10).add(np.zeros((2, 9)), np.zeros((2, 9)))
    with pytest.raises(ValueError, match="outside"):
        Accumulator(3).add_top_k(np.array([[3]]), np.array([[0.5]]), [np.array([0])])
    with pytest.raises(ValueError, match="true label is outside"):
        Accumulator(3).add_top_k(np.array([[1]]), np.array([[0.5]]), [np.array([3])])
    with pytest.raises(ValueError, match="true label is outside"):
        Accumulator(3).add_missing([np.array([-1])])


def test_label_sets_take_and_codes():
    sets = LabelSets.from_lists([np.array([1, 2]), np.array([], dtype=int), np.array([0, 0, 3])])
    taken = sets.take(np.array([2, 0]))
    assert taken.indptr.tolist() == [0, 3, 5] and taken.indices.tolist() == [0, 0, 3, 1, 2]
    # codes = row * 4 + label, duplicates once: row 0 -> 1, 2; row 2 -> 8 + 0, 8 + 3
    assert sets.codes(4).tolist() == [1, 2, 8, 11] and sets.codes(4, 2, 3).tolist() == [0, 3]


def test_duplicate_true_labels_count_once():
    got = evaluate_top_k(np.array([[1, 0]]), np.array([[0.9, 0.1]]), [np.array([1, 1])], num_classes=2)
    assert (got.num_positives, got.gap, got.perr) == (1, 1.0, 1.0)
