"""PGD on a detector's score, in the [0, 1] pixel space of the model's inputs.

Uses ``rbx_attacks.pgd.pgd`` (the ``adversarial`` plugin's PGD; a first-party
plugin this one is allowed to import): Madry et al., "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018, §2, eq. (2.1)-(2.2).

The model's ``transform`` normalises pixels, ``x = (p − mean) / std`` per
channel; ``rbx_attacks.inputs.normalisation`` recovers ``mean`` and ``std``
from the transform itself (resizing and cropping allowed, anything that is not
such a map refused), as the ``adversarial`` suite does. The attack perturbs the
pixels ``p`` in [0, 1] and maps them back, so ε is in pixel units whatever the
normalisation. Gradients flow through ``model.feature_extractor()`` and
``model.head`` (``Model.forward`` may run without autograd); the evaluator
checks that these reproduce the cached logits. Adversarial inputs stay in
float32 (nothing is quantised to 8 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rbx_attacks.inputs import normalisation
from rbx_attacks.pgd import pgd
from robustbench_x.api import Model
from robustbench_x.errors import JobError

__all__ = ["Threat", "THREAT", "pixel_affine", "DifferentiableModel", "attack_score"]


@dataclass(frozen=True)
class Threat:
    """The threat model and PGD budget of the suite."""

    norm: str
    eps: float
    steps: int
    step_size: float
    eps_label: str

    @property
    def name(self) -> str:
        return f"PGD-{self.steps}"

    @property
    def short(self) -> str:
        """What a job records (``threat`` diagnostic) and the page reads back."""
        return f"{self.name} {self.norm} eps={self.eps_label} step={self.step_size:g}"

    def __str__(self) -> str:
        return (
            f"{self.name}, {'ℓ∞' if self.norm == 'Linf' else 'ℓ2'} ε = {self.eps_label} in [0, 1] pixel units, "
            f"step {self.step_size:g}, one random start, last iterate"
        )


#: The embedded default: ε = 0.05 changes a grey level of an 8×8 digit by at most 5 % of the range
#: (≈ 13/255; the digits' own grey levels are 1/16 apart), measured in docs/metrics.md; 10 steps of
#: 2.5·ε/steps, the common PGD step rule (the steps together can cross the ball 2.5 times).
THREAT = Threat(norm="Linf", eps=0.05, steps=10, step_size=2.5 * 0.05 / 10, eps_label="0.05")


def pixel_affine(model: Model, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` shaped ``(1, C, 1, 1)`` with ``x = (pixel − mean) / std``, read off the model's transform."""
    try:
        mean, std = normalisation(model.transform())
    except ValueError as exc:
        raise JobError(f"model '{model.name}': {exc}") from None
    if mean.numel() != channels:
        raise JobError(f"model '{model.name}': its transform returns {mean.numel()} channels but the loader's inputs have {channels}")
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


class DifferentiableModel:
    """``pixels → (logits, features)`` with autograd, through the model's feature extractor and head."""

    def __init__(self, model: Model, channels: int) -> None:
        try:
            self.extractor = model.feature_extractor()
            self.head = model.head
        except NotImplementedError:
            raise JobError(f"model '{model.name}' exposes no feature_extractor()/head(); the attacked OOD suite differentiates through them") from None
        self.mean, self.std = pixel_affine(model, channels)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x) + self.mean.to(x)

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extractor(self.normalise(pixels))
        return self.head(features), features


def attack_score(net: DifferentiableModel, loss, pixels: torch.Tensor, *, direction: int, threat: Threat, generator: torch.Generator, batch_size: int = 256) -> torch.Tensor:
    """Pixels moved within the threat's ball to raise (``direction=+1``) or
    lower (``-1``) ``loss(logits, features)``; computed in float64 after the
    model so that saturated scores keep a gradient."""

    def objective(p: torch.Tensor) -> torch.Tensor:
        logits, features = net(p)
        return direction * loss(logits.double(), features.double())

    parts = []
    with torch.enable_grad():
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start : start + batch_size]
            parts.append(pgd(objective, batch, norm=threat.norm, eps=threat.eps, steps=threat.steps, step_size=threat.step_size, generator=generator))
    return torch.cat(parts) if parts else pixels.clone()


def perturbation_norm(adv: torch.Tensor, clean: torch.Tensor, norm: str) -> np.ndarray:
    delta = (adv - clean).flatten(1).double()
    values = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    return values.numpy() if len(delta) else np.zeros(0)
