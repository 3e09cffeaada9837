"""ReAct: clip at the val percentile, energy of the recomputed logits."""

import numpy as np
import pytest

from rbx_posthoc.react import ReAct
from robustbench_x.api import Model
from robustbench_x.testing.doubles import ArrayContext, make_outputs


class LinearHead(Model):
    def __init__(self, w, b):
        self.w, self.b = w, b

    def linear_head(self):
        return self.w, self.b


def make_context(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 5))
    b = rng.normal(size=3)
    val = np.abs(rng.normal(size=(40, 5))).astype(np.float32)
    test = (np.abs(rng.normal(size=(6, 5))) * 2.0).astype(np.float32)
    test[0] = 0.01  # a row entirely below the threshold: unchanged by clipping
    ctx = ArrayContext(
        {"val": make_outputs(val @ w.T + b, val), "id": make_outputs(test @ w.T + b, test)},
        model=LinearHead(w, b),
    )
    return ctx, w, b, val, test


def test_threshold_is_90th_percentile_of_flattened_val_features():
    ctx, _, _, val, _ = make_context()
    method = ReAct()
    method.fit(ctx)
    assert method.threshold == pytest.approx(np.percentile(val.flatten(), 90))
    assert any("react threshold" in m for m in ctx.messages)


def test_score_is_logsumexp_of_clipped_logits():
    ctx, w, b, val, test = make_context()
    c = np.percentile(val.flatten(), 90)
    out = ReAct().score(ctx, "id")
    clipped = np.where(test > c, c, test).astype(np.float64)
    z = clipped @ w.T + b
    expected = np.log(np.exp(z).sum(axis=1))
    np.testing.assert_allclose(out["score"], expected, rtol=1e-10)
    np.testing.assert_array_equal(out["prediction"], z.argmax(axis=1))
    np.testing.assert_allclose(out["confidence"], out["score"])
    # clipping changed something, and the low row is plain energy
    assert np.any(test > c)
    z0 = test[0].astype(np.float64) @ w.T + b
    assert out["score"][0] == pytest.approx(np.log(np.exp(z0).sum()))


def test_percentile_parameter():
    ctx, _, _, val, _ = make_context()
    method = ReAct(percentile=50)
    method.fit(ctx)
    assert method.threshold == pytest.approx(np.median(val))
