"""GradNorm in closed form (``docs/methods.md#gradnorm``).

Huang, Geng & Li, "On the Importance of Gradients for Detecting Distributional
Shifts in the Wild", NeurIPS 2021, §3: the score is the L1 norm of the
gradient, with respect to the **weight** of the last fully connected layer, of
the KL divergence between the uniform distribution and the softmax; the paper
(Eq. 4) shows this gradient is proportional to the average of the
cross-entropy gradients over all labels.

What the official code computes (deeplearning-wisc/gradnorm_ood
``test_ood.py::iterate_data_gradnorm`` at ``18d5d332fd32``; haoqiwang/vim
``benchmark.py::gradnorm`` identically), per sample (batch size 1):
``loss = Σ_c −log softmax(z/T)_c`` — cross-entropy against an **all-ones**
target, not 1/C — and ``score = Σ |∂loss/∂W|`` (L1, weight only, no bias).
Default ``temperature = 1`` (``--temperature_gradnorm default=1``).

Closed form. With a linear last layer ``z = W h + b``:
``∂loss/∂z = (C·p_T − 1)/T`` where ``p_T = softmax(z/T)``, so
``∂loss/∂W = (C·p_T − 1) hᵀ / T`` is an outer product and its entrywise L1
norm factorises:

    score = ‖C·p_T − 1‖₁ · ‖h‖₁ / T          (T = 1: ‖C·p − 1‖₁ · ‖h‖₁)

(``docs/methods.md#gradnorm`` derives the T = 1 case). It needs only the cached logits
and penultimate features, no autograd and no batch-size-1 loop; it is exact
because the last layer is linear, which is why the spec requires
``linear_head``. Float64 throughout.
"""

from __future__ import annotations

import numpy as np

from rbx_posthoc._common import PosthocMethod, chunks, f64, score_dict, softmax
from robustbench_x.api import Context

__all__ = ["GradNorm", "gradnorm_closed_form"]


def gradnorm_closed_form(logits: np.ndarray, features: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``‖C·softmax(z/T) − 1‖₁ · ‖h‖₁ / T`` per row."""
    z = f64(logits)
    h = f64(features)
    c = z.shape[1]
    p = softmax(z / temperature, axis=1)
    return np.abs(c * p - 1.0).sum(axis=1) * np.abs(h).sum(axis=1) / temperature


class GradNorm(PosthocMethod):
    """L1 norm of the last-layer weight gradient, computed in closed form."""

    name = "gradnorm"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"gradnorm: temperature must be > 0, got {temperature!r}")
        super().__init__(temperature=temperature)
        self.temperature = float(temperature)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        out = ctx.outputs(subset)
        n = len(out.logits)
        score = np.empty(n, dtype=np.float64)
        for sl in chunks(n):
            score[sl] = gradnorm_closed_form(out.logits[sl], out.features[sl], self.temperature)
        return score_dict(score)
