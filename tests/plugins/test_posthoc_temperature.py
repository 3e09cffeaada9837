"""Temperature scaling recovers a known temperature and keeps the argmax."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from rbx_posthoc.temperature import TemperatureScaling
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


def context(seed=0, n=20000):
    z_val, y_val = sample(n, seed)
    z_id, y_id = sample(200, seed + 1)
    return ArrayContext({"val": make_outputs(z_val, labels=y_val), "id": make_outputs(z_id, labels=y_id)})


def nll_optimum(ctx):
    val = ctx.outputs("val")
    z, y = val.logits.astype(np.float64), val.labels

    def nll(t):
        return -log_softmax(z / t, axis=1)[np.arange(len(y)), y].mean()

    return minimize_scalar(nll, bounds=(0.1, 10.0), method="bounded", options={"xatol": 1e-8}).x


@pytest.fixture(scope="module")
def reference_fit():
    """One fit with the reference settings: T0 = 1.5, LBFGS(lr=0.01, max_iter=200), one step."""
    ctx = context()
    method = TemperatureScaling()
    method.fit(ctx)
    return ctx, method


def test_recovers_true_temperature_with_reference_settings(reference_fit):
    ctx, method = reference_fit
    assert abs(method.temperature - TRUE_T) < 0.15
    assert ctx.messages == [f"temperature {method.temperature:.4f}"]
    assert method.state["temperature"].shape == (1,)


def test_reference_settings_stop_short_of_the_nll_optimum(reference_fit):
    # Documented property of gpleiss' LBFGS(lr=0.01, max_iter=200) without line search:
    # T moves from 1.5 towards the NLL optimum but does not reach it.
    ctx, method = reference_fit
    optimum = nll_optimum(ctx)
    assert abs(optimum - TRUE_T) < 0.05  # the estimator itself is fine
    assert 1.5 < method.temperature < optimum


def test_strong_wolfe_reaches_the_nll_optimum():
    ctx = context()
    method = TemperatureScaling(lr=1.0, line_search_fn="strong_wolfe")
    method.fit(ctx)
    assert method.temperature == pytest.approx(nll_optimum(ctx), abs=1e-4)


def test_probs_are_tempered_softmax_and_argmax_is_unchanged(reference_fit):
    ctx, method = reference_fit
    out = method.score(ctx, "id")
    z = ctx.outputs("id").logits.astype(np.float64)
    t = method.temperature
    expected = np.exp(z / t) / np.exp(z / t).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-10)
    np.testing.assert_array_equal(out["probs"].argmax(axis=1), z.argmax(axis=1))
    np.testing.assert_array_equal(out["prediction"], z.argmax(axis=1))
    np.testing.assert_allclose(out["score"], expected.max(axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["confidence"], out["score"])


def test_unlabelled_validation_raises():
    z, _ = sample(10, 0)
    ctx = ArrayContext({"val": make_outputs(z)})
    with pytest.raises(ValueError, match="no labelled samples"):
        TemperatureScaling().fit(ctx)
