"""The ``voice`` method: Grad-CAM, its VOICE map, and their per-image scores.

Definitions and sources: :mod:`rbx_explain.gradcam` (Grad-CAM, contrastive
Grad-CAM), :mod:`rbx_explain.voice` (the VOICE map), :mod:`rbx_explain.metrics`
(IoU@0.1, SNR). Defaults, all from the release (olivesgatech/VOICE-Uncertainty
``demo.py``): Grad-CAM as the explanation, every other class as a contrast
(``contrast="all"``), the IoU threshold 0.1. Ours: ``batch_size=64`` and
``threads=1`` (torch intra-op threads while explaining: the built-in CNN's
small batches run about 20 times faster on one thread of a shared CPU than on
all of them; ``None`` leaves torch's setting, for large models).

``score(ctx, subset)`` returns per image:

* ``explanation_iou``: IoU@0.1 of the explanation and its VOICE map (what the
  ``explanation`` suite scores);
* ``explanation_snr``: the VOICE map's SNR;
* ``confidence``: ``1 - IoU``, for the failure suite. Direction: the paper
  reports that under incorrect predictions the explanation is uncertain about
  the very features it attributes the prediction to, i.e. a high IoU, so a
  high IoU means low confidence. IoU takes few distinct values on small maps
  (64 pixels on the embedded digits), so many images tie.

The explanation and VOICE maps of the subset are kept on the method
(:meth:`Voice.maps`) when the suite scores ``explanation_iou``, for the
evaluator to save and the page to draw; at most :data:`MAX_KEPT_PIXELS`
pixels per subset and map kind are kept (evenly spaced images beyond that).

An image whose input or logits are not finite gets NaN scores (the runner
then fails the job, naming the method and subset) rather than the IoU of two
NaN maps, which the release's thresholding would turn into a clean 1.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from robustbench_x.api import Context, Method, torch_threads
from robustbench_x.errors import PluginError

__all__ = ["Voice", "MAX_KEPT_PIXELS", "OUTPUT"]

#: The per-image column the ``explanation`` suite scores.
OUTPUT = "explanation_iou"
#: Per subset and map kind: 2**24 float32 pixels (64 MiB), every map of the embedded digits many times over.
MAX_KEPT_PIXELS = 2**24


class Voice(Method):
    def __init__(self, contrast="all", batch_size: int = 64, threads: int | None = 1) -> None:
        super().__init__(contrast=contrast, batch_size=batch_size, threads=threads)
        if contrast != "all" and (isinstance(contrast, bool) or not isinstance(contrast, int)):
            raise ValueError(f"voice: contrast must be 'all' or an integer R >= 2, got {contrast!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"voice: batch_size must be a positive integer, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"voice: threads must be a positive integer or None, got {threads!r}")
        self.contrast = contrast
        self.batch_size = batch_size
        self.threads = threads
        self._maps: dict[str, dict[str, np.ndarray]] = {}

    def _layer(self, ctx: Context):
        layer = ctx.model.explanation_layer()
        if layer is None:
            raise PluginError(
                f"voice: model '{ctx.model.name}' declares no explanation layer (Model.explanation_layer() returned None); "
                "Grad-CAM needs a convolutional layer: implement explanation_layer() and provide 'explanation_layer'"
            )
        return layer

    def fit(self, ctx: Context) -> None:
        from rbx_explain.contrast import check_contrast

        check_contrast(self.contrast, ctx.model.num_classes)
        self._layer(ctx)

    def maps(self, subset: str) -> dict[str, np.ndarray]:
        """``{"explanation", "uncertainty": (M, H, W) float32, "index": (M,) rows of the subset}``
        of the last ``score`` on ``subset`` (empty when the suite did not ask for them)."""
        return self._maps.get(subset, {})

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        import torch

        from rbx_explain.metrics import map_iou, map_snr
        from rbx_explain.voice import nonfinite_rows, voice_batch

        module, layer = ctx.model.module, self._layer(ctx)
        keep = OUTPUT in ctx.wants
        ious, snrs, explanations, uncertainties = [], [], [], []
        constant = np.zeros(3, dtype=np.int64)
        with nullcontext() if self.threads is None else torch_threads(self.threads):
            for x, _ in ctx.loader(subset, batch_size=self.batch_size):
                logits, explanation, uncertainty, constant_contrast = voice_batch(
                    module, layer, x, self.contrast, where=f"voice on model '{ctx.model.name}'"
                )
                e, u = explanation.cpu().numpy(), uncertainty.cpu().numpy()
                bad = nonfinite_rows(e, u) | ~torch.isfinite(logits).all(dim=1).cpu().numpy()
                iou, snr = map_iou(np.nan_to_num(e), np.nan_to_num(u)), map_snr(np.nan_to_num(u))
                iou[bad], snr[bad] = np.nan, np.nan
                ious.append(iou)
                snrs.append(snr)
                # a min-max normalised map is all zero exactly when it was constant (module docstring of voice)
                constant += [
                    int((e.reshape(len(e), -1).max(axis=1) == 0).sum()),
                    int((u.reshape(len(u), -1).max(axis=1) == 0).sum()),
                    int((constant_contrast > 0).sum()),
                ]
                if keep:
                    explanations.append(e.astype(np.float32))
                    uncertainties.append(u.astype(np.float32))
        if constant.any():
            ctx.record(
                f"constant maps {subset}",
                f"{constant[0]} explanations, {constant[1]} VOICE maps set to zeros; "
                f"{constant[2]} images with a constant contrast map, taken as zeros in the variance",
            )
        iou = np.concatenate(ious) if ious else np.zeros(0)
        snr = np.concatenate(snrs) if snrs else np.zeros(0)
        if keep and explanations:
            self._maps[subset] = _kept(np.concatenate(explanations), np.concatenate(uncertainties))
        return {"confidence": 1.0 - iou, OUTPUT: iou, "explanation_snr": snr}


def _kept(explanation: np.ndarray, uncertainty: np.ndarray) -> dict[str, np.ndarray]:
    n = len(explanation)
    per_image = int(np.prod(explanation.shape[1:]))
    m = max(1, min(n, MAX_KEPT_PIXELS // max(1, per_image)))
    index = np.unique(np.linspace(0, n - 1, m).round().astype(np.int64)) if m < n else np.arange(n)
    return {"explanation": explanation[index], "uncertainty": uncertainty[index], "index": index}
