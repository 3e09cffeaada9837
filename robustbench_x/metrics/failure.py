"""Failure-detection and selective-classification metrics.

Conventions (docs: ``docs/metrics.md#conventions``):

* ``confidence`` is a per-sample confidence score (any real number, e.g.
  MSP, max logit, -energy); **higher means more confident**.
* ``correct`` is a bool / 0-1 array: 1 when the prediction equals the label.
  ``err = 1 - correct``; ``r = mean(err)`` is the error rate.
* A sample is *accepted* at threshold ``t`` iff ``confidence >= t``; a
  threshold is a **distinct confidence value**, so tied samples are accepted
  or rejected together (except in :func:`aurc_per_sample`, which exists for
  parity with peers that break ties by sort order).
* Every function returns a fraction as a Python ``float``. Display x100 for
  AUROC / AP / FPR, x1000 for AURC / E-AURC / AUGRC (FD-Shifts
  ``AUC_DISPLAY_SCALE = 1000``).
* Inputs are validated; bad input raises ``ValueError``.

Sources:

* AUROC_f, AP-success, AP-error, FPR@95TPR: FD-Shifts
  ``fd_shifts/analysis/metrics.py`` (``failauc``, ``failap_suc``,
  ``failap_err``, ``fpr@95tpr``); ConfidNet ``confidnet/utils/metrics.py``
  (Corbiere et al., NeurIPS 2019).
* AURC and E-AURC: Geifman & El-Yaniv, NeurIPS 2017; Geifman et al.,
  ICLR 2019 ("Bias-reduced uncertainty estimation...", the ``AURC*`` formula);
  grid of FD-Shifts ``fd_shifts/analysis/rc_stats.py`` /
  ``rc_stats_utils.py`` (``selective_risk_stats``).
* AUGRC: Traub et al., NeurIPS 2024 ("Overcoming common flaws in the
  evaluation of selective classification systems"); FD-Shifts
  ``rc_stats_utils.py`` (``generalized_risk_stats``).
* Per-sample AURC: Geifman ``RC_curve`` (geifmany/uncertainty_ICLR
  ``utils/uncertainty_tools.py``), torch-uncertainty
  ``metrics/classification/risk_coverage.py``.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.metrics.ood import _as_scores, _auroc, _average_precision, _fpr_at_tpr95

__all__ = [
    "failure_auroc",
    "ap_success",
    "ap_error",
    "failure_fpr_at_95_tpr",
    "aurc",
    "aurc_per_sample",
    "eaurc",
    "augrc",
]


# --------------------------------------------------------------------------- validation


def _as_correct(x, name: str = "correct") -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one sample is required")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be a bool array or contain only 0 and 1")
    return arr == 1


def _inputs(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = _as_scores(confidence, "confidence")
    ok = _as_correct(correct)
    if conf.size != ok.size:
        raise ValueError(
            f"confidence and correct must have the same length, got {conf.size} and {ok.size}"
        )
    return conf, ok


def _split(confidence, correct, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Confidences of correct and of wrong predictions; both must be non-empty."""
    conf, ok = _inputs(confidence, correct)
    n_ok = int(np.count_nonzero(ok))
    if n_ok == 0 or n_ok == ok.size:
        which = "correct" if n_ok else "wrong"
        raise ValueError(
            f"{metric} is undefined when only one class is present "
            f"(all {ok.size} predictions are {which}); it needs both correct and wrong predictions"
        )
    return conf[ok], conf[~ok]


