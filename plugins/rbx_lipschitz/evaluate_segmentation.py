"""Evaluator of the ``certified-segmentation`` suite (task segmentation).

For each subset of the suite (``test``), from the method's per-pixel class gaps
``class_margin`` ``(N, C, H, W)`` (``z_k − max_{j≠k} z_j``), its
``lipschitz_constant`` and the dataset's masks (``ctx.outputs(subset).labels``,
ignore label ``dataset.ignore_index``), one image at a time:

* ``certified-pixel-accuracy`` at every ε of the grid (subset ``<subset>/l2/<ε>``):
  per image the share of non-void pixels certified correct, mean over images;
* ``worst-case-iou`` at every ε: the mean over classes of each class's worst-case
  IoU pooled over images;
* ``robustness@25`` / ``@50`` / ``@75`` on the subset: from the image-averaged
  sorted cumulative flip costs (all pixels);
* per-image columns ``sample_id``, ``subset``, ``pixel_accuracy`` (clean), one
  ``certified-pixel-accuracy@<ε>`` column per ε, ``valid_pixels``, ``lipschitz_constant``;
  and the array ``<subset>-class-margin`` (float32 ``(N, C, H, W)``, through
  ``ev.arrays``) from which, with the masks, every number is recomputed.

Memory: the gaps of the subset (as the cached logits) plus per image a few
``(C, H, W)`` temporaries and the sorted costs; the worst-case IoU keeps per class
and image the sorted TP / TN costs (about ``C × H × W`` floats per image in all).
Definitions: :mod:`rbx_lipschitz.certificates`; conventions: ``docs/metrics.md``.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.api import load_factory
from robustbench_x.errors import PluginError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED

from rbx_lipschitz.certificates import class_flip_costs, pixel_flip_costs, robustness_curve
from rbx_lipschitz.grid import SEGMENTATION_GRID, eps_subset, grid_of

__all__ = ["evaluate"]


def _validated(produced, shape: tuple, method: str, subset: str) -> tuple[np.ndarray, float]:
    if not isinstance(produced, dict) or "class_margin" not in produced or "lipschitz_constant" not in produced:
        got = sorted(produced) if isinstance(produced, dict) else type(produced).__name__
        raise PluginError(f"method '{method}' returned {got} for subset '{subset}'; the certified-segmentation suite needs class_margin and lipschitz_constant")
    gaps = np.asarray(produced["class_margin"], dtype=np.float32)
    if gaps.ndim != 4 or (gaps.shape[0],) + gaps.shape[2:] != shape or gaps.shape[1] < 2:
        raise PluginError(f"method '{method}' returned class_margin of shape {gaps.shape} for subset '{subset}'; expected (N, C, H, W) with masks {shape}")
    if not np.isfinite(gaps).all():
        raise PluginError(f"method '{method}' returned non-finite class_margin for subset '{subset}'")
    constants = np.asarray(produced["lipschitz_constant"], dtype=np.float64)
    if constants.shape != (shape[0],) or not np.isfinite(constants).all() or (constants <= 0).any() or len(set(constants.tolist())) > 1:
        raise PluginError(f"method '{method}' returned lipschitz_constant {constants[:3]}… for subset '{subset}'; expected one finite value > 0 per image, the same for all")
    return gaps, float(constants[0]) if len(constants) else 1.0


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    specs = {s.name: s for s in ev.metric_specs}
    fns = {name: load_factory(spec.fn) for name, spec in specs.items()}
    grid = grid_of(ev.dataset, SEGMENTATION_GRID)
    ignore = int(getattr(ev.dataset, "ignore_index", 255))
    values: list[MetricValue] = []
    columns: dict[str, list[np.ndarray]] = {}
    for subset in ev.subsets():
        out = ev.ctx.outputs(subset)
        masks = np.asarray(out.labels)
        ids = np.asarray(out.sample_ids).astype(str)
        if masks.ndim != 3:
            raise PluginError(f"dataset '{ev.dataset.name}' subset '{subset}' has labels of shape {masks.shape}; the certified-segmentation suite needs (N, H, W) masks")
        gaps, constant = _validated(ev.method.score(ev.ctx, subset), masks.shape, ev.method_name, subset)
        n, classes = len(masks), gaps.shape[1]
        pixel, per_class, curve_sum, clean = [], [], None, np.empty(n)
        for i in range(n):
            costs, valid = pixel_flip_costs(gaps[i], masks[i], ignore)
            pixel.append((costs, valid))
            clean[i] = len(costs) / valid if valid else np.nan
            per_class.append([class_flip_costs(gaps[i], masks[i], k, ignore) for k in range(classes)])
            curve = robustness_curve(gaps[i])
            if curve_sum is not None and curve.shape != curve_sum.shape:
                raise PluginError(f"subset '{subset}': images of different sizes; robustness@α needs one size")
            curve_sum = curve if curve_sum is None else curve_sum + curve
        per_image = {"sample_id": ids, "subset": np.full(n, subset), "pixel_accuracy": clean,
                     "valid_pixels": np.array([v for _, v in pixel]), "lipschitz_constant": np.full(n, constant)}
        for name, spec in specs.items():
            if name == "certified-pixel-accuracy":
                for text, eps in grid:
                    crpa = np.asarray(fns[name](images=pixel, eps=eps, lipschitz=constant), dtype=np.float64)
                    per_image[f"{name}@{text}"] = crpa
                    values.append(MetricValue(eps_subset(subset, text), name, float(np.nanmean(crpa)), spec.higher_is_better, int(np.isfinite(crpa).sum())))
            elif name == "worst-case-iou":
                for text, eps in grid:
                    value = float(fns[name](images=per_class, eps=eps, lipschitz=constant))
                    error = None if np.isfinite(value) else UNDEFINED + "no class present in any image"
                    values.append(MetricValue(eps_subset(subset, text), name, value, spec.higher_is_better, n, error))
            else:
                value = float(fns[name](mean_curve=curve_sum / n, lipschitz=constant))
                values.append(MetricValue(subset, name, value, spec.higher_is_better, n))
        if ev.arrays.directory is not None:
            ev.arrays.save(f"{subset.replace('/', '_')}-class-margin", gaps, ids)
        for key, value in per_image.items():
            columns.setdefault(key, []).append(np.asarray(value))
    return values, {k: np.concatenate(v) for k, v in columns.items()}
