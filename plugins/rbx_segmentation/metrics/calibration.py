"""Pixel calibration: ECE, NLL and Brier score over the non-ignored pixels.

* **ECE** follows torchmetrics' ``MulticlassCalibrationError(n_bins=15, norm="l1")``:
  confidence = max class probability, accuracy = (argmax == target), 15
  bins with boundaries ``linspace(0, 1, 16)`` in the probabilities' precision
  (float32, or float64 for float64 input, as torchmetrics), a pixel goes to bin ``i`` when
  ``b_i <= conf < b_{i+1}`` (``bucketize(right=True) - 1``; a confidence of
  exactly 1 gets a bin of its own), ``ECE = sum_i (n_i / N) |acc_i - conf_i|``.
  torch-uncertainty's segmentation routine computes it on a random 1 % of
  pixels by default (``metric_subsampling_rate=1e-2``); here every pixel
  counts unless ``subsample`` is given, and then the rate is recorded
  (:attr:`CalibrationAccumulator.subsample`).
* **NLL** = mean of ``-log p_target`` (``p`` floored at the smallest normal
  float32, 1.2e-38, so one confidently wrong pixel costs at most 87.3 nats
  instead of infinity).
* **Brier** = mean over pixels of ``sum_c (p_c - 1[c = target])**2`` (the
  multiclass Brier score of torch-uncertainty's ``BrierScore``, not divided by
  the number of classes).

Streaming: per bin three float64 sums, plus two scalars; nothing grows with
the number of pixels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CalibrationAccumulator"]

_FLOOR = float(np.finfo(np.float32).tiny)


def max_and_argmax(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and argmax over the class axis of (C, P) probabilities, first index on ties.

    numpy's ``argmax(axis=0)`` on a (19, 2e6) array is ~100x slower than ``max(axis=0)``;
    the argmax is the lowest class equal to the max, found with one pass per class."""
    best = probs.max(axis=0)
    arg = np.zeros(best.shape, dtype=np.int64)
    for k in range(probs.shape[0] - 1, -1, -1):
        np.copyto(arg, k, where=probs[k] == best)
    return best, arg


class CalibrationAccumulator:
    def __init__(self, n_bins: int = 15, subsample: float | None = None, seed: int = 0) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        if subsample is not None and not 0.0 < subsample <= 1.0:
            raise ValueError(f"subsample must be a fraction in (0, 1], got {subsample}")
        self.n_bins, self.subsample = n_bins, subsample
        self._rng = np.random.default_rng(seed)
        self.boundaries = np.linspace(0.0, 1.0, n_bins + 1, dtype=np.float32)
        self._count = np.zeros(n_bins + 1, dtype=np.float64)
        self._conf = np.zeros(n_bins + 1, dtype=np.float64)
        self._acc = np.zeros(n_bins + 1, dtype=np.float64)
        self._nll = 0.0
        self._brier = 0.0
        #: pixels counted so far
        self.pixels = 0

    def update(self, probs: np.ndarray, target: np.ndarray, ignore_index: int = 255) -> None:
        probs, target = np.asarray(probs), np.asarray(target)
        if probs.ndim != 3 or probs.shape[1:] != target.shape:
            raise ValueError(f"probs must be (C, H, W) and target (H, W); got {probs.shape} and {target.shape}")
        c = probs.shape[0]
        valid = target != ignore_index
        if self.subsample is not None:
            valid &= self._rng.random(target.shape) < self.subsample
        t = target[valid].astype(np.int64)
        if t.size == 0:
            return
        if t.min() < 0 or t.max() >= c:
            raise ValueError(f"target classes must be in 0..{c - 1} or {ignore_index} (ignore); found {t.min()}..{t.max()}")
        flat = probs.reshape(c, -1)
        index = np.flatnonzero(valid.ravel())
        conf, pred = max_and_argmax(flat)
        conf, pred = conf[index], pred[index]
        if not np.isfinite(conf).all():
            raise ValueError("probs have NaN or infinite values")
        p_target = flat[t, index].astype(np.float64)
        sum_sq = np.einsum("ch,ch->h", flat, flat)[index].astype(np.float64)
        boundaries = self.boundaries if conf.dtype == np.float32 else np.linspace(0.0, 1.0, self.n_bins + 1, dtype=np.float64)
        bins = np.searchsorted(boundaries, conf, side="right") - 1
        bins = np.clip(bins, 0, self.n_bins)
        self._count += np.bincount(bins, minlength=self.n_bins + 1)
        self._conf += np.bincount(bins, weights=conf.astype(np.float64), minlength=self.n_bins + 1)
        self._acc += np.bincount(bins, weights=(pred == t).astype(np.float64), minlength=self.n_bins + 1)
        self._nll += float(-np.log(np.maximum(p_target, _FLOOR)).sum())
        self._brier += float((sum_sq - 2.0 * p_target + 1.0).sum())
        self.pixels += int(t.size)

    def result(self) -> dict[str, float]:
        if self.pixels == 0:
            raise ValueError("no labelled pixel (every pixel has the ignore label)")
        n = float(self.pixels)
        return {
            "ece": float(np.abs(self._acc - self._conf).sum() / n),
            "nll": self._nll / n,
            "brier": self._brier / n,
        }
