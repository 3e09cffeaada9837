"""Deep nearest neighbours (``docs/methods.md#knn``).

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest
Neighbors", ICML 2022, §3 (Algorithm 1): L2-normalise the penultimate
features, and score a test sample by its distance to the k-th nearest
normalised training feature; large distance = OOD.

As in deeplearning-wisc/knn-ood (``2afb2bbed60a``) ``run_cifar.py``:

* normalisation ``z = h / (‖h‖₂ + 1e-10)`` on train and test features alike
  (``run_imagenet.py`` writes ``h/‖h‖ + 1e-10``, adding the epsilon after the
  division; harmless, we use the ``run_cifar.py`` form);
* the bank is **all** labelled-or-not rows of ``ctx.outputs("train")``,
  extracted with the model's eval transform (the harness's feature cache);
* ``faiss.IndexFlatL2`` returns **squared** L2 distances and the score is
  ``−D[:, k−1]``: minus the *squared* distance to the k-th neighbour. We keep
  that convention (the ranking equals −distance; raw values differ from
  sklearn's plain distances). The search is exact brute force with
  ``sklearn.neighbors.NearestNeighbors(algorithm="brute",
  metric="sqeuclidean")``.

Default ``k = 50``: the CIFAR-10 value (``run_cifar.py`` ``for K in [50]``;
OpenOOD ``configs/postprocessors/knn.yml``). ImageNet uses ``k = 1000`` with
the full training set (``run_imagenet.py`` ``for K in [1000]``; the paper
scales k with the sampled fraction α of the training set, k = 10 at α = 1 %);
CIFAR-100 setups use k = 200 (MarcLafon/heatood ``HP_SCORERS``). Another k is
another method: a variant registered as a plugin (``docs/plugins.md``, "A
variant with other parameters"). ``k > n_train`` is an error, found at plan
time from the configured train split's size (:func:`check`).

The bank is stored float32, like faiss (which only indexes float32);
distances are computed by sklearn in float64 chunks. A scored row is never
excluded from the bank: scoring the train split itself counts each sample as
its own nearest neighbour, as the reference would.
"""

from __future__ import annotations

import numpy as np

from rbx_posthoc._common import PosthocMethod, chunks, score_dict
from robustbench_x.api import Context

__all__ = ["KNN", "l2_normalise", "check", "too_few"]

EPS = 1e-10


def l2_normalise(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """``x / (‖x‖₂ + 1e-10)`` row-wise (computed in float64, returned as ``dtype``)."""
    out = np.empty(x.shape, dtype=dtype)
    for sl in chunks(len(x)):
        xb = np.asarray(x[sl], dtype=np.float64)
        out[sl] = xb / (np.linalg.norm(xb, ord=2, axis=-1, keepdims=True) + EPS)
    return out


def too_few(k: int, n_train: int) -> str:
    """Why k neighbours cannot be taken from ``n_train`` training images, and the fix a user can follow."""
    return (
        f"k={k} nearest neighbours need at least {k} training images, the train split has {n_train}; "
        f"to run it, give the dataset a train split of at least {k} images, or register a variant with a smaller k "
        f"(at most {n_train}) as a plugin (docs/plugins.md#a-variant-with-other-parameters)"
    )


def check(params: dict, dataset) -> str | None:
    """``MethodSpec.check``: the train split (listed, not decoded) holds at least k images."""
    if "train" not in dataset.subsets():
        return None
    n_train = len(dataset.samples("train"))
    return too_few(int(params["k"]), n_train) if int(params["k"]) > n_train else None


class KNN(PosthocMethod):
    """−(squared L2 distance to the k-th nearest normalised training feature)."""

    name = "knn"

    def __init__(self, k: int = 50) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"knn: k must be a positive integer, got {k!r}")
        super().__init__(k=int(k))
        self.k = int(k)
        self._index = None

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        return {"bank": l2_normalise(ctx.outputs("train").features)}

    def fit(self, ctx: Context) -> None:
        # The bank does not depend on k: every k shares one cached bank.
        state = self._fitted(ctx, normalisation="l2+1e-10")
        n_train = len(state["bank"])
        if self.k > n_train:
            raise ValueError(f"knn: {too_few(self.k, n_train)}")
        from sklearn.neighbors import NearestNeighbors

        self._index = NearestNeighbors(n_neighbors=self.k, algorithm="brute", metric="sqeuclidean").fit(
            state["bank"]
        )

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        if self._index is None:
            self.fit(ctx)
        query = l2_normalise(ctx.outputs(subset).features)
        if len(query) == 0:
            return score_dict(np.zeros(0))
        dist, _ = self._index.kneighbors(query, n_neighbors=self.k, return_distance=True)
        return score_dict(-dist[:, self.k - 1].astype(np.float64))
