"""GradNorm's closed form equals the autograd L1 norm of the last-layer weight
gradient of sum_c -log softmax(z/T)_c, per sample (batch size 1)."""

import numpy as np
import pytest
import torch

from rbx_posthoc.gradnorm import GradNorm, gradnorm_closed_form
from robustbench_x.testing.doubles import ArrayContext, make_outputs


def autograd_gradnorm(fc: torch.nn.Linear, h: np.ndarray, t: float) -> np.ndarray:
    scores = []
    for row in torch.as_tensor(h, dtype=torch.float64):
        fc.zero_grad()
        z = fc(row[None]) / t
        targets = torch.ones_like(z)  # all-ones target, not 1/C
        loss = torch.sum(-targets * torch.log_softmax(z, dim=-1))
        loss.backward()
        scores.append(fc.weight.grad.abs().sum().item())  # weight only, L1
    return np.array(scores)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_closed_form_matches_autograd(t):
    torch.manual_seed(0)
    fc = torch.nn.Linear(6, 5).double()
    h = np.abs(np.random.default_rng(0).normal(size=(7, 6)))
    with torch.no_grad():
        logits = fc(torch.as_tensor(h)).numpy()
    ctx = ArrayContext({"id": make_outputs(logits, h)})
    out = GradNorm(temperature=t).score(ctx, "id")
    expected = autograd_gradnorm(fc, h, t)
    # make_outputs stores float32; compare the closed form on those arrays too
    np.testing.assert_allclose(gradnorm_closed_form(logits, h, t), expected, rtol=1e-10)
    np.testing.assert_allclose(out["score"], expected, rtol=1e-5)
    np.testing.assert_allclose(out["confidence"], out["score"])


def test_closed_form_is_product_of_l1_norms():
    z = np.array([[2.0, 0.0, -1.0]])
    h = np.array([[1.0, -2.0]])
    p = np.exp(z) / np.exp(z).sum()
    expected = np.abs(3 * p - 1).sum() * 3.0
    np.testing.assert_allclose(gradnorm_closed_form(z, h), [expected])


def test_uniform_softmax_gives_zero():
    # C*p - 1 = 0 when p is uniform: the gradient vanishes (most OOD-like)
    assert gradnorm_closed_form(np.zeros((1, 4)), np.ones((1, 3)))[0] == pytest.approx(0.0)
