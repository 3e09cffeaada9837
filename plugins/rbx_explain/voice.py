"""VOICE: the Variance Of Induced Contrastive Explanations.

Paper: M. Prabhushankar & G. AlRegib, "VOICE: Variance of Induced Contrastive
Explanations to quantify Uncertainty in Neural Network Interpretability",
IEEE J-STSP 2024, doi 10.1109/JSTSP.2024.3413536, arXiv 2406.00573. Code:
olivesgatech/VOICE-Uncertainty@39adf96, ``demo.py`` (``get_explanation``) and
``gradcam.py`` (``GradCAM``, ``Contrast``). The paper's section and
equation numbers could not be checked when this was written: every
definition below is the released code's, read at that commit.

The VOICE map of an image predicted as ``P`` is the pixelwise variance, over
the contrast classes ``Q``, of the contrastive Grad-CAM maps ``M(x; P, Q)``
(:mod:`rbx_explain.gradcam`), min-max normalised to [0, 1]:

    U(x) = minmax( Var_{Q in S(x)} M(x; P, Q) )

* ``S(x)``, the contrast set: every class but ``P`` (``contrast="all"``, what
  ``get_explanation`` loops over; the default), or the ``R`` most probable
  classes after ``P`` (``contrast=R``, our reading of the paper's "R
  contrastive explanations", kept as an option for many-class models where
  ``C - 1`` backward passes per image are too many). The paper's further
  probability threshold ``p_t`` is not implemented (its value is not in the
  release).
* The variance is the unbiased one (``torch.var``) as in the release; after
  the min-max normalisation the ``1/(n-1)`` factor cancels, so the map does
  not depend on it. It is accumulated over the contrast classes with
  Welford's update in float64 (:class:`RunningVariance`), so no ``(C - 1) × H × W`` stack is held per image.
* Degenerate cases: with fewer than two contrast classes the variance is
  undefined, a :class:`ValueError` (a model of two classes has one contrast
  class). A constant map is all zeros where the release divides 0 by 0 and
  gets NaN: a constant variance map (every contrast map equal) then has IoU 1
  with an explanation that is also empty and SNR 0 (the release: NaN); a
  constant *contrast* map enters the variance as zeros (the release's NaN map
  makes ``torch.var``, hence the whole VOICE map, NaN). :func:`voice_batch`
  counts the latter per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rbx_explain.contrast import check_contrast
from rbx_explain.gradcam import explain_batch, minmax

__all__ = ["contrast_classes", "check_contrast", "voice_batch", "RunningVariance", "nonfinite_rows"]


def contrast_classes(logits: torch.Tensor, contrast) -> torch.Tensor:
    """``(B, R)`` contrast classes for each row of ``logits``: every class but the
    argmax (``"all"``, in the order ``P+1, P+2, …`` mod ``C``), or the ``R`` most
    probable ones after it (ties by class index)."""
    b, c = logits.shape
    prediction = logits.argmax(dim=1, keepdim=True)
    if contrast == "all":
        return (prediction + torch.arange(1, c, device=logits.device)[None, :]) % c
    order = torch.sort(-logits, dim=1, stable=True).indices
    return order[:, 1 : 1 + int(contrast)]


class RunningVariance:
    """Pixelwise unbiased variance of maps added one at a time (Welford's update, float64).
    Identical maps leave exactly zero, where running sums of squares would leave rounding
    noise that the min-max normalisation would blow up to a full-range map."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, maps: torch.Tensor) -> None:
        m = maps.double()
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = m.clone(), torch.zeros_like(m)
            return
        delta = m - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (m - self.mean)

    def voice_map(self) -> torch.Tensor:
        """The VOICE map: the variance, min-max normalised (a constant variance gives zeros)."""
        if self.n < 2:
            raise ValueError(f"a variance needs at least two maps, got {self.n}")
        return minmax(self.m2 / (self.n - 1))


def voice_batch(module: nn.Module, layer: nn.Module, x: torch.Tensor, contrast, where: str = "voice"):
    """``(logits, explanation (B, H, W), VOICE map (B, H, W), constant (B,))`` of one
    batch; ``constant`` counts each image's constant contrast maps, which enter the
    variance as zeros (where the release's 0 / 0 makes the whole VOICE map NaN)."""
    running = RunningVariance()
    constant = torch.zeros(len(x), dtype=torch.int64)

    def add(_rank, maps: torch.Tensor) -> None:
        running.add(maps)
        constant.add_((maps.flatten(1).amax(dim=1) == 0).cpu().long())  # min-max gives zeros exactly when constant

    logits, explanation, _ = explain_batch(module, layer, x, lambda z: contrast_classes(z, contrast), where=where, on_contrast=add)
    check_contrast(contrast, logits.shape[1])
    if not running.n:  # an empty batch
        return logits, explanation, explanation.clone(), constant
    return logits, explanation, running.voice_map().float(), constant


def nonfinite_rows(*arrays: np.ndarray) -> np.ndarray:
    """Images whose maps hold a NaN or inf (a bad input): their scores must not look clean."""
    bad = np.zeros(len(arrays[0]), dtype=bool)
    for a in arrays:
        bad |= ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return bad
