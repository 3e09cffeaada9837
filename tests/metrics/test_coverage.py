"""AUAC / AUFC (``robustbench_x.metrics.coverage``; ``docs/metrics.md#auac-and-aufc``) on hand-worked cases.

Definitions (ours; the paper's are unpublished): with s the min-max rescaled
confidence, AUAC = ∫₀¹ accuracy of {s ≥ t} dt and AUFC = ∫₀¹ failure fraction
of {s < t} dt, integrated exactly over the step functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustbench_x.metrics.coverage import auac, aufc, coverage_curves


@pytest.mark.parametrize(
    "confidence, correct, expected_auac, expected_aufc",
    [
        # s = (0, .5, 1). t ∈ (0,.5]: kept {.5, 1} acc 1, rejected {0} fail 1; t ∈ (.5,1]: kept {1} acc 1, rejected {0,.5} fail 1/2.
        ([0.0, 0.5, 1.0], [0, 1, 1], 1.0, 0.5 * 1 + 0.5 * 0.5),
        # s = (0, 1/3, 2/3, 1), correct (1, 0, 1, 1): acc 2/3, 1, 1; fail 0, 1/2, 1/3 (each over a third).
        ([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 1], 8 / 9, 5 / 18),
        # Uneven spacing: s = (0, .1, 1), correct (0, 1, 0): acc .5 on (0,.1], 0 on (.1,1]; fail 1 then 1/2.
        ([0.0, 0.1, 1.0], [0, 1, 0], 0.1 * 0.5, 0.1 * 1 + 0.9 * 0.5),
        # Ties go together: s = (0, 0, 1): kept {1} acc 1, rejected both tied samples, fail 1/2.
        ([1.0, 1.0, 2.0], [1, 0, 1], 1.0, 0.5),
        # Everything correct / everything wrong.
        ([0.2, 0.7, 0.9], [1, 1, 1], 1.0, 0.0),
        ([0.2, 0.7, 0.9], [0, 0, 0], 0.0, 1.0),
    ],
)
def test_hand_worked(confidence, correct, expected_auac, expected_aufc):
    assert auac(confidence, correct) == pytest.approx(expected_auac, abs=1e-12)
    assert aufc(confidence, correct) == pytest.approx(expected_aufc, abs=1e-12)


def test_curves_of_the_second_case():
    curves = coverage_curves([1.0, 2.0, 3.0, 4.0], [True, False, True, True])
    np.testing.assert_allclose(curves["thresholds"], [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(curves["widths"], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(curves["accuracy"], [2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(curves["failure"], [0.0, 0.5, 1 / 3])


def test_constant_confidence_is_the_uninformative_value():
    assert auac([3.0, 3.0, 3.0, 3.0], [1, 1, 0, 1]) == pytest.approx(0.75)
    assert aufc([3.0, 3.0, 3.0, 3.0], [1, 1, 0, 1]) == pytest.approx(0.25)
    assert auac([0.4], [1]) == 1.0 and aufc([0.4], [1]) == 0.0


def test_invariances_and_order():
    rng = np.random.default_rng(0)
    c = rng.normal(size=200)
    ok = rng.random(200) < 1 / (1 + np.exp(-2 * c))
    a, f = auac(c, ok), aufc(c, ok)
    assert auac(3 * c + 7, ok) == pytest.approx(a, abs=1e-12)  # increasing affine map
    assert aufc(3 * c + 7, ok) == pytest.approx(f, abs=1e-12)
    perm = rng.permutation(200)
    assert auac(c[perm], ok[perm]) == pytest.approx(a, abs=1e-12)
    assert aufc(list(c[perm]), list(ok[perm].astype(int))) == pytest.approx(f, abs=1e-12)
    # An informative confidence beats its reverse on both.
    assert a > auac(-c, ok) and f > aufc(-c, ok)


def test_matches_a_fine_numerical_integration():
    rng = np.random.default_rng(1)
    c = np.round(rng.random(60), 2)  # with ties
    ok = rng.random(60) < 0.6
    s = (c - c.min()) / (c.max() - c.min())
    ts = (np.arange(200000) + 0.5) / 200000
    acc = [ok[s >= t].mean() for t in ts[::100]]
    fail = [(~ok[s < t]).mean() for t in ts[::100]]
    assert auac(c, ok) == pytest.approx(np.mean(acc), abs=2e-3)
    assert aufc(c, ok) == pytest.approx(np.mean(fail), abs=2e-3)


def test_auac_is_not_bounded_by_the_accuracy_coverage_area():
    # docs/metrics.md#auac-and-aufc: Table I's AUAC exceeds a + a ln(1/a); an area over thresholds can.
    conf = [1.0] + [0.0] * 9
    correct = [1] + [1, 1, 1, 1, 0, 0, 0, 0, 0]
    a = 0.5
    assert auac(conf, correct) == 1.0 > a + a * math.log(1 / a)


@pytest.mark.parametrize(
    "confidence, correct",
    [
        ([], []),
        ([0.1, 0.2], [1]),
        ([[0.1, 0.2]], [[1, 0]]),
        ([0.1, float("nan")], [1, 0]),
        ([0.1, float("inf")], [1, 0]),
        ([0.1, 0.2], [1, 2]),
        (["a", "b"], [1, 0]),
        ([0.1, 0.2], [0.5, 1.0]),
    ],
)
def test_validation(confidence, correct):
    for fn in (auac, aufc):
        with pytest.raises(ValueError):
            fn(confidence, correct)
