"""OOD-detection metrics: AUROC, AUPR-In/Out, FPR@95TPR, detection error.

Conventions (docs: ``docs/metrics.md#conventions``):

* ``score_id`` / ``score_ood`` are per-sample scores of the in-distribution
  (ID) test set and of **one** OOD set. **Higher means more
  in-distribution.** Energies, "-MSP" and other OOD-high scores must be
  negated by the caller.
* A sample is *accepted as ID* at threshold ``t`` iff ``s >= t``.
* A threshold is a **distinct score value**: tied samples always fall on the
  same side of every threshold; ties are never broken by sort order.
* Every function returns a fraction as a Python ``float`` (display x100).
* Inputs are 1-D, non-empty, finite arrays (lists, float32 arrays and
  ``np.memmap`` are accepted) and are cast to float64. Anything else raises
  ``ValueError``.

Sources and peer parity (see docs/metrics.md#ood-detection):

* AUROC: Mann-Whitney U with average ranks = sklearn ``roc_auc_score`` =
  OpenOOD ``auc(fpr, tpr)`` (``openood/evaluators/metrics.py``).
* AUPR: step-wise average precision (sklearn ``average_precision_score``,
  hendrycks ``get_measures``, FD-Shifts) by default; trapezoidal
  ``auc(recall, precision)`` variants for OpenOOD
  (``openood/evaluators/metrics.py``) / pytorch-ood (``utils/metrics.py``).
* FPR@95TPR: :func:`fpr_at_95_tpr` is convention (a) of docs/metrics.md#fpr95tpr-three-conventions
  (ID positive, the OOD papers); :func:`fpr_at_95_tpr_openood` is
  convention (b) (OOD positive, OpenOOD v1.5 / pytorch-ood).
* Detection error: ODIN ``calMetric.detection`` (facebookresearch/odin),
  Liang et al., ICLR 2018.

The private helpers (``_as_scores``, ``_fpr_at_tpr95``,
``_average_precision``...) are shared with :mod:`robustbench_x.metrics.failure`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "auroc",
    "fpr_at_95_tpr",
    "fpr_at_95_tpr_openood",
    "aupr_in",
    "aupr_out",
    "aupr_in_trapezoid",
    "aupr_out_trapezoid",
    "detection_error",
]

# The 95 % level is kept as an integer percentage so that "at least 95 % of n
# samples" is the exact integer ceil(95 n / 100), not a float comparison that
# could flip at n = 20, 40, ... where 0.95 n is an integer.
_TPR_PERCENT = 95


# --------------------------------------------------------------------------- validation


def _as_scores(x, name: str) -> np.ndarray:
    """Validate a 1-D, non-empty, finite numeric array and return it as float64."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one sample is required")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; scores must be finite")
    return arr


def _id_ood(score_id, score_ood) -> tuple[np.ndarray, np.ndarray]:
    return _as_scores(score_id, "score_id"), _as_scores(score_ood, "score_ood")


# --------------------------------------------------------------------------- primitives
# Every primitive takes the scores of the positive and of the negative class,
# with "higher score = more positive".


