"""Calibration metrics: ECE, NLL, multi-class Brier score, reliability-diagram bins.

Conventions (docs: ``docs/metrics.md#calibration``):

* ``probs`` is an ``(N, C)`` array of predicted class probabilities: finite,
  in [0, 1], each row summing to 1 within 1e-3. float16/32/64 are accepted;
  every reduction is done in float64 without materialising a float64 copy of
  the whole matrix (an ImageNet ``(50000, 1000)`` float32 array stays as is).
* ``labels`` is a 1-D array of integer class indices in ``[0, C)``.
* Top-label view: confidence = max probability, prediction = ``argmax``
  (ties go to the lowest class index), accurate iff prediction == label.
* Fractions are returned as Python ``float`` (ECE displayed x100).
* Bad input raises ``ValueError``.

Sources:

* ECE: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017;
  gpleiss/temperature_scaling ``temperature_scaling.py::_ECELoss``
  (15 equal-width bins, membership ``(lower, upper]``).
  FD-Shifts uses 20 bins and ``[lower, upper)`` (``np.digitize``);
  torch-uncertainty wraps torchmetrics ``MulticlassCalibrationError``
  (15 bins, reported in percent).
* NLL and Brier: standard definitions; multi-class Brier as in Brier (1950),
  "Verification of forecasts expressed in terms of probability", and
  torch-uncertainty ``metrics/classification/brier_score.py``.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.metrics.classification import _as_labels

__all__ = ["ece", "nll", "brier", "reliability_bins"]

_ROW_SUM_TOL = 1e-3
_NLL_CLIP = 1e-12


# --------------------------------------------------------------------------- validation


def _inputs(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.dtype.kind not in "biuf":
        raise ValueError(f"probs must be a numeric array, got dtype {p.dtype}")
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array of shape (N, C), got shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs is empty (shape {p.shape}); at least one sample and one class are required")
    if p.dtype.kind != "f":
        p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError("probs contains NaN or inf")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got values in [{p.min()}, {p.max()}]")
    row_sums = p.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > _ROW_SUM_TOL)
    if bad.size:
        raise ValueError(
            f"each row of probs must sum to 1 (within {_ROW_SUM_TOL}); "
            f"{bad.size} rows do not, e.g. row {bad[0]} sums to {row_sums[bad[0]]:.6g}"
        )
    y = _as_labels(labels, "labels", n_classes=p.shape[1])
    if y.size != p.shape[0]:
        raise ValueError(
            f"probs and labels must have the same number of samples, got {p.shape[0]} and {y.size}"
        )
    return p, y


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _bin_stats(probs, labels, n_bins):
    """Per-bin (edges, count, sum of confidences, number accurate), equal-width (lower, upper] bins."""
    p, y = _inputs(probs, labels)
    n_bins = _check_n_bins(n_bins)
    conf = p.max(axis=1).astype(np.float64)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") returns the first edge >= conf, so conf in
    # (edges[b], edges[b+1]] maps to b; conf == 0 maps to -1 and is clipped
    # into the first bin, as gpleiss' ``gt(lower) & le(upper)`` would drop it.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    return edges, count, sum_conf, sum_acc


# --------------------------------------------------------------------------- metrics


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error, ``sum_b (n_b / N) |acc_b - conf_b|`` (top-label, equal-width bins).

    ``n_bins`` equal-width bins on [0, 1] with edges
    ``np.linspace(0, 1, n_bins + 1)`` (float64); a sample with confidence
    ``c = max_c p`` belongs to bin ``b`` iff ``edges[b] < c <= edges[b+1]``
    (gpleiss ``_ECELoss``); a confidence of exactly 0 would go into the
    first bin (it cannot arise from a row summing to 1), exactly 1 is in the
    last. ``conf_b`` is the mean confidence and ``acc_b`` the fraction with
    ``argmax == label`` (ties to the lowest class index) in bin ``b``;
    empty bins are skipped. Default 15 bins
    (Guo et al. 2017). Comparisons are made in float64, so a float32
    confidence lying exactly on an edge is placed by its float64 value.
    Lower is better.
    """
    _, count, sum_conf, sum_acc = _bin_stats(probs, labels, n_bins)
    filled = count > 0
    n = count.sum()
    gaps = np.abs(sum_acc[filled] / count[filled] - sum_conf[filled] / count[filled])
    return float(np.sum(count[filled] / n * gaps))


def nll(probs, labels) -> float:
    """Negative log-likelihood, ``-mean_i log max(p_{i, y_i}, 1e-12)``.

    The probability of the true class is clipped from below at 1e-12 so a
    zero probability gives a finite penalty of ``-log(1e-12) ~ 27.6`` rather
    than inf; nothing is renormalised. Natural log. Lower is better.
    """
    p, y = _inputs(probs, labels)
    p_true = p[np.arange(y.size), y].astype(np.float64)
    return float(np.mean(-np.log(np.maximum(p_true, _NLL_CLIP))))


def brier(probs, labels) -> float:
    """Multi-class Brier score, ``mean_i sum_c (p_{ic} - 1[y_i = c])^2``.

    The **sum over classes**, not divided by C (Brier 1950;
    torch-uncertainty ``BrierScore``, ``mse_loss(...).sum(dim=-1)`` then the
    mean over samples), so it lies in [0, 2]. Lower is better.
    """
    p, y = _inputs(probs, labels)
    # sum_c (p_c - onehot_c)^2 = sum_c p_c^2 - 2 p_y + 1; einsum accumulates in
    # float64 without a float64 copy of the (N, C) matrix.
    sum_sq = np.einsum("ij,ij->i", p, p, dtype=np.float64)
    p_true = p[np.arange(y.size), y].astype(np.float64)
    per_sample = np.maximum(sum_sq - 2.0 * p_true + 1.0, 0.0)
    return float(per_sample.mean())


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Per-bin statistics for a reliability diagram (not a metric).

    Same bins as :func:`ece`. Returns a dict of numpy arrays of length
    ``n_bins``: ``bin_lower``, ``bin_upper`` (edges), ``confidence`` (mean
    confidence in the bin), ``accuracy`` (fraction accurate in the bin) and
    ``count`` (int64). ``confidence`` and ``accuracy`` are NaN for empty bins.
    ``sum(count / N * |accuracy - confidence|)`` over non-empty bins is the ECE.
    """
    edges, count, sum_conf, sum_acc = _bin_stats(probs, labels, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, sum_conf / count, np.nan)
        accuracy = np.where(count > 0, sum_acc / count, np.nan)
    return {
        "bin_lower": edges[:-1].copy(),
        "bin_upper": edges[1:].copy(),
        "confidence": confidence,
        "accuracy": accuracy,
        "count": count.astype(np.int64),
    }
