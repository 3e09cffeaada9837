"""HEAT's residual energy network and its contrastive-divergence training
(``docs/methods.md#heat``).

Lafon, Ramzi, Rambour & Thome, "Hybrid Energy Based Model in the Feature Space
for Out-of-Distribution Detection", ICML 2023 (hybrid energy
``E_θ(z) = E_res,θ(z)/T + E_prior(z)/T_prior``, trained by maximum likelihood
with SGLD negatives; paper section numbers not re-checked), as implemented in
MarcLafon/heatood ``heat/ebm/hybridenergy.py``, ``heat/ebm/losses.py``, ``heat/train_ebm.py``,
``heat/config/ebm/*.yaml`` and ``scripts/cifar10.sh`` (commit ``2b68ccdbd514``);
every default is listed in :mod:`rbx_heat.method`.

Residual network (:class:`ResidualMLP`), the code's ``reduce_width=False``
(CIFAR) variant: ``Linear(d, w) → LeakyReLU(0.2) → [Linear(w, w) →
LeakyReLU(0.2)] × n_hidden → Linear(w, 1)``. The code builds the repeated
block as a Python list multiplied by ``n_hidden``, so **one** ``Linear(w, w)``
instance is applied ``n_hidden`` times (shared weights). This module keeps that
sharing, and the same ``nn.Sequential`` layout, so the authors' CIFAR
checkpoints (``ebm.mlp.*``) load into :attr:`ResidualMLP.mlp` unchanged. A
"clean" MLP with ``n_hidden`` distinct hidden layers is a different model.
The ImageNet ``reduce_width=True`` variant is not implemented.

Training (:func:`train_residual`), per mini-batch of real features ``z⁺``:

1. proposals, one per real sample: ``base_dist`` draws from the fitted GMM
   prior (component from ``π``, then ``μ_c + Lε``); ``random_normal`` draws
   ``N(0, I)`` (EL);
2. SGLD on the **full hybrid energy** (:func:`sgld`): project (ReLU, then L2
   normalisation when the prior normalises its features), then for
   ``t = 0..K−1``: ``z ← z − η_t ∇_z E_θ(z) − ξ_t``, ``ξ_t ~ N(0, σ_t² I)``,
   re-project; ``η_t`` and ``σ_t`` follow :func:`polynomial_decay`
   ``(start − end)(1 − t/K)² + end`` with ``end = 0.1·start``; η and σ are
   independent (no ``√(2η)`` coupling); network parameters are frozen during
   sampling;
3. negatives ``z⁻`` = SGLD output **concatenated with the (projected)
   initial proposals** (2B negatives);
4. loss with ``ε_data = 1e-4`` Gaussian noise added to ``z⁺`` and ``z⁻``:
   ``mean E_res(z⁺) − mean E_res(z⁻) + λ (mean E_res(z⁺)² + mean E_res(z⁻)²)``,
   **residual energy only**;
5. Adam with ``betas = (0, 0.999)``, MultiStepLR stepped once per epoch;
   shuffled loader with ``drop_last=True``; no replay buffer (``use_pcd False``).

Deviations: when the training split is smaller than the batch size the whole
split is one batch (``drop_last`` would otherwise train on nothing); all
randomness (initialisation, shuffling, proposals, SGLD and ``ε_data`` noise)
comes from a seeded generator instead of the global CUDA RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EnergySettings",
    "ResidualMLP",
    "polynomial_decay",
    "project",
    "ResidualGrad",
    "sgld",
    "cd_loss",
    "train_residual",
]


@dataclass(frozen=True)
class EnergySettings:
    """Hyperparameters of one HEAT energy (one row of ``docs/methods.md#heat``)."""

    energy: str  # "gmm" | "gmm_std" | "el"
    epochs: int
    batch_size: int
    steps: int  # SGLD steps K
    step_size: float  # η_0
    noise: float  # σ_0
    proposal: str  # "base_dist" | "random_normal"
    l2_coef: float  # λ
    lr: float
    temperature_prior: float
    temperature: float = 1.0
    width: int = 1024
    n_hidden: int = 4
    milestones: tuple[int, ...] = (10,)
    gamma: float = 0.1
    eps_data: float = 1e-4
    end_factor: float = 0.1  # η_K, σ_K = 0.1 · start
    sgld_relu: bool = True
    min_steps: int = 0  # optimiser steps the fit must reach, whatever the data size (0: train for ``epochs``)

    def key(self) -> dict:
        """Primitive dict (for the fitted-state cache key)."""
        return {
            "energy": self.energy,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "step_size": self.step_size,
            "noise": self.noise,
            "proposal": self.proposal,
            "l2_coef": self.l2_coef,
            "lr": self.lr,
            "temperature_prior": self.temperature_prior,
            "temperature": self.temperature,
            "width": self.width,
            "n_hidden": self.n_hidden,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "eps_data": self.eps_data,
            "end_factor": self.end_factor,
            "sgld_relu": self.sgld_relu,
            "min_steps": self.min_steps,
        }


class ResidualMLP(nn.Module):
    """``E_res,θ``: the CIFAR (``reduce_width=False``) MLP with one shared hidden Linear."""

    def __init__(self, input_dim: int, width: int = 1024, n_hidden: int = 4, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = float(temperature)
        hidden = nn.Linear(width, width)
        act = nn.LeakyReLU(0.2)
        # Same construction as heatood ``HybridEnergyModel``: ``[Linear, LeakyReLU] * n``
        # repeats the *same* two module instances n times.
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, width),
            nn.LeakyReLU(0.2),
            *([hidden, act] * n_hidden),
            nn.Linear(width, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z).view(-1) / self.temperature

    def export(self, prefix: str = "") -> dict:
        """Unique parameters (shared ones once) as numpy arrays."""
        return {f"{prefix}{name}": p.detach().cpu().numpy().copy() for name, p in self.named_parameters()}

    def load(self, state: dict, prefix: str = "") -> ResidualMLP:
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.as_tensor(state[f"{prefix}{name}"]))
        return self


