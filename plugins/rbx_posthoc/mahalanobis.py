"""Mahalanobis distance to the closest class mean — the **vanilla** variant
(``docs/methods.md#mahalanobis``).

Paper: Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, §2.1
(class-conditional Gaussians with a tied covariance, confidence score
``M(x) = max_c −(f(x) − μ_c)ᵀ Σ⁻¹ (f(x) − μ_c)``).

**This is not the paper's full detector.** The paper's reported numbers use
input preprocessing (a signed-gradient step of size ε) and a logistic
regression over the scores of five layers ("feature ensemble"), with ε and the
regression trained on validation samples that include OOD images from the
test OOD set (pokaxpoka/deep_Mahalanobis_detector). We implement the variant
modern benchmarks report, as haoqiwang/vim ``benchmark.py`` (``dabf9e5b242d``,
"Mahalanobis" block) computes it:

* features: the penultimate features ``h`` only (the input of the last
  linear layer); no input preprocessing, no layer ensemble, no OOD data;
* class means ``μ_c`` from the labelled training split
  (``ctx.outputs("train")``; rows with label −1 are ignored; classes are those
  present in the training labels);
* tied covariance ``Σ`` = ``EmpiricalCovariance(assume_centered=True)`` on the
  class-centred training features ``h_i − μ_{y_i}``, i.e. the maximum-
  likelihood second moment ``Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ / N``,
  accumulated in float64;
* precision ``P = pinv(Σ)`` (symmetric pseudo-inverse, ``scipy.linalg.pinvh``).
  This is exactly what the reference uses: sklearn's ``EmpiricalCovariance``
  stores ``precision_ = pinvh(covariance_)``. The pseudo-inverse matters in
  practice: penultimate features are often rank-deficient (dead ReLU units,
  feature dimension larger than the number of training samples), where
  ``inv`` fails or returns a precision dominated by round-off;
* score ``= −min_c (h − μ_c)ᵀ P (h − μ_c)`` (no ½, as in the reference; the
  ranking is the same either way). Higher = more in-distribution.

**Degenerate training splits are refused** (``JobError`` naming the dataset
and the fix, never a score): the tied covariance is the *within-class*
scatter, which has rank at most ``N − C`` (N labelled training images, C
classes; §2.1 estimates it from each class's samples around its own mean).
With one image per class (``N = C``), or identical images within every
class, it is exactly 0, its pseudo-inverse is 0 and every score would be
−0.0 (an AUROC of 0.5 reported as a result). A fit needs at least one class
with two distinct training images; the usual fix is more training images
per class. A rank-deficient but non-zero ``Σ`` is the normal case the
pseudo-inverse exists for, and is kept.

No hyperparameters. The score is computed with the expansion
``hᵀPh − 2hᵀPμ_c + μ_cᵀPμ_c`` (O(N·d² + N·d·C) instead of O(N·C·d²)) in
float64, clipped at 0 (the exact value is ≥ 0 since P is PSD).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import pinvh
from scipy.sparse import csr_matrix

from rbx_posthoc._common import PosthocMethod, chunks, degenerate_fit, f64, labelled, score_dict, second_moment
from robustbench_x.api import Context

__all__ = ["Mahalanobis", "class_means_and_precision", "scatter_problem"]

#: Within-class scatter at or below this fraction of the features' mean squared norm is round-off, not spread.
ZERO_SCATTER = 1e-12


def class_means_and_precision(features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Class means, tied MLE covariance of class-centred features and its pseudo-inverse."""
    classes, index = np.unique(np.asarray(labels, dtype=np.int64), return_inverse=True)
    d = features.shape[1]
    sums = np.zeros((len(classes), d), dtype=np.float64)
    counts = np.zeros(len(classes), dtype=np.float64)
    for sl in chunks(len(features)):
        rows = index[sl]
        onehot = csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(len(classes), len(rows)))
        sums += onehot @ f64(features[sl])
        counts += np.bincount(rows, minlength=len(classes))
    means = sums / counts[:, None]
    covariance = second_moment(features, means=means, index=index)
    precision = pinvh(covariance)
    return {"classes": classes, "means": means, "covariance": covariance, "precision": precision}


def scatter_problem(state: dict[str, np.ndarray], n: int, mean_square: float) -> str | None:
    """Why the tied covariance of :func:`class_means_and_precision` cannot be used, or None."""
    c = len(state["classes"])
    counts = f"{n} labelled train images in {c} classes"
    if n <= c:
        return f"{counts}: every class has one image, so there is no within-class scatter to estimate the shared covariance from (rank ≤ N − C = 0)"
    if np.trace(state["covariance"]) <= ZERO_SCATTER * max(mean_square, np.finfo(float).tiny):
        return f"{counts}, but the within-class scatter is 0 (the images of each class give identical features)"
    return None


def min_mahalanobis(h: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``min_c (h − μ_c)ᵀ P (h − μ_c)`` per row of ``h``."""
    h = f64(h)
    hp = h @ precision
    quad = np.einsum("ij,ij->i", hp, h)[:, None] - 2.0 * hp @ means.T
    quad += np.einsum("cj,jk,ck->c", means, precision, means)[None, :]
    return np.maximum(quad, 0.0).min(axis=1)


class Mahalanobis(PosthocMethod):
    """Vanilla Mahalanobis score (penultimate layer, tied covariance, pinv)."""

    name = "mahalanobis"

    def __init__(self) -> None:
        super().__init__()

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        train = ctx.outputs("train")
        index, labels = labelled(train, "train")
        features = train.features if len(index) == len(train.labels) else np.asarray(train.features)[index]
        state = class_means_and_precision(features, labels)
        mean_square = sum(float(np.einsum("ij,ij->", f64(features[sl]), f64(features[sl]))) for sl in chunks(len(features))) / len(features)
        problem = scatter_problem(state, len(labels), mean_square)
        if problem:
            raise degenerate_fit(ctx, self.name, problem, "give every class at least 2 distinct train images (more make the covariance meaningful)")
        del state["covariance"]
        return state

    def fit(self, ctx: Context) -> None:
        # "refuses" keys the state fitted since the degenerate-split check: an older cached one skipped it
        self._fitted(ctx, variant="vanilla", refuses="zero-scatter")

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        state = self._require_state(ctx)
        means = f64(state["means"])
        precision = f64(state["precision"])
        features = ctx.outputs(subset).features
        n = len(features)
        dist = np.empty(n, dtype=np.float64)
        for sl in chunks(n, 4096):
            dist[sl] = min_mahalanobis(features[sl], means, precision)
        return score_dict(-dist)
