"""How each OOD method is attacked: the table behind the ``ood-attacked`` page.

An attack on a detector moves an input inside the ε-ball so that the
detector's score (higher = more in-distribution, ``robustbench_x.api``) goes
down for an in-distribution sample and up for an OOD one. It is strongest when
PGD climbs the detector's own score, so every method whose score is a
differentiable function of the model's logits and penultimate features gets
its score rewritten in torch here, **from the fitted state of the method
object the job fitted** (``method.state``, ``method.temperature``,
``ctx.model.linear_head()``): nothing is refitted. ``tests/plugins/
test_attacked_ood.py`` checks that each rewrite equals the method's own numpy
``score`` on the same outputs to 1e-5, so the attack targets the real method.

The other methods (input-gradient scores, stochastic ones, trained heads and
energy models, gradient statistics) are attacked through a *surrogate*: the
classifier's log maximum softmax probability, a **transfer attack**, labelled
so on the page. Whatever the objective, the attacked score is always computed
by the method itself on the model's outputs for the attacked inputs.

Sign-gradient PGD (ℓ∞) and normalised-gradient PGD (ℓ2) take the same steps on
any increasing transform of the loss, so MSP and temperature scaling are
climbed through ``log max softmax`` (no underflow of the gradient when the
softmax saturates) while their score stays ``max softmax``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from robustbench_x.api import Context, Method

__all__ = ["Objective", "TorchScore", "OBJECTIVES", "SURROGATE", "objective_for"]

#: ``(logits (B, C), features (B, D)) -> (B,)`` in the tensors' dtype, differentiable.
TorchScore = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """How a method is attacked.

    ``kind`` is ``"own score"`` (PGD on the method's score rewritten in torch),
    ``"transfer"`` (PGD on :data:`SURROGATE`) or ``"not attacked"`` (``reason``
    says why). ``build(method, ctx)`` returns ``(score, loss)``: the method's
    score in torch and the increasing transform of it that PGD climbs.
    """

    kind: str
    how: str
    build: Callable[[Method, Context], tuple[TorchScore, TorchScore]] | None = None
    reason: str = ""


def _scalar(state, key: str) -> float:
    return float(np.asarray(state[key]).reshape(-1)[0])


def _t(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def _msp(temperature: float = 1.0) -> tuple[TorchScore, TorchScore]:
    def score(z, h):  # max softmax − 1 as the methods emit it: minus the other probabilities' sum
        p = torch.softmax(z / temperature, dim=1)
        return -p.scatter(1, p.argmax(dim=1, keepdim=True), 0.0).sum(dim=1)

    def loss(z, h):
        return torch.log_softmax(z / temperature, dim=1).amax(dim=1)

    return score, loss


def _same(score: TorchScore) -> tuple[TorchScore, TorchScore]:
    return score, score


def _build_msp(method, ctx):
    return _msp(1.0)


def _build_tempered(method, ctx):
    return _msp(_scalar(method.state, "temperature"))


def _build_maxlogit(method, ctx):
    return _same(lambda z, h: z.amax(dim=1))


def _build_energy(method, ctx):
    t = float(method.temperature)
    return _same(lambda z, h: t * torch.logsumexp(z / t, dim=1))


def _build_gradnorm(method, ctx):
    t = float(method.temperature)

    def score(z, h):
        p = torch.softmax(z / t, dim=1)
        return (z.shape[1] * p - 1.0).abs().sum(dim=1) * h.abs().sum(dim=1) / t

    return _same(score)


def _build_mahalanobis(method, ctx):
    means, precision = _t(method.state["means"]), _t(method.state["precision"])

    def score(z, h):
        hp = h @ precision.to(h)
        quad = (hp * h).sum(dim=1, keepdim=True) - 2.0 * hp @ means.to(h).T
        quad = quad + ((means @ precision) * means).sum(dim=1).to(h)[None, :]
        return -quad.clamp_min(0.0).amin(dim=1)

    return _same(score)


def _build_knn(method, ctx):
    bank = _t(method.state["bank"])  # the cached float32 bank, widened
    k = int(method.k)
    bank_sq = (bank * bank).sum(dim=1)

    def score(z, h):
        q = h / (h.norm(dim=1, keepdim=True) + 1e-10)
        q = q.to(torch.float32).to(h.dtype)  # knn rounds its queries to float32, as here
        dist = (q * q).sum(dim=1, keepdim=True) + bank_sq.to(h)[None, :] - 2.0 * q @ bank.to(h).T
        return -dist.topk(k, dim=1, largest=False).values[:, k - 1]

    return _same(score)


def _build_vim(method, ctx):
    u, ns, alpha = _t(method.state["u"]), _t(method.state["ns"]), _scalar(method.state, "alpha")

    def score(z, h):
        return torch.logsumexp(z, dim=1) - alpha * ((h - u.to(h)) @ ns.to(h)).norm(dim=1)

    return _same(score)


def _build_react(method, ctx):
    c = _scalar(method.state, "threshold")
    w, b = (_t(a) for a in ctx.model.linear_head())

    def score(z, h):
        return torch.logsumexp(h.clamp_max(c) @ w.to(h).T + b.to(h), dim=1)

    return _same(score)


def _build_surrogate(method, ctx):
    return _msp(1.0)


_OWN = "own score"
_TRANSFER = "transfer"

#: The surrogate of every method attacked by transfer.
SURROGATE = Objective(
    _TRANSFER,
    "transfer: PGD on the classifier's log max softmax (MSP surrogate); scored by the method on the attacked inputs",
    _build_surrogate,
)


def _transfer(why: str) -> Objective:
    return Objective(_TRANSFER, f"{SURROGATE.how} ({why})", _build_surrogate)


#: Method name → how it is attacked. Methods not listed are attacked by :data:`SURROGATE`
#: (VLM methods are not attacked, see :func:`objective_for`).
OBJECTIVES: dict[str, Objective] = {
    "msp": Objective(_OWN, "own score: max softmax(z) (climbed as log max softmax)", _build_msp),
    "maxlogit": Objective(_OWN, "own score: max logit", _build_maxlogit),
    "energy": Objective(_OWN, "own score: T·logsumexp(z/T)", _build_energy),
    "temperature_scaling": Objective(_OWN, "own score: max softmax(z/T), the fitted T (climbed as its log)", _build_tempered),
    "temperature_scaling-lbfgs": Objective(_OWN, "own score: max softmax(z/T), the fitted T (climbed as its log)", _build_tempered),
    "gradnorm": Objective(_OWN, "own score: closed form ‖C·softmax(z/T) − 1‖₁·‖h‖₁/T", _build_gradnorm),
    "mahalanobis": Objective(_OWN, "own score: −min_c Mahalanobis distance, the fitted means and precision", _build_mahalanobis),
    "knn": Objective(_OWN, "own score: −k-th smallest squared distance to the fitted bank of normalised train features", _build_knn),
    "vim": Objective(_OWN, "own score: logsumexp(z) − α·‖(h − u)·N‖, the fitted u, N, α", _build_vim),
    "react": Objective(_OWN, "own score: logsumexp of the logits of features clipped at the fitted threshold", _build_react),
    "odin": _transfer("ODIN's score needs an input-gradient step of its own"),
    "mc_dropout": _transfer("stochastic score"),
    "deep_ensemble": _transfer("the other members are not attacked: PGD sees member 0 only"),
    "trust_score": _transfer("nearest-neighbour ratio over a filtered train set"),
    "confidnet": _transfer("score of a trained head on its own encoder"),
    "gradtrust": _transfer("gradient statistic"),
    "introspective": _transfer("gradient statistic"),
    "purview-initial": _transfer("parameter-gradient statistic"),
    "purview-final": _transfer("parameter-gradient statistic"),
}


def objective_for(name: str, model_provides: frozenset[str] = frozenset()) -> Objective:
    """The declared objective of method ``name`` on a model providing ``model_provides``."""
    if "vlm" in model_provides:
        return Objective("not attacked", "not attacked", reason="on a vision-language model the scores come from image and text embeddings; the suite's PGD attacks a pixel-space classifier only")
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if name.startswith("heat"):
        return _transfer("energy model on the features, fitted by sampling")
    return SURROGATE
