"""VOICE's per-image IoU and SNR (demo.py's formulas) and the explanation suite's metrics, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rbx_explain import metrics as m


def test_identical_maps_give_iou_one():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 8, 8))
    np.testing.assert_allclose(m.map_iou(maps, maps), 1.0)
    empty = np.zeros((1, 8, 8))  # two empty masks: (0 + 1e-6) / (0 + 1e-6), the release's value
    assert m.map_iou(empty, empty)[0] == 1.0


def test_iou_by_hand():
    e = np.zeros((1, 3, 3))
    u = np.zeros((1, 3, 3))
    e[0, 0, :] = [0.5, 0.2, 0.11]  # three pixels above 0.1
    e[0, 1, 0] = 0.1  # exactly 0.1: not above the threshold (strict >)
    u[0, 0, 0] = 0.9
    u[0, 2, 2] = 0.3  # U: two pixels; overlap one pixel; union four
    assert m.map_iou(e, u)[0] == pytest.approx((1 + 1e-6) / (4 + 1e-6), abs=1e-15)


def test_snr_by_hand():
    u = np.array([[[0.0, 1.0], [1.0, 2.0]]])  # mean 1, population std sqrt(1/2)
    assert m.map_snr(u)[0] == pytest.approx(np.sqrt(2.0))
    assert m.map_snr(np.full((1, 4, 4), 0.7))[0] == 0.0  # constant map: 0, as the release's where(sd == 0, 0, …)
    assert m.map_snr(np.zeros((1, 4, 4)))[0] == 0.0


def test_groups_and_aurocs():
    iou = np.array([0.2, 0.9, 0.4, 0.8, 0.3])
    snr = np.array([1.0, 2.0, 1.5, 0.5, 1.2])
    correct = np.array([True, False, True, False, True])
    kw = {"iou": iou, "snr": snr, "correct": correct}
    assert np.nanmean(m.iou_correct(**kw)) == pytest.approx(0.3)
    assert np.nanmean(m.iou_incorrect(**kw)) == pytest.approx(0.85)
    assert np.nanmean(m.snr_incorrect(**kw)) == pytest.approx(1.25)
    assert m.iou_error_auroc(**kw) == pytest.approx(roc_auc_score(~correct, iou))
    assert m.snr_error_auroc(**kw) == pytest.approx(roc_auc_score(~correct, snr))
    with pytest.raises(ValueError):  # every prediction right: no wrong one to detect
        m.iou_error_auroc(iou=iou, snr=snr, correct=np.ones(5, bool))
    assert np.isnan(m.iou_incorrect(iou=iou, snr=snr, correct=np.ones(5, bool))).all()


@pytest.mark.parametrize("fn", [m.iou, m.snr_correct, m.iou_error_auroc])
def test_bad_columns_are_rejected(fn):
    for _, bad in m.check_cases_maps()[2]:
        with pytest.raises(ValueError):
            fn(**bad)
