"""Plain-torch 1-Lipschitz building blocks and an upper bound of a network's ℓ2 Lipschitz constant.

The built-in networks are *trained* with deel-torchlip's orthogonalised layers
(``deel.torchlip.SpectralConv2d`` / ``SpectralLinear``: spectral normalisation
then Björck orthonormalisation, and for convolutions deel-torchlip 1.0.5's
generic factor 1/√(k·k), 1/3 for 3 × 3 kernels; :mod:`rbx_lipschitz.training`) and *evaluated* as the
plain ``nn.Conv2d`` / ``nn.Linear`` layers that ``deel.torchlip.vanilla_model``
exports, so evaluation needs nothing beyond torch. What is 1-Lipschitz by
construction during training is not taken on trust after export: the declared
constant is :func:`lipschitz_upper_bound` of the exported weights, the product of
each layer's exact operator norm:

* ``nn.Linear``: the largest singular value of its weight;
* ``nn.Conv2d`` (stride 1, zero padding ``(k − 1) / 2``) on an ``n × m`` input:
  the convolution is the restriction of a circular convolution on an
  ``(n + k − 1) × (m + k − 1)`` grid (no wrap-around reaches the kept outputs), whose
  singular values are those of the ``C_out × C_in`` matrices of the kernel's 2-D
  DFT at every frequency (Sedghi, Gupta, Long, "The Singular Values of
  Convolutional Layers", ICLR 2019, Theorem 6); the largest of them bounds the
  zero-padded operator from above;
* ``GroupSort2`` (sort each consecutive pair of channels; deel-torchlip's
  ``GroupSort2`` with the same pairing, checked in the tests), ``nn.PixelUnshuffle``,
  ``nn.PixelShuffle``, ``nn.Flatten`` and the input shift are 1-Lipschitz
  (permutations of coordinates, a translation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GroupSort2", "Shift", "conv_operator_norm", "linear_operator_norm", "lipschitz_upper_bound"]


class GroupSort2(nn.Module):
    """Sort each consecutive pair of channels (dim 1) in ascending order (MaxMin / GroupSort with groups of 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        pairs = x.reshape(shape[0], shape[1] // 2, 2, *shape[2:])
        low, high = pairs.min(dim=2).values, pairs.max(dim=2).values
        return torch.stack((low, high), dim=2).reshape(shape)


class Shift(nn.Module):
    """``x − offset``: centres [0, 1] pixels without changing any Lipschitz constant."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.offset


def linear_operator_norm(layer: nn.Linear) -> float:
    return float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))


def conv_operator_norm(layer: nn.Conv2d, size: tuple[int, int]) -> float:
    """Upper bound (exact for the circular case) of the ℓ2 operator norm of ``layer`` on ``size`` inputs."""
    kh, kw = layer.kernel_size
    if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1 or layer.padding_mode != "zeros":
        raise ValueError(f"{layer}: only stride-1, undilated, ungrouped, zero-padded convolutions are bounded here")
    if layer.padding != ((kh - 1) // 2, (kw - 1) // 2) or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{layer}: expected an odd kernel with 'same' padding (k - 1) / 2")
    grid = (size[0] + kh - 1, size[1] + kw - 1)
    spectrum = torch.fft.fft2(layer.weight.detach().double(), s=grid)  # (O, I, N, M)
    return float(torch.linalg.matrix_norm(spectrum.permute(2, 3, 0, 1), ord=2).max())


def lipschitz_upper_bound(net: nn.Sequential, size: tuple[int, int]) -> float:
    """Product of the layers' operator norms (see the module docstring) for ``size`` (H, W) inputs."""
    bound, (h, w) = 1.0, size
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            bound *= conv_operator_norm(layer, (h, w))
        elif isinstance(layer, nn.Linear):
            bound *= linear_operator_norm(layer)
        elif isinstance(layer, nn.PixelUnshuffle):
            h, w = h // layer.downscale_factor, w // layer.downscale_factor
        elif isinstance(layer, nn.PixelShuffle):
            h, w = h * layer.upscale_factor, w * layer.upscale_factor
        elif not isinstance(layer, (GroupSort2, Shift, nn.Flatten, nn.Identity)):
            raise ValueError(f"no Lipschitz bound for layer {layer}; use the layers of rbx_lipschitz.layers")
    if not math.isfinite(bound):
        raise ValueError("the Lipschitz bound is not finite")
    return bound
