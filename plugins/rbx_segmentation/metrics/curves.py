"""Threshold curves of a binary pixel score, and the numbers read off them.

A curve is two cumulative counts over the **distinct** thresholds, from the
highest score down: ``tp[k]`` positives and ``fp[k]`` negatives have a score
``>= t_k``. Tied pixels enter together, as in scikit-learn's ``roc_curve`` /
``precision_recall_curve``. Two ways to build one:

* :func:`exact_curve` sorts the pixels (one image at a time; exact);
* :class:`OrderedHistogram` streams any number of pixels into a fixed
  histogram over the float32 order (pooled over a dataset; memory does not
  grow with the pixel count). A score is cut to its top ``9 + mantissa_bits``
  bits (sign, exponent and the ``mantissa_bits`` leading mantissa bits): a
  monotone map, so the curve is the exact curve of scores rounded toward
  minus infinity to ``mantissa_bits + 1`` significant bits (relative step
  ``2**-mantissa_bits``; 11 bits: < 0.05 %). Values only merge with values
  within that relative step, which turns them into a tie. The step is
  relative, so every value in ``[1 - 2**-12, 1)`` shares one bin: a score
  saturating at a non-zero bound must be shifted to 0 by its method (the
  segmentation methods emit ``MSP - 1``, see :mod:`rbx_segmentation.methods`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "exact_curve",
    "OrderedHistogram",
    "auroc",
    "average_precision",
    "fpr_at_tpr_first",
    "fpr_at_tpr_closest",
    "best_f1",
]


def _finite_float32(score: np.ndarray, what: str) -> np.ndarray:
    score = np.asarray(score, dtype=np.float32).ravel()
    if not np.isfinite(score).all():
        raise ValueError(f"{what} has NaN or infinite values; fix: clip or replace them before evaluating")
    return score + np.float32(0.0)  # -0.0 becomes +0.0, so the two zeros are one threshold


def exact_curve(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, tp, fp)`` over the distinct scores, highest first (scores taken as float32).

    One direct sort of 64-bit keys (the order-preserving bits of the score, then the
    label), which is several times faster than an indirect ``argsort`` on 2e6 pixels."""
    s = _finite_float32(score, "score")
    pos = np.asarray(positive, dtype=bool).ravel()
    if s.size != pos.size:
        raise ValueError(f"score has {s.size} pixels but the labels have {pos.size}")
    keys = (_ordered_keys(s).astype(np.uint64) << np.uint64(1)) | pos.astype(np.uint64)
    keys.sort()
    keys = keys[::-1]
    value_keys = keys >> np.uint64(1)
    last_of_group = np.r_[np.flatnonzero(value_keys[1:] != value_keys[:-1]), keys.size - 1]
    tp = np.cumsum((keys & np.uint64(1)).astype(np.int64))[last_of_group]
    fp = last_of_group + 1 - tp
    return _float_of_key(value_keys[last_of_group].astype(np.uint32)), tp, fp


def _ordered_keys(score: np.ndarray) -> np.ndarray:
    """uint32 keys with the order of the float32 values (finite, -0.0 already folded into +0.0)."""
    bits = score.view(np.uint32)
    negative = (bits & np.uint32(0x80000000)) != 0
    return np.where(negative, ~bits, bits | np.uint32(0x80000000))


def _float_of_key(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, dtype=np.uint32)
    positive = (key & np.uint32(0x80000000)) != 0
    bits = np.where(positive, key & np.uint32(0x7FFFFFFF), ~key)
    return bits.astype(np.uint32).view(np.float32)


