"""GradTrust (``docs/methods.md#gradtrust``): the closed form in the logits against the
demo's autograd procedure, hand values, the top-k option."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from rbx_gradients.gradtrust import GradTrust, gradtrust_autograd, gradtrust_closed_form, gradtrust_variances
from robustbench_x.testing import ArrayContext, make_outputs


class _TinyModel:
    """A linear head on a fixed feature map (float64), exposing the Model attributes the references use."""

    def __init__(self, d=5, c=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(3, d), nn.Tanh(), nn.Linear(d, c)).double()
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    @property
    def module(self):
        return self.net

    def forward(self, x):
        h = self.net[1](self.net[0](x))
        return self.net[2](h), h

    def linear_head(self):
        return self.net[2].weight.detach().numpy().copy(), self.net[2].bias.detach().numpy().copy()


def test_gradient_constant_is_two_over_c_times_centred_logit_times_features():
    # Demo: loss = MSELoss()(z, 1/C); G = ∂loss/∂W. Closed form G_c = (2/C)(z_c − 1/C) h.
    model = _TinyModel(d=5, c=4)
    x = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z, h = model.forward(x)
    loss = nn.MSELoss()(z, torch.full_like(z, 1 / 4))
    (g,) = torch.autograd.grad(loss, [model.net[2].weight])
    expected = (2 / 4) * (z[0] - 1 / 4)[:, None] * h[0][None, :]
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-14)


def test_closed_form_equals_demo_autograd_on_a_float64_linear_head():
    model = _TinyModel(d=6, c=5, seed=2)
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    z, h = model.forward(x)
    np.testing.assert_allclose(gradtrust_closed_form(z.detach().numpy()), gradtrust_autograd(model, x), rtol=1e-10)
    # The demo's per-class variances, v_c = Var_d(G_c²) (torch.var: unbiased).
    for i in range(3):
        zi = model.module(x[i : i + 1])
        (g,) = torch.autograd.grad(nn.MSELoss()(zi, torch.full_like(zi, 1 / 5)), [model.net[2].weight])
        v = torch.var(g**2, dim=1).numpy()
        np.testing.assert_allclose(gradtrust_variances(z.detach().numpy(), h.detach().numpy())[i], v, rtol=1e-10)


def test_closed_form_equals_demo_autograd_on_the_builtin_cnn(ctx):
    x, _ = next(iter(ctx.loader("ood/photos", batch_size=10)))
    logits = ctx.outputs("ood/photos").logits[:10]
    np.testing.assert_allclose(gradtrust_closed_form(logits), gradtrust_autograd(ctx.model, x), rtol=2e-4)


def test_hand_values_and_top_k():
    z = np.array([[2.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    # a = ((5/3)^4, (1/3)^4, (1/3)^4) = (625, 1, 1)/81: max/mean = 625 / (627/3).
    np.testing.assert_allclose(gradtrust_closed_form(z), [625 * 3 / 627, 1.0], rtol=1e-12)
    # top-2 logits of row 0: classes 0 and 1 (stable order among ties): 625 / (626/2).
    np.testing.assert_allclose(gradtrust_closed_form(z, top_k=2), [625 * 2 / 626, 1.0], rtol=1e-12)
    # A very negative logit also has a large (z_c − 1/C)^4: the demo formula is symmetric.
    assert gradtrust_closed_form(np.array([[0.0, 0.0, -5.0]]))[0] == pytest.approx(gradtrust_closed_form(np.array([[5.0 + 2 / 3, 0.0, 0.0]]))[0])
    with pytest.raises(ValueError):
        gradtrust_closed_form(z, top_k=1)
    with pytest.raises(ValueError):
        gradtrust_closed_form(np.zeros((2, 1)))


def test_method_outputs_on_an_array_context():
    logits = np.array([[3.0, 0.1, -0.2, 0.0], [0.5, 0.4, 0.3, 0.2]])
    ctx = ArrayContext({"id": make_outputs(logits, features=np.ones((2, 7)))})
    out = GradTrust().score(ctx, "id")
    assert set(out) == {"score", "confidence"}
    np.testing.assert_allclose(out["score"], gradtrust_closed_form(logits))
    np.testing.assert_array_equal(out["score"], out["confidence"])
    assert out["score"][0] > out["score"][1]  # a confident prediction has a larger ratio
    np.testing.assert_allclose(GradTrust(top_k=2).score(ctx, "id")["score"], gradtrust_closed_form(logits, top_k=2))
