"""Lipschitz certificates from logits alone (numpy; no model, no torch).

A network ``f`` that is ``L``-Lipschitz in the ℓ2 norm (the whole output vector,
or for a segmenter the whole ``(C, H, W)`` output map) satisfies
``||f(x + δ) − f(x)||_2 ≤ L ||δ||_2``. Every function here turns that bound into
a guarantee about the prediction, following

* classification: Serrurier, Mamalet, González-Sanz, Boissin, Loubes, del Barrio,
  "Achieving robustness in classification using optimal transport with hinge
  regularization", CVPR 2021 (certificate of a Lipschitz classifier), as
  computed by deel-lip ``deel/lip/metrics.py::CategoricalProvableRobustAccuracy``
  with ``disjoint_neurons=False``: the top-1 margin ``M = z_y − max_{j≠y} z_j``
  can only close when the output moves by ``M/√2`` in ℓ2 (the two logits move
  towards each other), so the prediction is constant on the ℓ2 ball of radius
  ``M / (√2 L)``;
* segmentation: Massena, Friedrich, Mamalet, Serrurier, "Fast and Flexible
  Robustness Certificates for Semantic Segmentation", arXiv:2512.06010 (2025),
  official code ``deel-ai-papers/robust-segmentation`` at commit ``5de9c22``,
  ``src/robustness/{pixel_acc,wc_iou,metric}.py``: one global budget
  ``(L ε)²`` of squared output change per image, pixel ``p`` costs ``m_p² / 2``
  to flip (``m_p`` its top-2 logit gap), so the adversary flips the cheapest
  pixels first.

Conventions that differ from the reference code, on purpose (``docs/metrics.md``,
"Certified robustness"):

* **ε = 0 is clean accuracy.** A sample (pixel) is certified at ε > 0 when it is
  correct and its radius (cumulative cost) is *strictly* above ε (a tie at the
  boundary is not robust: deel-lip's strict ``>``), and at ε = 0 when it is
  correct. The segmentation reference counts ``cost ≥ ε L``, which at ε = 0
  certifies every pixel, wrong and void ones included (CRPA(0) = 1).
* **Void pixels** (the dataset's ignore label) are left out of every count and
  never cost the adversary anything; the reference's worst-case IoU has no ignore
  label.
* **Worst-case IoU** of a class pooled over images is the exact minimum of the
  pooled ratio Σ TP / Σ (TP + FP + FN) over what the adversary can do to each
  image (Dinkelbach's method); the reference minimises each image's own ratio and
  then sums numerators and denominators, which can lie above the true worst case.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "SQRT2",
    "top1_margin",
    "class_gaps",
    "certified_radius",
    "certified_mask",
    "pixel_flip_costs",
    "certified_pixel_count",
    "class_flip_costs",
    "worst_case_iou",
    "robustness_curve",
    "robustness_radius",
]

SQRT2 = math.sqrt(2.0)


def _check_lipschitz(lipschitz: float) -> float:
    value = float(lipschitz)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the Lipschitz constant must be a finite number > 0, got {lipschitz!r}")
    return value


def top1_margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``z_y − max_{j≠y} z_j`` per sample (negative when the prediction is wrong); ``logits`` ``(N, C)``."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"logits must be (N, C) and labels (N,), got {logits.shape} and {labels.shape}")
    if logits.shape[1] < 2:
        raise ValueError("a margin needs at least two classes")
    if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {logits.shape[1]}), got values in [{labels.min()}, {labels.max()}]")
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return true - others.max(axis=1)


def certified_radius(margin: np.ndarray, lipschitz: float) -> np.ndarray:
    """ℓ2 radius ``max(M, 0) / (√2 L)`` within which the (correct) prediction cannot change; 0 when wrong."""
    lipschitz = _check_lipschitz(lipschitz)
    return np.maximum(np.asarray(margin, dtype=np.float64), 0.0) / (SQRT2 * lipschitz)


def certified_mask(radius: np.ndarray, correct: np.ndarray, eps: float) -> np.ndarray:
    """Which samples are certified correct on the closed ℓ2 ball of radius ``eps`` (ε = 0: the correct ones)."""
    radius = np.asarray(radius, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if radius.shape != correct.shape:
        raise ValueError(f"radius and correct must have the same shape, got {radius.shape} and {correct.shape}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    return correct if eps == 0 else correct & (radius > eps)


# --------------------------------------------------------------------------- segmentation


def class_gaps(logits: np.ndarray) -> np.ndarray:
    """``z_k − max_{j≠k} z_j`` for every class ``k`` (axis 0) of ``(C, ...)`` logits: positive only
    for the predicted class, where it is the top-2 margin; every certificate below reads these."""
    logits = np.asarray(logits)
    if logits.ndim < 1 or logits.shape[0] < 2:
        raise ValueError(f"class gaps need logits with at least two classes on axis 0, got shape {logits.shape}")
    top2 = np.partition(logits, -2, axis=0)[-2:]
    return logits - np.where(logits == top2[1], top2[0], top2[1])


def _split(gaps: np.ndarray, target: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gaps = np.asarray(gaps, dtype=np.float64)
    target = np.asarray(target)
    if gaps.ndim != 3 or target.shape != gaps.shape[1:]:
        raise ValueError(f"class gaps must be (C, H, W) and the mask (H, W), got {gaps.shape} and {target.shape}")
    if gaps.shape[0] < 2:
        raise ValueError("a margin needs at least two classes")
    valid = target != ignore_index
    return gaps.reshape(gaps.shape[0], -1), target.reshape(-1).astype(np.int64), valid.reshape(-1)


def pixel_flip_costs(gaps: np.ndarray, target: np.ndarray, ignore_index: int = 255) -> tuple[np.ndarray, int]:
    """Squared output change ``m_p² / 2`` needed to make each correct, non-void pixel wrong,
    and the number of non-void pixels. ``gaps`` ``(C, H, W)`` from :func:`class_gaps`, ``target`` ``(H, W)``."""
    flat, labels, valid = _split(gaps, target, ignore_index)
    correct = valid & (flat.argmax(axis=0) == labels)
    return (flat.max(axis=0)[correct] ** 2) / 2.0, int(valid.sum())


def certified_pixel_count(costs: np.ndarray, eps: float, lipschitz: float) -> int:
    """Correct pixels the adversary cannot flip with output budget ``(L ε)²``: it flips the
    cheapest first, so a pixel is certified when the cumulative cost up to it exceeds the budget."""
    lipschitz = _check_lipschitz(lipschitz)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    costs = np.sort(np.asarray(costs, dtype=np.float64))
    if eps == 0:
        return int(costs.size)
    return int(np.count_nonzero(np.cumsum(costs) > (eps * lipschitz) ** 2))


def class_flip_costs(gaps: np.ndarray, target: np.ndarray, k: int, ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray, int]:
    """For class ``k`` on one image: the sorted costs of turning each true positive into a
    false negative, of turning each true negative into a false positive, and the clean
    union ``TP + FP + FN`` (void pixels excluded). ``gaps`` from :func:`class_gaps`."""
    flat, labels, valid = _split(gaps, target, ignore_index)
    pred_k = flat.argmax(axis=0) == k
    gt_k = labels == k
    tp = valid & gt_k & pred_k
    tn = valid & ~gt_k & ~pred_k
    union = int(np.count_nonzero(valid & (gt_k | pred_k)))
    return np.sort(flat[k][tp] ** 2 / 2.0), np.sort(flat[k][tn] ** 2 / 2.0), union


def _image_choices(tp_costs: np.ndarray, tn_costs: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """For each affordable number ``m`` of broken TPs, the most TNs ``n(m)`` still affordable."""
    if budget == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    pa = np.concatenate([[0.0], np.cumsum(tp_costs)])
    pd = np.concatenate([[0.0], np.cumsum(tn_costs)])
    # a flip that uses the budget up exactly leaves a tie: counted as a flip (the certificate stays sound)
    m = np.flatnonzero(pa <= budget)
    n = np.searchsorted(pd, budget - pa[m], side="right") - 1
    return m, np.clip(n, 0, len(tn_costs))


def worst_case_iou(images: list[tuple[np.ndarray, np.ndarray, int]], eps: float, lipschitz: float) -> tuple[float, float]:
    """``(clean IoU, certified worst-case IoU)`` of one class pooled over images.

    ``images`` holds :func:`class_flip_costs` per image. Each image gets its own
    budget ``(L ε)²``; the pooled worst case ``min Σ(t_b − m_b) / Σ(u_b + n_b)`` over
    every affordable ``(m_b, n_b)`` is found exactly with Dinkelbach's iteration
    (for a fixed ratio λ the images decouple). NaN when the class is absent
    everywhere (no union)."""
    lipschitz = _check_lipschitz(lipschitz)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    budget = (eps * lipschitz) ** 2
    t_all = np.array([len(tp) for tp, _, _ in images], dtype=np.float64)
    u_all = np.array([u for _, _, u in images], dtype=np.float64)
    if u_all.sum() == 0:
        return float("nan"), float("nan")
    clean = float(t_all.sum() / u_all.sum())
    choices = [_image_choices(tp, tn, budget) for tp, tn, _ in images]
    lam = clean
    for _ in range(100):
        num = den = 0.0
        for (m, n), t, u in zip(choices, t_all, u_all):
            value = (t - m) - lam * (u + n)
            i = int(np.argmin(value))
            num += t - m[i]
            den += u + n[i]
        new = num / den
        if new >= lam - 1e-15:
            return clean, float(min(new, lam))
        lam = new
    return clean, float(lam)


def robustness_curve(gaps: np.ndarray) -> np.ndarray:
    """Sorted cumulative flip costs of every pixel of one image (the prediction's own
    top-2 gap, labels not used): entry ``k`` is the squared output change that flips
    the ``k + 1`` cheapest pixels. ``gaps`` ``(C, H, W)`` from :func:`class_gaps`."""
    gaps = np.asarray(gaps, dtype=np.float64)
    if gaps.ndim != 3 or gaps.shape[0] < 2:
        raise ValueError(f"class gaps must be (C, H, W) with C >= 2, got {gaps.shape}")
    return np.cumsum(np.sort(gaps.max(axis=0).ravel() ** 2 / 2.0))


def robustness_radius(mean_curve: np.ndarray, alpha: float, lipschitz: float) -> float:
    """``robustness@α``: the input ℓ2 radius at which a share ``α`` of the pixels can be
    flipped, read on the image-averaged :func:`robustness_curve` at index ``⌊α (N − 1)⌋``
    (as the reference ``RobustnessMeasure``)."""
    lipschitz = _check_lipschitz(lipschitz)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    curve = np.asarray(mean_curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError("the robustness curve must be a non-empty 1-D array")
    return float(np.sqrt(curve[min(int(alpha * (curve.size - 1)), curve.size - 1)]) / lipschitz)
