"""TrustScore (``docs/methods.md#trust_score``).

Jiang, Kim, Guan & Gupta, "To Trust Or Not To Trust A Classifier",
NeurIPS 2018 (Algorithm 1, the α-high-density set; Algorithm 2, the trust
score): the ratio between the distance from a test point to the nearest
class *other than* the predicted one and its distance to the predicted class.

As google/TrustScore ``trustscore/trustscore.py`` and its copy in valeoai/ConfidNet
``confidnet/utils/trust_scores.py`` (the version ConfidNet compares with, on
penultimate features):

* fit: one ``sklearn.neighbors.KDTree`` per class on that class's training
  features (``ctx.outputs("train").features``, the penultimate layer);
* ``d_c(x)`` = Euclidean distance from ``x`` to the **2nd** nearest neighbour in
  class ``c``'s tree (``tree.query(x, k=2)[0][:, -1]``; the repository takes the
  2nd so that a training point does not match itself, and keeps it for test
  points);
* ``ŷ = argmax`` of the model's logits (ConfidNet ``test.py``: ``output.max(dim=1)``);
* ``score = min_{c ≠ ŷ} d_c(x) / (d_ŷ(x) + min_dist)``; higher = more trustworthy.
  (The repository writes the numerator with a sort and a tie rule; it equals
  the minimum over the other classes.)

Defaults (``TrustScore.__init__`` in both repositories): ``k = 10``,
``alpha = 0``, ``filtering = "none"``, ``min_dist = 1e-12``. ``k`` and
``alpha`` only matter for filtering:

* ``"none"``: every training point is kept;
* ``"density"`` (the paper's α-high-density set, Algorithm 1): per class, the
  radius of each point's ``k``-NN ball in its own class (``query(X, k)``,
  the point itself counting as its 1st neighbour, as in the repository) is
  computed and the points whose radius exceeds the ``(1 − alpha)·100``-th
  percentile (numpy's linear interpolation) are removed, i.e. the
  ``alpha`` fraction of lowest-density points. ``alpha = 0`` keeps everything.

Deviations: the repositories' ``"uncertainty"`` filtering (k-NN label
disagreement) is not offered: its code takes a percentile over the whole
(n, C) ``predict_proba`` matrix and indexes rows with ``np.where`` on it, so
it does not do what its docstring says, and the paper does not use it.
ConfidNet extracts the train features through a loader that applies the
training augmentations; here they are the harness's cached, un-augmented
features. A class with fewer than 2 training points (after filtering) is an
error (the repository would crash in the KDTree query). Deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import KDTree

from robustbench_x.api import Context, Method

__all__ = ["TrustScore", "density_filter", "trust_score"]

FILTERINGS = ("none", "density")


def density_filter(x: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """The points of one class whose k-NN radius is at most the ``(1 − alpha)`` quantile of the radii."""
    if len(x) < k:
        raise ValueError(f"trust_score: density filtering needs at least k={k} points per class, got {len(x)}")
    radii = KDTree(x).query(x, k=k)[0][:, -1]
    eps = np.percentile(radii, (1.0 - alpha) * 100.0)
    return x[radii <= eps]


def class_distances(trees: list[KDTree], x: np.ndarray) -> np.ndarray:
    """``(N, C)``: distance of each row of ``x`` to its 2nd nearest neighbour in each class."""
    return np.stack([tree.query(x, k=2)[0][:, -1] for tree in trees], axis=1)


def trust_score(distances: np.ndarray, predicted: np.ndarray, min_dist: float = 1e-12) -> np.ndarray:
    """``min_{c≠ŷ} d_c / (d_ŷ + min_dist)`` from the ``(N, C)`` class distances."""
    d = np.asarray(distances, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    rows = np.arange(len(d))
    d_pred = d[rows, pred]
    others = d.copy()
    others[rows, pred] = np.inf
    return others.min(axis=1) / (d_pred + min_dist)


class TrustScore(Method):
    """Ratio of the distances to the closest other class and to the predicted class."""

    name = "trust_score"

    def __init__(self, k: int = 10, alpha: float = 0.0, filtering: str = "none", min_dist: float = 1e-12, **params: Any) -> None:
        if filtering not in FILTERINGS:
            raise ValueError(f"trust_score: filtering={filtering!r} is not one of {FILTERINGS}")
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"trust_score: alpha must be in [0, 1), got {alpha}")
        super().__init__(k=k, alpha=alpha, filtering=filtering, min_dist=min_dist, **params)
        self.k, self.alpha, self.filtering, self.min_dist = int(k), float(alpha), filtering, float(min_dist)
        self.trees: list[KDTree] | None = None

    def fit(self, ctx: Context) -> None:
        train = ctx.outputs("train")
        feats = np.asarray(train.features, dtype=np.float64)
        labels = np.asarray(train.labels, dtype=np.int64)
        n_classes = int(ctx.num_classes) or int(labels.max()) + 1
        trees = []
        for c in range(n_classes):
            xc = feats[labels == c]
            if self.filtering == "density":
                xc = density_filter(xc, self.k, self.alpha)
            if len(xc) < 2:
                raise ValueError(
                    f"trust_score: class {c} has {len(xc)} training point(s) after filtering; "
                    "the 2nd-nearest-neighbour distance needs at least 2"
                )
            trees.append(KDTree(xc))
        self.trees = trees

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        if self.trees is None:
            self.fit(ctx)
        assert self.trees is not None
        out = ctx.outputs(subset)
        pred = np.asarray(out.logits).argmax(axis=1).astype(np.int64)
        ts = trust_score(class_distances(self.trees, np.asarray(out.features, dtype=np.float64)), pred, self.min_dist)
        return {"score": ts, "confidence": ts.copy(), "prediction": pred}
