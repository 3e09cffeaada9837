"""ReAct: rectified activations + energy (``docs/methods.md#react``).

Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified
Activations", NeurIPS 2021, §3: truncate the penultimate activations at an
upper bound ``c``, ``h̄ = min(h, c)`` (element-wise), recompute the logits
through the last layer, ``z̄ = W h̄ + b``, and apply an OOD score to ``z̄`` —
**energy** (``logsumexp(z̄)``, T = 1) by default in the paper and repository.

Threshold, as deeplearning-wisc/react (``2aa35d9993dd``)
``compute_threshold.py``: ``c = np.percentile(activation_log.flatten(), 90)``
— the 90th percentile of **all** penultimate activations (flattened across
samples and channels) of the in-distribution **validation** images. Default
``percentile = 90`` (the paper's choice, also OpenOOD
``configs/postprocessors/react.yml``, whose sweep is 85/90/95/99). The
repository caps the estimate at 2000 validation images (``lim = 2000``); we use
the whole ``val`` split the dataset provides. ``np.percentile``'s default
linear interpolation is used, on the cached dtype (float32 features give
the reference's float32 threshold exactly). Not the ViM repository's "Energy+React", which
clips at the 0.99 quantile of *training* features (a different variant).

Outputs: ``score = confidence = logsumexp(z̄)``; ``prediction = argmax z̄``
(the logits the score uses; OpenOOD's ReAct predicts the same way).
Float64 throughout.
"""

from __future__ import annotations

import numpy as np

from rbx_posthoc._common import PosthocMethod, chunks, f64, logsumexp, scalar, score_dict
from robustbench_x.api import Context

__all__ = ["ReAct", "react_threshold"]


def react_threshold(features: np.ndarray, percentile: float = 90.0) -> float:
    """The ``percentile``-th percentile of all entries of ``features``."""
    values = np.asarray(features).reshape(-1)
    if values.size == 0:
        raise ValueError("react: cannot estimate the clipping threshold from an empty validation split")
    # On the cached dtype, as the reference does on its float32 activation log.
    return float(np.percentile(values, percentile))


class ReAct(PosthocMethod):
    """Energy of the logits recomputed from features clipped at the val percentile."""

    name = "react"

    def __init__(self, percentile: float = 90.0) -> None:
        if not 0 <= percentile <= 100:
            raise ValueError(f"react: percentile must be in [0, 100], got {percentile!r}")
        super().__init__(percentile=percentile)
        self.percentile = float(percentile)

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        c = react_threshold(ctx.outputs("val").features, self.percentile)
        return {"threshold": np.array([c], dtype=np.float64)}

    def fit(self, ctx: Context) -> None:
        state = self._fitted(ctx, percentile=self.percentile, split="val")
        ctx.log(f"react threshold {scalar(state, 'threshold'):.4f} (percentile {self.percentile:g} of val features)")

    @property
    def threshold(self) -> float:
        if self.state is None:
            raise RuntimeError("react: call fit(ctx) first")
        return scalar(self.state, "threshold")

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        state = self._require_state(ctx)
        c = scalar(state, "threshold")
        w, b = ctx.model.linear_head()
        w, b = f64(w), f64(b)
        features = ctx.outputs(subset).features
        n = len(features)
        score = np.empty(n, dtype=np.float64)
        pred = np.empty(n, dtype=np.int64)
        for sl in chunks(n):
            z = np.minimum(f64(features[sl]), c) @ w.T + b
            score[sl] = logsumexp(z, axis=1)
            pred[sl] = z.argmax(axis=1)
        return score_dict(score, prediction=pred)
