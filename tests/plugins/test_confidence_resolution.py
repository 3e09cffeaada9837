"""Softmax confidences keep their ranking where the maximum probability rounds to 1.

MSP and temperature scaling rank by ``max softmax − 1`` computed as minus the
sum of the non-maximal probabilities (``docs/methods.md#msp``): the exact MSP's
order, which ``max softmax`` itself loses once it rounds to 1.0 (float32 from a
logit margin of about 17, float64 from about 37); the probabilities that
calibration reads are unchanged.
"""

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.metrics import roc_auc_score

from rbx_posthoc.logit import MSP
from rbx_posthoc.temperature import TemperatureScaling
from robustbench_x.api import max_probability_minus_one
from robustbench_x.metrics.calibration import ece, nll
from robustbench_x.metrics.failure import aurc, failure_auroc
from robustbench_x.testing.doubles import ArrayContext, make_outputs

# Two classes, logits (m, 0): MSP = sigmoid(m), so every score is the margin's order.
MARGINS = np.array([0.25, 0.875, 1.5, 2.25, 2.875, 3.5, 4.125, 4.75, 5.5, 6.25])  # exact in float32
CORRECT = np.array([0, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
T = 0.04  # what temperature scaling fits on the two-class imagefolder repro


def two_class(margins=MARGINS, correct=CORRECT):
    z = np.stack([margins, np.zeros_like(margins)], axis=1)
    labels = np.where(correct, 0, 1)
    return ArrayContext({"id": make_outputs(z, labels=labels)})


def tempered(t):
    method = TemperatureScaling()
    method.state = {"temperature": np.array([t]), "at_bound": np.array([False])}
    return method


def test_temperature_scaling_and_msp_rank_two_classes_alike():
    """For two classes dividing the logits by T > 0 cannot reorder max softmax: same failure-AUROC and AURC."""
    ctx = two_class()
    msp, ts = MSP().score(ctx, "id"), tempered(T).score(ctx, "id")
    exact = roc_auc_score(CORRECT, MARGINS)  # the margin orders the samples as the exact MSP does
    assert failure_auroc(ts["confidence"], CORRECT) == pytest.approx(exact, abs=1e-12)
    assert failure_auroc(msp["confidence"], CORRECT) == pytest.approx(exact, abs=1e-12)
    assert aurc(ts["confidence"], CORRECT) == pytest.approx(aurc(MARGINS, CORRECT), abs=1e-12)
    # old behaviour: from margin 1.5 on (1.5 / 0.04 = 37.5 nats) float64 softmax is exactly 1, one big tie
    assert (softmax(np.stack([MARGINS, 0 * MARGINS], 1) / T, axis=1).max(axis=1) == 1.0).sum() == 8
    np.testing.assert_array_equal(np.argsort(ts["score"]), np.argsort(MARGINS))


def test_scores_are_the_exact_msp_minus_one():
    ctx = two_class()
    for out, t in ((MSP().score(ctx, "id"), 1.0), (tempered(T).score(ctx, "id"), T)):
        np.testing.assert_allclose(out["score"], -expit(-MARGINS / t), rtol=1e-12)  # 1 − sigmoid(m/T) = sigmoid(−m/T)
        np.testing.assert_array_equal(out["confidence"], out["score"])
        assert np.all(out["score"] < 0)


def test_calibration_still_reads_the_true_probabilities():
    ctx = two_class()
    out = tempered(T).score(ctx, "id")
    z = np.stack([MARGINS, np.zeros_like(MARGINS)], axis=1)
    np.testing.assert_allclose(out["probs"], softmax(z.astype(np.float32).astype(np.float64) / T, axis=1), rtol=1e-12)
    labels = np.where(CORRECT, 0, 1)
    assert ece(out["probs"], labels) == pytest.approx(ece(softmax(z / T, axis=1), labels), abs=1e-9)
    assert nll(out["probs"], labels) == pytest.approx(nll(softmax(z / T, axis=1), labels), rel=1e-6)


def test_margins_where_float32_softmax_ties_stay_ordered():
    """Margins 17 and 18: float32 softmax gives 1.0 for both; MSP − 1 keeps them apart (and 40 vs 45, where float64 ties)."""
    margins = np.array([17.0, 18.0, 40.0, 45.0])
    z = np.stack([margins, np.zeros_like(margins)], axis=1)
    assert np.all(softmax(z[:2].astype(np.float32), axis=1).astype(np.float32).max(axis=1) == np.float32(1.0))
    assert np.all(softmax(z[2:], axis=1).max(axis=1) == 1.0)
    score = MSP().score(ArrayContext({"id": make_outputs(z)}), "id")["score"]
    assert np.all(np.diff(score) > 0)
    np.testing.assert_allclose(score, -np.exp(-margins) / (1 + np.exp(-margins)), rtol=1e-12)


def test_helper_on_many_classes_and_axis():
    p = softmax(np.array([[30.0, 0.0, -2.0, 1.0], [0.0, 0.0, 0.0, 0.0]]), axis=1)
    got = max_probability_minus_one(p)
    np.testing.assert_allclose(got, [-(p[0, 1] + p[0, 2] + p[0, 3]), -0.75], rtol=1e-12)
    np.testing.assert_allclose(max_probability_minus_one(p.T, axis=0), got, rtol=1e-12)
    assert got.dtype == np.float64
