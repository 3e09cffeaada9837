"""AutoAttack 'standard' through rbx_attacks gives the reference package's own
result (pyautoattack's ``run_standard_evaluation``) on the same inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

pytest.importorskip("pyautoattack", reason="needs the optional extra: pip install 'robustbench_x[attacks]'")

from rbx_attacks.methods import AutoAttackMethod  # noqa: E402
from robustbench_x.api import torch_threads  # noqa: E402
from rbx_attacks.sequence import run_sequence  # noqa: E402
from rbx_attacks.threat import Budget  # noqa: E402


class Net(torch.nn.Module):
    """A small 10-class network (two layers, so no attack is exact by construction)."""

    def __init__(self, side: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W1 = torch.randn(24, 3 * side * side, generator=g) / (7 * side / 4)
        self.W2 = torch.randn(10, 24, generator=g)

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.W1.T) @ self.W2.T


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps, side", [("Linf", 0.03, 4), ("L2", 0.2, 8)])  # Square's L2 needs more than 4x4 pixels
def test_standard_equals_the_reference_package(norm, eps, side):
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    model = Net(side).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 3, side, side, generator=g)
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 10  # one misclassified clean sample
    with torch_threads(1):
        ours = run_sequence(model, x, y, AutoAttackMethod().attacks(model, Budget(norm, eps), 10, 0, "cpu", None), batch_size=250)
        x_ref, y_ref = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=0).run_standard_evaluation(x, y, batch_size=250)
    robust_ref = (y_ref == y).numpy()
    robust = ours.adversarial_prediction == y.numpy()
    assert 0 < robust.mean() < 11 / 12  # some samples broken, some robust: every attack of the sequence ran
    assert list(ours.robust_after) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert robust.mean() == robust_ref.mean()
    assert np.array_equal(robust, robust_ref)
    assert torch.equal(ours.adversarial_input, x_ref)


class _Recorder:
    def __init__(self):
        self.diagnostics = {}

    def record(self, key, value):
        self.diagnostics[key] = value


def test_the_reference_checks_flag_a_randomised_or_probability_output_model_and_square_gains():
    """run_standard_evaluation's checks (pyautoattack.checks), their messages in the diagnostics."""
    import torch

    from rbx_attacks.methods import AutoAttackMethod

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
    x, y = torch.rand(8, 3, 2, 2), torch.arange(8) % 10

    class Noisy(torch.nn.Module):
        def forward(self, x):
            return plain(x + 0.1 * torch.randn_like(x))

    method, ctx = AutoAttackMethod(), _Recorder()
    method.check(plain, x, y, ctx)
    assert ctx.diagnostics == {}
    method.check(Noisy(), x, y, ctx)
    assert "randomized defense" in ctx.diagnostics["autoattack checks"]
    ctx = _Recorder()
    method.check(torch.nn.Sequential(plain, torch.nn.Softmax(dim=1)), x, y, ctx)
    assert "probability distribution" in ctx.diagnostics["autoattack checks"] and "flags_doc" not in ctx.diagnostics["autoattack checks"]

    ctx = _Recorder()
    method.check_after({"apgd-ce": 0.5, "apgd-t": 0.45, "fab-t": 0.45, "square": 0.45}, 0.9, ctx)
    assert ctx.diagnostics == {}
    method.check_after({"apgd-ce": 0.5, "apgd-t": 0.45, "fab-t": 0.45, "square": 0.40}, 0.9, ctx)
    assert "Square Attack has decreased the robust accuracy of 5.00%" in ctx.diagnostics["autoattack square check"]
