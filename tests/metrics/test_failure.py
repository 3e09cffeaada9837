"""Tests of robustbench_x.metrics.failure against scikit-learn, brute force and hand-worked cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from robustbench_x.metrics.failure import (
    ap_error,
    ap_success,
    augrc,
    aurc,
    aurc_per_sample,
    eaurc,
    failure_auroc,
    failure_fpr_at_95_tpr,
)

RANKING = [failure_auroc, ap_success, ap_error, failure_fpr_at_95_tpr]
RISK_COVERAGE = [aurc, aurc_per_sample, eaurc, augrc]
ALL = RANKING + RISK_COVERAGE

SIZES = [2, 5, 20, 37, 400, 1001, 3000]


def make_data(seed, n, ties):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, n)
    # Errors are more likely at low confidence, so the metrics are informative.
    correct = rng.uniform(0.0, 1.0, n) < 0.2 + 0.75 * conf
    if ties:
        conf = np.round(conf, 1)
    # Make sure both classes are present.
    correct[0], correct[-1] = True, False
    return conf, correct


def cases():
    for i, n in enumerate(SIZES):
        for ties in (False, True):
            yield pytest.param(10 * i + ties, n, ties, id=f"n{n}-{'ties' if ties else 'noties'}")


# --------------------------------------------------------------------------- brute force references


def brute_rc_points(conf, correct):
    """Tie-grouped (coverage, selective risk, generalized risk) by explicit threshold loop."""
    n = len(conf)
    cov, sel, gen = [], [], []
    for t in sorted(set(conf.tolist()), reverse=True):
        accepted = [i for i in range(n) if conf[i] >= t]
        errors = sum(1 for i in accepted if not correct[i])
        cov.append(len(accepted) / n)
        sel.append(errors / len(accepted))
        gen.append(errors / n)
    return cov, sel, gen


def trapezoid(x, y):
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))


def brute_aurc(conf, correct):
    cov, sel, _ = brute_rc_points(conf, correct)
    return trapezoid([0.0] + cov, [sel[0]] + sel)


def brute_augrc(conf, correct):
    cov, _, gen = brute_rc_points(conf, correct)
    return trapezoid([0.0] + cov, [0.0] + gen)


def brute_aurc_per_sample(conf, correct):
    # Python's sorted is stable: tied samples keep their input order.
    order = sorted(range(len(conf)), key=lambda i: -conf[i])
    errors, risks = 0, []
    for k, i in enumerate(order, start=1):
        errors += not correct[i]
        risks.append(errors / k)
    return sum(risks) / len(risks)


def brute_failure_fpr95(conf, correct):
    c_ok, c_err = conf[correct], conf[~correct]
    for t in sorted(set(c_ok.tolist()), reverse=True):
        if 100 * np.sum(c_ok >= t) >= 95 * len(c_ok):
            return float(np.mean(c_err >= t))
    raise AssertionError("unreachable")


def fdshifts_selective_risk_stats(confids, residuals):
    """Transcription of FD-Shifts ``rc_stats_utils.selective_risk_stats`` (ascending scan)."""
    n = len(residuals)
    idx = np.argsort(confids)
    residuals, confidence = residuals[idx], confids[idx]
    cov, error_sum = n, residuals.sum()
    coverages, risks = [1.0], [error_sum / cov]
    for i in range(n - 1):
        cov -= 1
        error_sum -= residuals[i]
        if confidence[i] != confidence[i + 1]:
            coverages.append(cov / n)
            risks.append(error_sum / cov)
    coverages.append(0)
    risks.append(risks[-1])
    return np.array(coverages), np.array(risks)


# --------------------------------------------------------------------------- vs scikit-learn


@pytest.mark.parametrize("seed,n,ties", list(cases()))
def test_against_sklearn(seed, n, ties):
    conf, correct = make_data(seed, n, ties)
    y = correct.astype(int)
    assert failure_auroc(conf, correct) == pytest.approx(roc_auc_score(y, conf), abs=1e-12)
    assert ap_success(conf, correct) == pytest.approx(average_precision_score(y, conf), abs=1e-12)
    assert ap_error(conf, correct) == pytest.approx(average_precision_score(1 - y, -conf), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, conf, drop_intermediate=False)
    assert failure_fpr_at_95_tpr(conf, correct) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-15)


# --------------------------------------------------------------------------- vs brute force


@pytest.mark.parametrize("seed", range(10))
def test_against_brute_force(seed):
    rng = np.random.default_rng(500 + seed)
    n = int(rng.integers(2, 150))
    conf, correct = make_data(seed, n, ties=bool(seed % 2))
    assert aurc(conf, correct) == pytest.approx(brute_aurc(conf, correct), abs=1e-12)
    assert augrc(conf, correct) == pytest.approx(brute_augrc(conf, correct), abs=1e-12)
    assert aurc_per_sample(conf, correct) == pytest.approx(brute_aurc_per_sample(conf, correct), abs=1e-12)
    assert failure_fpr_at_95_tpr(conf, correct) == brute_failure_fpr95(conf, correct)
    r = 1 - correct.mean()
    assert eaurc(conf, correct) == pytest.approx(
        brute_aurc(conf, correct) - (r + (1 - r) * math.log(1 - r)), abs=1e-12
    )


@pytest.mark.parametrize("seed,n,ties", list(cases()))
def test_aurc_matches_fdshifts_transcription(seed, n, ties):
    conf, correct = make_data(seed, n, ties)
    cov, risk = fdshifts_selective_risk_stats(conf, (~correct).astype(float))
    # FD-Shifts: -np.trapz(risks, coverages) (descending coverages), x1000 for display.
    expected = -np.sum(np.diff(cov) * (risk[1:] + risk[:-1]) / 2)
    assert aurc(conf, correct) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- hand-worked cases


def test_hand_no_ties():
    # conf 0.9, 0.8, 0.7, 0.6 with correct 1, 0, 1, 0 (most confident first).
    # Selective risks at coverage 1/4..4/4: 0, 1/2, 1/3, 1/2; coverage-0 point: risk 0.
    # AURC (trapezoid): 1/4*(0+0)/2 + 1/4*(0+1/2)/2 + 1/4*(1/2+1/3)/2 + 1/4*(1/3+1/2)/2
    #                 = 0 + 1/16 + 5/48 + 5/48 = 13/48.
    # Per-sample: mean(0, 1/2, 1/3, 1/2) = (4/3)/4 = 1/3.
    # Generalized risks: 0, 0, 1/4, 1/4, 2/4 at coverage 0..1:
    # AUGRC = 1/4*(0+0)/2 + 1/4*(0+1/4)/2 + 1/4*(1/4+1/4)/2 + 1/4*(1/4+1/2)/2 = 1/32 + 2/32 + 3/32 = 3/16.
    # r = 1/2: AURC* = 1/2 + 1/2 ln(1/2); E-AURC = 13/48 - 1/2 + ln(2)/2 = 0.11740...
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 0])
    assert aurc(conf, correct) == pytest.approx(13 / 48)
    assert aurc_per_sample(conf, correct) == pytest.approx(1 / 3)
    assert augrc(conf, correct) == pytest.approx(3 / 16)
    assert eaurc(conf, correct) == pytest.approx(13 / 48 - 0.5 + math.log(2) / 2)
    # Input order is irrelevant.
    perm = [2, 0, 3, 1]
    assert aurc(conf[perm], correct[perm]) == pytest.approx(13 / 48)
    assert aurc_per_sample(conf[perm], correct[perm]) == pytest.approx(1 / 3)


def test_hand_ties_grouped_vs_per_sample():
    # conf 0.9, 0.9, 0.5, 0.5 with correct 0, 1, 1, 1.
    # Tie-grouped: group 0.9 has 2 samples and 1 error -> (cov 1/2, risk 1/2);
    # both groups -> (cov 1, risk 1/4); plus (cov 0, risk 1/2).
    # AURC = 1/2*(1/2+1/2)/2 + 1/2*(1/2+1/4)/2 = 1/4 + 3/16 = 7/16.
    # Per-sample (stable order 0,1,2,3 -> errors 1,0,0,0): risks 1, 1/2, 1/3, 1/4,
    # mean = (12+6+4+3)/48 = 25/48.  With the tied pair swapped (correct first):
    # risks 0, 1/2, 1/3, 1/4, mean = 13/48. The grouped AURC is 7/16 both ways.
    # AUGRC: (0,0), (1/2, 1/4), (1, 1/4): 1/2*(1/4)/2 + 1/2*(1/4+1/4)/2 = 1/16 + 1/8 = 3/16.
    # r = 1/4: E-AURC = 7/16 - (1/4 + 3/4 ln(3/4)).
    conf = np.array([0.9, 0.9, 0.5, 0.5])
    correct = np.array([False, True, True, True])
    assert aurc(conf, correct) == pytest.approx(7 / 16)
    assert aurc_per_sample(conf, correct) == pytest.approx(25 / 48)
    swapped = correct[[1, 0, 2, 3]]
    assert aurc(conf, swapped) == pytest.approx(7 / 16)
    assert aurc_per_sample(conf, swapped) == pytest.approx(13 / 48)
    assert augrc(conf, correct) == pytest.approx(3 / 16)
    assert eaurc(conf, correct) == pytest.approx(7 / 16 - (0.25 + 0.75 * math.log(0.75)))


def test_hand_single_class_risk_coverage():
    conf = np.array([0.3, 0.2, 0.2, 0.9])
    # All correct: every risk is 0; r = 0 so AURC* = 0.
    ok = np.ones(4, dtype=bool)
    assert aurc(conf, ok) == 0.0 and aurc_per_sample(conf, ok) == 0.0
    assert augrc(conf, ok) == 0.0 and eaurc(conf, ok) == 0.0
    # All wrong: selective risk 1 everywhere; AURC* = 1 (limit of (1-r)ln(1-r) is 0);
    # generalized risk rises linearly from 0 to 1 -> AUGRC 1/2.
    assert aurc(conf, ~ok) == pytest.approx(1.0)
    assert aurc_per_sample(conf, ~ok) == pytest.approx(1.0)
    assert eaurc(conf, ~ok) == pytest.approx(0.0)
    assert augrc(conf, ~ok) == pytest.approx(0.5)


def test_augrc_perfect_ranking_is_half_r_squared():
    # All 60 correct samples more confident than all 40 errors: AUGRC = r^2 / 2 = 0.08.
    conf = np.r_[np.linspace(1.0, 0.6, 60), np.linspace(0.5, 0.0, 40)]
    correct = np.r_[np.ones(60), np.zeros(40)]
    assert augrc(conf, correct) == pytest.approx(0.4**2 / 2)


def test_failure_fpr95_hand():
    # 20 correct with conf 1..20: k = ceil(0.95 * 20) = 19, t = 2 (the 19th largest).
    # Errors accepted (conf >= 2): {2.5, 10.5, 25} -> 3/5.
    conf = np.r_[np.arange(1.0, 21.0), [0.5, 1.5, 2.5, 10.5, 25.0]]
    correct = np.r_[np.ones(20, dtype=bool), np.zeros(5, dtype=bool)]
    assert failure_fpr_at_95_tpr(conf, correct) == pytest.approx(0.6)


def test_failure_ranking_hand():
    # correct conf {0.9, 0.5}, wrong conf {0.5, 0.1}:
    # AUROC pairs: (0.9,0.5) 1, (0.9,0.1) 1, (0.5,0.5) 1/2, (0.5,0.1) 1 -> 3.5/4.
    conf = [0.9, 0.5, 0.5, 0.1]
    correct = [1, 1, 0, 0]
    assert failure_auroc(conf, correct) == pytest.approx(0.875)
    # AP-success: t=0.9: P=1, R=1/2; t=0.5: P=2/3, R=1 -> 1/2 + 1/2*2/3 = 5/6.
    assert ap_success(conf, correct) == pytest.approx(5 / 6)
    # AP-error on -c: t=-0.1: P=1, R=1/2; t=-0.5: P=2/3, R=1 -> 5/6.
    assert ap_error(conf, correct) == pytest.approx(5 / 6)


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("ties", [False, True])
def test_monotone_transform_invariance(ties):
    conf, correct = make_data(7, 500, ties)
    for fn in ALL:
        base = fn(conf, correct)
        for transformed in (2.0 * conf - 1.0, np.exp(3.0 * conf), np.log(conf + 0.5)):
            assert fn(transformed, correct) == pytest.approx(base, abs=1e-12), fn.__name__


def test_permutation_invariance_except_per_sample():
    conf, correct = make_data(8, 300, ties=True)
    perm = np.random.default_rng(0).permutation(300)
    for fn in [failure_auroc, ap_success, ap_error, failure_fpr_at_95_tpr, aurc, eaurc, augrc]:
        assert fn(conf[perm], correct[perm]) == pytest.approx(fn(conf, correct), abs=1e-12), fn.__name__


def test_aurc_per_sample_close_to_grouped_without_ties():
    conf, correct = make_data(9, 3000, ties=False)
    assert abs(aurc(conf, correct) - aurc_per_sample(conf, correct)) < 5 / 3000


# --------------------------------------------------------------------------- input handling


def test_accepts_int_float_bool_correct_and_float32_memmap(tmp_path):
    conf, correct = make_data(4, 200, ties=False)
    mm = np.memmap(tmp_path / "c.bin", dtype=np.float32, mode="w+", shape=conf.shape)
    mm[:] = conf
    conf64 = np.asarray(mm, dtype=np.float64)
    for fn in ALL:
        expected = fn(conf64, correct)
        assert isinstance(expected, float)
        assert fn(mm, correct) == expected
        assert fn(mm, correct.astype(np.int8)) == expected
        assert fn(mm, correct.astype(np.float32)) == expected
        assert fn(mm.tolist(), correct.tolist()) == expected


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_bad_input(fn):
    conf = np.array([0.9, 0.4, 0.7])
    correct = np.array([1, 0, 1])
    with pytest.raises(ValueError, match="confidence is empty"):
        fn([], [])
    with pytest.raises(ValueError, match=r"same length, got 3 and 2"):
        fn(conf, correct[:2])
    with pytest.raises(ValueError, match="confidence contains NaN or inf"):
        fn([0.9, np.nan, 0.7], correct)
    with pytest.raises(ValueError, match="confidence contains NaN or inf"):
        fn([0.9, np.inf, 0.7], correct)
    with pytest.raises(ValueError, match="correct must be a bool array or contain only 0 and 1"):
        fn(conf, [1, 2, 0])
    with pytest.raises(ValueError, match="correct must be a bool array or contain only 0 and 1"):
        fn(conf, [1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="correct must be a bool array or contain only 0 and 1"):
        fn(conf, np.array(["yes", "no", "yes"]))
    with pytest.raises(ValueError, match="correct must be a 1-D array"):
        fn(conf, correct[None, :])


@pytest.mark.parametrize("fn", RANKING, ids=lambda f: f.__name__)
def test_single_class_raises(fn):
    conf = np.array([0.9, 0.4, 0.7])
    with pytest.raises(ValueError, match=rf"{fn.__name__} is undefined when only one class is present.*all 3 predictions are correct"):
        fn(conf, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"undefined when only one class is present.*are wrong"):
        fn(conf, np.zeros(3, dtype=bool))
