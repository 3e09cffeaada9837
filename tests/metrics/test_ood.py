"""Tests of robustbench_x.metrics.ood against scikit-learn, brute force and hand-worked cases."""

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from robustbench_x.metrics import ood
from robustbench_x.metrics.ood import (
    aupr_in,
    aupr_in_trapezoid,
    aupr_out,
    aupr_out_trapezoid,
    auroc,
    detection_error,
    fpr_at_95_tpr,
    fpr_at_95_tpr_openood,
)

ALL = [
    auroc,
    fpr_at_95_tpr,
    fpr_at_95_tpr_openood,
    aupr_in,
    aupr_out,
    aupr_in_trapezoid,
    aupr_out_trapezoid,
    detection_error,
]

# (n_id, n_ood): tiny, unequal both ways, multiples of 20 and not.
SIZES = [(1, 1), (3, 7), (20, 13), (57, 200), (400, 123), (1000, 1000), (2001, 777)]


def make_scores(seed, n_id, n_ood, ties):
    rng = np.random.default_rng(seed)
    s_id = rng.normal(1.0, 1.0, n_id)
    s_ood = rng.normal(0.0, 1.2, n_ood)
    if ties:
        # Coarse rounding creates many ties within and across the two sets.
        s_id, s_ood = np.round(s_id, 1), np.round(s_ood, 1)
    return s_id, s_ood


def sk_inputs(s_id, s_ood):
    y_id = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
    return y_id, np.r_[s_id, s_ood]


def cases():
    for i, (n_id, n_ood) in enumerate(SIZES):
        for ties in (False, True):
            yield pytest.param(100 * i + ties, n_id, n_ood, ties, id=f"{n_id}x{n_ood}-{'ties' if ties else 'noties'}")


# --------------------------------------------------------------------------- vs scikit-learn


@pytest.mark.parametrize("seed,n_id,n_ood,ties", list(cases()))
def test_against_sklearn(seed, n_id, n_ood, ties):
    s_id, s_ood = make_scores(seed, n_id, n_ood, ties)
    y, s = sk_inputs(s_id, s_ood)

    assert auroc(s_id, s_ood) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_in(s_id, s_ood) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_out(s_id, s_ood) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)

    p, r, _ = precision_recall_curve(y, s)
    assert aupr_in_trapezoid(s_id, s_ood) == pytest.approx(auc(r, p), abs=1e-12)
    p, r, _ = precision_recall_curve(1 - y, -s)
    assert aupr_out_trapezoid(s_id, s_ood) == pytest.approx(auc(r, p), abs=1e-12)

    # (a) ID positive: first ROC point with TPR >= 0.95.
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-15)
    # roc_curve's first point (threshold inf) is (0, 0), i.e. the +inf threshold.
    assert detection_error(s_id, s_ood) == pytest.approx(np.min(0.5 * (1 - tpr) + 0.5 * fpr), abs=1e-12)

    # (b) OpenOOD v1.5: OOD positive on -score.
    fpr, tpr, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    assert fpr_at_95_tpr_openood(s_id, s_ood) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-15)


# --------------------------------------------------------------------------- brute force


def brute_fpr95(s_id, s_ood):
    """Scan the distinct ID values from the top; stop at the first keeping >= 95 % of ID."""
    n = len(s_id)
    for t in sorted(set(s_id.tolist()), reverse=True):
        kept = sum(1 for v in s_id if v >= t)
        if 100 * kept >= 95 * n:
            return sum(1 for v in s_ood if v >= t) / len(s_ood)
    raise AssertionError("unreachable: the smallest ID value keeps all ID samples")


def brute_fpr95_openood(s_id, s_ood):
    """Flag OOD iff s <= u; scan u upwards over all distinct values; first with OOD-TPR >= 95 %."""
    m = len(s_ood)
    for u in sorted(set(s_id.tolist()) | set(s_ood.tolist())):
        caught = sum(1 for v in s_ood if v <= u)
        if 100 * caught >= 95 * m:
            return sum(1 for v in s_id if v <= u) / len(s_id)
    raise AssertionError("unreachable")


def brute_detection_error(s_id, s_ood):
    best = 1.0
    for t in [-np.inf, np.inf, *set(s_id.tolist()) | set(s_ood.tolist())]:
        tpr = np.mean(s_id >= t)
        fpr = np.mean(s_ood >= t)
        best = min(best, 0.5 * (1 - tpr) + 0.5 * fpr)
    return best


def brute_auroc(s_id, s_ood):
    total = 0.0
    for a in s_id:
        total += np.sum(a > s_ood) + 0.5 * np.sum(a == s_ood)
    return total / (len(s_id) * len(s_ood))


