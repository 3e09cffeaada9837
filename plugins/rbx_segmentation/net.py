"""The built-in segmenter's network and its training recipe.

A small U-Net-like encoder-decoder for the 64×64 ``embedded-scenes``:

* stem at half resolution: a stride-2 3×3 conv and a 3×3 conv, each + BN +
  ReLU (16 channels), kept as the skip connection;
* 2×2 max-pool, then two 3×3 conv + BN + ReLU at a quarter resolution (32
  channels; the second dilated by 2; receptive field about 30 px, one object);
* channel dropout (``Dropout2d``, p = 0.2), bilinear upsampling ×2,
  concatenation with the skip, a 1×1 conv + BN + ReLU (16 channels): the
  *decoder maps* (``feature_maps``; their spatial mean is the per-image
  feature vector the cache stores);
* channel dropout again, a 1×1 conv to the class logits, bilinear upsampling
  to the input's resolution.

It is small on purpose: about 7 M multiply-adds per image, so a member trains
in seconds on one CPU thread.

``members > 1`` builds the same network with every convolution a rank-1
ensemble layer (:mod:`rbx_segmentation.layers`, ``BatchConv2d`` or
``LPBNNConv2d``; batch norm shared between members, as torch-uncertainty's
batched models; the official LP-BNN code has one batch norm per member,
a deviation the method's spec declares).

Recipe (:data:`RECIPE`): Adam, lr 3e-3, batch 8, random horizontal and
vertical flips, cross-entropy with the ignore label 255 (LP-BNN adds its
layers' latent losses: :meth:`SegNet.latent_loss`), cosine decay, seeded, one thread, so one machine
reproduces the weights bit for bit (:func:`train`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rbx_segmentation.layers import BatchConv2d, LPBNNConv2d, tile_members

__all__ = ["SegNet", "RECIPE", "MEAN", "STD", "to_inputs", "train"]

RECIPE = {"arch": "tiny-unet-v2", "epochs": 8, "lr": 3e-3, "batch_size": 8, "dropout": 0.2, "width": 16}
MEAN, STD = 0.5, 0.25
IGNORE = 255
#: Revision of a kind's layers or training, part of its weights key so weights cached before a change are not reused
#: (LP-BNN 2: scalings decoded from the embedding, latent loss weighted, no warm-up). Absent kinds keep their keys.
REVISIONS = {"lpbnn": 2}


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> normalised float ``(N, 3, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


class SegNet(nn.Module):
    def __init__(self, num_classes: int, *, members: int = 1, kind: str = "plain", dropout: float = RECIPE["dropout"], width: int = RECIPE["width"]) -> None:
        super().__init__()
        self.members, self.kind = members, kind

        def conv(cin, cout, k, **kw):
            if kind == "plain":
                return nn.Conv2d(cin, cout, k, **kw)
            layer = {"batchensemble": BatchConv2d, "lpbnn": LPBNNConv2d}[kind]
            return layer(cin, cout, k, members=members, **kw)

        w = width

        def block(cin, cout, k=3, **kw):
            pad = kw.get("dilation", 1) * (k // 2)
            return [conv(cin, cout, k, padding=pad, **kw), nn.BatchNorm2d(cout), nn.ReLU()]

        self.stem = nn.Sequential(*block(3, w, stride=2), *block(w, w))
        self.enc = nn.Sequential(*block(w, 2 * w), *block(2 * w, 2 * w, dilation=2))
        self.drop = nn.Dropout2d(dropout)
        self.dec = nn.Sequential(*block(3 * w, w, k=1))
        self.head = conv(w, num_classes, 1)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder maps ``(B, width, H/2, W/2)`` (``(M·B, …)`` member-major for an ensemble at evaluation)."""
        if self.members > 1 and not self.training:
            x = tile_members(x, self.members)
        skip = self.stem(x)
        deep = self.drop(self.enc(F.max_pool2d(skip, 2)))
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.dec(torch.cat([up, skip], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.drop(self.maps(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def latent_loss(self) -> torch.Tensor:
        """The LP-BNN layers' latent losses summed and divided by (their number + 1), the official training loop's weighting."""
        layers = [m for m in self.modules() if isinstance(m, LPBNNConv2d)]
        return sum((m.latent_loss for m in layers), torch.zeros(())) / (len(layers) + 1)


def train(images: np.ndarray, masks: np.ndarray, num_classes: int, seed: int, *, members: int = 1, kind: str = "plain", epochs: int | None = None) -> SegNet:
    """Train on uint8 images ``(N, H, W, 3)`` and masks ``(N, H, W)`` (ignore 255), deterministically."""
    from robustbench_x.api import torch_threads

    epochs = RECIPE["epochs"] if epochs is None else int(epochs)
    x, y = to_inputs(images), torch.from_numpy(masks.astype(np.int64))
    bs = RECIPE["batch_size"]
    # One thread: reductions in one order, so two runs on one machine agree bit for bit.
    with torch_threads(1):
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = SegNet(num_classes, members=members, kind=kind)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=RECIPE["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        n = len(x) - len(x) % bs  # whole batches only: an ensemble's batch splits evenly among its members
        if n == 0:
            # no optimizer step would run: an untrained network, and torch's "lr_scheduler.step() before optimizer.step()" warning
            raise ValueError(f"{len(x)} training image(s) make no whole batch of {bs}: the segmenter would not train at all")
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(x), generator=generator)[:n]
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                xb, yb = x[idx], y[idx]
                flip = torch.rand(2, generator=generator) < 0.5
                if flip[0]:
                    xb, yb = xb.flip(-1), yb.flip(-1)
                if flip[1]:
                    xb, yb = xb.flip(-2), yb.flip(-2)
                loss = F.cross_entropy(net(xb), yb, ignore_index=IGNORE)
                if kind == "lpbnn":
                    loss = loss + net.latent_loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    return net.eval()
