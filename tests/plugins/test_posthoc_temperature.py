"""Temperature scaling: T is the validation-NLL minimiser (Guo et al. 2017, §4.2); the reference
script's L-BFGS fit is kept under its own name and stops short of it."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax

from rbx_posthoc.temperature import TemperatureScaling, TemperatureScalingLBFGS
from robustbench_x.testing.doubles import ArrayContext, make_outputs

TRUE_T = 2.0


def sample(n, seed, num_classes=5, scale=3.0):
    """Logits z and labels drawn from softmax(z / TRUE_T)."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, num_classes)) * scale).astype(np.float32)
    p = np.exp(log_softmax(z.astype(np.float64) / TRUE_T, axis=1))
    u = rng.random((n, 1))
    labels = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(labels, num_classes - 1)


def confident_with_one_error(n=160, num_classes=6, seed=3):
    """Like the embedded default's validation split: large margins, a single error; the optimum T is well below 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    z = rng.normal(size=(n, num_classes)) + 12.0 * np.eye(num_classes)[y] * rng.uniform(0.5, 1.5, (n, 1))
    y[0] = (y[0] + 1) % num_classes  # the one error: the true class is a close runner-up
    z[0, y[0]] = z[0].max() - 0.5
    return z.astype(np.float32), y


def context(z_val, y_val):
    z_id, y_id = sample(200, 99)
    return ArrayContext({"val": make_outputs(z_val, labels=y_val), "id": make_outputs(z_id, labels=y_id)})


def nll(z, y, t):
    return -log_softmax(np.asarray(z, np.float64) / t, axis=1)[np.arange(len(y)), y].mean()


def grid_minimiser(z, y, lo=1e-2, hi=1e2, points=401, rounds=6):
    """Independent reference: a dense grid on log T, refined around its best point a few times."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(rounds):
        grid = np.linspace(a, b, points)
        values = np.array([nll(z, y, math.exp(g)) for g in grid])
        i = int(values.argmin())
        a, b = grid[max(i - 2, 0)], grid[min(i + 2, points - 1)]
    return math.exp(grid[i])


def lbfgs_to_convergence(z, y):
    """Second reference: torch L-BFGS with a strong-Wolfe line search on log T, iterated until it stops moving."""
    z, y = torch.as_tensor(np.asarray(z, np.float64)), torch.as_tensor(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return float(log_t.detach().exp())


CASES = {"synthetic T=2": lambda: sample(5000, 0), "confident, one error": confident_with_one_error}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fitted_temperature_is_the_nll_minimiser(case):
    z, y = CASES[case]()
    ctx = context(z, y)
    method = TemperatureScaling()
    method.fit(ctx)
    reference = grid_minimiser(z, y)
    assert method.temperature == pytest.approx(reference, rel=1e-3)
    assert method.temperature == pytest.approx(lbfgs_to_convergence(z, y), rel=1e-3)
    assert ctx.diagnostics == {"temperature": method.temperature}
    if case == "confident, one error":
        assert method.temperature < 1.0  # below the reference script's start at 1.5


def test_the_reference_lbfgs_fit_stops_short_of_the_minimiser_and_keeps_its_own_name():
    z, y = sample(20000, 0)
    ctx = context(z, y)
    reference = TemperatureScalingLBFGS()
    reference.fit(ctx)
    optimum = grid_minimiser(z, y)
    assert abs(optimum - TRUE_T) < 0.05  # the estimator itself is fine
    assert 1.5 < reference.temperature < optimum - 0.05  # gpleiss' LBFGS(lr=0.01, max_iter=200), one step
    assert nll(z, y, reference.temperature) > nll(z, y, optimum)
    assert reference.name == "temperature_scaling-lbfgs"
    # with a line search the same optimiser does reach the minimiser (a different configuration)
    converged = TemperatureScalingLBFGS(lr=1.0, line_search_fn="strong_wolfe")
    converged.fit(ctx)
    assert converged.temperature == pytest.approx(optimum, rel=1e-3)


def test_a_validation_split_without_errors_ends_on_the_lower_bound_and_says_so():
    y = np.arange(60) % 4
    z = (np.eye(4)[y] * 1.0).astype(np.float32)  # small margins: the NLL stays resolvable in float64 down to T_min
    ctx = context(z, y)
    method = TemperatureScaling(t_min=0.05)
    method.fit(ctx)
    assert method.temperature == pytest.approx(0.05, rel=1e-6)  # the NLL falls all the way down to T → 0
    assert ctx.diagnostics["temperature_at_bound"] == 1
    assert any("end of the search interval" in m for m in ctx.messages)


def test_probs_are_tempered_softmax_and_argmax_is_unchanged():
    ctx = context(*sample(2000, 0))
    method = TemperatureScaling()
    method.fit(ctx)
    out = method.score(ctx, "id")
    z = ctx.outputs("id").logits.astype(np.float64)
    t = method.temperature
    expected = np.exp(z / t) / np.exp(z / t).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-10)
    np.testing.assert_array_equal(out["prediction"], z.argmax(axis=1))
    np.testing.assert_allclose(out["score"] + 1, expected.max(axis=1), rtol=1e-10)  # emitted minus 1
    np.testing.assert_allclose(out["confidence"], out["score"])


@pytest.mark.parametrize("cls", [TemperatureScaling, TemperatureScalingLBFGS])
def test_unlabelled_validation_raises(cls):
    z, _ = sample(10, 0)
    ctx = ArrayContext({"val": make_outputs(z)})
    with pytest.raises(ValueError, match="no labelled samples"):
        cls().fit(ctx)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="t_min"):
        TemperatureScaling(t_min=2.0, t_max=1.0)
