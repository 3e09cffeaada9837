"""ViM: virtual-logit matching (``docs/methods.md#vim``).

Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit
Matching", CVPR 2022 (method section, "virtual-logit matching"): the OOD signal is the norm of the feature's
residual outside the principal subspace of the training features, turned into
a "virtual logit" whose scale is matched to the real logits, combined with the
energy.

As haoqiwang/vim ``benchmark.py`` (``dabf9e5b242d``, "ViM" block), with
``(W, b) = ctx.model.linear_head()`` (``z = h Wᵀ + b``):

1. origin ``u = −pinv(W) b`` — the point the logits map to zero
   (``W u + b = 0`` exactly when W has full row rank, i.e. C ≤ d; otherwise
   the least-squares solution);
2. ``Σ = EmpiricalCovariance(assume_centered=True)`` of the training features
   minus ``u`` — the second moment ``Σ_i (h_i − u)(h_i − u)ᵀ / N``, float64;
3. principal dimension ``D``: the parameter ``dim`` if set, otherwise the
   repository's rule on the feature dimension ``d``: ``D = 1000`` if
   ``d ≥ 2048``, ``512`` if ``d ≥ 768``, else ``d // 2`` (the last branch
   added in commit ``42adfaf``, "default dim to half of feature dim");
   ``NS`` = eigenvectors of ``Σ`` beyond the top-``D`` eigenvalues;
4. ``vlogit(h) = ‖(h − u) NS‖₂``;
5. ``α = mean_train(max_c z_c) / mean_train(vlogit)``;
6. **score = logsumexp(z) − α · vlogit(h)**.

Training features are the whole ``train`` split the harness caches (the
repository uses a random 200k-image subset of ImageNet train,
``datalists/imagenet2012_train_random_200k.txt``; a dataset plugin can
provide such a subset as its ``train`` split). ``z`` are the cached logits
(equal to ``h Wᵀ + b``; the repository recomputes them from ``h``).

**Degenerate training splits are refused** (``JobError`` naming the dataset,
the counts and the fix, never a score). The paper's residual is the part of
``h − u`` outside the principal subspace ``P`` spanned by the top-``D``
eigenvectors of the training features' second moment; ``α`` divides by its
mean over the training set. ``N`` training features span at most ``N``
directions around ``u``, so with ``N ≤ D`` they lie inside ``P`` and every
training residual is round-off (the old code then printed ``α`` ≈ 1e15 and
scores ≈ −1e13 as results). The fit therefore needs more than ``D`` training
images, and, whatever ``N``, training features whose residual energy (the
eigenvalues beyond the top ``D``) is more than round-off
(:data:`ZERO_RESIDUAL` of the total).

Difference in numerics only: the repository uses ``np.linalg.eig`` on the
symmetric ``Σ``; we use ``np.linalg.eigh`` (real, orthonormal eigenvectors,
same subspaces up to ties and round-off). Any change of ``dim`` refits the
statistics (``dim`` is part of the ``ctx.fitted`` key; cf. the OpenOOD
sweep bug fixed in PR #298).
"""

from __future__ import annotations

import numpy as np
from numpy.linalg import pinv

from rbx_posthoc._common import PosthocMethod, chunks, degenerate_fit, f64, logsumexp, scalar, score_dict, second_moment
from robustbench_x.api import Context

__all__ = ["ViM", "default_dim", "vim_origin", "ZERO_RESIDUAL"]

#: Residual eigenvalue mass at or below this fraction of the trace is round-off: the features span only P.
ZERO_RESIDUAL = 1e-10


def default_dim(d: int) -> int:
    """The ViM repository's principal dimension for feature dimension ``d``."""
    if d >= 2048:
        return 1000
    if d >= 768:
        return 512
    return d // 2


def vim_origin(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``u = −pinv(W) b``."""
    return -pinv(f64(w)) @ f64(b)


def _vlogit(features: np.ndarray, u: np.ndarray, ns: np.ndarray) -> np.ndarray:
    out = np.empty(len(features), dtype=np.float64)
    for sl in chunks(len(features)):
        out[sl] = np.linalg.norm((f64(features[sl]) - u) @ ns, axis=-1)
    return out


def _max_logit(logits: np.ndarray) -> np.ndarray:
    out = np.empty(len(logits), dtype=np.float64)
    for sl in chunks(len(logits)):
        out[sl] = f64(logits[sl]).max(axis=1)
    return out


class ViM(PosthocMethod):
    """Energy minus α times the residual ("virtual logit") norm."""

    name = "vim"

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and (int(dim) != dim or dim < 1):
            raise ValueError(f"vim: dim must be a positive integer or None, got {dim!r}")
        super().__init__(dim=dim)
        self.dim = None if dim is None else int(dim)

    def _resolve_dim(self, d: int) -> int:
        dim = default_dim(d) if self.dim is None else self.dim
        if not 0 < dim < d:
            raise ValueError(
                f"vim: principal dimension D={dim} must satisfy 0 < D < feature dimension d={d} "
                "(the residual subspace would be empty); set the 'dim' parameter"
            )
        return dim

    def _build(self, ctx: Context, dim: int) -> dict[str, np.ndarray]:
        w, b = ctx.model.linear_head()
        train = ctx.outputs("train")
        n = len(train.features)
        fix = f"use more than D={dim} train images (or a smaller 'dim')"
        if n <= dim:
            raise degenerate_fit(
                ctx, self.name,
                f"{n} train images span at most {n} directions, all inside ViM's principal subspace of D={dim} dimensions, so the residual is 0",
                fix,
            )
        u = vim_origin(w, b)
        covariance = second_moment(train.features, shift=u)
        eigvals, eigvecs = np.linalg.eigh(covariance)
        order = np.argsort(-eigvals, kind="stable")
        residual = float(np.clip(eigvals[order[dim:]], 0.0, None).sum())
        if residual <= ZERO_RESIDUAL * max(float(np.clip(eigvals, 0.0, None).sum()), np.finfo(float).tiny):
            raise degenerate_fit(
                ctx, self.name,
                f"the features of the {n} train images lie inside ViM's principal subspace of D={dim} dimensions: their residual is round-off "
                f"({residual:.3g} of a total {float(eigvals.sum()):.3g})",
                fix,
            )
        ns = np.ascontiguousarray(eigvecs[:, order[dim:]])
        vlogit = _vlogit(train.features, u, ns)
        alpha = _max_logit(train.logits).mean() / vlogit.mean()
        return {"u": u, "ns": ns, "alpha": np.array([alpha], dtype=np.float64)}

    def fit(self, ctx: Context) -> None:
        d = int(np.shape(ctx.outputs("train").features)[1])
        dim = self._resolve_dim(d)
        # "refuses" keys the state fitted since the degenerate-split check: an older cached one skipped it
        self.state = ctx.fitted(lambda: self._build(ctx, dim), method=self.name, dim=dim, refuses="zero-residual")
        alpha = scalar(self.state, "alpha")
        if not np.isfinite(alpha):
            raise ValueError(f"vim: alpha = {alpha!r} is not finite (training residual norms are all zero?)")
        ctx.log(f"vim D={dim} alpha {alpha:.4f}")

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        state = self._require_state(ctx)
        out = ctx.outputs(subset)
        u, ns, alpha = f64(state["u"]), f64(state["ns"]), scalar(state, "alpha")
        n = len(out.logits)
        score = np.empty(n, dtype=np.float64)
        for sl in chunks(n):
            energy = logsumexp(f64(out.logits[sl]), axis=1)
            score[sl] = energy - alpha * _vlogit(out.features[sl], u, ns)
        return score_dict(score)