def _risk_coverage_groups(conf: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accepted count, accepted errors) at each distinct confidence, most confident first."""
    order = np.argsort(conf, kind="stable")[::-1]
    c = conf[order]
    ends = np.append(np.flatnonzero(c[1:] != c[:-1]), c.size - 1)
    errors = np.cumsum(~ok[order], dtype=np.int64)[ends]
    return ends + 1, errors


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


# --------------------------------------------------------------------------- ranking metrics


def failure_auroc(confidence, correct) -> float:
    """AUROC_f: ``P(c_correct > c_wrong) + 1/2 P(=)``, positive class = correct prediction.

    ``roc_auc_score(correct, confidence)`` (FD-Shifts ``failauc``), computed
    with average ranks for ties (see :func:`robustbench_x.metrics.ood.auroc`).
    Undefined with a single class: when every prediction is correct (or every
    one wrong) this raises ``ValueError`` instead of returning ConfidNet's 1.
    Higher is better.
    """
    pos, neg = _split(confidence, correct, "failure_auroc")
    return _auroc(pos, neg)


def ap_success(confidence, correct) -> float:
    """AP-success: step-wise average precision, positive = correct, score = confidence.

    ``average_precision_score(correct, c)``; ``sum_n (R_n - R_{n-1}) P_n``
    over distinct thresholds in decreasing order, ties forming one point.
    Raises ``ValueError`` with a single class. Higher is better.
    """
    pos, neg = _split(confidence, correct, "ap_success")
    return _average_precision(pos, neg)


def ap_error(confidence, correct) -> float:
    """AP-error ("AUPR-Error"): step-wise AP, positive = **error**, score = ``-confidence``.

    ``average_precision_score(1 - correct, -c)`` (ConfidNet's headline metric;
    FD-Shifts ``failap_err``). Thresholds over ``-c`` in decreasing order,
    ties forming one point. Raises ``ValueError`` with a single class.
    Higher is better.
    """
    pos, neg = _split(confidence, correct, "ap_error")
    return _average_precision(-neg, -pos)


def failure_fpr_at_95_tpr(confidence, correct) -> float:
    """FPR@95TPR for failures (docs/metrics.md#fpr95tpr-three-conventions): fraction of errors accepted.

    Positive class = correct. Threshold ``t`` = the largest distinct
    confidence value of the correct predictions such that
    ``frac(c_correct >= t) >= 0.95`` (the ``ceil(0.95 n_correct)``-th largest
    correct confidence); result = ``frac(c_wrong >= t)``. Same rule and code
    as :func:`robustbench_x.metrics.ood.fpr_at_95_tpr`; equal to
    ``fpr[argmax(tpr >= 0.95)]`` on ``roc_curve(correct, c,
    drop_intermediate=False)``. FD-Shifts' ``min(fpr[tpr >= 0.9495])``
    agrees except when a TPR lies in [0.9495, 0.95). ConfidNet scans 10,000
    equally spaced thresholds and differs. Raises ``ValueError`` with a
    single class. Lower is better.
    """
    pos, neg = _split(confidence, correct, "failure_fpr_at_95_tpr")
    return _fpr_at_tpr95(pos, neg)


# --------------------------------------------------------------------------- risk-coverage


def aurc(confidence, correct) -> float:
    """AURC, FD-Shifts style: tie-grouped risk-coverage points, linear trapezoid.

    Grid: let ``t_1 > t_2 > ... > t_m`` be the distinct confidence values.
    Point ``j`` accepts every sample with ``c >= t_j`` (a tie group enters
    whole): coverage ``n_j / N`` and selective risk ``e_j / n_j``
    (``n_j`` accepted samples, ``e_j`` errors among them). One more point
    at coverage 0 takes the risk of the most-confident group, ``e_1 / n_1``.
    The area is the linear trapezoid over these ``m + 1`` points, from
    coverage 0 to 1. Fraction, not x1000; lower is better.

    Identical to FD-Shifts ``RiskCoverageStats.aurc`` (``selective_risk_stats``
    + ``np.trapz``) divided by 1000. Differs from the per-sample
    :func:`aurc_per_sample` (Geifman, torch-uncertainty) by O(1/N) without
    ties, and by more with ties; from ConfidNet, which drops the full-coverage
    point and uses strict ``c > t``. Defined for a single class (all correct
    gives 0, all wrong gives 1).
    """
    conf, ok = _inputs(confidence, correct)
    accepted, errors = _risk_coverage_groups(conf, ok)
    risk = errors / accepted
    coverage = np.concatenate([[0.0], accepted / conf.size])
    risk = np.concatenate([risk[:1], risk])
    return _trapezoid(coverage, risk)


def aurc_per_sample(confidence, correct) -> float:
    """Per-sample AURC (Geifman / torch-uncertainty style), for parity only: ties broken by order.

    Sort by ``-confidence`` with a **stable** sort (tied samples keep their
    input order), then ``AURC = (1/N) sum_{k=1..N} risk_k`` with
    ``risk_k`` = errors among the first ``k`` samples / ``k``, the selective
    risk at coverage ``k/N``. The value depends on the input order of tied
    samples, which is why :func:`aurc` is the default.

    Peer differences: Geifman's ``RC_curve`` has an off-by-one in the
    denominator (slightly smaller values); torch-uncertainty integrates the
    same ``risk_k`` with a trapezoid over coverages 1/N..1 (divided by
    ``1 - 1/N`` in 0.11) and breaks ties by ``argsort`` order; both differ
    from this mean by O(1/N). Fraction; lower is better.
    """
    conf, ok = _inputs(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    risks = np.cumsum(~ok[order], dtype=np.int64) / np.arange(1, conf.size + 1)
    return float(risks.mean())


def eaurc(confidence, correct) -> float:
    """Excess AURC: ``aurc(c, correct) - (r + (1 - r) ln(1 - r))``, ``r`` = error rate.

    ``AURC* = r + (1 - r) ln(1 - r)`` is the continuous approximation of the
    AURC of a perfect ranking (Geifman et al., ICLR 2019; ConfidNet writes
    ``(1 - acc) + acc ln(acc)``). ``AURC*`` is 0 when ``r = 0`` and 1 when
    ``r = 1`` (the limit of ``(1 - r) ln(1 - r)`` is 0); no epsilon is added
    inside the log (FD-Shifts adds machine epsilon, a < 1e-15 difference).
    Uses the tie-grouped :func:`aurc`. Because ``AURC*`` is an approximation
    the result can be slightly negative on very small sets. Fraction; lower
    is better.
    """
    conf, ok = _inputs(confidence, correct)
    r = float(np.count_nonzero(~ok)) / ok.size
    a = 1.0 - r
    optimal = r + (a * np.log(a) if a > 0.0 else 0.0)
    return aurc(conf, ok) - float(optimal)


def augrc(confidence, correct) -> float:
    """AUGRC: area under the generalized risk-coverage curve, same grid as :func:`aurc`.

    Generalized risk at point ``j`` = errors among the accepted samples / N
    (= selective risk x coverage), at coverage ``n_j / N`` for each distinct
    confidence value ``t_j`` (tie groups enter whole), plus the point
    (coverage 0, generalized risk 0). Linear trapezoid from coverage 0 to 1.
    Identical to FD-Shifts ``RiskCoverageStats.augrc``
    (``generalized_risk_stats``) divided by 1000. A perfect ranking gives
    ``r^2 / 2``. Fraction; lower is better.
    """
    conf, ok = _inputs(confidence, correct)
    accepted, errors = _risk_coverage_groups(conf, ok)
    coverage = np.concatenate([[0.0], accepted / conf.size])
    risk = np.concatenate([[0.0], errors / conf.size])
    return _trapezoid(coverage, risk)
