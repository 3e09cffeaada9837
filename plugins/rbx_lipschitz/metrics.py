"""Certified-robustness metrics (kinds ``certified`` and ``certified-segmentation``).

Called by the suites' evaluators (:mod:`rbx_lipschitz.evaluate`,
:mod:`rbx_lipschitz.evaluate_segmentation`) with these keywords:

* ``certified``: ``fn(radius=(N,), correct=(N,) bool, eps=float)``, one value per sample;
* ``certified-segmentation``: ``certified-pixel-accuracy`` and ``worst-case-iou`` get
  ``fn(images=[per-image summaries], eps=, lipschitz=)`` (see each function), the
  ``robustness@α`` radii ``fn(mean_curve=(H·W,), lipschitz=)``.

Definitions and conventions: :mod:`rbx_lipschitz.certificates` and ``docs/metrics.md``
("Certified robustness").
"""

from __future__ import annotations

import numpy as np

from rbx_lipschitz.certificates import certified_mask, certified_pixel_count, robustness_radius, worst_case_iou

__all__ = [
    "certified_accuracy",
    "mean_certified_radius",
    "certified_pixel_accuracy",
    "mean_worst_case_iou",
    "robustness_25",
    "robustness_50",
    "robustness_75",
    "check_cases",
    "segmentation_check_cases",
    "radius_check_cases",
]


def _inputs(radius, correct) -> tuple[np.ndarray, np.ndarray]:
    radius, correct = np.asarray(radius, dtype=np.float64), np.asarray(correct, dtype=bool)
    if radius.ndim != 1 or radius.shape != correct.shape:
        raise ValueError(f"radius and correct must be 1-D of one length, got {radius.shape} and {correct.shape}")
    if radius.size == 0:
        raise ValueError("no samples")
    if not np.isfinite(radius).all() or (radius < 0).any():
        raise ValueError("radii must be finite and >= 0")
    return radius, correct


def certified_accuracy(radius, correct, eps: float) -> np.ndarray:
    """1 for a sample certified correct on the ℓ2 ball of radius ``eps`` (ε = 0: correct), else 0."""
    radius, correct = _inputs(radius, correct)
    return certified_mask(radius, correct, float(eps)).astype(np.float64)


def mean_certified_radius(radius, correct, eps: float = 0.0) -> np.ndarray:
    """The certified radius of a correct sample, 0 for a wrong one (deel-lip's ``CategoricalProvableAvgRobustness``)."""
    radius, correct = _inputs(radius, correct)
    return np.where(correct, radius, 0.0)


def certified_pixel_accuracy(images, eps: float, lipschitz: float) -> np.ndarray:
    """Per image, the share of its non-void pixels certified correct (CRPA); ``images`` holds
    ``(costs, n_valid)`` from :func:`rbx_lipschitz.certificates.pixel_flip_costs`. Images
    without a non-void pixel give NaN."""
    if not len(images):
        raise ValueError("no images")
    out = np.empty(len(images))
    for i, (costs, valid) in enumerate(images):
        if len(costs) > valid:
            raise ValueError(f"image {i}: {len(costs)} correct pixels but only {valid} non-void ones")
        out[i] = certified_pixel_count(costs, float(eps), lipschitz) / valid if valid else np.nan
    return out


def mean_worst_case_iou(images, eps: float, lipschitz: float) -> float:
    """Mean over classes of each class's worst-case IoU pooled over images (a lower bound of the
    worst-case mIoU: each class gets its own adversary). ``images[b][k]`` holds
    :func:`rbx_lipschitz.certificates.class_flip_costs` of class ``k`` on image ``b``; classes
    absent from every image (no union) are left out."""
    if not len(images):
        raise ValueError("no images")
    classes = len(images[0])
    if any(len(per) != classes for per in images):
        raise ValueError("every image must give the costs of every class")
    values = [worst_case_iou([per[k] for per in images], float(eps), lipschitz)[1] for k in range(classes)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _radius(alpha: float):
    def radius(mean_curve, lipschitz: float) -> float:
        return robustness_radius(mean_curve, alpha, lipschitz)

    radius.__doc__ = f"robustness@{int(alpha * 100)}: the radius at which {alpha:.0%} of the pixels can be flipped."
    return radius


robustness_25, robustness_50, robustness_75 = _radius(0.25), _radius(0.5), _radius(0.75)


# --------------------------------------------------------------------------- conformance-kit inputs


def check_cases():
    """Kind ``certified``: (perfect, random, [(what, bad)]) keyword arguments."""
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.6
    perfect = {"radius": np.full(200, 2.0), "correct": np.ones(200, bool), "eps": 0.5}
    rand = {"radius": np.where(correct, rng.uniform(0, 1, 200), 0.0), "correct": correct, "eps": 0.5}
    bad = [("mismatched lengths", {"radius": np.ones(10), "correct": np.ones(9, bool), "eps": 0.5}),
           ("empty inputs", {"radius": np.zeros(0), "correct": np.zeros(0, bool), "eps": 0.5})]  # fmt: skip
    return perfect, rand, bad


def segmentation_check_cases(metric: str = "certified-pixel-accuracy"):
    rng = np.random.default_rng(0)
    if metric == "certified-pixel-accuracy":
        perfect = {"images": [(np.full(16, 50.0), 16)] * 4, "eps": 1.0, "lipschitz": 1.0}
        rand = {"images": [(rng.uniform(0, 0.1, 8), 16) for _ in range(4)], "eps": 1.0, "lipschitz": 1.0}
        bad = [("empty inputs", {"images": [], "eps": 1.0, "lipschitz": 1.0}),
               ("more correct than valid pixels", {"images": [(np.ones(5), 4)], "eps": 1.0, "lipschitz": 1.0})]  # fmt: skip
        return perfect, rand, bad
    strong = (np.full(8, 50.0), np.full(8, 50.0), 8)
    weak = (np.sort(rng.uniform(0, 0.05, 4)), np.sort(rng.uniform(0, 0.05, 8)), 8)
    perfect = {"images": [[strong, strong]] * 3, "eps": 1.0, "lipschitz": 1.0}
    rand = {"images": [[weak, weak]] * 3, "eps": 1.0, "lipschitz": 1.0}
    bad = [("empty inputs", {"images": [], "eps": 1.0, "lipschitz": 1.0}),
           ("ragged classes", {"images": [[strong], [strong, strong]], "eps": 1.0, "lipschitz": 1.0})]  # fmt: skip
    return perfect, rand, bad


def iou_check_cases():
    return segmentation_check_cases("worst-case-iou")


def radius_check_cases():
    """``robustness@α``: a confident map (large flip costs) against a hesitant one."""
    perfect = {"mean_curve": np.cumsum(np.full(64, 4.0)), "lipschitz": 1.0}
    rand = {"mean_curve": np.cumsum(np.full(64, 0.01)), "lipschitz": 1.0}
    bad = [("empty curve", {"mean_curve": np.zeros(0), "lipschitz": 1.0}),
           ("a zero Lipschitz constant", {"mean_curve": np.ones(4), "lipschitz": 0.0})]  # fmt: skip
    return perfect, rand, bad
