"""PGD (rbx_attacks.pgd) against exact oracles: the projection by hand, a
linear classifier's closed-form robust set, the ε-ball and the box."""

from __future__ import annotations

import math

import pytest
import torch

from rbx_attacks.pgd import Budget, canonical_eps, parse_eps, pgd, project


def exact_broken(W, b, x, y, norm, eps):
    """Whether a linear classifier ``x @ W.T + b`` can be flipped within ε (no box):
    min_{j≠y} (f_y - f_j)(x) / ||w_y - w_j||_q <= ε, q dual to the norm."""
    q = 1 if norm == "Linf" else 2
    logits = x @ W.T + b
    margin = logits.gather(1, y[:, None]) - logits
    dist = margin / (W[y][:, None, :] - W[None, :, :]).norm(p=q, dim=2).clamp_min(1e-30)
    dist[torch.arange(len(y)), y] = math.inf
    return dist.min(dim=1).values <= eps


def _linear_problem(seed=0, n=64, d=20, k=5, eps=0.05):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(k, d, generator=g)
    b = torch.randn(k, generator=g) * 0.1
    x = eps + (1 - 2 * eps) * torch.rand(n, d, generator=g)  # the box never binds
    y = (x @ W.T + b).argmax(1)
    return W, b, x, y


def test_project_by_hand():
    delta = torch.tensor([[0.3, -0.5, 0.1], [3.0, 4.0, 0.0]])
    assert torch.equal(project(delta, "Linf", 0.2), torch.tensor([[0.2, -0.2, 0.1], [0.2, 0.2, 0.0]]))
    l2 = project(delta, "L2", 1.0)
    assert torch.allclose(l2[0], delta[0])  # norm 0.59 < 1: unchanged
    assert torch.allclose(l2[1], torch.tensor([0.6, 0.8, 0.0]))


@pytest.mark.parametrize("norm, eps, q", [("Linf", 0.05, 1), ("L2", 0.3, 2)])
def test_targeted_pgd_finds_the_exact_linear_robust_set(norm, eps, q):
    """For a linear model the loss f_j - f_y has a constant gradient, so PGD
    towards each target j reaches the ball's best point: the union over targets
    is exactly the closed-form broken set (points near the decision distance are
    excluded so float rounding cannot decide)."""
    W, b, x, y = _linear_problem(eps=eps)
    logits = x @ W.T + b
    margin = logits.gather(1, y[:, None]) - logits
    dist = margin / (W[y][:, None, :] - W[None, :, :]).norm(p=q, dim=2).clamp_min(1e-30)
    dist[torch.arange(len(y)), y] = math.inf
    clear = ((dist.min(1).values - eps).abs() > 0.02 * eps)
    expected = exact_broken(W, b, x, y, norm, eps)
    assert 0 < expected[clear].sum() < clear.sum()  # the case is not trivial
    broken = torch.zeros(len(y), dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    for j in range(W.shape[0]):
        loss = lambda z, j=j: (z @ W.T + b)[:, j] - (z @ W.T + b).gather(1, y[:, None])[:, 0]  # noqa: E731
        adv = pgd(loss, x, norm=norm, eps=eps, steps=60, step_size=eps / 10, generator=gen)
        broken |= (adv @ W.T + b).argmax(1) != y
    assert torch.equal(broken[clear], expected[clear])


@pytest.mark.parametrize("norm, eps", [("Linf", 0.05), ("L2", 0.3)])
def test_untargeted_pgd_never_beats_the_oracle(norm, eps):
    W, b, x, y = _linear_problem(seed=3, eps=eps)
    ce = lambda z: torch.nn.functional.cross_entropy(z @ W.T + b, y, reduction="none")  # noqa: E731
    adv = pgd(ce, x, norm=norm, eps=eps, steps=20, step_size=eps / 4, generator=torch.Generator().manual_seed(0))
    broken = (adv @ W.T + b).argmax(1) != y
    exact = exact_broken(W, b, x, y, norm, eps)
    assert not (broken & ~exact).any()  # an attack can only under-find
    assert broken.sum() >= 0.5 * exact.sum()  # and CE-PGD finds at least half of them here


@pytest.mark.parametrize("norm, eps", [("Linf", 8 / 255), ("L2", 0.5)])
def test_iterates_stay_in_the_ball_and_the_box(norm, eps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 4, 4, generator=g)
    x[:4] = 0.0  # on the box boundary: the clip must bind
    x[4:8] = 1.0
    w = torch.randn(48, generator=g)
    loss = lambda z: (z.flatten(1) @ w) ** 2  # noqa: E731
    adv = pgd(loss, x, norm=norm, eps=eps, steps=7, step_size=eps, generator=g)
    assert adv.dtype == torch.float32 and not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    dist = (adv - x).flatten(1)
    dist = dist.abs().amax(1) if norm == "Linf" else dist.norm(dim=1)
    assert dist.max() <= eps + 1e-6  # float32 rounding of x + delta


def test_same_generator_same_result_and_start_depends_on_seed():
    x = torch.rand(8, 10, generator=torch.Generator().manual_seed(0))
    loss = lambda z: (z.sin() * torch.arange(10)).sum(1)  # noqa: E731
    run = lambda s, steps=3: pgd(loss, x, norm="L2", eps=0.5, steps=steps, step_size=0.1, generator=torch.Generator().manual_seed(s))  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5, 0), run(6, 0))
    assert torch.equal(pgd(loss, x, norm="Linf", eps=0.1, steps=0, step_size=0.1, random_start=False), x)


def test_bad_input_is_rejected():
    x = torch.rand(2, 3)
    loss = lambda z: z.sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="norm"):
        pgd(loss, x, norm="L1", eps=0.1, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(loss, x * 3, norm="Linf", eps=0.1, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="one value per sample"):
        pgd(lambda z: z.sum(), x, norm="Linf", eps=0.1, steps=1, step_size=0.1)


@pytest.mark.parametrize("given, label", [("8/255", "8/255"), (8 / 255, "8/255"), ("0.5", "0.5"), (0.5, "0.5"),
                                          ("4 / 255", "4/255"), (0.031, "0.031"), (0.1, "0.1"), (1, "1"), ("51/255", "0.2")])
def test_canonical_eps(given, label):
    budget = Budget.parse("Linf", given)
    assert budget.eps_label == label
    assert canonical_eps(parse_eps(label)) == label  # the string round-trips
    assert budget.eps == pytest.approx(parse_eps(given), abs=0)


def test_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="norm"):
        Budget("Linf2", 0.1)
    with pytest.raises(ValueError, match="fraction"):
        Budget.parse("L2", "eight/255")
    with pytest.raises(ValueError, match=">= 0"):
        Budget.parse("L2", -1)
