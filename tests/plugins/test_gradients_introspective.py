"""Introspective learning (``docs/methods.md#introspective``): closed-form introspective
features against autograd, hand values, and the two-stage classifier H on the
embedded default."""

from __future__ import annotations


import numpy as np
import pytest

from rbx_gradients.introspective import Introspective, introspective_features, introspective_features_autograd
from robustbench_x.testing import ArrayContext, ModelContext, make_outputs


def test_hand_values():
    # p = softmax([0, log 3]) = (1/4, 3/4), h = (1, 2), C = d = 2.
    r = introspective_features(np.array([[0.0, np.log(3.0)]]), np.array([[1.0, 2.0]]))
    assert r.shape == (1, 2, 4)
    # r_0 = (p − e_0) hᵀ = [[−3/4, −3/2], [3/4, 3/2]]; r_1 = (p − e_1) hᵀ = [[1/4, 1/2], [−1/4, −1/2]] (row-major like W).
    np.testing.assert_allclose(r[0, 0], [-0.75, -1.5, 0.75, 1.5], rtol=1e-12)
    np.testing.assert_allclose(r[0, 1], [0.25, 0.5, -0.25, -0.5], rtol=1e-12)


def test_sum_over_classes_is_the_all_ones_label_gradient():
    rng = np.random.default_rng(0)
    z, h = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    r = introspective_features(z, h)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(r.sum(axis=1), ((4 * p - 1)[:, :, None] * h[:, None, :]).reshape(3, -1), rtol=1e-10, atol=1e-12)


def test_closed_form_equals_autograd_on_the_builtin_cnn(ctx):
    x, _ = next(iter(ctx.loader("ood/digits-6to9", batch_size=4)))
    logits, feats = ctx.model.forward(x)
    closed = introspective_features(logits.numpy(), feats.numpy())
    auto = introspective_features_autograd(ctx.model, x)
    c, d = ctx.num_classes, feats.shape[1]
    assert closed.shape == auto.shape == (4, c, c * d)
    np.testing.assert_allclose(closed, auto, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def fitted(ctx):
    method = Introspective(epochs=10)
    method.fit(ctx)
    return method, {s: method.score(ctx, s) for s in ("id", "ood/photos")}


def test_outputs_are_those_of_h(ctx, fitted):
    method, scores = fitted
    for subset, out in scores.items():
        n = len(ctx.outputs(subset))
        assert set(out) == {"score", "confidence", "probs", "prediction"}
        assert out["probs"].shape == (n, ctx.num_classes)
        np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-9)
        np.testing.assert_array_equal(out["prediction"], out["probs"].argmax(1))
        np.testing.assert_allclose(out["confidence"] + 1, out["probs"].max(1), rtol=1e-9)  # emitted minus 1
        np.testing.assert_array_equal(out["score"], out["confidence"])
    labels = ctx.outputs("id").labels
    assert (scores["id"]["prediction"] == labels).mean() > 0.9  # H classifies as well as f on the digits
    assert scores["id"]["score"].mean() > scores["ood/photos"]["score"].mean()


def test_state_and_determinism(ctx, fitted):
    method, scores = fitted
    c, d = ctx.num_classes, ctx.outputs("train").features.shape[1]
    assert method.state["norm/mean"].shape == (c * c * d,)
    assert method.state["net/0.weight"].shape == (256, c * c * d)  # 3 Linear layers: 0, 2, 4
    assert {k for k in method.state if k.endswith(".weight")} == {"net/0.weight", "net/2.weight", "net/4.weight"}
    again = Introspective(epochs=10)
    again.fit(ModelContext(ctx.model, ctx.dataset, seed=0))
    np.testing.assert_array_equal(again.score(ctx, "id")["probs"], scores["id"]["probs"])


def test_size_guard_and_validation():
    logits = np.zeros((4, 3))
    ctx = ArrayContext({"train": make_outputs(logits, features=np.ones((4, 10)), labels=[0, 1, 2, 0])})
    with pytest.raises(ValueError, match="max_features"):
        Introspective(max_features=89).fit(ctx)  # 3²·10 = 90 features
    with pytest.raises(ValueError):
        Introspective(hidden=(16,))
