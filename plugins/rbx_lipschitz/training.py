"""Training of the built-in Lipschitz networks with deel-torchlip (the optional extra ``lipschitz``).

Layers: ``deel.torchlip.SpectralConv2d`` / ``SpectralLinear`` (spectral
normalisation + Björck orthonormalisation, deel-torchlip 1.0.5,
``deel/torchlip/modules/conv.py`` and ``linear.py``), ``GroupSort2``,
``InvertibleDownSampling`` / ``InvertibleUpSampling``; after training
``deel.torchlip.vanilla_model(net, in_place=False)`` exports plain
``nn.Conv2d`` / ``nn.Linear`` layers, loaded into :func:`rbx_lipschitz.nets.plain`.
On torch 2.14 these layers work as documented: the tests measure each exported
layer's operator norm (≤ 1) and the whole network's constant.

Loss: the multi-class hinge-Kantorovich-Rubinstein loss of Serrurier et al.,
"Achieving robustness in classification using optimal transport with hinge
regularization", CVPR 2021 (``deel.torchlip.HKRMulticlassLoss(alpha, min_margin)``;
the hinge pushes the top-1 margin above ``min_margin``, which with L = 1 is a
certified radius of ``min_margin / √2``). Segmentation: the τ-scaled
cross-entropy on every non-void pixel, as the reference code trains its
1-Lipschitz segmenters (``deel-ai-papers/robust-segmentation`` ``src/loss/taucce.py``,
``experiments/train.sh``: τ = 8, AdamW, no class weights; here Adam, lr 3e-3,
16 epochs, a CPU budget, and classes weighted by 1/√frequency). Without the
weights, and with the hinge-KR loss, the segmenter predicted background everywhere
on the embedded scenes (90 % of the pixels) for as long as we could train it.

Recipe (:data:`CLASSIFIER_RECIPE`, :data:`SEGMENTER_RECIPE`): Adam, seeded
initialisation, a separate generator for the data order, one torch thread, so two
runs on one machine give the same weights bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robustbench_x.errors import PluginError

__all__ = ["CLASSIFIER_RECIPE", "SEGMENTER_RECIPE", "require_torchlip", "orthogonal", "train_classifier", "train_segmenter"]

CLASSIFIER_RECIPE = {"arch": "lipschitz-cnn-v1", "width": 16, "epochs": 30, "lr": 3e-3, "batch_size": 64, "alpha": 0.98, "min_margin": 1.0}
SEGMENTER_RECIPE = {"arch": "lipschitz-segnet-v1", "width": 16, "epochs": 16, "lr": 3e-3, "batch_size": 16, "loss": "tau-cce", "tau": 8.0,
                    "class_weights": "1/sqrt(frequency), max 1"}


def require_torchlip():
    """``deel.torchlip``, or a :class:`PluginError` naming the package to install."""
    try:
        import deel.torchlip as torchlip
    except ImportError as exc:
        raise PluginError(
            f"training a built-in Lipschitz network needs deel-torchlip ({exc}), a dependency of robustbench_x: "
            "pip install deel-torchlip"
        ) from None
    return torchlip


def orthogonal(arch: tuple) -> nn.Sequential:
    """The architecture from deel-torchlip's orthogonalised layers (training); same indices as ``nets.plain``."""
    tl = require_torchlip()
    from rbx_lipschitz.layers import Shift

    layers: list[nn.Module] = []
    for kind, *args in arch:
        if kind == "shift":
            layers.append(Shift(args[0]))
        elif kind == "conv":
            layers.append(tl.SpectralConv2d(args[0], args[1], 3, padding=1))
        elif kind == "groupsort":
            layers.append(tl.GroupSort2())
        elif kind == "down":
            layers.append(tl.InvertibleDownSampling(args[0]))
        elif kind == "up":
            layers.append(tl.InvertibleUpSampling(args[0]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "linear":
            layers.append(tl.SpectralLinear(args[0], args[1]))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return nn.Sequential(*layers)


def _export(net: nn.Sequential) -> dict[str, torch.Tensor]:
    tl = require_torchlip()
    vanilla = tl.vanilla_model(net.eval(), in_place=False)
    return {k: v.detach().clone().contiguous() for k, v in vanilla.state_dict().items()}


def _fit(arch: tuple, recipe: dict, seed: int, n: int, loss_of, epochs: int | None) -> dict[str, torch.Tensor]:
    """Seeded Adam on the orthogonalised ``arch``; ``loss_of(net, idx)`` is the loss of a
    batch of sample indices. Returns the exported plain state dict."""
    from robustbench_x.api import torch_threads

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = orthogonal(arch)
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    bs = recipe["batch_size"]
    # One thread: float reductions happen in one order, so two runs on one machine agree bit for bit.
    with torch_threads(1):
        for _ in range(recipe["epochs"] if epochs is None else int(epochs)):
            net.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, bs):
                loss = loss_of(net, order[start : start + bs])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return _export(net)


def train_classifier(x: torch.Tensor, y: torch.Tensor, arch: tuple, seed: int, num_classes: int, epochs: int | None = None) -> dict[str, torch.Tensor]:
    """Train on ``(N, C, H, W)`` inputs in [0, 1] and ``(N,)`` labels; return the exported plain state dict."""

    recipe = CLASSIFIER_RECIPE
    loss_fn = require_torchlip().HKRMulticlassLoss(alpha=recipe["alpha"], min_margin=recipe["min_margin"])

    def loss_of(net, idx):
        return loss_fn(net(x[idx]), nn.functional.one_hot(y[idx], num_classes).float())

    return _fit(arch, recipe, seed, len(x), loss_of, epochs)


def train_segmenter(x: torch.Tensor, masks: torch.Tensor, arch: tuple, seed: int, num_classes: int, ignore_index: int, epochs: int | None = None) -> dict[str, torch.Tensor]:
    """Train on ``(N, C, H, W)`` images and ``(N, H, W)`` masks with the τ-scaled cross-entropy
    ``CE(τ z, y) / τ`` over the non-void pixels (the reference code's ``TauCCE``, τ = 8 as its Kvasir and
    Pets runs), classes weighted by 1/√(pixel frequency) (largest weight 1)."""
    tau = SEGMENTER_RECIPE["tau"]
    counts = torch.bincount(masks[masks != ignore_index].reshape(-1), minlength=num_classes).double()
    weight = (1.0 / counts.clamp_min(1).sqrt()).float()
    weight = weight / weight.max()

    def loss_of(net, idx):
        return nn.functional.cross_entropy(net(x[idx]) * tau, masks[idx], ignore_index=ignore_index, weight=weight) / tau

    return _fit(arch, SEGMENTER_RECIPE, seed, len(x), loss_of, epochs)


def stack_images(source, size: int | None, mode: str) -> tuple[torch.Tensor, np.ndarray]:
    """Every sample of a source as ``(N, C, H, W)`` [0, 1] inputs, and the labels / masks as stacked arrays."""
    from rbx_lipschitz.classifier import to_tensor

    xs, ys = [], []
    for i in range(len(source)):
        image, label, _ = source[i]
        xs.append(to_tensor(image, size, mode))
        ys.append(np.asarray(label))
    return torch.stack(xs), np.stack(ys)
