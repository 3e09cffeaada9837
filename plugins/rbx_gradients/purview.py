"""Purview gradient scores (``docs/methods.md#purview-initial``).

Lee, Lehman, Prabhushankar & AlRegib, "Probing the Purview of Neural
Networks via Gradient Analysis", IEEE Access 11, 2023 (arXiv 2304.02834):
the *purview* is the extra capacity a network needs to characterise an input,
probed with gradients of a loss against **confounding labels** (all classes
at once), so no ground truth is needed.

The verified scalar version is the one of the authors' GradTrust demo
(olivesgatech/GradTrust ``demo.py::get_purview`` at ``5942ee86b033``), per
sample, model in eval mode:

1. target = all-ones vector of length C;
   ``loss = BCEWithLogitsLoss(reduction='none')(z, 1).mean()`` (mean over the
   C entries of one sample);
2. backpropagate to **all** parameters of the network; per parameter tensor
   ``j`` (``named_parameters()`` order: weights, biases, BatchNorm affine...),
   ``g_j = ‖∂loss/∂θ_j‖²₂``;
3. with ``P`` tensors and ``j_last = P − 1``: ``purview-initial`` =
   ``−mean(g[: ⌊j_last/2⌋])`` and ``purview-final`` = ``−mean(g[⌈j_last/2⌉ :])``.
   Higher = more in-distribution (smaller gradients).

The split is the demo's indexing, reproduced as is (``split="demo"``): when
``P`` is even the middle tensor ``⌊(P−1)/2⌋`` belongs to neither half, and
when ``P`` is odd the final half has one tensor more. ``split="half"`` uses
``g[:⌊P/2⌋]`` and ``g[⌊P/2⌋:]`` instead (our variant, not the demo's).

Demo bugs *not* reproduced (``docs/methods.md#purview-initial``): the demo never zeroes
``.grad`` before ``backward()`` (gradients accumulate across calls) and
multiplies the all-ones target by the batch size (wrong for batches > 1).
Here per-sample gradients are computed functionally with ``torch.func``
(``functional_call`` + ``vmap(grad(·))``), so nothing accumulates and
``.grad`` of the model is never touched. BatchNorm uses its running statistics
(eval mode), so per-sample gradients equal batch-size-1 backward passes.

Declared deviation (on the specs, printed on the leaderboard): with this
sign convention (higher = in-distribution, i.e. small gradients) the built-in
CNN on the embedded default ranks OOD samples *above* ID ones (AUROC 0.1 to
0.2), the opposite of what the paper's benchmark reports. Whether the paper
scores with this scalar or feeds the per-layer norms as a vector to a
detector fitted on them is not settled: the authors' only released code is
the demo above (the paper's abstract promises "no hyperparameter tuning or
additional data processing", which argues against a fitted detector, but its
method section is not backed by code), so no ``purview-detector`` is
implemented; flipping the sign would be our invention, not the paper's.

Parameters: ``part`` (``"initial"`` | ``"final"``), ``split`` (``"demo"``),
``batch_size = 32`` (samples per ``vmap`` call; memory is batch × number of
parameters; outputs do not depend on it).
"""

from __future__ import annotations

import math

import numpy as np

from rbx_gradients._common import eval_mode, score_dict
from robustbench_x.api import Context, Method

__all__ = ["Purview", "per_parameter_sq_grad_norms", "purview_scores", "split_indices"]


def split_indices(n_params: int, split: str = "demo") -> tuple[slice, slice]:
    """Slices of the "initial" and "final" parameter tensors."""
    if n_params < 1:
        raise ValueError("purview: the model has no parameters")
    if split == "demo":
        j = n_params - 1  # the demo's loop variable after ``enumerate(named_parameters())``
        return slice(0, math.floor(j / 2)), slice(math.ceil(j / 2), n_params)
    if split == "half":
        return slice(0, n_params // 2), slice(n_params // 2, n_params)
    raise ValueError(f"purview: split must be 'demo' or 'half', got {split!r}")


def per_parameter_sq_grad_norms(module, x) -> tuple[np.ndarray, list[str]]:
    """``‖∂loss/∂θ_j‖²`` per sample and parameter tensor, (N, P) float64, and the names.

    ``loss = mean_c BCEWithLogits(z_c, 1)`` of each sample alone, ``module`` in eval mode.
    """
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in module.named_parameters()]
    with eval_mode(module):
        params = {n: p.detach() for n, p in module.named_parameters()}
        buffers = {n: b.detach() for n, b in module.named_buffers()}

        def loss(p, xi):
            logits = functional_call(module, (p, buffers), (xi.unsqueeze(0),))
            return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="mean")

        def norms(p, xi):
            g = grad(loss)(p, xi)
            return torch.stack([g[n].to(torch.float64).pow(2).sum() for n in names])

        out = vmap(norms, in_dims=(None, 0), randomness="error")(params, x)
    return out.detach().cpu().numpy(), names


def purview_scores(norms: np.ndarray, split: str = "demo") -> tuple[np.ndarray, np.ndarray]:
    """(initial, final) = −mean of the squared norms over each half of the tensors."""
    g = np.asarray(norms, dtype=np.float64)
    first, second = split_indices(g.shape[1], split)
    if first.stop - first.start <= 0:
        raise ValueError(f"purview: the model has {g.shape[1]} parameter tensors; the 'initial' half is empty")
    return -g[:, first].mean(axis=1), -g[:, second].mean(axis=1)


class Purview(Method):
    """``purview-initial`` / ``purview-final``; ``score = confidence`` (higher = ID)."""

    name = "purview"

    def __init__(self, part: str = "final", split: str = "demo", batch_size: int = 32) -> None:
        if part not in ("initial", "final"):
            raise ValueError(f"purview: part must be 'initial' or 'final', got {part!r}")
        split_indices(2, split)  # validates split
        if int(batch_size) < 1:
            raise ValueError(f"purview: batch_size must be >= 1, got {batch_size!r}")
        super().__init__(part=part, split=split, batch_size=batch_size)
        self.part, self.split, self.batch_size = part, split, int(batch_size)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        module = ctx.model.module
        chunks = [per_parameter_sq_grad_norms(module, x)[0] for x, _ in ctx.loader(subset, batch_size=self.batch_size)]
        norms = np.concatenate(chunks) if chunks else np.zeros((0, len(list(module.parameters()))))
        initial, final = purview_scores(norms, self.split)
        return score_dict(initial if self.part == "initial" else final)
