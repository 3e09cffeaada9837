"""Scores saturating at 1 (MSP, ConfidNet's sigmoid) keep their exact pooled curves.

Most confident pixels have an MSP within 1e-4 of 1, where float32 and the pooled
12-significant-bit histogram cannot separate them; the methods emit ``MSP - 1``
(``sigmoid(c) - 1``) without cancellation. The pooled AP / FPR@95 (the evaluator's
path: ``anomaly = -score`` into :class:`PooledAnomaly`) and the pixel AURC must equal
float64 references on the exact ``1 - MSP``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp
from sklearn.metrics import average_precision_score, roc_curve
from torch import nn

from rbx_segmentation.confidnet import ConfidNetSeg
from rbx_segmentation.methods import MSP, Sampled
from rbx_segmentation.metrics import PooledAnomaly
from rbx_segmentation.metrics.risk import RiskCoverageAccumulator
from robustbench_x.api import Outputs
from robustbench_x.metrics.failure import aurc

N, C, H, W = 6, 19, 64, 96


def _labels(rng):
    y = (rng.random((N, H, W)) < 0.25).astype(np.uint8)
    y[:, :2] = 255  # a void band, dropped by every metric
    return y


def _margins(rng, y):
    """Top-1 margins: in-distribution ~ N(14, 3), anomalies ~ N(10, 3): about 70 % / 20 % of
    them have 1 - MSP < 1e-4 (the audit's saturated case)."""
    return np.clip(rng.normal(np.where(y == 1, 10.0, 14.0), 3.0), 0.0, None)


def _saturated_logits():
    rng = np.random.default_rng(5)
    y = _labels(rng)
    logits = rng.normal(0.0, 1.0, (N, C, H, W))
    logits[:, 0] += _margins(rng, y)
    return logits.astype(np.float32), y


class _Ctx:
    def __init__(self, logits=None, model=None, images=None):
        self._logits, self.model, self._images = logits, model, images

    def outputs(self, subset):
        n = len(self._logits)
        return Outputs(logits=self._logits, features=np.zeros((n, 1)), labels=np.zeros((n, H, W), np.int64), sample_ids=np.arange(n).astype(str))

    def loader(self, subset, batch_size=16):
        for start in range(0, len(self._images), batch_size):
            yield self._images[start : start + batch_size], None


def _pooled(scores, labels):
    acc = PooledAnomaly()
    for s, y in zip(scores, labels):
        acc.update(-np.asarray(s, dtype=np.float32), y)  # the evaluator's anomaly = -score
    return acc.result()


def _exact(one_minus_conf, labels):
    """AP (sklearn) and FPR at the first threshold with TPR >= 95 % (sklearn's full ROC), float64."""
    roi = labels != 255
    s, pos = one_minus_conf[roi], labels[roi] == 1
    fpr, tpr, _ = roc_curve(pos, s, drop_intermediate=False)
    return average_precision_score(pos, s), fpr[np.searchsorted(tpr, 0.95, side="left")]


def _check(scores, one_minus_conf, labels):
    roi = labels != 255
    crowded = one_minus_conf[roi] < 1e-4
    assert crowded[labels[roi] == 0].mean() > 0.5 and crowded[labels[roi] == 1].mean() > 0.1  # the saturated premise
    got = _pooled(scores, labels)
    ap, fpr95 = _exact(one_minus_conf, labels)
    assert got["ap"] == pytest.approx(ap, abs=1e-3)
    assert got["fpr95"] == pytest.approx(fpr95, abs=1e-3)


def test_msp_pooled_ap_and_fpr95_are_exact_on_saturated_pixels():
    logits, labels = _saturated_logits()
    scores = MSP().score(_Ctx(logits=logits), "anomaly/x")["score"]
    l64 = logits.astype(np.float64)
    log_p = l64 - logsumexp(l64, axis=1, keepdims=True)
    top = l64.argmax(axis=1)[:, None]
    rest = np.exp(log_p)
    np.put_along_axis(rest, top, 0.0, axis=1)
    one_minus_msp = rest.sum(axis=1)
    _check(scores, one_minus_msp, labels)
    # the score is MSP - 1: same values as the MSP where float32 can tell them apart
    np.testing.assert_allclose(scores, -one_minus_msp, rtol=1e-4, atol=1e-30)


def test_confidnet_pooled_ap_and_fpr95_are_exact_on_saturated_pixels():
    rng = np.random.default_rng(6)
    labels = _labels(rng)
    c = (_margins(rng, labels) - 4.0).astype(np.float32)  # confidence logits: sigmoid(c) > 1 - 1e-4 above c = 9.2

    class Model:
        def forward(self, x):
            return torch.zeros(len(x), 3, H, W), None

        def feature_maps(self, x):
            return x

    method = ConfidNetSeg()
    head = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        head.weight.fill_(1.0)
        head.bias.zero_()
    method.head = head.eval()  # c = the feature map, so the expected confidence is known
    scores = method.score(_Ctx(model=Model(), images=torch.from_numpy(c[:, None])), "anomaly/x")["score"]
    _check(scores, expit(-c.astype(np.float64)), labels)


def test_pixel_aurc_is_exact_on_saturated_msp():
    logits, labels = _saturated_logits()
    out = MSP().score(_Ctx(logits=logits), "val")
    rng = np.random.default_rng(7)
    l64 = logits.astype(np.float64)
    one_minus_msp = -np.expm1(np.max(l64, axis=1) - logsumexp(l64, axis=1))
    # errors mostly at low confidence, some among the saturated pixels
    correct = rng.random(one_minus_msp.shape) > np.minimum(1.0, 20.0 * one_minus_msp + 0.01)
    assert (one_minus_msp[~correct] < 1e-4).sum() > 100 and (one_minus_msp < 1e-4).mean() > 0.4
    acc = RiskCoverageAccumulator()
    for s, ok in zip(out["score"], correct):
        acc.update(s, ok)  # the segmentation evaluator's pixel AURC: confidence = score
    assert acc.aurc() == pytest.approx(aurc(-one_minus_msp.ravel(), correct.ravel()), rel=1e-3)


def test_sampled_msp_is_mean_msp_minus_one_without_cancellation():
    logits, _ = _saturated_logits()
    members = logits[:3, :, :8, :8].astype(np.float64)  # 3 members' logits for one 8 x 8 image
    p = np.exp(members - logsumexp(members, axis=1, keepdims=True))
    got = Sampled(score="msp").combine(p.astype(np.float32))["score"]
    mean = p.mean(axis=0)
    rest = mean.copy()
    np.put_along_axis(rest, mean.argmax(axis=0)[None], 0.0, axis=0)
    assert (rest.sum(axis=0) < 1e-4).any()
    np.testing.assert_allclose(got, -rest.sum(axis=0), rtol=1e-4, atol=1e-30)
