"""An attack sequence run the way AutoAttack runs it (fra31/auto-attack
``autoattack/autoattack.py`` ``run_standard_evaluation``, commit a392200):
the clean prediction first (misclassified samples count as broken, "clean");
then each attack in turn on the samples still robust, always from the original
image, in batches of the still-robust samples in dataset order; a sample is
broken by the first attack whose output the model misclassifies, and that
output is its adversarial example. A sample no attack breaks keeps its clean
image. The robust flags after each attack are kept (non-increasing by
construction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SequenceResult:
    clean_prediction: np.ndarray
    adversarial_prediction: np.ndarray
    adversarial_input: torch.Tensor
    broken_by: np.ndarray
    #: attack name → robust flag of every sample after it, in sequence order
    robust_after: dict[str, np.ndarray]


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, dtype=torch.long)


def run_sequence(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[tuple[str, Attack]], batch_size: int) -> SequenceResult:
    """Run ``attacks`` (name, ``attack(x, y) -> x_adv``) on ``model`` (logits
    from [0, 1] inputs) as AutoAttack does; see the module docstring."""
    clean = predict(model, x, batch_size)
    robust = clean == y
    x_adv = x.clone()
    adv_pred = clean.clone()
    broken_by = np.where(robust.cpu().numpy(), "", "clean").astype(object)
    after: dict[str, np.ndarray] = {}
    for name, attack in attacks:
        idx = torch.nonzero(robust).flatten()
        for start in range(0, len(idx), batch_size):
            batch = idx[start:start + batch_size]
            with torch.no_grad():
                candidate = attack(x[batch].clone(), y[batch].clone()).detach()
                pred = model(candidate).argmax(1)
            hit = pred != y[batch]
            broken = batch[hit]
            robust[broken] = False
            x_adv[broken] = candidate[hit]
            adv_pred[broken] = pred[hit]
            broken_by[broken.cpu().numpy()] = name
        after[name] = robust.cpu().numpy().copy()
    return SequenceResult(clean.cpu().numpy(), adv_pred.cpu().numpy(), x_adv, broken_by.astype(str), after)
