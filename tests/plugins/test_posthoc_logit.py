"""MSP, MaxLogit and Energy against their definitions on hand-written logits."""

import math

import numpy as np
import pytest

from rbx_posthoc.logit import MSP, Energy, MaxLogit
from robustbench_x.testing.doubles import ArrayContext, make_outputs

ROWS = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [10.0, -5.0, 2.5]]


def ctx(rows=ROWS):
    return ArrayContext({"id": make_outputs(rows)})


def softmax_row(row, t=1.0):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_msp_is_max_softmax_probability():
    out = MSP().score(ctx(), "id")
    expected = [max(softmax_row(r)) for r in ROWS]
    # row 0 by hand: e^3 / (e + e^2 + e^3)
    assert expected[0] == pytest.approx(math.e**3 / (math.e + math.e**2 + math.e**3))
    # emitted minus 1 (the MSP's ranking where it rounds to 1.0, tests/plugins/test_confidence_resolution.py)
    np.testing.assert_allclose(out["score"] + 1, expected, rtol=1e-12)
    np.testing.assert_allclose(out["confidence"], out["score"])
    np.testing.assert_allclose(out["probs"], [softmax_row(r) for r in ROWS], rtol=1e-12)
    np.testing.assert_array_equal(out["prediction"], [2, 0, 0])
    assert out["score"][1] == pytest.approx(1 / 3 - 1)


def test_maxlogit_is_max_logit():
    out = MaxLogit().score(ctx(), "id")
    np.testing.assert_allclose(out["score"], [3.0, 0.0, 10.0])
    np.testing.assert_allclose(out["confidence"], out["score"])
    np.testing.assert_array_equal(out["prediction"], [2, 0, 0])


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_energy_is_t_logsumexp_z_over_t(t):
    out = Energy(temperature=t).score(ctx(), "id")
    expected = [t * math.log(sum(math.exp(v / t) for v in r)) for r in ROWS]
    np.testing.assert_allclose(out["score"], expected, rtol=1e-12)
    assert out["score"][1] == pytest.approx(t * math.log(3))
    np.testing.assert_allclose(out["confidence"], out["score"])


def test_energy_default_temperature_is_one():
    assert Energy().temperature == 1.0


def test_large_logits_do_not_overflow():
    rows = [[1000.0, 0.0], [-1000.0, -1000.0]]
    msp = MSP().score(ctx(rows), "id")["score"]
    energy = Energy().score(ctx(rows), "id")["score"]
    np.testing.assert_allclose(msp, [-np.exp(-1000.0), -0.5])
    np.testing.assert_allclose(energy, [1000.0, -1000.0 + math.log(2)])


def test_outputs_are_float64_1d_of_subset_length():
    for method in (MSP(), MaxLogit(), Energy()):
        out = method.score(ctx(), "id")
        assert out["score"].shape == (3,) and out["score"].dtype == np.float64
        assert out["confidence"] is not out["score"]