def polynomial_decay(t: int, steps: int, start: float, end: float, power: float = 2.0) -> float:
    """``(start − end)(1 − t/steps)^power + end`` (heatood ``HybridEnergyModel.polynomial``)."""
    return (start - end) * ((1.0 - t / steps) ** power) + end


def project(z: torch.Tensor, relu: bool, normalize: bool) -> torch.Tensor:
    """SGLD projection: ReLU (features are post-ReLU), then L2 normalisation if the prior normalises."""
    if relu:
        z = F.relu(z)
    if normalize:
        z = F.normalize(z, dim=1)
    return z


class ResidualGrad:
    """``z ↦ ∇_z Σ_i E_res(z_i)`` for the network's current parameters, by hand (no autograd graph).

    SGLD needs only this input gradient, 50 times per optimiser step on (64, d)
    inputs, where building and walking an autograd graph costs more than the
    arithmetic. It is the chain rule through the MLP with autograd's own
    ``leaky_relu_backward`` (slope at 0: the negative one), so it equals autograd up
    to float rounding (checked in the tests). Built once per SGLD chain: the
    parameters are fixed while sampling.
    """

    def __init__(self, net: ResidualMLP, batch: int) -> None:
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        self.slope = net.mlp[1].negative_slope
        self.hidden = [(m.bias.detach(), m.weight.detach()) for m in linears[:-1]]
        self.top = (linears[-1].weight.detach() / net.temperature).expand(batch, -1)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pre = []
            h = z
            for i, (bias, weight) in enumerate(self.hidden):
                a = torch.addmm(bias, h, weight.t())
                pre.append(a)
                if i + 1 < len(self.hidden):  # the last activation only feeds the output layer: not needed
                    h = F.leaky_relu(a, self.slope)
            g = self.top[: len(z)]
            for (_, weight), a in zip(reversed(self.hidden), reversed(pre)):
                g = torch.ops.aten.leaky_relu_backward(g, a, self.slope, False).mm(weight)
        return g


def residual_input_grad(net: ResidualMLP, z: torch.Tensor) -> torch.Tensor:
    """``∇_z Σ_i E_res(z_i)`` (see :class:`ResidualGrad`)."""
    return ResidualGrad(net, len(z))(z)


