"""VOICE's per-image scores and the ``explanation`` suite's metrics.

Per-image scores (olivesgatech/VOICE-Uncertainty ``demo.py``, ``iou_numpy``,
``signaltonoise`` and ``get_stats``):

* :func:`map_iou`: the overlap of the binarised explanation ``E`` and VOICE
  map ``U``, ``(|E > t ∧ U > t| + 1e-6) / (|E > t ∨ U > t| + 1e-6)`` with
  ``t = 0.1`` (strict ``>``; the 1e-6 smoothing makes two empty masks score 1,
  as the release does);
* :func:`map_snr`: ``mean(U) / std(U)`` over the pixels of ``U`` (population
  std, ``ddof = 0``), 0 where ``std(U) = 0`` (a constant map).

Metrics (kind ``"explanation"``): the evaluator :mod:`rbx_explain.evaluate`
calls ``fn(iou=, snr=, correct=)`` with the per-image IoU and SNR ``(N,)`` and
whether each prediction is right ``(N,)`` bool. The IoU and SNR families return
per-image values (NaN for the images outside the group: the value is the mean
of the others); the AUROCs return one number. VOICE's reading (paper,
abstract and Sec. on results): under incorrect predictions the uncertainty
overlaps the explanation, so a high IoU (and SNR) flags a prediction to
distrust; lower is the better explanation, and the AUROCs score how well each
separates wrong predictions (positives) from right ones.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "IOU_THRESHOLD",
    "map_iou",
    "map_snr",
    "iou",
    "iou_correct",
    "iou_incorrect",
    "snr",
    "snr_correct",
    "snr_incorrect",
    "iou_error_auroc",
    "snr_error_auroc",
    "check_cases_maps",
    "check_cases_auroc",
]

#: The binarisation threshold of the released ``iou_numpy`` ("please change … according to your data").
IOU_THRESHOLD = 0.1
_SMOOTH = 1e-6


def _maps(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"explanation and uncertainty maps must both be (N, H, W); got {a.shape} and {b.shape}")
    return a, b


def map_iou(explanation, uncertainty, threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Per-image IoU of the maps binarised at ``> threshold``: ``(N, H, W)`` twice → ``(N,)``."""
    e, u = _maps(explanation, uncertainty)
    e, u = e > threshold, u > threshold
    inter = (e & u).sum(axis=(1, 2))
    union = (e | u).sum(axis=(1, 2))
    return (inter + _SMOOTH) / (union + _SMOOTH)


def map_snr(uncertainty) -> np.ndarray:
    """Per-image ``mean / std`` of the map's pixels (``ddof = 0``), 0 for a constant map: ``(N, H, W)`` → ``(N,)``."""
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.ndim != 3:
        raise ValueError(f"uncertainty maps must be (N, H, W); got {u.shape}")
    flat = u.reshape(len(u), -1)
    mean, std = flat.mean(axis=1), flat.std(axis=1)
    return np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)


# ----------------------------------------------------------------------------- metrics (kind "explanation")


def _columns(iou, snr, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iou, snr, correct = np.asarray(iou, dtype=np.float64), np.asarray(snr, dtype=np.float64), np.asarray(correct)
    if iou.ndim != 1 or iou.shape != snr.shape or iou.shape != correct.shape:
        raise ValueError(f"iou, snr and correct must be 1-D of one length; got {iou.shape}, {snr.shape}, {correct.shape}")
    if not len(iou):
        raise ValueError("no images")
    if correct.dtype != bool:
        raise ValueError(f"correct must be boolean, got {correct.dtype}")
    if not (np.isfinite(iou).all() and np.isfinite(snr).all()):
        raise ValueError("non-finite IoU or SNR values")
    return iou, snr, correct


def _within(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, values, np.nan)


def iou(iou, snr, correct) -> np.ndarray:
    """Per-image IoU@0.1 of the explanation and its VOICE map."""
    return _columns(iou, snr, correct)[0]


def iou_correct(iou, snr, correct) -> np.ndarray:
    """IoU@0.1 of the correctly predicted images (NaN for the others)."""
    i, _, c = _columns(iou, snr, correct)
    return _within(i, c)


def iou_incorrect(iou, snr, correct) -> np.ndarray:
    """IoU@0.1 of the wrongly predicted images (NaN for the others)."""
    i, _, c = _columns(iou, snr, correct)
    return _within(i, ~c)


def snr(iou, snr, correct) -> np.ndarray:
    """Per-image SNR of the VOICE map."""
    return _columns(iou, snr, correct)[1]


def snr_correct(iou, snr, correct) -> np.ndarray:
    _, s, c = _columns(iou, snr, correct)
    return _within(s, c)


def snr_incorrect(iou, snr, correct) -> np.ndarray:
    _, s, c = _columns(iou, snr, correct)
    return _within(s, ~c)


def _error_auroc(values: np.ndarray, correct: np.ndarray) -> float:
    from robustbench_x.metrics.failure import failure_auroc

    # wrong predictions are the positives, ranked by the value: AUROC of -value separating right from wrong
    return float(failure_auroc(confidence=-values, correct=correct))


def iou_error_auroc(iou, snr, correct) -> float:
    """AUROC of the IoU for detecting wrong predictions (wrong = positive, higher IoU = more suspect)."""
    i, _, c = _columns(iou, snr, correct)
    return _error_auroc(i, c)


def snr_error_auroc(iou, snr, correct) -> float:
    """AUROC of the SNR for detecting wrong predictions (wrong = positive, higher SNR = more suspect)."""
    _, s, c = _columns(iou, snr, correct)
    return _error_auroc(s, c)


# ----------------------------------------------------------------------------- conformance inputs


def _bad() -> list[tuple[str, dict]]:
    return [
        ("empty inputs", {"iou": np.zeros(0), "snr": np.zeros(0), "correct": np.zeros(0, bool)}),
        ("mismatched lengths", {"iou": np.zeros(4), "snr": np.zeros(4), "correct": np.ones(3, bool)}),
        ("NaN values", {"iou": np.array([0.1, np.nan]), "snr": np.ones(2), "correct": np.ones(2, bool)}),
    ]


def check_cases_maps() -> tuple[dict, dict, list[tuple[str, dict]]]:
    """For the IoU / SNR families: a "perfect" explanation whose VOICE map is one
    pixel away from it (IoU ≈ 0, sparse map, low SNR) against random maps."""
    rng = np.random.default_rng(0)
    n = 40
    correct = np.arange(n) % 3 != 0
    e = np.zeros((n, 8, 8))
    e[:, :4] = 1.0
    u = np.zeros((n, 8, 8))
    u[:, 7, 7] = 1.0
    perfect = {"iou": map_iou(e, u), "snr": map_snr(u), "correct": correct}
    er, ur = rng.random((n, 8, 8)), rng.random((n, 8, 8))
    rand = {"iou": map_iou(er, ur), "snr": map_snr(ur), "correct": correct}
    return perfect, rand, _bad()


def check_cases_auroc() -> tuple[dict, dict, list[tuple[str, dict]]]:
    """For the AUROCs: wrong predictions with the higher IoU and SNR, against random values."""
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.7
    high = np.where(correct, rng.uniform(0.0, 0.4, 200), rng.uniform(0.6, 1.0, 200))
    perfect = {"iou": high, "snr": 3 * high, "correct": correct}
    rand = {"iou": rng.random(200), "snr": 3 * rng.random(200), "correct": correct}
    return perfect, rand, _bad()
