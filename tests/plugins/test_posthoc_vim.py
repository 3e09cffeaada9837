"""ViM against a direct numpy re-derivation of haoqiwang/vim benchmark.py."""

import numpy as np
import pytest
from scipy.special import logsumexp

from rbx_posthoc.vim import ViM, default_dim, vim_origin
from robustbench_x.api import Model
from robustbench_x.testing.doubles import ArrayContext, make_outputs


class LinearHead(Model):
    def __init__(self, w, b):
        self.w, self.b = w, b

    def linear_head(self):
        return self.w, self.b


def make_context(num_classes=4, d=8, n_train=300, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    # anisotropic features so the eigenvalues are well separated
    scales = np.linspace(3.0, 0.3, d)
    w = rng.normal(size=(num_classes, d)).astype(np.float32).astype(np.float64)
    b = rng.normal(size=num_classes).astype(np.float32).astype(np.float64)

    def split(n, prefix, shift=0.0):
        h = (rng.normal(size=(n, d)) * scales + shift).astype(np.float32).astype(np.float64)
        return make_outputs(h @ w.T + b, h, prefix=prefix)

    outputs = {"train": split(n_train, "t"), "id": split(n_test, "i"), "ood": split(n_test, "o", shift=2.0)}
    return ArrayContext(outputs, model=LinearHead(w, b)), w, b


def reference_vim(ctx, w, b, dim, subset):
    """Direct re-derivation: lstsq origin, eig of the second moment, residual norm."""
    train = ctx.outputs("train")
    h_train = train.features.astype(np.float64)
    u = np.linalg.lstsq(w, -b, rcond=None)[0]  # minimum-norm least squares == -pinv(W) b
    centred = h_train - u
    second_moment = centred.T @ centred / len(centred)
    eigvals, eigvecs = np.linalg.eig(second_moment)
    ns = eigvecs.T[np.argsort(-eigvals)[dim:]].T.real
    vlogit_train = np.linalg.norm(centred @ ns, axis=-1)
    alpha = (h_train @ w.T + b).max(axis=-1).mean() / vlogit_train.mean()
    h = ctx.outputs(subset).features.astype(np.float64)
    z = h @ w.T + b
    return logsumexp(z, axis=-1) - alpha * np.linalg.norm((h - u) @ ns, axis=-1)


@pytest.mark.parametrize("subset", ["id", "ood"])
def test_matches_direct_derivation_d8_dim4(subset):
    ctx, w, b = make_context()
    method = ViM()
    method.fit(ctx)
    assert method.state["ns"].shape == (8, 4)  # default D = d // 2 = 4 for d = 8
    out = method.score(ctx, subset)
    np.testing.assert_allclose(out["score"], reference_vim(ctx, w, b, 4, subset), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["confidence"], out["score"])


def test_explicit_dim():
    ctx, w, b = make_context()
    method = ViM(dim=2)
    method.fit(ctx)
    assert method.state["ns"].shape == (8, 6)
    np.testing.assert_allclose(method.score(ctx, "id")["score"], reference_vim(ctx, w, b, 2, "id"), rtol=1e-5, atol=1e-6)


def test_origin_is_a_zero_of_the_logits_when_w_has_full_row_rank():
    # C = 4 <= d = 8: W has full row rank and W u + b = 0 exactly.
    _, w, b = make_context(num_classes=4, d=8)
    u = vim_origin(w, b)
    np.testing.assert_allclose(w @ u + b, 0.0, atol=1e-10)


def test_origin_is_the_least_squares_solution_when_w_has_full_column_rank():
    # C = 10 > d = 8: W has full column rank; W u + b = 0 has no exact solution in
    # general, and u = -pinv(W) b is the unique least-squares solution (normal equations).
    _, w, b = make_context(num_classes=10, d=8)
    assert np.linalg.matrix_rank(w) == 8
    u = vim_origin(w, b)
    np.testing.assert_allclose(w.T @ (w @ u + b), 0.0, atol=1e-10)
    np.testing.assert_allclose(u, np.linalg.solve(w.T @ w, -w.T @ b), rtol=1e-8)


def test_default_dim_rule():
    assert [default_dim(d) for d in (4096, 2048, 1024, 768, 512, 8)] == [1000, 1000, 512, 512, 256, 4]


def test_dim_must_leave_a_residual_subspace():
    ctx, _, _ = make_context()
    with pytest.raises(ValueError, match="D=8"):
        ViM(dim=8).fit(ctx)


def test_ood_shift_scores_lower():
    ctx, _, _ = make_context()
    method = ViM()
    method.fit(ctx)
    assert method.score(ctx, "id")["score"].mean() > method.score(ctx, "ood")["score"].mean()
