"""Certificate methods: the certified radius of every sample (or pixel) from the logits and the
model's declared Lipschitz constant (``docs/methods.md``, "lipschitz-margin").

They need no gradient and no attack: the cached logits and ``ctx.model.lipschitz_constant``
(token ``lipschitz``) are all. Definitions in :mod:`rbx_lipschitz.certificates`.
"""

from __future__ import annotations

import math

import numpy as np

from robustbench_x.api import Context, Method
from robustbench_x.errors import PluginError

from rbx_lipschitz.certificates import certified_radius, class_gaps, top1_margin

__all__ = ["LipschitzMargin", "LipschitzPixelMargin", "declared_constant"]


def declared_constant(ctx: Context, method: str) -> float:
    """The model's ``lipschitz_constant``, checked: a finite number > 0."""
    value = getattr(ctx.model, "lipschitz_constant", None)
    if value is None:
        raise PluginError(
            f"method '{method}': model '{ctx.model.name}' provides the 'lipschitz' token but has no lipschitz_constant attribute; "
            "fix: set Model.lipschitz_constant to an upper bound of the network's l2 Lipschitz constant (docs/methods.md, lipschitz-margin)"
        )
    try:
        constant = float(value)
    except (TypeError, ValueError):
        constant = float("nan")
    if not math.isfinite(constant) or constant <= 0:
        raise PluginError(f"method '{method}': model '{ctx.model.name}' declares lipschitz_constant={value!r}; it must be a finite number > 0")
    return constant


class LipschitzMargin(Method):
    """Top-1 margin ``M = z_y − max_{j≠y} z_j`` and certified ℓ2 radius ``max(M, 0) / (√2 L)`` per sample.

    Outputs ``prediction`` (argmax), ``margin``, ``certified_radius`` (0 for a wrong
    prediction) and ``lipschitz_constant`` (the constant used, one value per sample so
    the stored table recomputes every number)."""

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        out = ctx.outputs(subset)
        logits = np.asarray(out.logits, dtype=np.float64)
        labels = np.asarray(out.labels, dtype=np.int64)
        if logits.ndim != 2:
            raise PluginError(f"lipschitz-margin: logits of subset '{subset}' have shape {logits.shape}; expected (N, C) class logits")
        if (labels < 0).any():
            raise PluginError(f"lipschitz-margin: subset '{subset}' has unlabelled samples; a certified radius needs the true class")
        if not np.isfinite(logits).all():
            raise PluginError(f"lipschitz-margin: non-finite logits on subset '{subset}'")
        constant = declared_constant(ctx, "lipschitz-margin")
        margin = top1_margin(logits, labels) if len(labels) else np.zeros(0)
        return {
            "prediction": logits.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64),
            "margin": margin,
            "certified_radius": certified_radius(margin, constant),
            "lipschitz_constant": np.full(len(labels), constant),
        }


class LipschitzPixelMargin(Method):
    """Per pixel and class, the gap ``z_k − max_{j≠k} z_j`` (positive only for the predicted
    class, where it is the top-2 margin), from the cached per-pixel logits; and the model's
    declared constant. The ``certified-segmentation`` evaluator derives every certificate
    from these gaps and the masks (:mod:`rbx_lipschitz.certificates`)."""

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        logits = np.asarray(ctx.outputs(subset).logits, dtype=np.float32)
        if logits.ndim != 4 or logits.shape[1] < 2:
            raise PluginError(f"lipschitz-pixel-margin: logits of subset '{subset}' have shape {logits.shape}; expected (N, C, H, W) with C >= 2")
        if not np.isfinite(logits).all():
            raise PluginError(f"lipschitz-pixel-margin: non-finite logits on subset '{subset}'")
        constant = declared_constant(ctx, "lipschitz-pixel-margin")
        gaps = np.empty_like(logits)
        for i in range(len(logits)):  # one image at a time: a few (C, H, W) temporaries
            gaps[i] = class_gaps(logits[i])
        return {"class_margin": gaps, "prediction": logits.argmax(axis=1), "lipschitz_constant": np.full(len(logits), constant)}
