"""GradTrust (``docs/methods.md#gradtrust``).

Prabhushankar & AlRegib, "Counterfactual Gradients-based Quantification of
Prediction Trust in Neural Networks", IEEE MIPR 2024 (invited paper; arXiv
2405.13758): trust = variance of counterfactual gradients of the last layer.

What the official demo computes (olivesgatech/GradTrust ``demo.py::
get_grads_individual`` at ``5942ee86b033``), per image (batch size 1, eval
mode, gradients zeroed before and after):

1. ``loss = MSELoss()(z, (1/C)·1)``: mean squared error between the logits and
   a **uniform** target, mean over the C entries;
2. ``G = ∂loss/∂W`` for the final-layer weight ``W`` (C × d), the first 2-D
   parameter with C rows;
3. ``v_c = Var_d(G_c²)`` (``torch.var`` over the feature axis, unbiased);
4. ``GradTrust = max_c v_c / mean_c v_c``; higher = more trust.

Closed form (verified against autograd in ``tests/plugins/test_gradients_gradtrust.py``).
With ``z = W h + b``, ``∂loss/∂z_c = (2/C)(z_c − 1/C)`` so
``G_c = (2/C)(z_c − 1/C)·h``, ``G_c² = (2/C)²(z_c − 1/C)²·h²`` and
``v_c = (2/C)⁴ (z_c − 1/C)⁴ Var_d(h²)``. The factor ``(2/C)⁴ Var_d(h²)`` is
common to every class and cancels in the ratio:

    GradTrust = max_c a_c / mean_c a_c,     a_c = (z_c − 1/C)⁴,

a function of the logits alone, computed here from the cached logits (no
autograd, no batch-size-1 loop); exact because the last layer is linear
(hence ``requires = {"logits", "features", "linear_head"}``). :func:`gradtrust_variances`
returns the demo's ``v_c`` (with ``Var_d(h²)`` from the cached features) for
inspection.

Defaults: ``top_k = None`` (all C classes: the demo formula, the verified
version). Option ``top_k = k`` restricts the max and the mean to the k classes
with the largest logits. **[UNVERIFIED]**: the paper's text (per third-party
summaries) describes the Fisher information of counterfactual gradients of
the "top-k competing classes"; neither k nor whether the predicted class is
included could be checked, and the demo uses all classes. Here the predicted
class is included (the k largest logits); k must be ≥ 2.

Edge cases: when every ``a_c`` is 0 (all logits equal 1/C) the ratio is
defined as 1 (max = mean). When ``Var_d(h²) = 0`` the demo returns 0/0 = NaN;
the closed form returns the limit ``max a / mean a``.
"""

from __future__ import annotations

import numpy as np

from rbx_gradients._common import eval_mode, f64, last_linear_weight, score_dict
from robustbench_x.api import Context, Method

__all__ = ["GradTrust", "gradtrust_closed_form", "gradtrust_variances", "gradtrust_autograd"]


def _check_logits(logits) -> np.ndarray:
    z = f64(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"gradtrust: logits must be (N, C) with C >= 2, got shape {z.shape}")
    return z


def gradtrust_closed_form(logits, top_k: int | None = None) -> np.ndarray:
    """``max a / mean a`` per row, ``a_c = (z_c − 1/C)⁴`` (over the top-k logits if ``top_k``)."""
    z = _check_logits(logits)
    c = z.shape[1]
    a = (z - 1.0 / c) ** 4
    if top_k is not None:
        k = int(top_k)
        if not 2 <= k <= c:
            raise ValueError(f"gradtrust: top_k must be in [2, C={c}], got {top_k!r}")
        idx = np.argsort(-z, axis=1, kind="stable")[:, :k]
        a = np.take_along_axis(a, idx, axis=1)
    mx, mean = a.max(axis=1), a.mean(axis=1)
    out = np.ones(len(z), dtype=np.float64)
    ok = mean > 0
    out[ok] = mx[ok] / mean[ok]
    return out


def gradtrust_variances(logits, features) -> np.ndarray:
    """The demo's ``v_c = Var_d(G_c²)`` (N, C), from the closed form ``G_c = (2/C)(z_c − 1/C) h``."""
    z = _check_logits(logits)
    h = f64(features)
    if h.ndim != 2 or len(h) != len(z):
        raise ValueError(f"gradtrust: features must be (N, d) with N = {len(z)}, got shape {h.shape}")
    c = z.shape[1]
    var_h2 = np.var(h**2, axis=1, ddof=1)
    return (2.0 / c) ** 4 * (z - 1.0 / c) ** 4 * var_h2[:, None]


def gradtrust_autograd(model, x) -> np.ndarray:
    """Reference: the demo's procedure with autograd, one sample at a time (tests only).

    ``MSELoss`` to the uniform target on ``model.module(x_i)``, gradient of the
    head weight, ``max_c Var_d(G_c²) / mean_c Var_d(G_c²)``.
    """
    import torch
    from torch import nn

    module = model.module
    _, weight = last_linear_weight(model)
    out = []
    with eval_mode(module):
        for i in range(len(x)):
            logits = module(x[i : i + 1])
            c = logits.shape[1]
            loss = nn.MSELoss()(logits, torch.full_like(logits, 1.0 / c))
            (g,) = torch.autograd.grad(loss, [weight])
            v = torch.var(g.detach().double() ** 2, dim=1)
            out.append((v.max() / v.mean()).item())
    return np.asarray(out, dtype=np.float64)


class GradTrust(Method):
    """GradTrust from cached logits; ``score = confidence`` (higher = more trust)."""

    name = "gradtrust"

    def __init__(self, top_k: int | None = None) -> None:
        if top_k is not None and int(top_k) < 2:
            raise ValueError(f"gradtrust: top_k must be >= 2 or None, got {top_k!r}")
        super().__init__(top_k=top_k)
        self.top_k = None if top_k is None else int(top_k)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        out = ctx.outputs(subset)
        logits = np.asarray(out.logits, dtype=np.float64)
        if not np.isfinite(logits).all():  # max/mean of NaN powers would come out as a plausible 1.0
            raise ValueError(f"gradtrust: non-finite logits in subset {subset!r}; the model produced NaN or inf")
        return score_dict(gradtrust_closed_form(logits, self.top_k))
