"""Purview (``docs/methods.md#purview-initial``): per-sample functional gradients against a
zeroed-gradient backward loop, the demo's split of the parameter tensors, and
the method on the embedded default."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rbx_gradients.purview import Purview, per_parameter_sq_grad_norms, purview_scores, split_indices


def _loop_reference(module, x):
    """Batch-size-1 backward passes with gradients zeroed each time (the demo minus its accumulation bug)."""
    was = module.training
    module.eval()
    rows = []
    for i in range(len(x)):
        module.zero_grad(set_to_none=True)
        logits = module(x[i : i + 1])
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none").mean()
        loss.backward()
        rows.append([(p.grad.double() ** 2).sum().item() for _, p in module.named_parameters()])
    module.zero_grad(set_to_none=True)
    module.train(was)
    return np.asarray(rows)


def test_functional_per_sample_norms_equal_the_backward_loop(ctx):
    module = ctx.model.module
    x, _ = next(iter(ctx.loader("ood/textures", batch_size=6)))
    norms, names = per_parameter_sq_grad_norms(module, x)
    assert names == [n for n, _ in module.named_parameters()]
    assert norms.shape == (6, len(names))
    np.testing.assert_allclose(norms, _loop_reference(module, x), rtol=1e-4, atol=1e-12)
    assert all(p.grad is None for p in module.parameters())  # .grad never touched
    # Calling again gives the same values (no accumulation across calls).
    np.testing.assert_array_equal(per_parameter_sq_grad_norms(module, x)[0], norms)


def test_eval_mode_is_used_and_restored(ctx):
    module = ctx.model.module
    x, _ = next(iter(ctx.loader("id", batch_size=3)))
    module.train()
    try:
        in_train_mode, _ = per_parameter_sq_grad_norms(module, x)
        assert all(m.training for m in module.modules())
    finally:
        module.eval()
    np.testing.assert_array_equal(in_train_mode, per_parameter_sq_grad_norms(module, x)[0])


@pytest.mark.parametrize("p, first, second", [(14, (0, 6), (7, 14)), (13, (0, 6), (6, 13)), (3, (0, 1), (1, 3)), (4, (0, 1), (2, 4))])
def test_demo_split(p, first, second):
    # demo: j = P − 1; initial = g[:floor(j/2)], final = g[ceil(j/2):]
    a, b = split_indices(p, "demo")
    assert (a.start, a.stop) == first and (b.start, b.stop) == second
    j = p - 1
    assert a.stop == math.floor(j / 2) and b.start == math.ceil(j / 2)


def test_scores_on_hand_values():
    g = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 1.0, 1.0, 1.0]])  # P = 5, j = 4: [:2] and [2:]
    initial, final = purview_scores(g, "demo")
    np.testing.assert_allclose(initial, [-1.5, 0.0])
    np.testing.assert_allclose(final, [-4.0, -1.0])
    initial_h, final_h = purview_scores(g, "half")  # [:2] and [2:] too for P = 5
    np.testing.assert_allclose(initial_h, initial)
    with pytest.raises(ValueError):
        purview_scores(np.ones((1, 2)), "demo")  # P = 2: the demo's initial half is empty
    with pytest.raises(ValueError):
        split_indices(4, "thirds")


def test_method_on_the_embedded_default(ctx):
    module = ctx.model.module
    initial = Purview(part="initial").score(ctx, "ood/photos")
    final = Purview(part="final", batch_size=7).score(ctx, "ood/photos")
    n = len(ctx.outputs("ood/photos"))
    for out in (initial, final):
        assert set(out) == {"score", "confidence"} and out["score"].shape == (n,)
        assert np.isfinite(out["score"]).all() and (out["score"] <= 0).all()
        np.testing.assert_array_equal(out["score"], out["confidence"])
    x, _ = next(iter(ctx.loader("ood/photos", batch_size=5)))
    ref = _loop_reference(module, x)
    p = ref.shape[1]  # 14 tensors in the built-in CNN: initial = [:6], final = [7:]
    assert p == 14
    np.testing.assert_allclose(initial["score"][:5], -ref[:, :6].mean(1), rtol=1e-4)
    np.testing.assert_allclose(final["score"][:5], -ref[:, 7:].mean(1), rtol=1e-4)