@pytest.mark.parametrize("seed", range(12))
def test_against_brute_force(seed):
    rng = np.random.default_rng(1000 + seed)
    n_id, n_ood = rng.integers(1, 120, size=2)
    s_id, s_ood = make_scores(seed, n_id, n_ood, ties=bool(seed % 2))
    assert fpr_at_95_tpr(s_id, s_ood) == brute_fpr95(s_id, s_ood)
    assert fpr_at_95_tpr_openood(s_id, s_ood) == brute_fpr95_openood(s_id, s_ood)
    assert detection_error(s_id, s_ood) == pytest.approx(brute_detection_error(s_id, s_ood), abs=1e-12)
    assert auroc(s_id, s_ood) == pytest.approx(brute_auroc(s_id, s_ood), abs=1e-12)


# --------------------------------------------------------------------------- hand-worked cases


def test_fpr95_hand_n20():
    # ID = 1..20. k = ceil(0.95 * 20) = 19, the 19th largest ID score is 2,
    # so t = 2 (19/20 = 95 % of ID have s >= 2; t = 3 keeps only 90 %).
    # OOD >= 2: {2, 3, 30} -> 3/5. The tie at 2 counts as accepted.
    # (KNN's strict ">" would give 2/5; ViM's floor(0.95 n) rule also gives t = 2.)
    s_id = np.arange(1, 21, dtype=float)
    s_ood = np.array([0.5, 1.5, 2.0, 3.0, 30.0])
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(0.6)


def test_fpr95_hand_n10_ceil_not_floor():
    # ID = 1..10: 0.95 * 10 = 9.5, so k = ceil(9.5) = 10 and t = 1 (all ID kept;
    # t = 2 keeps 90 % < 95 %). OOD >= 1: {1, 5} -> 2/3.
    # ViM's floor(9.5) = 9 would use t = 2 and give 1/3.
    s_id = np.arange(1, 11, dtype=float)
    s_ood = np.array([0.0, 1.0, 5.0])
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(2 / 3)


def test_fpr95_hand_ties():
    # ID = nineteen 3s and one 1. t = 3 keeps 19/20 = 95 %.
    # OOD >= 3: {3, 4} -> 2/4.
    s_id = np.r_[np.full(19, 3.0), 1.0]
    s_ood = np.array([3.0, 2.0, 4.0, 0.0])
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(0.5)
    # Now 18 threes and two 1s: t = 3 keeps 90 %, so t = 1 (all ID) and all OOD >= 1
    # except 0 are accepted: 3/4.
    s_id = np.r_[np.full(18, 3.0), 1.0, 1.0]
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(0.75)


def test_fpr95_openood_hand():
    # OOD = 1..20 flagged iff s <= u. k = ceil(0.95 * 20) = 19, so u = 19
    # (the 19th smallest OOD score). ID flagged (s <= 19): {18.5, 19} -> 2/4.
    s_ood = np.arange(1, 21, dtype=float)
    s_id = np.array([18.5, 19.0, 19.5, 25.0])
    assert fpr_at_95_tpr_openood(s_id, s_ood) == pytest.approx(0.5)
    # The two conventions differ on the same data: (a) keeps 95 % of the 4 ID
    # samples -> k = ceil(3.8) = 4, t = 18.5, OOD >= 18.5: {19, 20} -> 2/20.
    assert fpr_at_95_tpr(s_id, s_ood) == pytest.approx(0.1)


def test_detection_error_hand():
    # ID = {3, 4}, OOD = {1, 3.5}. Thresholds and 0.5(1 - TPR) + 0.5 FPR:
    # +inf: 0.5 | 4: 0.5*0.5 + 0 = 0.25 | 3.5: 0.25 + 0.25 = 0.5 |
    # 3: 0 + 0.25 = 0.25 | 1: 0 + 0.5 = 0.5 | -inf: 0.5. Min 0.25.
    assert detection_error([3.0, 4.0], [1.0, 3.5]) == pytest.approx(0.25)
    # Perfect separation: t = min(ID) gives TPR 1, FPR 0.
    assert detection_error([2.0, 3.0], [0.0, 1.0]) == 0.0
    # Ties across sets: ID = {1, 1}, OOD = {1, 0}: t = 1 -> TPR 1, FPR 0.5 -> 0.25.
    assert detection_error([1.0, 1.0], [1.0, 0.0]) == pytest.approx(0.25)
    # Reversed ranking can do no better than accepting all or nothing: 0.5.
    assert detection_error([0.0, 1.0], [2.0, 3.0]) == pytest.approx(0.5)


def test_auroc_hand_with_tie():
    # Pairs (id, ood): (1,1) tie -> 1/2; (1,0), (2,1), (2,0) -> 1 each. 3.5 / 4.
    assert auroc([1.0, 2.0], [1.0, 0.0]) == pytest.approx(0.875)
    assert auroc([5.0], [5.0]) == pytest.approx(0.5)


