"""Zero-shot CLIP scores: MCM, GL-MCM and the zero-shot classifier's MSP (``docs/methods.md#mcm``).

All three use the frozen model's prompts ``"a photo of a {class}"`` (no period)
and L2-normalised image and text embeddings; ``s_k = cos(image, text_k)``.

* **MCM** (Ming et al., NeurIPS 2022; deeplearning-wisc/MCM
  ``utils/detection_util.py::get_ood_scores_clip``): ``score = max_k softmax(s / T)_k``,
  **T = 1 on raw cosines** (not ×τ). The official code stores −score; here
  higher = in-distribution. ``confidence`` = the same score; ``prediction`` =
  ``argmax_k s_k`` (the zero-shot classifier).
* **GL-MCM** (Miyai et al., IJCV 2025; AtsuMiyai/GL-MCM ``utils/detection_util.py``):
  ``score = MCM(global) + λ · max_{p,k} softmax_k(s^loc_{p,·} / T)`` with the
  local features of :meth:`rbx_vlm.model.OpenClipModel.encode_image_local`
  (value-value trick, ``ln_post`` and ``visual.proj``, no learned projection),
  λ = 1, T = 1. ``prediction`` = the global zero-shot argmax.
* **zeroshot-msp**: the zero-shot CLIP classifier ``softmax(τ · s)`` (τ = exp(logit_scale)),
  ``score = confidence = max``, ``probs`` and ``prediction`` from it; on CLIP
  this is the post-hoc ``msp`` of the cached logits, plus the ImageNet-A/-R mask.

Every ``prediction`` / ``probs`` is restricted to ``dataset.class_mask(subset)``
(ImageNet-A/-R: their 200 classes). MCM / zero-shot MSP read the cached global
embeddings (no extra forward pass); GL-MCM needs the patches, so it runs the
image tower once more per subset (``batch_size`` images at a time).
Deviation: fp32 throughout (the official code runs fp16 CLIP on GPU for GL-MCM).
"""

from __future__ import annotations

import numpy as np
import torch

from robustbench_x.api import Method
from rbx_vlm._common import class_mask, classifier_outputs, local_mcm, mcm, restrict


def _cosines(ctx, subset: str) -> torch.Tensor:
    feats = torch.from_numpy(np.array(ctx.outputs(subset).features, dtype=np.float32))
    feats = torch.nn.functional.normalize(feats, dim=-1)
    text = ctx.model.zero_shot_text().float().cpu()
    return feats @ text.T


class MCM(Method):
    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)
        self.temperature = float(temperature)

    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        s = _cosines(ctx, subset)
        score = mcm(s, self.temperature).numpy()
        prediction = restrict(s, class_mask(ctx, subset)).argmax(dim=-1).numpy()
        return {"score": score, "confidence": score, "prediction": prediction}


class GLMCM(Method):
    def __init__(self, temperature: float = 1.0, lambda_local: float = 1.0, batch_size: int = 64) -> None:
        super().__init__(temperature=temperature, lambda_local=lambda_local, batch_size=batch_size)
        self.temperature, self.lambda_local, self.batch_size = float(temperature), float(lambda_local), int(batch_size)

    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        model = ctx.model
        text = model.zero_shot_text()
        scores, preds = [], []
        mask = class_mask(ctx, subset)
        with torch.no_grad():
            for x, _ in ctx.loader(subset, batch_size=self.batch_size):
                g, local = model.encode_image_local(x)
                s_global = g @ text.T
                s_local = local @ text.T
                scores.append(gl_mcm_score(s_global, s_local, self.temperature, self.lambda_local).cpu())
                preds.append(restrict(s_global, mask).argmax(dim=-1).cpu())
        score = torch.cat(scores).numpy()
        return {"score": score, "confidence": score, "prediction": torch.cat(preds).numpy()}


def gl_mcm_score(global_cosines: torch.Tensor, local_cosines: torch.Tensor, temperature: float = 1.0, lambda_local: float = 1.0) -> torch.Tensor:
    """``MCM(global) + λ · L-MCM(local)``; ``(B, C)`` and ``(B, P, C)`` cosines → ``(B,)``, higher = ID."""
    return mcm(global_cosines, temperature) + lambda_local * local_mcm(local_cosines, temperature)


class ZeroShotMSP(Method):
    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        s = _cosines(ctx, subset)
        out = classifier_outputs(ctx.model.logit_scale * s, class_mask(ctx, subset))
        out["score"] = out["confidence"]
        return out