def _min_count(n: int) -> int:
    """Smallest k with k / n >= 0.95, in exact integer arithmetic."""
    return -(-_TPR_PERCENT * n // 100)


def _cumulative_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (tps, fps) when accepting ``s >= t``, for every distinct ``t``, descending.

    Entry ``j`` counts the positives / negatives whose score is >= the j-th
    largest distinct value of the pooled scores; the last entry is (P, N).
    This is sklearn's ``_binary_clf_curve``, without the sample weights.
    """
    scores = np.concatenate([pos, neg])
    is_pos = np.zeros(scores.size, dtype=np.int64)
    is_pos[: pos.size] = 1
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    # The last index of each run of equal scores: a threshold must take a
    # whole tie group, never part of one.
    ends = np.flatnonzero(scores[1:] != scores[:-1])
    ends = np.append(ends, scores.size - 1)
    tps = np.cumsum(is_pos[order])[ends]
    fps = ends + 1 - tps
    return tps, fps


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values all get the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse.ravel()]


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    n_pos, n_neg = pos.size, neg.size
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _fpr_at_tpr95(pos: np.ndarray, neg: np.ndarray) -> float:
    # The k-th largest positive score is exactly the largest distinct value t
    # with #(pos >= t) >= k: a larger distinct value keeps fewer than k.
    n = pos.size
    k = _min_count(n)
    t = np.partition(pos, n - k)[n - k]
    return float(np.count_nonzero(neg >= t) / neg.size)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    tps, fps = _cumulative_counts(pos, neg)
    precision = tps / (tps + fps)
    recall = tps / pos.size
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _pr_trapezoid(pos: np.ndarray, neg: np.ndarray) -> float:
    tps, fps = _cumulative_counts(pos, neg)
    # sklearn's precision_recall_curve appends the point (recall 0, precision 1)
    # and sklearn.metrics.auc interpolates linearly from it.
    precision = np.concatenate([[1.0], tps / (tps + fps)])
    recall = np.concatenate([[0.0], tps / pos.size])
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1])) / 2.0)


# --------------------------------------------------------------------------- public metrics


def auroc(score_id, score_ood) -> float:
    """Area under the ROC curve, ``P(s_id > s_ood) + 1/2 P(s_id = s_ood)``.

    Computed as the Mann-Whitney U statistic: pool both sets, rank with
    **average ranks for ties**, ``U = sum(ranks of ID) - n_id (n_id + 1) / 2``,
    ``AUROC = U / (n_id n_ood)``; O(n log n). This equals the trapezoidal
    area under the ROC curve over all distinct thresholds, in which a tie
    group is one ROC point (hence the 1/2 credit), i.e. sklearn
    ``roc_auc_score``.

    Positive class: either. ID-positive with ``s`` equals OOD-positive with
    ``-s`` (OpenOOD, torch-uncertainty, pytorch-ood), so no choice is needed.
    Higher is better; 0.5 is chance.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _auroc(s_id, s_ood)


def fpr_at_95_tpr(score_id, score_ood) -> float:
    """FPR at 95 % TPR, ID positive: fraction of OOD samples accepted as ID.

    Convention (a) of docs/metrics.md#fpr95tpr-three-conventions (ODIN, Energy, KNN, MCM, ViM...).

    Threshold rule: ``t`` is the **largest distinct ID score value such that
    frac(s_id >= t) >= 0.95``, i.e. the ``k``-th largest ID score with
    ``k = ceil(0.95 n_id)`` (exact integer arithmetic). The result is
    ``frac(s_ood >= t)``; OOD samples tied with ``t`` count as accepted.
    Ties in ID scores can make the kept ID fraction exceed 0.95; it is never
    below.

    Equivalently: ``fpr[argmax(tpr >= 0.95)]`` on
    ``roc_curve(is_id, s, drop_intermediate=False)``, the first ROC point
    whose TPR reaches 0.95, which also is the *smallest* FPR among points
    with TPR >= 0.95 (FD-Shifts' rule, without its 0.9495 tolerance).

    Relation to the paper rules (docs/metrics.md#fpr95tpr-three-conventions):

    * ViM ``fpr_recall``: threshold = the ``floor(0.95 n)``-th largest ID
      score, ``>=`` for OOD. Identical when ``0.95 n_id`` is an integer
      (``n_id`` a multiple of 20, e.g. 10,000); otherwise ViM keeps one ID
      sample fewer (just under 95 %) and can report a lower FPR.
    * KNN ``get_curve``: threshold at sorted-ascending index
      ``round(0.05 n)`` and strict ``>`` for OOD; differs on ties with the
      threshold and by one rank when ``0.05 n`` is not an integer.
    * hendrycks ``fpr_and_fdr_at_recall``: ROC point whose recall is
      *nearest* 0.95, which may lie below 0.95; differs when the nearest
      point is below.
    * ODIN ``tpr95``: average of FPR over thresholds with TPR in
      [0.9495, 0.9505]; differs (and is undefined when no point lies in
      the window).

    Lower is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _fpr_at_tpr95(s_id, s_ood)


def fpr_at_95_tpr_openood(score_id, score_ood) -> float:
    """FPR at 95 % TPR, OOD positive (OpenOOD v1.5): fraction of ID samples flagged as OOD.

    Convention (b) of docs/metrics.md#fpr95tpr-three-conventions. The ROC curve is built with OOD as
    the positive class on ``-s`` (a sample is flagged OOD iff ``s <= u``),
    over every distinct threshold; the result is ``fpr[argmax(tpr >= 0.95)]``,
    the FPR of the **first** ROC point whose OOD-TPR reaches 0.95, with the
    semantics of sklearn ``roc_curve(..., drop_intermediate=False)``.

    In closed form: ``u`` = the ``k``-th smallest OOD score with
    ``k = ceil(0.95 n_ood)``, result = ``frac(s_id <= u)`` (ID samples tied
    with ``u`` are flagged).

    Parity notes: OpenOOD (``openood/evaluators/metrics.py``,
    ``auc_and_fpr_recall``) calls ``roc_curve`` with the default
    ``drop_intermediate=True``; that removes interior points of collinear
    runs, which with tied scores occasionally moves the first TPR >= 0.95
    point later, so OpenOOD can then report a higher value. pytorch-ood's
    ``searchsorted(tpr, 0.95)`` picks the same first point as this function.
    torch-uncertainty picks the point with recall *closest* to 0.95.

    Lower is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    # Negating both scores turns "flag OOD iff s <= u" into the ID-positive
    # machinery with OOD as the positive class.
    return _fpr_at_tpr95(-s_ood, -s_id)


def aupr_in(score_id, score_ood) -> float:
    """AUPR-In: step-wise average precision, ID positive, score ``s``.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds in
    decreasing order (accept ``s >= t``), ``R_0 = 0``; a tie group enters at
    once and forms one PR point. Same as sklearn ``average_precision_score``
    and torchmetrics ``BinaryAveragePrecision``. Depends on the ID:OOD size
    ratio. Higher is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _average_precision(s_id, s_ood)


def aupr_out(score_id, score_ood) -> float:
    """AUPR-Out: step-wise average precision, OOD positive, score ``-s``.

    As :func:`aupr_in` with the roles swapped: thresholds over ``-s`` in
    decreasing order, i.e. the least-ID-like samples are flagged first. Ties
    form one PR point. sklearn ``average_precision_score(is_ood, -s)``.
    Higher is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _average_precision(-s_ood, -s_id)


def aupr_in_trapezoid(score_id, score_ood) -> float:
    """AUPR-In, trapezoidal variant (OpenOOD / pytorch-ood parity), ID positive, score ``s``.

    ``sklearn.metrics.auc(recall, precision)`` over the points of
    ``precision_recall_curve(is_id, s)``: one point per distinct threshold
    (ties form one point) plus the point (recall 0, precision 1), joined by
    straight lines. Differs from the step-wise :func:`aupr_in` around the
    third decimal. Higher is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _pr_trapezoid(s_id, s_ood)


def aupr_out_trapezoid(score_id, score_ood) -> float:
    """AUPR-Out, trapezoidal variant (OpenOOD / pytorch-ood parity), OOD positive, score ``-s``.

    ``sklearn.metrics.auc(recall, precision)`` over
    ``precision_recall_curve(is_ood, -s)``, including the point
    (recall 0, precision 1); ties form one point. Higher is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    return _pr_trapezoid(-s_ood, -s_id)


def detection_error(score_id, score_ood) -> float:
    """ODIN detection error, ``min_t 1/2 (1 - TPR(t)) + 1/2 FPR(t)``, ID positive.

    ``TPR(t) = frac(s_id >= t)``, ``FPR(t) = frac(s_ood >= t)``; equal class
    priors whatever the set sizes. ``t`` ranges over every distinct score
    value of either set plus ``+inf`` (accept nothing) and ``-inf`` (accept
    everything), both of which give 0.5, so the result is in [0, 0.5]. Ties
    fall on the same side of every threshold.

    ODIN ``calMetric.detection`` scans a fixed grid of thresholds instead;
    the minimum over all distinct values is the exact limit of that scan.
    Detection accuracy (Mahalanobis "DTACC") is ``1 - detection_error``.
    The KNN repo's "DTERR" weights by set sizes and is a different quantity.
    Lower is better.
    """
    s_id, s_ood = _id_ood(score_id, score_ood)
    tps, fps = _cumulative_counts(s_id, s_ood)
    errors = 0.5 * (1.0 - tps / s_id.size) + 0.5 * (fps / s_ood.size)
    # The last distinct value already accepts everything (the -inf point,
    # error 0.5); the +inf point (accept nothing) also gives 0.5, kept explicit.
    return float(min(0.5, errors.min()))