class OrderedHistogram:
    """Counts of positive and negative pixels per float32-order bin (see the module docstring).

    ``mantissa_bits=11`` keeps 2**20 bins per class: 16 MiB of int64 counts,
    whatever the number of pixels.
    """

    def __init__(self, mantissa_bits: int = 11) -> None:
        if not 0 <= mantissa_bits <= 14:
            raise ValueError(f"mantissa_bits must be in 0..14 (memory grows as 2**(9 + bits)), got {mantissa_bits}")
        self.mantissa_bits = mantissa_bits
        self._shift = np.uint32(23 - mantissa_bits)
        self._n = 1 << (9 + mantissa_bits)
        self.counts = np.zeros((2, self._n), dtype=np.int64)  # row 0 negatives, row 1 positives

    def add(self, score: np.ndarray, positive: np.ndarray) -> None:
        s = _finite_float32(score, "score")
        pos = np.asarray(positive, dtype=bool).ravel()
        if s.size != pos.size:
            raise ValueError(f"score has {s.size} pixels but the labels have {pos.size}")
        if s.size == 0:
            return
        bins = (_ordered_keys(s) >> self._shift).astype(np.intp)
        joint = bins * 2 + pos
        self.counts += np.bincount(joint, minlength=2 * self._n).reshape(self._n, 2).T

    @property
    def positives(self) -> int:
        return int(self.counts[1].sum())

    @property
    def negatives(self) -> int:
        return int(self.counts[0].sum())

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, tp, fp)`` as :func:`exact_curve`: a pixel counts at point ``k`` iff
        ``score > thresholds[k]`` (the largest float32 below the bin's lower edge)."""
        occupied = np.flatnonzero(self.counts.sum(axis=0))[::-1]
        tp = np.cumsum(self.counts[1, occupied])
        fp = np.cumsum(self.counts[0, occupied])
        lower = _float_of_key(occupied.astype(np.uint32) << self._shift)
        return np.nextafter(lower, np.float32(-np.inf)), tp, fp


def _totals(tp: np.ndarray, fp: np.ndarray) -> tuple[int, int]:
    if tp.size == 0:
        raise ValueError("no labelled pixel (every pixel is void)")
    return int(tp[-1]), int(fp[-1])


def auroc(tp: np.ndarray, fp: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid from (0, 0); ties count one half), as sklearn's ``roc_auc_score``."""
    p, n = _totals(tp, fp)
    if p == 0 or n == 0:
        raise ValueError("AUROC needs both anomalous and in-distribution pixels")
    tpr = np.r_[0.0, tp / p]
    fpr = np.r_[0.0, fp / n]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(tp: np.ndarray, fp: np.ndarray) -> float:
    """``sum_k (R_k - R_{k-1}) P_k`` from ``R_0 = 0`` (sklearn's ``average_precision_score``;
    SegmentMeIfYouCan's ``area_PRC``, which prepends a point of precision 1 at recall 0)."""
    p, _ = _totals(tp, fp)
    if p == 0:
        raise ValueError("AP needs at least one anomalous pixel")
    recall = np.r_[0.0, tp / p]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(recall) * precision))


def fpr_at_tpr_first(tp: np.ndarray, fp: np.ndarray, level: float = 0.95) -> float:
    """FPR at the first (highest) threshold whose TPR reaches ``level``; 1.0 if none does
    (SegmentMeIfYouCan ``tpr95_fpr``: ``searchsorted`` on the rising TPR)."""
    p, n = _totals(tp, fp)
    if p == 0 or n == 0:
        raise ValueError("FPR at 95 % TPR needs both anomalous and in-distribution pixels")
    tpr = tp / p
    k = int(np.searchsorted(tpr, level, side="left"))
    return float(fp[k] / n) if k < tpr.size else 1.0


def fpr_at_tpr_closest(tp: np.ndarray, fp: np.ndarray, level: float = 0.95) -> float:
    """FPR at the threshold whose recall is closest to ``level`` (hendrycks/anomaly-seg
    ``anom_utils.fpr_and_fdr_at_recall``): the candidates are the thresholds up to the
    first that reaches recall 1, scanned from the lowest threshold up, and the first
    minimum of ``|recall - level|`` wins, so of two equally close points (or equal
    recalls) the lower threshold, with more false positives, is taken."""
    p, n = _totals(tp, fp)
    if p == 0 or n == 0:
        raise ValueError("FPR at 95 % recall needs both anomalous and in-distribution pixels")
    recall = tp.astype(np.float64) / float(p)
    last = int(np.searchsorted(tp, p, side="left"))
    distance = np.abs(recall[: last + 1][::-1] - level)
    k = last - int(np.argmin(distance))
    return float(fp[k] / n)


def best_f1(tp: np.ndarray, fp: np.ndarray) -> tuple[float, int]:
    """``(max_k 2 TP / (2 TP + FP + FN), k)`` over the curve points (SegmentMeIfYouCan ``best_f1``)."""
    p, _ = _totals(tp, fp)
    if p == 0:
        raise ValueError("F1 needs at least one anomalous pixel")
    f1 = 2.0 * tp / (2.0 * tp + fp + (p - tp))
    k = int(np.argmax(f1))
    return float(f1[k]), k
