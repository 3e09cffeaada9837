"""Confusion matrix over pixels: mIoU, per-class IoU, pixel accuracy.

Pixels whose target is ``ignore_index`` are dropped. IoU of class ``c`` is
``TP_c / (TP_c + FP_c + FN_c)`` over the pixels of the whole dataset (the
Cityscapes / mmsegmentation convention, not a mean of per-image IoUs); a class
that appears neither in the targets nor in the predictions has no IoU (NaN)
and is left out of the mean. Pixel accuracy is the trace over all counted
pixels. The matrix is ``num_classes**2`` int64 counts whatever the pixel count.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ConfusionAccumulator", "image_iou", "confusion_counts"]


def confusion_counts(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """``(num_classes, num_classes)`` counts, rows = target class, columns = predicted class."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} must have the same shape")
    valid = target != ignore_index
    t, p = target[valid].astype(np.int64), pred[valid].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target classes must be in 0..{num_classes - 1} or {ignore_index} (ignore); found {sorted(set(np.unique(t[(t < 0) | (t >= num_classes)]).tolist()))[:5]}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted classes must be in 0..{num_classes - 1}; found {p.min()}..{p.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _iou(matrix: np.ndarray) -> np.ndarray:
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


class ConfusionAccumulator:
    """Streams (prediction, target) masks one image at a time."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.matrix += confusion_counts(pred, target, self.num_classes, self.ignore_index)

    def _check(self) -> None:
        if self.matrix.sum() == 0:
            raise ValueError("no labelled pixel (every pixel has the ignore label)")

    def per_class_iou(self) -> np.ndarray:
        self._check()
        return _iou(self.matrix)

    def miou(self) -> float:
        return float(np.nanmean(self.per_class_iou()))

    def pixel_accuracy(self) -> float:
        self._check()
        return float(np.trace(self.matrix) / self.matrix.sum())


def image_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255) -> float:
    """Mean IoU of one image over the classes in its target or prediction (NaN if no labelled pixel);
    the per-image value a bootstrap over images resamples."""
    matrix = confusion_counts(pred, target, num_classes, ignore_index)
    if matrix.sum() == 0:
        return float("nan")
    return float(np.nanmean(_iou(matrix)))
