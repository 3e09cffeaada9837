"""Evaluator of the ``certified`` suite (task classification).

For each subset of the suite (``id``): the method's per-sample ``certified_radius``
(with ``prediction``, ``margin`` and the ``lipschitz_constant`` used), validated, then

* ``certified-accuracy`` at every ε of the grid (:mod:`rbx_lipschitz.grid`): subset
  ``<subset>/l2/<ε>``, the share of samples whose prediction is correct and certified
  on the closed ℓ2 ball of radius ε (ε = 0: clean accuracy);
* ``mean-certified-radius`` and ``accuracy`` on the subset itself;
* per-sample columns ``sample_id``, ``subset``, ``label``, ``prediction``, ``margin``,
  ``certified_radius``, ``lipschitz_constant``, ``correct`` and
  ``mean-certified-radius``: every number (and the curve on the page) is recomputed from them.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.api import load_factory
from robustbench_x.errors import PluginError
from robustbench_x.evaluation import Evaluation, MetricValue

from rbx_lipschitz.grid import CLASSIFICATION_GRID, eps_subset, grid_of

__all__ = ["evaluate"]

COLUMNS = ("prediction", "margin", "certified_radius", "lipschitz_constant")


def _validated(produced, n: int, method: str, subset: str) -> dict[str, np.ndarray]:
    if not isinstance(produced, dict) or any(k not in produced for k in COLUMNS):
        got = sorted(produced) if isinstance(produced, dict) else type(produced).__name__
        raise PluginError(f"method '{method}' returned {got} for subset '{subset}'; the certified suite needs {', '.join(COLUMNS)}")
    out = {k: np.asarray(produced[k]) for k in COLUMNS}
    for key, value in out.items():
        if value.shape != (n,):
            raise PluginError(f"method '{method}' returned '{key}' of shape {value.shape} for subset '{subset}'; expected ({n},)")
        if not np.isfinite(value.astype(np.float64)).all():
            raise PluginError(f"method '{method}' returned non-finite '{key}' for subset '{subset}'")
    if (out["certified_radius"] < 0).any():
        raise PluginError(f"method '{method}' returned negative certified radii for subset '{subset}'")
    return out


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    specs = {s.name: s for s in ev.metric_specs}
    fns = {name: load_factory(spec.fn) for name, spec in specs.items()}
    grid = grid_of(ev.dataset, CLASSIFICATION_GRID)
    values: list[MetricValue] = []
    columns: dict[str, list[np.ndarray]] = {}
    for subset in ev.subsets():
        labels = np.asarray(ev.ctx.outputs(subset).labels, dtype=np.int64)
        ids = np.asarray(ev.ctx.outputs(subset).sample_ids).astype(str)
        out = _validated(ev.method.score(ev.ctx, subset), len(labels), ev.method_name, subset)
        correct = out["prediction"].astype(np.int64) == labels
        radius = out["certified_radius"].astype(np.float64)
        n = len(labels)
        per_sample = {}
        for name, spec in specs.items():
            if spec.kind == "classification":
                values.append(MetricValue(subset, name, float(fns[name](prediction=out["prediction"], labels=labels)), spec.higher_is_better, n))
            elif name == "certified-accuracy":
                for text, eps in grid:
                    value = float(np.mean(fns[name](radius=radius, correct=correct, eps=eps)))
                    values.append(MetricValue(eps_subset(subset, text), name, value, spec.higher_is_better, n))
            else:
                per_sample[name] = np.asarray(fns[name](radius=radius, correct=correct), dtype=np.float64)
                values.append(MetricValue(subset, name, float(np.mean(per_sample[name])), spec.higher_is_better, n))
        block = {"sample_id": ids, "subset": np.full(n, subset), "label": labels, **out, "correct": correct, **per_sample}
        for key, value in block.items():
            columns.setdefault(key, []).append(np.asarray(value))
    return values, {k: np.concatenate(v) for k, v in columns.items()}
