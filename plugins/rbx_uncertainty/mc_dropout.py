"""MC Dropout (``docs/methods.md#mc_dropout``).

Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
Uncertainty in Deep Learning", ICML 2016 (§3, dropout training as
approximate variational inference; §4, obtaining model uncertainty): keep
dropout on at test time and average ``T`` stochastic forward passes; the mean
of the sampled softmaxes is the Monte Carlo estimate of the approximate
predictive distribution ``q(y|x) ≈ (1/T) Σ_t softmax(f_{ω_t}(x))``.

Per sample, with ``p_t = softmax(z_t)`` the softmax of pass ``t`` and
``p̄ = mean_t p_t`` (:func:`sampling_scores`):

* ``probs`` = ``p̄``, ``prediction`` = ``argmax p̄``;
* ``entropy`` = ``H[p̄]`` (predictive entropy), ``mutual_information`` =
  ``H[p̄] − mean_t H[p_t]`` (BALD), ``variation_ratio`` = ``1 − (count of the
  modal argmax among the T passes)/T``; all in nats, higher = more uncertain;
* ``score`` (OOD) = ``−entropy`` by default, ``confidence`` (failure) =
  ``max p̄`` (the MSP of the mean) by default. The ``score`` and ``confidence``
  parameters pick any of ``"entropy"``, ``"mutual_information"``,
  ``"variation_ratio"`` (reported negated) or ``"msp"`` (``max p̄``).

Why softmaxes and not logits: the predictive distribution of the paper is
the integral of the *likelihood* ``softmax(f_ω(x))`` over the approximate
posterior, and its MC estimate is the mean of the sampled softmaxes;
``softmax(mean_t z_t)`` is a different (over-confident, by Jensen) quantity,
and the mutual information is only defined on the sampled distributions.
ConfidNet's MC-Dropout baseline (valeoai/ConfidNet ``learners/default_learner.py``,
``test.py --mode mc_dropout``) averages the **logits** then applies a softmax
and ranks by ``Σ p log p``; that is a deviation of that repository, not
reproduced here (``docs/methods.md#mc_dropout``).

Defaults and sources:

* ``T = 50``: ConfidNet ``test.py --samples`` default (``docs/methods.md#mc_dropout``;
  10 and 100 are also common);
* only ``torch.nn`` dropout modules (every ``_DropoutNd``: ``Dropout``,
  ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``) are put in
  train mode; everything else, BatchNorm included, stays in eval mode, so BN
  uses (and does not update) its running statistics. Functional dropout
  (``F.dropout(x, training=self.training)`` in a parent's ``forward``) follows
  the parent's flag, which stays in eval, so it is *not* sampled; a model whose
  only dropout is functional has no dropout module and is rejected with an
  error rather than giving a silently deterministic "MC" estimate. Every
  module's mode is restored afterwards.
* randomness: each subset's passes run inside ``torch.random.fork_rng`` seeded
  from ``(ctx.seed, subset)`` (:func:`~rbx_uncertainty._common.stream_seed`),
  so outputs are reproducible and the caller's global RNG is untouched.
  Outputs depend on ``batch_size`` and ``max_rows`` (they fix the order in
  which masks are drawn), which is why both are parameters.

Batching: generic full forward passes (no shortcut for dropout that sits only
before the head, which would be exact for the built-in model but wrong for a
model with dropout inside the encoder). A loader batch of ``B`` inputs is
repeated ``n = max(1, max_rows // B)`` times along the batch axis, so one
forward call computes ``n`` passes with independent masks per row; in eval
mode BN makes rows independent, so this equals ``n`` separate passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from rbx_uncertainty._common import check_choice, concat, device_of, outputs, sampling_scores, stream_seed
from robustbench_x.api import Context, Method

__all__ = ["MCDropout", "dropout_modules", "mc_dropout_mode", "mc_probs", "sampling_scores"]


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``module`` (every subclass of ``nn.modules.dropout._DropoutNd``)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextmanager
def mc_dropout_mode(module: nn.Module) -> Iterator[list[nn.Module]]:
    """Eval mode everywhere except the dropout modules; restores every module's flag on exit."""
    saved = [(m, m.training) for m in module.modules()]
    drops = dropout_modules(module)
    if not drops:
        raise ValueError(
            f"mc_dropout: {type(module).__name__} has no torch.nn dropout module to switch on at test time"
        )
    try:
        module.eval()
        for m in drops:
            m.train()
        yield drops
    finally:
        for m, flag in saved:
            m.training = flag


@torch.no_grad()
def mc_probs(module: nn.Module, x: torch.Tensor, T: int, max_rows: int = 1024) -> np.ndarray:
    """``(T, B, C)`` float64 softmaxes of ``T`` stochastic passes on the batch ``x``.

    The module must already be in MC-dropout mode (:func:`mc_dropout_mode`).
    """
    b = len(x)
    per_call = max(1, int(max_rows) // max(b, 1))
    out: list[torch.Tensor] = []
    done = 0
    while done < T:
        n = min(per_call, T - done)
        xb = x.repeat(n, *([1] * (x.dim() - 1)))
        logits = module(xb)
        # float64 softmax: the entropy of a near-one-hot mean is a small difference of logs.
        out.append(torch.softmax(logits.double(), dim=-1).reshape(n, b, -1))
        done += n
    return torch.cat(out).cpu().numpy()


class MCDropout(Method):
    """Monte Carlo dropout: mean of ``T`` sampled softmaxes with only dropout in train mode."""

    name = "mc_dropout"

    def __init__(
        self,
        T: int = 50,
        score: str = "entropy",
        confidence: str = "msp",
        batch_size: int = 128,
        max_rows: int = 1024,
        **params: Any,
    ) -> None:
        if int(T) < 1:
            raise ValueError(f"mc_dropout: T must be >= 1, got {T}")
        super().__init__(T=T, score=score, confidence=confidence, batch_size=batch_size, max_rows=max_rows, **params)
        self.T = int(T)
        self.score_name = check_choice("score", score)
        self.confidence_name = check_choice("confidence", confidence)
        self.batch_size = int(batch_size)
        self.max_rows = int(max_rows)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        module = ctx.model.module
        device = device_of(module)
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        parts: list[dict[str, np.ndarray]] = []
        with torch.random.fork_rng(devices=fork_devices), mc_dropout_mode(module):
            torch.manual_seed(stream_seed(ctx.seed, subset))
            for x, _y in ctx.loader(subset, batch_size=self.batch_size):
                parts.append(sampling_scores(mc_probs(module, x.to(device), self.T, self.max_rows)))
        return outputs(concat(parts), self.score_name, self.confidence_name)
