"""Attacks perturb the image in [0, 1], never the normalised tensor.

A robustbench_x model's ``transform()`` maps a PIL image to the tensor its
``forward`` takes, normalisation included (the built-in CNN: grey levels / 255,
then ``(x - 0.5) / 0.25``). RobustBench and AutoAttack instead want the model to
take the [0, 1] image and normalise inside. :func:`normalisation` recovers the
per-channel affine map ``t = (x - mean) / std`` from the transform itself (it
transforms a black, a white and a mid-grey image, and refuses a transform that
is not such a map), and :class:`UnitInputModel` puts it in front of the
model's network, so the ε-ball is measured in [0, 1] pixel units whatever the
model's normalisation.

The clean [0, 1] inputs come from the model's transform, inverted
(:func:`unit_batches`), or, where a protocol fixes the preprocessing
(RobustBench's ``Res256Crop224`` for ImageNet, ``ToTensor`` for CIFAR), from
that preprocessing directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

#: Largest departure (in normalised units) from an affine per-channel map accepted in a transform.
_AFFINE_TOL = 1e-3


def normalisation(transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)``, one value per channel, of ``transform`` (PIL → tensor)
    viewed as ``t = (x - mean) / std`` on the [0, 1] image ``x``."""
    from PIL import Image

    def level(v: int) -> torch.Tensor:
        t = torch.as_tensor(transform(Image.new("RGB", (32, 32), (v, v, v))), dtype=torch.float64)
        if t.dim() != 3:
            raise ValueError(f"the model's transform returned shape {tuple(t.shape)}; expected (channels, height, width)")
        flat = t.flatten(1)
        if (flat.amax(1) - flat.amin(1)).max() > _AFFINE_TOL:
            raise ValueError("the model's transform does not map a uniform image to a uniform tensor; "
                             "attacks need a transform that resizes/crops then normalises each channel affinely")
        return flat.mean(1)

    black, white, grey = level(0), level(255), level(128)
    scale = white - black
    if (scale <= 0).any():
        raise ValueError("the model's transform does not increase with brightness; cannot attack its [0, 1] input")
    if ((black + scale * 128 / 255) - grey).abs().max() > _AFFINE_TOL * max(1.0, float(scale.abs().max())):
        raise ValueError("the model's transform is not an affine map of pixel values (a gamma or a lookup table?); "
                         "attacks need (x - mean) / std per channel")
    std = 1.0 / scale
    mean = -black * std
    return mean.float(), std.float()


class UnitInputModel(nn.Module):
    """``net((x - mean) / std)``: the model's network on [0, 1] inputs, logits out."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.view(1, -1, 1, 1).clone())
        self.register_buffer("std", std.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x - self.mean) / self.std)
        return out[0] if isinstance(out, tuple) else out


def unit_batches(source, indices: Sequence[int], to_unit: Callable, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, np.ndarray, list[str]]]:
    """``(x in [0, 1], labels, sample ids)`` for ``source[indices]``, in batches;
    ``to_unit(PIL image) -> (C, H, W)`` tensor in [0, 1]."""
    for start in range(0, len(indices), batch_size):
        images, labels, ids = [], [], []
        for i in indices[start:start + batch_size]:
            image, label, sample_id = source[int(i)]
            images.append(to_unit(image))
            labels.append(int(label))
            ids.append(str(sample_id))
        yield torch.stack(images).float().clamp(0.0, 1.0), np.asarray(labels, dtype=np.int64), ids


def inverted_transform(transform: Callable, mean: torch.Tensor, std: torch.Tensor) -> Callable:
    """The model's transform followed by the inverse of its normalisation: PIL → [0, 1] tensor."""
    m, s = mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def to_unit(image) -> torch.Tensor:
        return torch.as_tensor(transform(image)).float() * s + m

    return to_unit


def _rgb(image):
    """RobustBench reads images with torchvision's loader, which converts to RGB."""
    return image.convert("RGB")


def preprocessing(name: str) -> Callable:
    """RobustBench's named preprocessing (``robustbench/data.py`` ``PREPROCESSINGS``): PIL → [0, 1] tensor."""
    from torchvision import transforms as T

    pipelines = {
        "Res256Crop224": lambda: T.Compose([_rgb, T.Resize(256), T.CenterCrop(224), T.ToTensor()]),
        "Crop288": lambda: T.Compose([_rgb, T.CenterCrop(288), T.ToTensor()]),
        "Res224": lambda: T.Compose([_rgb, T.Resize([224, 224]), T.ToTensor()]),
        "BicubicRes256Crop224": lambda: T.Compose([_rgb, T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor()]),
        "ToTensor": lambda: T.Compose([_rgb, T.ToTensor()]),
    }
    if name not in pipelines:
        raise ValueError(f"unknown preprocessing {name!r}; known: {', '.join(pipelines)}")
    return pipelines[name]()
