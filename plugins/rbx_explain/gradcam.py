"""Grad-CAM and contrastive Grad-CAM at a declared layer, for a batch.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization", ICCV 2017, Sec. 3, Eq. 1-2): with ``A^k`` the
``K`` maps of the explanation layer and ``y`` the quantity explained,

    alpha_k = mean_{u,v} dy / dA^k_{uv}            (Eq. 1, global-average-pooled gradients)
    M       = ReLU(sum_k alpha_k A^k)               (Eq. 2)

upsampled bilinearly to the input size (``align_corners=False``) and min-max
normalised to [0, 1] per image. The explanation of the prediction ``P`` takes
``y = z_P``, the logit of ``P`` (``GradCAM.forward`` in the VOICE code,
olivesgatech/VOICE-Uncertainty ``gradcam.py``, which targets the argmax).

Contrastive Grad-CAM ("why P, rather than Q?"; Prabhushankar, Kwon, Temel &
AlRegib, "Contrastive Explanations in Neural Networks", ICIP 2020, arXiv
2008.00178) replaces ``y`` by the cross-entropy of the logits toward the
contrast class, ``J(P, Q) = CE(z, Q) = -log softmax(z)_Q``, with the same
pooling, ReLU, upsampling and normalisation (``Contrast.forward`` in the VOICE
code's ``gradcam.py``, the definition followed here; the ICIP paper's own
section and equation numbers were not checked).

Conventions of this module (where the release leaves them open):

* the normalisation is per image (the release explains one image at a time);
  a map with ``max == min`` (for instance all zero after the ReLU, where the
  release divides 0 by 0) is defined as all zeros: nothing is highlighted;
* the gradients are taken with :func:`torch.autograd.grad` on the layer's
  output captured by a forward hook (no backward hook, nothing accumulates in
  the parameters' ``.grad``); the network runs in eval mode, so images of a
  batch do not interact and the gradient of the batch's summed objective is
  each image's own gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerCapture", "capture", "cam", "minmax", "explain_batch"]


class LayerCapture:
    """The output of one layer during a forward pass (set by :func:`capture`)."""

    activation: torch.Tensor | None = None


@contextmanager
def capture(module: nn.Module, layer: nn.Module) -> Iterator[LayerCapture]:
    """Record ``layer``'s output while ``module`` runs, in eval mode; restore the modes after."""
    box = LayerCapture()

    def hook(_module, _inputs, output):
        box.activation = output

    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    handle = layer.register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()
        for m, flag in modes:
            m.train(flag)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each ``(H, W)`` map of ``(B, H, W)`` to [0, 1]; a constant map becomes zeros.
    NaN stays NaN (a bad input must not turn into a clean map)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    span = hi - lo
    constant = span == 0
    out = (maps - lo) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.zeros_like(out), out)


def cam(activation: torch.Tensor, gradient: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM maps ``(B, H, W)`` from the layer's ``(B, K, u, v)`` activation and the
    gradient of the explained quantity with respect to it (Eq. 1-2, then upsample, min-max)."""
    alpha = gradient.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((alpha * activation).sum(dim=1, keepdim=True))
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax(maps)


def _check_activation(activation: torch.Tensor | None, where: str) -> torch.Tensor:
    if activation is None:
        raise ValueError(f"{where}: the explanation layer did not run during the forward pass; declare a layer of model.module")
    if activation.ndim != 4:
        raise ValueError(
            f"{where}: the explanation layer's output has shape {tuple(activation.shape)}; Grad-CAM needs (B, K, H, W) maps "
            "(token or channels-last outputs need a reshape the harness does not do: declare a convolutional layer)"
        )
    return activation


def explain_batch(module: nn.Module, layer: nn.Module, x: torch.Tensor, contrasts, where: str = "grad-cam", on_contrast=None):
    """Explanation and contrast maps of one batch.

    ``contrasts(logits)`` returns a ``(B, R)`` tensor: for image ``i``, the
    ``R`` contrast classes ``Q`` (chosen from the logits). Returns ``(logits
    (B, C), explanation (B, H, W), contrast maps (B, R, H, W))``: Grad-CAM of
    the predicted logit ``z_P``, and for each column ``r`` the contrastive
    Grad-CAM of ``CE(z, Q[:, r])``, one backward pass per column. With
    ``on_contrast(r, maps)`` each column's ``(B, H, W)`` maps go to it as they
    are made and none are kept (``R`` can be 999 on ImageNet).
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    with torch.enable_grad(), capture(module, layer) as box:
        # an input that requires grad keeps the layer's output in the graph even when every parameter is frozen
        logits = module(x.detach().requires_grad_(True))
        activation = _check_activation(box.activation, where)
        prediction = logits.argmax(dim=1)
        (grad,) = torch.autograd.grad(logits.gather(1, prediction[:, None]).sum(), activation, retain_graph=True)
        explanation = cam(activation.detach(), grad, size)
        targets = contrasts(logits.detach())
        out = []
        for r in range(targets.shape[1]):
            # reduction="sum": each image's own CE gradient (images do not interact in eval mode)
            loss = F.cross_entropy(logits, targets[:, r], reduction="sum")
            (grad,) = torch.autograd.grad(loss, activation, retain_graph=r + 1 < targets.shape[1])
            maps = cam(activation.detach(), grad, size)
            if on_contrast is None:
                out.append(maps)
            else:
                on_contrast(r, maps)
    maps = torch.stack(out, dim=1) if out else explanation.new_zeros((len(x), 0, *size))
    return logits.detach(), explanation, maps
