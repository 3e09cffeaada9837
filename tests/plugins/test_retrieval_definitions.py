"""Tests of rbx_retrieval.definitions: hand-worked H-AP / NDCG / ASI,
AP against scikit-learn, R@k / mAP@R / mAP@k against brute-force loops, GLDv2
mAP@100 against hand-worked cases, and parity with a transcription of HAPPIER's
tensor formulas (relevance grouped by value)."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from rbx_retrieval.definitions import (
    asi,
    average_precision,
    gldv2_map_at_100,
    h_ap,
    map_at_k,
    map_at_r,
    ndcg,
    pop_relevance,
    precision_at_1,
    recall_at_k,
)
from rbx_retrieval.ranking import count_relevant, level_counts, rank_gallery, relevance_lists

# The hand-worked ranking used throughout: shared levels of ranks 1..5 (L = 2).
SHARED = np.array([1, 2, 0, 2, 1])


def random_binary(seed, q=20, n=30, p=0.3):
    rng = np.random.default_rng(seed)
    rel = rng.random((q, n)) < p
    rel[:, rng.integers(0, n, size=q)] |= False
    rel[np.arange(q), rng.integers(0, n, size=q)] = True  # at least one relevant per query
    return rel


def random_levels(seed, q=15, n=40, n_levels=3):
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, n_levels + 1, size=(q, n))
    shared[:, 0] = np.maximum(shared[:, 0], 1)
    return shared


# --------------------------------------------------------------------------- H-AP


def test_h_ap_hand_worked_alpha_1():
    # Levels [1, 2, 0, 2, 1]: n_2 = 2, n_1 = 2 items.
    # pop relevance, alpha = 1: rel(2) = 2^1 / 2 = 1, rel(1) = 1^1 / 2 = 0.5
    # rel by rank = [0.5, 1, 0, 1, 0.5]
    # H-rank: r1 = 0.5
    #         r2 = 1 + min(1, 0.5)                       = 1.5
    #         r3 = 0 (not relevant)
    #         r4 = 1 + min(1, .5) + min(1, 1)            = 2.5
    #         r5 = .5 + min(.5,.5) + min(.5,1) + min(.5,1) = 2.0
    # sum H-rank/rank = .5/1 + 1.5/2 + 2.5/4 + 2/5 = .5 + .75 + .625 + .4 = 2.275
    # normaliser = sum rel = .5 + 1 + 1 + .5 = 3          -> H-AP = 2.275 / 3
    assert h_ap(SHARED) == pytest.approx(2.275 / 3, abs=1e-12)


def test_h_ap_hand_worked_alpha_2():
    # alpha = 2: rel(2) = 4 / 2 = 2, rel(1) = 1 / 2 = 0.5 -> rel = [.5, 2, 0, 2, .5]
    # H-rank: .5 ; 2 + .5 = 2.5 ; - ; 2 + .5 + 2 = 4.5 ; .5 * 4 = 2
    # sum = .5 + 2.5/2 + 4.5/4 + 2/5 = .5 + 1.25 + 1.125 + .4 = 3.275 ; normaliser = 5
    assert h_ap(SHARED, alpha=2.0) == pytest.approx(3.275 / 5, abs=1e-12)


def test_h_ap_hand_worked_query_counted_in_top_level():
    # HAPPIER's cached relevance counts the query: |Omega^(2)| = 2 + 1 = 3
    # rel(2) = 2/3, rel(1) = 1/2 -> rel = [1/2, 2/3, 0, 2/3, 1/2]
    # H-rank: 1/2 ; 2/3 + 1/2 = 7/6 ; - ; 2/3 + 1/2 + 2/3 = 11/6 ; 4 * 1/2 = 2
    # sum = 1/2 + 7/12 + 11/24 + 2/5 = 233/120 ; normaliser = 1/2 + 2/3 + 2/3 + 1/2 = 7/3
    # H-AP = (233/120) / (7/3) = 699/840
    assert h_ap(SHARED, count_query_itself=True, n_levels=2) == pytest.approx(699 / 840, abs=1e-12)
    with pytest.raises(ValueError, match="needs n_levels"):
        h_ap(SHARED, count_query_itself=True)


def test_h_ap_perfect_and_order_by_relevance():
    # H-AP is 1 iff items are sorted by relevance value; here rel(2) = 2/1 = 2 > rel(1) = 1/3
    assert h_ap(np.array([2, 1, 1, 1, 0])) == pytest.approx(1.0)
    assert h_ap(np.array([1, 1, 1, 2, 0])) < 1.0


@pytest.mark.parametrize("seed", range(5))
def test_h_ap_with_one_level_is_ap(seed):
    rel = random_binary(seed)
    np.testing.assert_allclose(h_ap(rel.astype(int)), average_precision(rel), rtol=1e-12)


def happier_hap_transcription(shared, n_levels, alpha=1.0):
    """numpy transcription of HAPPIER ``get_relevances_pop`` + ``hap`` (SupRank ``hap_LM``):
    weights (x / (L - 1))^alpha, relevance per level = weight / count in the list,
    earlier items grouped by relevance *value* (levels 1..L)."""
    weights = np.array([(x / (n_levels - 1)) ** alpha for x in range(n_levels + 1)])
    out = []
    for row in shared:
        counts = np.bincount(row, minlength=n_levels + 1)
        rel_levels = np.where(counts > 0, weights / np.maximum(counts, 1), 0.0)
        sorted_rel = rel_levels[row]
        hranks = np.zeros(len(row))
        for value in rel_levels[1:]:
            cum = np.cumsum(sorted_rel == value)
            hranks += np.minimum(sorted_rel, value) * cum
        ranks = np.arange(1, len(row) + 1)
        out.append((hranks / ranks).sum() / sorted_rel.sum())
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
def test_h_ap_matches_happier_when_level_relevances_differ(seed, alpha):
    shared = random_levels(seed, n_levels=3)
    ours = h_ap(shared, alpha=alpha)
    ref = happier_hap_transcription(shared, 3, alpha)
    rel = pop_relevance(np.stack([np.bincount(r, minlength=4) for r in shared]), alpha)
    distinct = np.array([len(set(r[1:][r[1:] > 0])) == (r[1:] > 0).sum() for r in rel])
    assert distinct.any()
    np.testing.assert_allclose(ours[distinct], ref[distinct], rtol=1e-12)


def test_h_ap_does_not_double_count_equal_level_relevances():
    # 2 items at level 2 and 1 at level 1: rel(2) = 2/2 = 1 = rel(1) = 1/1. HAPPIER's
    # value grouping counts every earlier item twice; the paper's formula does not.
    shared = np.array([[1, 2, 2, 0]])
    # ours: rel = [1, 1, 1, 0]; H-rank = 1, 2, 3 -> (1 + 1 + 1) / 3 = 1
    assert h_ap(shared)[0] == pytest.approx(1.0)
    assert happier_hap_transcription(shared, 2)[0] == pytest.approx(2.0)


def test_h_ap_truncated_list_with_level_counts():
    # Full list [2, 0, 1, 1, 2] vs its top 3 + gallery counts: items past the cut
    # are never retrieved (contribute 0) but stay in the normaliser.
    full = np.array([[2, 0, 1, 1, 2]])
    counts = np.array([[1, 2, 2]])
    # rel(2) = 2/2 = 1, rel(1) = 1/2 ; top 3 = [2, 0, 1]: H-rank 1 ; - ; .5 + .5 = 1
    # numerator = 1/1 + 1/3 ; normaliser = 2 * 1 + 2 * .5 = 3
    assert h_ap(full[:, :3], level_counts=counts)[0] == pytest.approx((1 + 1 / 3) / 3)
    assert h_ap(full, level_counts=counts)[0] == pytest.approx(h_ap(full)[0])


# --------------------------------------------------------------------------- NDCG


def test_ndcg_hand_worked():
    # gains 2^l - 1 of [1, 2, 0, 2, 1] = [1, 3, 0, 3, 1]
    # DCG  = 1/log2(2) + 3/log2(3) + 0/log2(4) + 3/log2(5) + 1/log2(6)
    # ideal gains [3, 3, 1, 1, 0]:
    # IDCG = 3/log2(2) + 3/log2(3) + 1/log2(4) + 1/log2(5) + 0
    dcg = 1 / math.log2(2) + 3 / math.log2(3) + 0 + 3 / math.log2(5) + 1 / math.log2(6)
    idcg = 3 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    assert ndcg(SHARED) == pytest.approx(dcg / idcg, abs=1e-12)  # = 0.78504...


def test_ndcg_at_k_ideal_conventions():
    # at_k = 2: DCG = 1 + 3/log2(3)
    # standard: ideal of the whole list cut at 2 = [3, 3] -> 3 + 3/log2(3)
    # HAPPIER ("retrieved"): re-sort the top 2 = [3, 1] -> 3 + 1/log2(3)
    dcg = 1 + 3 / math.log2(3)
    assert ndcg(SHARED, at_k=2) == pytest.approx(dcg / (3 + 3 / math.log2(3)))
    assert ndcg(SHARED, at_k=2, ideal="retrieved") == pytest.approx(dcg / (3 + 1 / math.log2(3)))


def test_ndcg_perfect_and_no_relevant():
    assert ndcg(np.array([3, 2, 2, 1, 0])) == pytest.approx(1.0)
    assert math.isnan(ndcg(np.array([0, 0, 0])))
    assert ndcg(np.array([0, 0, 0]), no_relevant="zero") == 0.0


# --------------------------------------------------------------------------- ASI


def test_asi_hand_worked():
    # [1, 2, 0, 2, 1]: R = 4 items with level > 0 ; ideal ranking [2, 2, 1, 1, 0]
    # n=1: top {1}, ideal {2}            -> sum_l min = 0 -> SI = 0
    # n=2: top {1,2}, ideal {2,2}        -> l2: min(1,2)=1, l1: min(1,0)=0 -> SI = 1/2
    # n=3: top {1,2,0}, ideal {2,2,1}    -> l2: 1, l1: 1                   -> SI = 2/3
    # n=4: top {1,2,0,2}, ideal {2,2,1,1} -> l2: 2, l1: 1                  -> SI = 3/4
    # ASI = (0 + 1/2 + 2/3 + 3/4) / 4 = 23/48
    assert asi(SHARED) == pytest.approx(23 / 48, abs=1e-12)


def happier_asi_transcription(shared):
    """numpy transcription of HAPPIER ``asi(at_R=True)``."""
    out = []
    for row in shared:
        ideal = np.sort(row)[::-1]
        big_r = int((ideal > 0).sum())
        total = 0.0
        for n in range(1, big_r + 1):
            total += sum(min((row[:n] == v).sum(), (ideal[:n] == v).sum()) for v in range(row.max() + 1)) / n
        out.append(total / big_r)
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_asi_matches_happier_transcription(seed):
    shared = random_levels(seed, n_levels=4)
    np.testing.assert_allclose(asi(shared), happier_asi_transcription(shared), rtol=1e-12)


def test_asi_perfect():
    assert asi(np.array([2, 2, 1, 0, 0])) == pytest.approx(1.0)


# --------------------------------------------------------------------------- binary metrics


@pytest.mark.parametrize("seed", range(6))
def test_ap_matches_sklearn(seed):
    rel = random_binary(seed)
    ours = average_precision(rel)
    score = -np.arange(rel.shape[1])  # rank 1 = highest score, no ties
    for q in range(rel.shape[0]):
        assert ours[q] == pytest.approx(average_precision_score(rel[q], score), abs=1e-12)


def brute_precision_terms(row):
    hits, terms = 0, []
    for i, r in enumerate(row, start=1):
        if r:
            hits += 1
        terms.append(hits / i if r else 0.0)
    return terms


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 5, 30, 100])
def test_recall_at_k_brute_force(seed, k):
    rel = random_binary(seed, p=0.05)
    expected = []
    for row in rel:
        found = 0.0
        for i in range(min(k, len(row))):
            if row[i]:
                found = 1.0
                break
        expected.append(found)
    np.testing.assert_array_equal(recall_at_k(rel, k), expected)
    assert recall_at_k(rel, k, reduce=True) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("seed", range(6))
def test_map_at_r_brute_force(seed):
    rel = random_binary(seed)
    expected = []
    for row in rel:
        big_r = int(sum(row))
        terms = brute_precision_terms(row)
        expected.append(sum(terms[:big_r]) / big_r)
    np.testing.assert_allclose(map_at_r(rel), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_map_at_k_brute_force(seed, k):
    rel = random_binary(seed)
    expected = []
    for row in rel:
        terms = brute_precision_terms(row)
        expected.append(sum(terms[:k]) / min(int(sum(row)), k))
    np.testing.assert_allclose(map_at_k(rel, k), expected, rtol=1e-12)


def test_precision_at_1():
    rel = np.array([[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(precision_at_1(rel), [1.0, 0.0, 1.0])
    assert precision_at_1(rel, reduce=True) == pytest.approx(2 / 3)


def test_truncated_list_uses_gallery_wide_r():
    # 3 relevant in the gallery, 2 seen in the top 4 at ranks 1 and 3
    rel = np.array([[1, 0, 1, 0]])
    assert average_precision(rel, n_relevant=[3])[0] == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_k(rel, 4, n_relevant=[3])[0] == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_k(rel, 2, n_relevant=[3])[0] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="mAP@R needs"):
        map_at_r(rel, n_relevant=[5])
    with pytest.raises(ValueError, match="smaller than"):
        average_precision(rel, n_relevant=[1])


def test_no_relevant_policy():
    rel = np.array([[0, 0, 0], [1, 0, 1]])
    assert math.isnan(average_precision(rel)[0])
    assert average_precision(rel, no_relevant="zero")[0] == 0.0
    with pytest.raises(ValueError, match="undefined for 1 of 2"):
        average_precision(rel, reduce=True)
    assert average_precision(rel, no_relevant="zero", reduce=True) == pytest.approx((0 + (1 + 2 / 3) / 2) / 2)
    assert recall_at_k(rel, 2, reduce=True) == 0.5


@pytest.mark.parametrize(
    "call",
    [
        lambda: average_precision([[0, 2, 1]]),
        lambda: average_precision([]),
        lambda: average_precision(np.zeros((2, 2, 2))),
        lambda: recall_at_k([[1, 0]], 0),
        lambda: map_at_k([[1, 0]], 2.5),
        lambda: h_ap([[1, -1]]),
        lambda: h_ap([[1.5, 0]]),
        lambda: h_ap([[1, 0]], alpha=-1),
        lambda: h_ap([[2, 1]], level_counts=[[0, 1, 0]]),
        lambda: ndcg([[1, 0]], ideal="best"),
        lambda: asi([[1, 0]], level_counts=[[5, 3]]),
        lambda: average_precision([[1, 0]], no_relevant="skip"),
        lambda: average_precision([["a", "b"]]),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- GLDv2


def test_gldv2_map_at_100_hand_worked():
    solution = {"q1": ["a", "b"], "q2": ["c"], "q3": ["d", "e", "f"]}
    predictions = {
        # hits at positions 1 and 3 -> (1/1 + 2/3) / min(2, 100)
        "q1": ["a", "x", "b"],
        # duplicate "x" keeps its position: hit at position 3 -> (1/3) / 1
        "q2": ["x", "x", "c"],
        # q3 missing -> 0
    }
    expected = ((1 + 2 / 3) / 2 + 1 / 3 + 0.0) / 3
    assert gldv2_map_at_100(predictions, solution) == pytest.approx(expected)


def test_gldv2_duplicate_relevant_counted_once_and_cutoff():
    solution = {"q": ["a", "b"]}
    # "a" twice: the second is skipped; "b" at position 3 -> (1/1 + 2/3) / 2
    assert gldv2_map_at_100({"q": ["a", "a", "b"]}, solution) == pytest.approx((1 + 2 / 3) / 2)
    # cut-off 2: "b" (position 3) not counted, normaliser min(2, 2) = 2
    assert gldv2_map_at_100({"q": ["a", "a", "b"]}, solution, max_predictions=2) == pytest.approx(0.5)
    # normaliser min(|solution|, 100): 150 relevant, all 100 predictions correct -> 1
    big = {"q": [f"i{j}" for j in range(150)]}
    assert gldv2_map_at_100({"q": big["q"][:100]}, big) == pytest.approx(1.0)


def test_gldv2_errors():
    with pytest.raises(ValueError, match="not part of the retrieval solution"):
        gldv2_map_at_100({"zz": ["a"]}, {"q": ["a"]})
    with pytest.raises(ValueError, match="non-empty"):
        gldv2_map_at_100({}, {"q": []})


def test_map_at_100_agrees_with_gldv2_on_landmark_relevance():
    # SupRank's mAP@100 on gallery relevance equals the official metric when the
    # solution of a query is the set of gallery items of its landmark.
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(300, 8))
    queries = rng.normal(size=(20, 8))
    g_lab = rng.integers(0, 6, size=300)
    q_lab = rng.integers(0, 6, size=20)
    idx, _ = rank_gallery(queries, gallery, k=100)
    rel = relevance_lists(q_lab, g_lab, idx)
    ours = map_at_k(rel, 100, n_relevant=count_relevant(q_lab, g_lab), reduce=True)
    names = [f"g{j}" for j in range(300)]
    solution = {f"q{i}": [names[j] for j in np.flatnonzero(g_lab == q_lab[i])] for i in range(20)}
    preds = {f"q{i}": [names[j] for j in idx[i]] for i in range(20)}
    assert ours == pytest.approx(gldv2_map_at_100(preds, solution), abs=1e-12)


def test_end_to_end_truncated_equals_full_with_counts():
    # top-k metrics with gallery-wide counts equal the full-list metrics when
    # every relevant item is inside the top k.
    rng = np.random.default_rng(0)
    labels = np.stack([np.arange(60) // 3, np.arange(60) // 12], axis=1)  # 3 per class, 4 classes per super
    emb = rng.normal(size=(60, 16)) + 4.0 * np.eye(60, 16)[labels[:, 1] % 16]
    idx_full, _ = rank_gallery(emb, emb, exclude_self=True)
    shared_full = relevance_lists(labels, labels, idx_full)
    counts = level_counts(labels, labels, exclude_self=True)
    np.testing.assert_array_equal(counts, np.stack([(shared_full == lv).sum(1) for lv in range(3)], 1))
    k = 59
    np.testing.assert_allclose(h_ap(shared_full[:, :k], level_counts=counts), h_ap(shared_full), rtol=1e-12)
    np.testing.assert_allclose(asi(shared_full[:, :k], level_counts=counts), asi(shared_full), rtol=1e-12)
    np.testing.assert_allclose(ndcg(shared_full[:, :k], level_counts=counts), ndcg(shared_full), rtol=1e-12)
