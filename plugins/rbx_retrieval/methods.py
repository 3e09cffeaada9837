"""Retrieval methods: turn a model's cached outputs into one embedding per sample.

A retrieval method outputs ``{"embedding": (N, D) float array}`` from
``score(ctx, subset)``; :mod:`rbx_retrieval.evaluate` ranks the gallery
by the dot product of these embeddings (cosine similarity once they are
L2-normalised, which both methods do by default).

* ``embedding`` (:class:`FeatureEmbedding`): the model's penultimate features
  (the input of its last linear layer), L2-normalised (HAPPIER / SupRank
  evaluate normalised embeddings with a dot product).
* ``logit-embedding`` (:class:`LogitEmbedding`): the logits (or, with
  ``softmax=True``, the softmax probabilities) as the embedding, L2-normalised:
  a baseline that only sees what the classifier head sees.

Both read the feature cache (no forward pass of their own) and fit nothing.
A sample whose vector has zero norm keeps a zero embedding (similarity 0 to
everything; ties are then broken by gallery index).
"""

from __future__ import annotations

import numpy as np

from robustbench_x.api import Context, Method

__all__ = ["FeatureEmbedding", "LogitEmbedding", "l2_normalize"]

EPS = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (rows of norm < 1e-12 are left at zero)."""
    x = np.asarray(x)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > EPS)
    x[(norms <= EPS)[:, 0]] = 0.0
    return x


class FeatureEmbedding(Method):
    """Penultimate features as the embedding (``normalize``: L2 per row, default True)."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)
        self.normalize = bool(normalize)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        features = np.asarray(ctx.outputs(subset).features)
        features = features.astype(np.float64 if features.dtype == np.float64 else np.float32)
        return {"embedding": l2_normalize(features) if self.normalize else features}


class LogitEmbedding(Method):
    """Logits (``softmax=True``: softmax probabilities) as the embedding, L2-normalised by default."""

    def __init__(self, softmax: bool = False, normalize: bool = True) -> None:
        super().__init__(softmax=softmax, normalize=normalize)
        self.softmax, self.normalize = bool(softmax), bool(normalize)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        z = np.asarray(ctx.outputs(subset).logits, dtype=np.float64)
        if self.softmax:
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        z = z.astype(np.float32)
        return {"embedding": l2_normalize(z) if self.normalize else z}
