"""Projected gradient descent (ascent on a loss) in an ℓ∞ or ℓ2 ball.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018, §2, eq. (2.1)-(2.2):
``x^{t+1} = Π_{x+S}(x^t + α · sign(∇_x L(x^t)))`` for ℓ∞; for ℓ2 the step
follows the gradient normalised to unit ℓ2 norm (the usual ℓ2 form, e.g.
MadryLab/robustness ``robustness/attack_steps.py`` ``L2Step``). Official code:
MadryLab/cifar10_challenge ``pgd_attack.py`` (random start uniform in the ℓ∞
ball, the last iterate returned). Here every iterate is also clipped to the
image box [0, 1], as in both releases.

Choices (the attack methods and their docs state them): the random start is
uniform in the ℓ∞ ball (Madry) and uniform in the ℓ2 ball for ℓ2 (direction
from a normal draw, radius ε·U^{1/d}); the last iterate is returned, not the
best one. ``loss`` must be per-sample (each row's loss depends only on that
row's input, e.g. a model in ``eval()`` mode) so that the gradient of the
summed loss is every sample's own gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rbx_attacks.threat import NORMS, Budget, canonical_eps, parse_eps

__all__ = ["pgd", "project", "random_start_point", "Budget", "canonical_eps", "parse_eps", "NORMS"]

#: Added to an ℓ2 norm before dividing by it (a zero gradient then gives a zero step).
_TINY = 1e-12


def _flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    flat = t.flatten(1)
    return flat.abs().amax(dim=1) if norm == "Linf" else flat.norm(p=2, dim=1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _check(norm: str, eps: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")
    if not eps >= 0:
        raise ValueError(f"eps {eps!r} must be >= 0")


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """``delta`` projected, sample by sample (first axis), onto the ``norm`` ball
    of radius ``eps``: clamped for ℓ∞, rescaled when longer than ``eps`` for ℓ2."""
    _check(norm, eps)
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    length = _flat_norm(delta, "L2")
    factor = torch.where(length > eps, eps / (length + _TINY), torch.ones_like(length))
    return delta * _per_sample(factor, delta)


def random_start_point(x: torch.Tensor, norm: str, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly in the ``norm`` ball of radius ``eps`` around each
    sample of ``x``, clipped to [0, 1]."""
    _check(norm, eps)
    if norm == "Linf":
        delta = (torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        direction = direction / _per_sample(_flat_norm(direction, "L2") + _TINY, x)
        dim = x[0].numel()
        radius = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device) ** (1.0 / dim) * eps
        delta = direction * _per_sample(radius, x)
    return (x + delta).clamp(0.0, 1.0)


def pgd(
    loss: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Maximise ``loss`` (per sample, shape ``(B,)``) over the ``norm`` ball of
    radius ``eps`` around ``x`` intersected with [0, 1]; ``steps`` steps of size
    ``step_size`` (sign of the gradient for ℓ∞, the gradient over its ℓ2 norm for
    ℓ2), each followed by the projection. Returns the last iterate, detached,
    float, same shape as ``x``; deterministic for a given ``generator`` (it only
    draws the random start)."""
    _check(norm, eps)
    if steps < 0:
        raise ValueError(f"steps {steps!r} must be >= 0")
    if not step_size > 0:
        raise ValueError(f"step_size {step_size!r} must be > 0")
    x = x.detach().float()
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("pgd expects inputs in [0, 1] (keep the normalisation inside the model)")
    x_adv = random_start_point(x, norm, eps, generator) if random_start and eps > 0 else x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        values = loss(x_adv)
        if values.shape != (x.shape[0],):
            raise ValueError(f"loss must return one value per sample, shape ({x.shape[0]},); got {tuple(values.shape)}")
        (grad,) = torch.autograd.grad(values.sum(), x_adv)
        with torch.no_grad():
            if norm == "Linf":
                direction = grad.sign()
            else:
                direction = grad / _per_sample(_flat_norm(grad, "L2") + _TINY, grad)
            stepped = x_adv + step_size * direction
            x_adv = (x + project(stepped - x, norm, eps)).clamp(0.0, 1.0)
    return x_adv.detach()