def prior_grad_fn(prior) -> Callable[[torch.Tensor], torch.Tensor]:
    """``z ↦ ∇_z Σ_i E_prior(z_i)`` in the dtype of ``z``: the prior's closed form when it has one, else autograd."""
    if hasattr(prior, "energy_grad"):
        return lambda z: prior.energy_grad(z).to(z.dtype)

    def autograd(z: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(prior.energy(x).sum().to(z.dtype), [x])
        return grad

    return autograd


def sgld(
    net: ResidualMLP,
    prior,
    init: torch.Tensor,
    settings: EnergySettings,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SGLD on the hybrid energy; returns ``(samples, projected_init)``.

    The gradient of the hybrid energy is computed in closed form
    (:class:`ResidualGrad`, the prior's ``energy_grad``) rather than by autograd;
    network parameters are not touched (the code freezes them). Same update,
    noise draws (same generator calls, in the same order) and schedules as the
    autograd version; only float rounding differs.
    """
    res_grad = ResidualGrad(net, len(init))
    pri_grad = prior_grad_fn(prior)
    inv_t = 1.0 / settings.temperature_prior
    with torch.no_grad():
        init = project(init, settings.sgld_relu, prior.normalize)
        z = init
        k = settings.steps
        for t in range(k):
            eta = polynomial_decay(t, k, settings.step_size, settings.end_factor * settings.step_size)
            sigma = polynomial_decay(t, k, settings.noise, settings.end_factor * settings.noise)
            noise = torch.randn(z.shape, generator=generator, dtype=z.dtype).mul_(sigma)
            grad = res_grad(z).add_(pri_grad(z), alpha=inv_t)
            z = project(torch.add(z, grad, alpha=-eta).sub_(noise), settings.sgld_relu, prior.normalize)
    return z, init


def cd_loss(net: ResidualMLP, real: torch.Tensor, negatives: torch.Tensor, settings: EnergySettings, generator: torch.Generator):
    """Contrastive divergence with L2 regularisation, on the residual energy only."""
    e_real = net(real + settings.eps_data * torch.randn(real.shape, generator=generator, dtype=real.dtype))
    e_neg = net(negatives + settings.eps_data * torch.randn(negatives.shape, generator=generator, dtype=negatives.dtype))
    cd = e_real.mean() - e_neg.mean()
    l2 = e_real.pow(2).mean() + e_neg.pow(2).mean()
    logs = {"cd": cd.detach().item(), "l2": l2.detach().item(), "e_real": e_real.detach().mean().item(), "e_neg": e_neg.detach().mean().item()}
    return cd + settings.l2_coef * l2, logs


def proposals(prior, settings: EnergySettings, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    if settings.proposal == "base_dist":
        if not prior.has_sample:
            raise ValueError(f"heat: proposal 'base_dist' needs a prior that can be sampled (energy {settings.energy!r})")
        return prior.sample(n, generator).to(torch.float32)
    if settings.proposal == "random_normal":
        return torch.randn(n, dim, generator=generator, dtype=torch.float32)
    raise ValueError(f"heat: unknown proposal {settings.proposal!r}; expected 'base_dist' or 'random_normal'")


def train_residual(
    real: torch.Tensor,
    prior,
    settings: EnergySettings,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> tuple[ResidualMLP, list[dict]]:
    """Train ``E_res`` on real (already projected) training features ``real`` (N, d)."""
    real = real.to(torch.float32)
    n, d = real.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ResidualMLP(d, settings.width, settings.n_hidden, settings.temperature)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, betas=(0.0, 0.999))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(settings.milestones), gamma=settings.gamma)
    batch = min(settings.batch_size, n)
    n_batches = n // batch
    history: list[dict] = []
    net.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(n_batches):
            z_pos = real[order[i * batch : (i + 1) * batch]]
            init = proposals(prior, settings, batch, d, generator)
            gen, init_proj = sgld(net, prior, init, settings, generator)
            negatives = torch.cat([gen, init_proj])
            loss, logs = cd_loss(net, z_pos, negatives, settings, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append({"epoch": epoch, "loss": loss.detach().item(), **logs})
        sched.step()
    net.eval()
    if log is not None and history:
        last = history[-1]
        log(
            f"heat[{settings.energy}]: {settings.epochs} epochs x {n_batches} batches of {batch}; "
            f"last loss {last['loss']:.4g} (E_res real {last['e_real']:.4g}, negatives {last['e_neg']:.4g})"
        )
    return net, history
