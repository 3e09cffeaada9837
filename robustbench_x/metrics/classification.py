"""Classification metrics: top-1 accuracy and the number of errors.

Conventions (docs: ``docs/metrics.md#conventions``):
``labels`` are integer class indices, or ``-1`` for a sample of a class the
model does not know (FD-Shifts' new-class shift, where such samples are
failures by definition): it is counted as wrong whatever the prediction, as
scikit-learn's ``accuracy_score`` / ``zero_one_loss`` count it. Any other
negative label is rejected, and so is a negative prediction. ``accuracy``
returns a fraction (display x100), ``errors`` a count (display x1), both as
Python ``float``. Bad input raises ``ValueError``. Source: top-1 accuracy as in
OpenOOD ``openood/evaluators/metrics.py::acc``.

``_as_labels`` is shared with :mod:`robustbench_x.metrics.calibration`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "errors", "UNKNOWN_CLASS"]

#: The label of a sample of no class the model knows (new-class shift, OOD).
UNKNOWN_CLASS = -1


def _as_labels(x, name: str = "labels", n_classes: int | None = None) -> np.ndarray:
    """Validate a 1-D, non-empty array of integer class indices; return int64."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one sample is required")
    if arr.dtype.kind == "f":
        # Labels stored as floats are accepted only when they are whole numbers.
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must contain integer class indices")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must contain integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        bound = f"[0, {n_classes})" if n_classes is not None else "[0, inf)"
        raise ValueError(f"{name} out of range: got values in [{low}, {high}], expected {bound}")
    return arr


def accuracy(prediction, labels) -> float:
    """Top-1 accuracy, ``mean(prediction == labels)`` (a label ``-1`` is never matched).

    ``prediction`` is either a 1-D array of predicted class indices or a 2-D
    ``(N, C)`` array of scores (logits or probabilities), in which case the
    prediction is ``argmax`` over classes, ties going to the lowest class
    index (``np.argmax``). ``labels`` is a 1-D array of class indices in
    ``[0, C)`` (``[0, inf)`` for 1-D predictions), or ``-1``. Higher is better.
    """
    pred, y = _predictions(prediction, labels)
    return float(np.count_nonzero(pred == y) / y.size)


def errors(prediction, labels) -> float:
    """Number of wrong predictions, ``sum(prediction != labels)``; every label ``-1`` is one.

    Same inputs as :func:`accuracy`; ``errors == (1 − accuracy) · N``. Lower is better.
    """
    pred, y = _predictions(prediction, labels)
    return float(np.count_nonzero(pred != y))


def _predictions(prediction, labels) -> tuple[np.ndarray, np.ndarray]:
    raw = np.asarray(labels)
    unknown = raw == UNKNOWN_CLASS if raw.dtype.kind in "iuf" else np.zeros(raw.shape, dtype=bool)
    y = _as_labels(np.where(unknown, 0, raw) if raw.ndim == 1 else raw, "labels")
    pred = np.asarray(prediction)
    if pred.ndim not in (1, 2):
        raise ValueError(
            f"prediction must be 1-D class indices or 2-D (N, C) scores, got shape {pred.shape}"
        )
    if pred.ndim == 2:
        if pred.dtype.kind not in "biuf":
            raise ValueError(f"prediction must be numeric, got dtype {pred.dtype}")
        if pred.shape[0] == 0 or pred.shape[1] == 0:
            raise ValueError(f"prediction is empty (shape {pred.shape})")
        if not np.isfinite(pred).all():
            raise ValueError("prediction contains NaN or inf")
        y = _as_labels(y, "labels", n_classes=pred.shape[1])
        pred = np.argmax(pred, axis=1)
    else:
        pred = _as_labels(pred, "prediction")
    if pred.size != y.size:
        raise ValueError(
            f"prediction and labels must have the same length, got {pred.size} and {y.size}"
        )
    return pred, np.where(unknown, UNKNOWN_CLASS, y)
