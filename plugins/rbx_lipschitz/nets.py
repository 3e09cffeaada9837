"""The built-in networks' architectures, as data, and their plain-torch form.

An architecture is a tuple of layer descriptions; :func:`plain` builds it from
``torch.nn`` and :mod:`rbx_lipschitz.layers` (what is evaluated), and
:func:`rbx_lipschitz.training.orthogonal` builds the same indices from
deel-torchlip's orthogonalised layers (what is trained), so the exported state
dict loads into :func:`plain` key for key.

* ``("shift", c)``: ``x − c`` (inputs are [0, 1] pixels);
* ``("conv", c_in, c_out)``: 3 × 3, stride 1, zero padding 1;
* ``("groupsort",)``: GroupSort with groups of two channels;
* ``("down", f)`` / ``("up", f)``: pixel unshuffle / shuffle by ``f`` (invertible, norm-preserving);
* ``("flatten",)``, ``("linear", d_in, d_out)``.
"""

from __future__ import annotations

from torch import nn

from rbx_lipschitz.layers import GroupSort2, Shift

__all__ = ["classifier_arch", "segmenter_arch", "plain"]


def classifier_arch(channels: int, size: int, num_classes: int, width: int = 16) -> tuple:
    """Two convolutions at full resolution, one after a 2× pixel unshuffle, two linear layers."""
    if size % 2:
        raise ValueError(f"the classifier needs an even input size, got {size}")
    flat = 2 * width * (size // 2) ** 2
    return (
        ("shift", 0.5),
        ("conv", channels, width), ("groupsort",),
        ("conv", width, width), ("groupsort",),
        ("down", 2),
        ("conv", 4 * width, 2 * width), ("groupsort",),
        ("flatten",),
        ("linear", flat, 64), ("groupsort",),
        ("linear", 64, num_classes),
    )  # fmt: skip


def segmenter_arch(channels: int, num_classes: int, width: int = 16) -> tuple:
    """An encoder-decoder without pooling: two 2× pixel unshuffles down, two pixel shuffles up
    (both permutations of coordinates), so the whole map is 1-Lipschitz when every convolution is."""
    return (
        ("shift", 0.5),
        ("conv", channels, width), ("groupsort",),
        ("down", 2),
        ("conv", 4 * width, 2 * width), ("groupsort",),
        ("down", 2),
        ("conv", 8 * width, 4 * width), ("groupsort",),
        ("conv", 4 * width, 8 * width), ("groupsort",),
        ("up", 2),
        ("conv", 2 * width, 4 * width), ("groupsort",),
        ("up", 2),
        ("conv", width, width), ("groupsort",),
        ("conv", width, num_classes),
    )  # fmt: skip


def plain(arch: tuple) -> nn.Sequential:
    """The architecture from plain torch layers (evaluation)."""
    layers: list[nn.Module] = []
    for kind, *args in arch:
        if kind == "shift":
            layers.append(Shift(args[0]))
        elif kind == "conv":
            layers.append(nn.Conv2d(args[0], args[1], 3, padding=1))
        elif kind == "groupsort":
            layers.append(GroupSort2())
        elif kind == "down":
            layers.append(nn.PixelUnshuffle(args[0]))
        elif kind == "up":
            layers.append(nn.PixelShuffle(args[0]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "linear":
            layers.append(nn.Linear(args[0], args[1]))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return nn.Sequential(*layers)
