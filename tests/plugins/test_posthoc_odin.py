"""ODIN on a tiny linear torch model: epsilon = 0 is MSP of z/T; epsilon > 0
moves the input by exactly -eps * sign(grad) / std."""

import numpy as np
import pytest
import torch

from rbx_posthoc.odin import ODIN, odin_perturb
from robustbench_x.api import Model
from robustbench_x.testing.doubles import ArrayContext, make_outputs

STD = (0.5, 0.25, 2.0)


class TinyModel(Model):
    def __init__(self, input_std=STD):
        torch.manual_seed(0)
        self._module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).double()
        self.input_std = input_std

    @property
    def module(self):
        return self._module


def make_context(input_std=STD, n=9):
    model = TinyModel(input_std)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(n, 3, 2, 2)))
    y = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        logits = model.module(x).numpy()
    ctx = ArrayContext({"id": make_outputs(logits)}, model=model, inputs={"id": (x, y)})
    return ctx, model, x


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hand_perturbed(model, x, t, eps, std):
    """x - eps * sign(dCE(z/T, yhat)/dx) / std, from the linear map by hand."""
    lin = model.module[1]
    a, c = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    flat = x.numpy().reshape(len(x), -1)
    z = flat @ a.T + c
    yhat = z.argmax(axis=1)
    q = softmax(z / t)
    q[np.arange(len(z)), yhat] -= 1.0
    grad = (q @ a / t).reshape(x.shape)  # d CE / d x for a linear model
    sign = np.where(grad >= 0, 1.0, -1.0)  # ODIN: torch.ge(grad, 0) -> +-1
    if std is not None:
        sign = sign / np.asarray(std).reshape(1, -1, 1, 1)
    return x.numpy() - eps * sign, yhat, a, c


def test_epsilon_zero_is_msp_of_z_over_t():
    ctx, model, _ = make_context()
    out = ODIN(temperature=1000.0, epsilon=0.0).score(ctx, "id")
    z = ctx.outputs("id").logits.astype(np.float64)
    np.testing.assert_allclose(out["score"] + 1, softmax(z / 1000.0).max(axis=1), rtol=1e-6)  # emitted minus 1
    np.testing.assert_array_equal(out["prediction"], z.argmax(axis=1))


@pytest.mark.parametrize("std", [STD, None])
def test_perturbed_input_matches_hand_computation(std):
    ctx, model, x = make_context(input_std=std)
    t, eps = 1000.0, 0.0014
    expected_x, yhat, a, c = hand_perturbed(model, x, t, eps, std)
    x_tilde, pred = odin_perturb(model.module.eval(), x, temperature=t, epsilon=eps, input_std=std)
    np.testing.assert_allclose(x_tilde.numpy(), expected_x, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pred.numpy(), yhat)
    # and the score is the tempered MSP of the perturbed input
    out = ODIN(temperature=t, epsilon=eps).score(ctx, "id")
    z_tilde = expected_x.reshape(len(x), -1) @ a.T + c
    np.testing.assert_allclose(out["score"] + 1, softmax(z_tilde / t).max(axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["confidence"], out["score"])


def test_perturbation_raises_the_tempered_softmax_score():
    ctx, _, _ = make_context()
    base = ODIN(epsilon=0.0).score(ctx, "id")["score"]
    moved = ODIN(epsilon=0.0014).score(ctx, "id")["score"]
    assert np.all(moved > base)


def test_batching_does_not_change_scores_and_module_state_is_restored():
    ctx, model, _ = make_context()
    model.module.train()
    a = ODIN(batch_size=2).score(ctx, "id")["score"]
    b = ODIN(batch_size=128).score(ctx, "id")["score"]
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert model.module.training
    assert all(p.grad is None for p in model.module.parameters())


def test_defaults():
    method = ODIN()
    assert (method.temperature, method.epsilon) == (1000.0, 0.0014)
