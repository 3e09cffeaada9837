"""The built-in 1-Lipschitz segmenter ``lipschitz-segnet`` for the embedded scenes.

Architecture :func:`rbx_lipschitz.nets.segmenter_arch`: 3 × 3 convolutions with
GroupSort2 activations, two 2× pixel unshuffles down and two pixel shuffles up
(permutations of coordinates, so no pooling or interpolation weakens the bound);
per-pixel logits at the input resolution. Trained like ``lipschitz-cnn``
(deel-torchlip layers, τ-scaled cross-entropy, τ = 8, with 1/√frequency class
weights on every non-void pixel, :mod:`rbx_lipschitz.training`), evaluated as plain torch layers. Inputs are RGB
[0, 1] pixels at the dataset's resolution (a multiple of 4).

Its declared ``lipschitz_constant`` bounds the ℓ2 Lipschitz constant of the
whole map from the image to the ``(C, H, W)`` logits
(:func:`rbx_lipschitz.layers.lipschitz_upper_bound` at the scenes' 64 × 64,
the size its certificates are computed at). Weights: kept ones when
``tools/train_lipschitz.py`` wrote them (the manifest's sha256 for
``embedded-scenes`` seed 0), else cached, else trained on the dataset's train
split at first use (about 90 s of CPU on the scenes).
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_x.api import Dataset
from robustbench_x.errors import PluginError

from rbx_lipschitz.classifier import LipschitzModel, fingerprint_of, weights_for, weights_key

TRANSFORM = {"mode": "RGB", "resize": None, "scale": "[0, 1]"}


class LipschitzSegNet(LipschitzModel):
    provides = frozenset({"dense_logits", "input_grad", "lipschitz"})

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, logits.mean(dim=(2, 3))


def _size(dataset: Dataset) -> tuple[int, int]:
    image = dataset.samples("train")[0][0]
    width, height = image.size
    if height % 4 or width % 4:
        raise PluginError(f"lipschitz-segnet needs images whose sides are multiples of 4; dataset '{dataset.name}' has {width}×{height}")
    return height, width


def recipe_for(dataset: Dataset, seed: int):
    """``(layout, weights key, train())`` of ``lipschitz-segnet`` on ``dataset`` (also used by ``tools/train_lipschitz.py``)."""
    from rbx_lipschitz.nets import segmenter_arch
    from rbx_lipschitz.training import SEGMENTER_RECIPE

    if getattr(dataset, "task", "classification") != "segmentation":
        raise PluginError(f"lipschitz-segnet segments images; dataset '{dataset.name}' has task '{getattr(dataset, 'task', '?')}'")
    num_classes = len(dataset.classes)
    ignore = int(getattr(dataset, "ignore_index", 255))
    layout = segmenter_arch(3, num_classes, SEGMENTER_RECIPE["width"])
    key = weights_key({**SEGMENTER_RECIPE, "transform": TRANSFORM, "ignore_index": ignore}, dataset.fingerprint("train"), seed, num_classes)

    def train() -> dict[str, torch.Tensor]:
        from rbx_lipschitz.training import stack_images, train_segmenter

        x, masks = stack_images(dataset.samples("train"), None, "RGB")
        return train_segmenter(x, torch.as_tensor(masks, dtype=torch.long), layout, seed, num_classes, ignore)

    return layout, key, train


def build(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> LipschitzSegNet:
    """Factory of the ``lipschitz-segnet`` model spec (module docstring)."""
    from rbx_lipschitz.layers import lipschitz_upper_bound
    from rbx_lipschitz.nets import plain

    if dataset is None:
        raise ValueError("lipschitz-segnet is trained for the dataset it is evaluated on; a dataset is required")
    layout, key, train = recipe_for(dataset, int((options or {}).get("seed", seed)))
    net = plain(layout)
    net.load_state_dict(weights_for("lipschitz-segnet", key, train, log))
    net.eval()
    bound = lipschitz_upper_bound(net, _size(dataset))
    fingerprint = fingerprint_of("lipschitz-segnet", net.state_dict(), TRANSFORM)
    return LipschitzSegNet("lipschitz-segnet", net, bound, fingerprint, None, "RGB", len(dataset.classes))
