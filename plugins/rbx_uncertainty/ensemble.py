"""Deep Ensembles (``docs/methods.md#deep_ensemble``).

Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, §2.4: ``M``
networks trained independently from different random initialisations (and
data orders); the prediction is the uniformly weighted mixture
``p(y|x) = (1/M) Σ_m p_{θ_m}(y|x)``, i.e. the mean of the members'
**softmaxes** (not of their logits: averaging logits is a different model,
and torch-uncertainty's logit criteria break on ensembles for that reason,
issue #175).

Per sample, with ``p_m = softmax(z_m)`` and ``p̄ = mean_m p_m`` (the same
decomposition as MC Dropout, :func:`rbx_uncertainty._common.sampling_scores`):
``probs`` = ``p̄``, ``prediction`` = ``argmax p̄``, ``entropy`` = ``H[p̄]``,
``mutual_information`` = ``H[p̄] − mean_m H[p_m]`` (the members'
disagreement), ``variation_ratio`` over the members' votes; ``score`` =
``−entropy`` and ``confidence`` = ``max p̄`` by default (parameters
``score`` / ``confidence`` as in :mod:`rbx_uncertainty.mc_dropout`).

Defaults and sources: ``K = 5`` members (the paper's M = 5, standard since;
``docs/methods.md#deep_ensemble``). Members come from ``ctx.model.members(K)``, the first
being the evaluated model itself; for the built-in CNN the others are the
same recipe trained with other seeds (random init and data order, as in the
paper).

Deviations: the paper's optional adversarial training (§2.3, fast gradient
sign) and proper-scoring-rule training are the members' business, not this
method's; the built-in members are plain cross-entropy networks, as in most
reimplementations. Members are evaluated on ``ctx.loader``'s inputs, i.e.
through the evaluated model's transform; members are assumed to share it (true
for members of one family). Deterministic: members are in eval mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rbx_uncertainty._common import check_choice, concat, outputs, sampling_scores
from robustbench_x.api import Context, Method, Model

__all__ = ["DeepEnsemble", "ensemble_probs", "sampling_scores"]


@torch.no_grad()
def ensemble_probs(members: list[Model], x: torch.Tensor) -> np.ndarray:
    """``(K, B, C)`` float64 softmaxes of every member on the batch ``x``."""
    # float64 softmax for the same reason as MC Dropout: entropies of near-one-hot means.
    return np.stack([torch.softmax(m.forward(x)[0].double(), dim=-1).cpu().numpy() for m in members])


class DeepEnsemble(Method):
    """Mean of the softmaxes of ``K`` independently trained members."""

    name = "deep_ensemble"

    def __init__(self, K: int = 5, score: str = "entropy", confidence: str = "msp", batch_size: int = 128, **params: Any) -> None:
        if int(K) < 1:
            raise ValueError(f"deep_ensemble: K must be >= 1, got {K}")
        super().__init__(K=K, score=score, confidence=confidence, batch_size=batch_size, **params)
        self.K = int(K)
        self.score_name = check_choice("score", score)
        self.confidence_name = check_choice("confidence", confidence)
        self.batch_size = int(batch_size)
        self._members: list[Model] | None = None
        self._owner: Model | None = None

    def fit(self, ctx: Context) -> None:
        # members() may train networks (built-in model): ask once per model, not per subset.
        members = list(ctx.model.members(self.K))
        if len(members) != self.K:
            raise ValueError(f"deep_ensemble: asked {type(ctx.model).__name__}.members({self.K}), got {len(members)} members")
        self._members, self._owner = members, ctx.model

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        if self._members is None or self._owner is not ctx.model:
            self.fit(ctx)
        assert self._members is not None
        parts = [sampling_scores(ensemble_probs(self._members, x)) for x, _y in ctx.loader(subset, batch_size=self.batch_size)]
        return outputs(concat(parts), self.score_name, self.confidence_name)
