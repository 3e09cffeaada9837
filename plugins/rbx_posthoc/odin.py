"""ODIN (``docs/methods.md#odin``).

Liang, Li & Srikant, "Enhancing The Reliability of Out-of-distribution Image
Detection in Neural Networks", ICLR 2018, §3: temperature scaling of the
softmax plus a small input perturbation that raises the softmax score of the
predicted class, then the max tempered softmax probability as the score.

Per sample, as facebookresearch/odin ``code/calData.py`` (``64e97962ccae``):

1. ``ŷ = argmax_c z_c`` on the un-tempered logits ``z = f(x)``;
2. ``loss = CE(z / T, ŷ)``;
3. ``s = sign(∂loss/∂x)`` with the repository's convention ``sign(0) = +1``
   (``torch.ge(grad, 0)`` mapped to ±1), then divided per channel by the
   input normalisation std (``ctx.model.input_std``; the repository hard-codes
   63.0/255, 62.1/255, 66.7/255 for its CIFAR transform), so that ε is a step
   in [0, 1] pixel units. With ``input_std = None`` nothing is divided;
4. ``x̃ = x − ε · s / std``;
5. score ``max_c softmax(f(x̃) / T)_c``, emitted minus 1 as MSP is
   (:func:`robustbench_x.api.max_probability_minus_one`: at T = 1000 the
   maximum is near ``1/C`` and cannot round to 1, but a user's T = 1 would).

Defaults: ``temperature = 1000`` (used for every model and set in the paper
and the repository; OpenOOD ``configs/postprocessors/odin.yml`` too) and
``epsilon = 0.0014`` (the repository README's value for DenseNet on CIFAR-10
on most OOD sets, and OpenOOD's default noise). The paper tunes ε per model
and OOD set on held-out OOD images; a fixed default is what OpenOOD reports.
Unlike the gradnorm_ood/react ImageNet reimplementations we *do* divide by the
std (``docs/methods.md#odin`` pitfalls).

Batching: the loss is summed over the batch (``reduction="sum"``), so each
sample's input gradient is exactly its own (the model is in eval mode, samples
do not interact); the repository's batch size 1 with a mean loss gives the
same signs. No parameter gradient is computed or accumulated
(``torch.autograd.grad`` with respect to the input only). The module's
train/eval mode is restored afterwards. Deterministic (no randomness).

``prediction`` is ``ŷ`` (the model's own prediction, un-perturbed input).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rbx_posthoc._common import PosthocMethod, score_dict
from robustbench_x.api import Context, max_probability_minus_one

__all__ = ["ODIN", "odin_perturb"]


def _std_tensor(std: Sequence[float] | None, x: torch.Tensor) -> torch.Tensor | None:
    if std is None:
        return None
    t = torch.as_tensor(tuple(std), dtype=x.dtype, device=x.device)
    if x.dim() < 2 or x.shape[1] != t.numel():
        raise ValueError(
            f"odin: input_std has {t.numel()} channels but inputs have shape {tuple(x.shape)} "
            "(channels expected on dimension 1)"
        )
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def odin_perturb(
    module: torch.nn.Module,
    x: torch.Tensor,
    *,
    temperature: float,
    epsilon: float,
    input_std: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ODIN's perturbed input ``x̃ = x − ε·sign(∇ₓ CE(f(x)/T, ŷ))/std`` and ``ŷ``.

    ``module`` must already be in eval mode.
    """
    x = x.detach()
    if epsilon == 0:
        with torch.no_grad():
            yhat = module(x).argmax(dim=1)
        return x, yhat
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = module(xg)
        yhat = logits.argmax(dim=1)
        loss = F.cross_entropy(logits / temperature, yhat, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    step = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
    std = _std_tensor(input_std, x)
    if std is not None:
        step = step / std
    return x - epsilon * step, yhat.detach()


class ODIN(PosthocMethod):
    """Max tempered softmax after ODIN's input perturbation (see module docstring)."""

    name = "odin"

    def __init__(self, temperature: float = 1000.0, epsilon: float = 0.0014, batch_size: int = 128) -> None:
        if not temperature > 0:
            raise ValueError(f"odin: temperature must be > 0, got {temperature!r}")
        if epsilon < 0:
            raise ValueError(f"odin: epsilon must be >= 0, got {epsilon!r}")
        # batch_size does not change the result, so it is not a spec parameter.
        super().__init__(temperature=temperature, epsilon=epsilon)
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.batch_size = int(batch_size)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        model = ctx.model
        module = model.module
        std = getattr(model, "input_std", None)
        was_training = module.training
        module.eval()
        device = _device_of(module)
        scores: list[np.ndarray] = []
        preds: list[np.ndarray] = []
        try:
            for x, _ in ctx.loader(subset, batch_size=self.batch_size):
                x = torch.as_tensor(x).to(device)
                x_tilde, yhat = odin_perturb(
                    module, x, temperature=self.temperature, epsilon=self.epsilon, input_std=std
                )
                with torch.no_grad():
                    z = module(x_tilde).to(torch.float64)
                scores.append(max_probability_minus_one(torch.softmax(z / self.temperature, dim=1).cpu().numpy(), axis=1))
                preds.append(yhat.cpu().numpy())
        finally:
            module.train(was_training)
        if not scores:
            return score_dict(np.zeros(0), prediction=np.zeros(0, dtype=np.int64))
        return score_dict(np.concatenate(scores), prediction=np.concatenate(preds))
