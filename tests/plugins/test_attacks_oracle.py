"""Attack methods against exact oracles on a linear classifier, and the
properties every stored result must have: the ε-ball, the box, robust ≤ clean,
monotone per-attack flags, determinism, and the class-count pitfalls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rbx_attacks.methods import APGDMethod, AutoAttackMethod, PGDMethod, Unsupported
from rbx_attacks.sequence import run_sequence
from rbx_attacks.threat import Budget


class Linear(torch.nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b

    def forward(self, x):
        return x.flatten(1) @ self.W.T + self.b


class Ctx:
    def __init__(self):
        self.recorded = {}

    def record(self, key, value):
        self.recorded[key] = value


def exact_robust(W, b, x, y, norm, eps):
    """Closed form for a linear classifier away from the box: robust iff correct
    and min_{j≠y} (f_y - f_j) / ||w_y - w_j||_q > ε (q = 1 for ℓ∞, 2 for ℓ2)."""
    q = 1 if norm == "Linf" else 2
    logits = x.flatten(1) @ W.T + b
    margin = logits.gather(1, y[:, None]) - logits
    dist = margin / (W[y][:, None, :] - W[None, :, :]).norm(p=q, dim=2).clamp_min(1e-30)
    dist[torch.arange(len(y)), y] = math.inf
    return (logits.argmax(1) == y) & (dist.min(1).values > eps), dist.min(1).values


def problem(n=64, k=10, eps=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(k, 48, generator=g)
    b = torch.randn(k, generator=g) * 0.1
    x = 0.05 + 0.9 * torch.rand(n, 3, 4, 4, generator=g)  # ε ≤ 0.05: the box never binds
    logits = x.flatten(1) @ W.T + b
    y = logits.argmax(1)
    y[:4] = (y[:4] + 1) % k  # four misclassified clean samples
    return Linear(W, b).eval(), W, b, x, y


def run(method, model, x, y, budget, k=10, seed=0):
    return run_sequence(model, x, y, method.attacks(model, budget, k, seed, "cpu", Ctx()), batch_size=32)


def check_stored(result, x, y, budget):
    delta = (result.adversarial_input - x).flatten(1)
    size = delta.abs().amax(1) if budget.norm == "Linf" else delta.norm(dim=1)
    assert size.max() <= budget.eps + 1e-6  # float32 rounding of x + δ
    assert result.adversarial_input.min() >= 0 and result.adversarial_input.max() <= 1
    clean = result.clean_prediction == y.numpy()
    flags = list(result.robust_after.values())
    robust = result.adversarial_prediction == y.numpy()
    assert np.array_equal(flags[-1], robust)
    assert not (robust & ~clean).any()  # robust ≤ clean, per sample
    for before, after in zip([clean, *flags], flags):
        assert not (after & ~before).any()  # monotone along the sequence
    assert set(result.broken_by[~clean]) == {"clean"}
    assert set(result.broken_by[robust]) <= {""}
    unchanged = (result.adversarial_input == x).flatten(1).all(1).numpy()
    assert unchanged[robust | ~clean].all()  # only broken samples carry a perturbation


@pytest.mark.parametrize("norm, eps", [("Linf", 0.02), ("L2", 0.15)])
def test_apgd_matches_the_exact_robust_accuracy_from_above(norm, eps):
    model, W, b, x, y = problem(eps=eps)
    budget = Budget(norm, eps)
    exact, dist = exact_robust(W, b, x, y, norm, eps)
    result = run(APGDMethod(n_iter=20), model, x, y, budget)
    check_stored(result, x, y, budget)
    robust = torch.as_tensor(result.adversarial_prediction == y.numpy())
    assert not (exact & ~robust).any()  # an attack never breaks a certified sample
    assert 0 < exact.float().mean() < (y == model(x).argmax(1)).float().mean()  # a case with broken and robust samples
    assert torch.equal(robust, exact)  # and APGD finds every breakable one here


@pytest.mark.parametrize("norm, eps", [("Linf", 0.02), ("L2", 0.15)])
def test_pgd_never_beats_the_oracle(norm, eps):
    model, W, b, x, y = problem(eps=eps)
    budget = Budget(norm, eps)
    exact, _ = exact_robust(W, b, x, y, norm, eps)
    result = run(PGDMethod(steps=10), model, x, y, budget)
    check_stored(result, x, y, budget)
    robust = torch.as_tensor(result.adversarial_prediction == y.numpy())
    assert not (exact & ~robust).any()
    assert robust.float().mean() < (model(x).argmax(1) == y).float().mean()  # it does break samples


def test_same_seed_same_result_and_restarts_only_help():
    model, W, b, x, y = problem()
    budget = Budget("Linf", 0.02)
    a, c = run(PGDMethod(steps=3), model, x, y, budget, seed=7), run(PGDMethod(steps=3), model, x, y, budget, seed=7)
    assert torch.equal(a.adversarial_input, c.adversarial_input)
    assert np.array_equal(a.broken_by, c.broken_by)
    more = run(PGDMethod(steps=3, restarts=3), model, x, y, budget, seed=7)
    assert (more.adversarial_prediction == y.numpy()).sum() <= (a.adversarial_prediction == y.numpy()).sum()
    check_stored(more, x, y, budget)


def test_apgd_is_deterministic_for_a_seed():
    model, W, b, x, y = problem(n=24)
    budget = Budget("L2", 0.15)
    one, two = run(APGDMethod(n_iter=5), model, x, y, budget, seed=3), run(APGDMethod(n_iter=5), model, x, y, budget, seed=3)
    assert torch.equal(one.adversarial_input, two.adversarial_input)


def test_class_count_pitfalls():
    model, *_ = problem(k=6)
    budget = Budget("Linf", 0.02)
    with pytest.raises(Unsupported, match="at least 10 classes; the model has 6"):
        AutoAttackMethod().attacks(model, budget, 6, 0, "cpu", Ctx())
    with pytest.raises(Unsupported, match="fab-t"):
        AutoAttackMethod(attacks=("fab-t",)).attacks(model, budget, 9, 0, "cpu", Ctx())
    assert [n for n, _ in AutoAttackMethod(attacks=("apgd-ce",)).attacks(model, budget, 6, 0, "cpu", Ctx())] == ["apgd-ce"]
    with pytest.raises(Unsupported, match="at least 4 classes"):
        APGDMethod().attacks(model, budget, 3, 0, "cpu", Ctx())
    ctx = Ctx()
    APGDMethod().attacks(model, budget, 6, 0, "cpu", ctx)
    assert ctx.recorded["target_classes"] == 5  # min(9, C - 1)
    with pytest.raises(ValueError, match="unknown AutoAttack"):
        AutoAttackMethod(attacks=("apgd-dlr",))


def test_standard_settings_and_a_fresh_schedule_for_a_cheaper_budget():
    model, *_ = problem()
    budget = Budget("Linf", 0.02)
    standard = AutoAttackMethod().attacks(model, budget, 10, 0, "cpu", Ctx())
    assert [n for n, _ in standard] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    adversary = standard[0][1].__closure__[0].cell_contents
    assert (adversary.apgd.n_iter, adversary.apgd.n_restarts, adversary.apgd_targeted.n_target_classes) == (100, 1, 9)
    assert (adversary.fab.n_target_classes, adversary.square.n_queries, adversary.square.p_init) == (9, 5000, 0.8)
    cheap = APGDMethod(n_iter=20).attacks(model, budget, 10, 0, "cpu", Ctx())
    apgd = cheap[0][1].__closure__[0].cell_contents
    # APGD fixes its step-size checkpoints in the constructor: they must be those of 20 iterations.
    assert (apgd.n_iter, apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr) == (20, 4, 1, 1)