def test_aupr_hand():
    # ID = {3, 1}, OOD = {2}. Thresholds 3, 2, 1 (ID positive):
    # P = 1, 1/2, 2/3; R = 1/2, 1/2, 1. Step AP = 1/2 * 1 + 0 + 1/2 * 2/3 = 5/6.
    # Trapezoid from (R=0, P=1): 1/2 * (1 + 1)/2 + 0 + 1/2 * (1/2 + 2/3)/2 = 1/2 + 7/24 = 19/24.
    assert aupr_in([3.0, 1.0], [2.0]) == pytest.approx(5 / 6)
    assert aupr_in_trapezoid([3.0, 1.0], [2.0]) == pytest.approx(19 / 24)
    # AUPR-Out (OOD positive, -s): -s order: -1 (ID), -2 (OOD), -3 (ID).
    # P = 0, 1/2, 1/3; R = 0, 1, 1 -> AP = 1 * 1/2 = 1/2.
    assert aupr_out([3.0, 1.0], [2.0]) == pytest.approx(0.5)


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_swap_symmetry(ties):
    for seed in range(5):
        s_id, s_ood = make_scores(seed, 150 + seed, 90, ties)
        assert auroc(s_id, s_ood) == pytest.approx(1.0 - auroc(s_ood, s_id), abs=1e-12)


def test_aupr_in_out_swap():
    # AUPR-Out of (id, ood) is AUPR-In of (-ood, -id) by definition.
    s_id, s_ood = make_scores(3, 300, 170, ties=True)
    assert aupr_out(s_id, s_ood) == pytest.approx(aupr_in(-s_ood, -s_id), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(
    "transform",
    [lambda x: 3.0 * x + 7.0, lambda x: np.exp(x), lambda x: np.arctan(x), lambda x: x**3],
    ids=["affine", "exp", "arctan", "cube"],
)
def test_monotone_transform_invariance(transform, ties):
    s_id, s_ood = make_scores(11, 333, 260, ties)
    for fn in ALL:
        assert fn(transform(s_id), transform(s_ood)) == pytest.approx(fn(s_id, s_ood), abs=1e-12), fn.__name__


def test_perfect_and_inverted():
    s_id, s_ood = np.arange(10.0, 20.0), np.arange(0.0, 10.0)
    assert auroc(s_id, s_ood) == 1.0
    assert aupr_in(s_id, s_ood) == 1.0 and aupr_out(s_id, s_ood) == 1.0
    assert fpr_at_95_tpr(s_id, s_ood) == 0.0 and fpr_at_95_tpr_openood(s_id, s_ood) == 0.0
    assert detection_error(s_id, s_ood) == 0.0
    assert auroc(s_ood, s_id) == 0.0
    assert fpr_at_95_tpr(s_ood, s_id) == 1.0


# --------------------------------------------------------------------------- input handling


def test_dtypes_lists_and_memmap(tmp_path):
    s_id, s_ood = make_scores(5, 500, 300, ties=False)
    s_id32, s_ood32 = s_id.astype(np.float32), s_ood.astype(np.float32)
    mm = np.memmap(tmp_path / "id.bin", dtype=np.float32, mode="w+", shape=s_id32.shape)
    mm[:] = s_id32
    mm.flush()
    for fn in ALL:
        expected = fn(s_id32.astype(np.float64), s_ood32.astype(np.float64))
        got = fn(mm, s_ood32)
        assert isinstance(got, float)
        assert got == expected
        assert fn(s_id32.tolist(), s_ood32.tolist()) == expected


def test_large_input_is_fast():
    # O(n log n): 10^6 samples per set well within the time budget.
    rng = np.random.default_rng(0)
    s_id, s_ood = rng.normal(1, 1, 10**6), rng.normal(0, 1, 10**6)
    assert 0.7 < auroc(s_id, s_ood) < 0.8
    assert 0.0 < fpr_at_95_tpr(s_id, s_ood) < 1.0


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_bad_input(fn):
    good = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="score_id is empty"):
        fn([], good)
    with pytest.raises(ValueError, match="score_ood is empty"):
        fn(good, np.array([]))
    with pytest.raises(ValueError, match="score_id contains NaN or inf"):
        fn([0.1, np.nan], good)
    with pytest.raises(ValueError, match="score_ood contains NaN or inf"):
        fn(good, [np.inf, 0.0])
    with pytest.raises(ValueError, match="score_ood contains NaN or inf"):
        fn(good, np.array([-np.inf], dtype=np.float32))
    with pytest.raises(ValueError, match=r"score_id must be a 1-D array, got shape \(2, 2\)"):
        fn(np.zeros((2, 2)), good)
    with pytest.raises(ValueError, match="score_id must be a numeric array"):
        fn(np.array(["a", "b"]), good)
    with pytest.raises(ValueError, match="score_ood must be a numeric array"):
        fn(good, np.array([1 + 2j]))


def test_helpers_exported():
    assert set(ood.__all__) == {f.__name__ for f in ALL}
