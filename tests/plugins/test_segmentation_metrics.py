"""Segmentation metrics against hand-worked cases and independent references
(scikit-learn, torchmetrics, the harness's classification AURC)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from rbx_segmentation.metrics import (
    METRIC_SPECS,
    PROTOCOL_METRICS,
    CalibrationAccumulator,
    ComponentMetrics,
    ConfusionAccumulator,
    ImageAveragedAnomaly,
    PooledAnomaly,
    image_iou,
    pixel_aurc,
)
from rbx_segmentation.metrics.curves import OrderedHistogram, exact_curve

V = 255

# ---------------------------------------------------------------- map A: 4 x 4, ties, two void pixels
# ROI (score, label), 4 anomalies and 10 in-distribution pixels:
#   0.9: A            -> tp 1 fp 0
#   0.8: N            -> tp 1 fp 1
#   0.7: A A N (tie)  -> tp 3 fp 2
#   0.3: A N   (tie)  -> tp 4 fp 3
#   0.2: N N N        -> tp 4 fp 6
#   0.1: N N N N      -> tp 4 fp 10
# AUROC = P(s_A > s_N) + P(tie) / 2 = (10 + 2 * 8.5 + 7.5) / 40 = 0.8625
# AP = 1/4 * 1 + 2/4 * 3/5 + 1/4 * 4/7 = 0.55 + 1/7
# FPR95: both rules reach recall 1 at 0.3 (closest |1 - .95| = .05 < |.75 - .95|), FPR = 3/10
# The void pixels (0.9 and 0.1) would change every number if they were counted.
SCORE_A = np.array([[0.9, 0.1, 0.8, 0.2], [0.9, 0.7, 0.7, 0.1], [0.7, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.1]])
LABEL_A = np.array([[V, V, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]])

# ---------------------------------------------------------------- map B: 4 x 4 where the FPR95 rules differ
# 11 anomalies, 4 in-distribution pixels, 1 void (scored 0.95):
#   0.9: A A        -> tp 2  fp 0        0.5: A        -> tp 10 fp 1
#   0.8: A A A N    -> tp 5  fp 1        0.4: N        -> tp 10 fp 2
#   0.7: A A        -> tp 7  fp 1        0.2: A N      -> tp 11 fp 3
#   0.6: A A        -> tp 9  fp 1        0.1: N        -> tp 11 fp 4
# "first": the first recall >= 95 % is 11/11 at 0.2 -> FPR = 3/4.
# "closest": |10/11 - .95| = .041 < |1 - .95| = .05; recall 10/11 holds at 0.5 (fp 1) and 0.4 (fp 2);
#   anomaly-seg scans from the low threshold up and keeps the first minimum -> 0.4, FPR = 2/4.
# AUROC = (3.5 + 10 + 10.5 + 11) / 44 (one term per in-distribution pixel: anomalies above + ties / 2)
SCORE_B = np.array([[0.95, 0.9, 0.9, 0.8], [0.8, 0.8, 0.8, 0.7], [0.7, 0.6, 0.6, 0.5], [0.4, 0.2, 0.2, 0.1]])
LABEL_B = np.array([[V, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0]])
AP_B = Fraction(2, 11) + Fraction(3, 11) * Fraction(5, 6) + Fraction(2, 11) * Fraction(7, 8) + Fraction(2, 11) * Fraction(9, 10) \
    + Fraction(1, 11) * Fraction(10, 11) + Fraction(1, 11) * Fraction(11, 14)


def _sk_reference(score, label):
    from sklearn.metrics import average_precision_score, roc_auc_score

    roi = label != V
    return roc_auc_score(label[roi], score[roi]), average_precision_score(label[roi], score[roi])


@pytest.mark.parametrize("rule", ["closest", "first"])
def test_map_a_by_hand_and_sklearn(rule):
    acc = ImageAveragedAnomaly(rule)
    acc.update(SCORE_A, LABEL_A)
    res = acc.result()
    assert res["auroc"] == pytest.approx(0.8625, abs=1e-12)
    assert res["aupr"] == pytest.approx(0.55 + 1 / 7, abs=1e-12)
    assert res["fpr95"] == pytest.approx(0.3, abs=1e-12)
    sk_auroc, sk_ap = _sk_reference(SCORE_A, LABEL_A)
    assert res["auroc"] == pytest.approx(sk_auroc, abs=1e-12) and res["aupr"] == pytest.approx(sk_ap, abs=1e-12)


def test_map_b_fpr_rules_differ():
    closest, first = ImageAveragedAnomaly("closest"), ImageAveragedAnomaly("first")
    closest.update(SCORE_B, LABEL_B)
    first.update(SCORE_B, LABEL_B)
    assert closest.result()["fpr95"] == pytest.approx(0.5, abs=1e-12)
    assert first.result()["fpr95"] == pytest.approx(0.75, abs=1e-12)
    assert first.result()["auroc"] == pytest.approx(35 / 44, abs=1e-12)
    assert first.result()["aupr"] == pytest.approx(float(AP_B), abs=1e-12)
    sk_auroc, sk_ap = _sk_reference(SCORE_B, LABEL_B)
    assert first.result()["auroc"] == pytest.approx(sk_auroc, abs=1e-12)
    assert first.result()["aupr"] == pytest.approx(sk_ap, abs=1e-12)


def test_pooled_on_one_image_equals_the_hand_values():
    # map B pooled alone: SegmentMeIfYouCan takes the first TPR >= 95 % (3/4); best F1 over the points
    # 2TP / (2TP + FP + FN): at 0.5: 20 / (20 + 1 + 1) = 10/11 is the maximum.
    pooled = PooledAnomaly()
    pooled.update(SCORE_B, LABEL_B)
    res = pooled.result()
    assert res["ap"] == pytest.approx(float(AP_B), abs=1e-12)
    assert res["fpr95"] == pytest.approx(0.75, abs=1e-12)
    assert res["f1_best"] == pytest.approx(10 / 11, abs=1e-12)
    t = pooled.best_f1_threshold()
    selected = (SCORE_B.astype(np.float32) > t) & (LABEL_B != V)
    assert selected.sum() == 11 and (LABEL_B[selected] == 1).sum() == 10  # the 0.5 operating point


def test_pooled_and_image_averaged_differ_on_two_images():
    # each image separates perfectly (per-image AUROC = AP = 1, FPR95 = 0), but image 2's
    # in-distribution pixels score above image 1's anomaly. Pooled: 0.9 (A), 0.8 0.7 0.6 (N), 0.4 (A):
    # AP = 1/2 * 1 + 1/2 * 2/5 = 0.7; FPR at the first TPR >= 95 % (at 0.4) = 3/6.
    labels = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    scores = np.array([[[0.4, 0.3], [0.2, 0.1]], [[0.9, 0.8], [0.7, 0.6]]])
    averaged, pooled = ImageAveragedAnomaly("first"), PooledAnomaly()
    for s, l in zip(scores, labels):
        averaged.update(s, l)
        pooled.update(s, l)
    assert averaged.result() == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}
    res = pooled.result()
    assert res["ap"] == pytest.approx(0.7, abs=1e-12) and res["fpr95"] == pytest.approx(0.5, abs=1e-12)


def test_image_averaged_skips_images_without_both_classes():
    acc = ImageAveragedAnomaly("closest")
    acc.update(SCORE_A, LABEL_A)
    acc.update(SCORE_A, np.where(LABEL_A == 1, 0, LABEL_A))  # no anomaly: skipped, as anomaly-seg does
    per = acc.per_image()
    assert np.isnan(per["auroc"][1]) and acc.result()["auroc"] == pytest.approx(0.8625)
    empty = ImageAveragedAnomaly()
    empty.update(SCORE_A, np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="both anomalous and in-distribution"):
        empty.result()


def test_pooled_matches_sklearn_on_float16_scores():
    from sklearn.metrics import average_precision_score, roc_curve

    rng = np.random.default_rng(1)
    labels = (rng.random((3, 20, 30)) < 0.2).astype(np.int64)
    labels[:, :2] = V
    scores = (rng.normal(size=labels.shape) + 1.2 * (labels == 1)).astype(np.float16)  # many ties
    pooled = PooledAnomaly()
    for s, l in zip(scores, labels):
        pooled.update(s, l)
    roi = labels != V
    y, s = labels[roi], scores[roi].astype(np.float64)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    res = pooled.result()
    assert res["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert res["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_histogram_is_monotone_and_exact_at_float16():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(0, 1e3, 500), rng.normal(0, 1e-3, 500), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float16)
    positive = rng.random(values.size) < 0.3
    hist = OrderedHistogram()
    hist.add(values, positive)
    thresholds, tp, fp = hist.curve()
    _, tp_exact, fp_exact = exact_curve(values, positive)
    np.testing.assert_array_equal(tp, tp_exact)
    np.testing.assert_array_equal(fp, fp_exact)
    for t, n in zip(thresholds, tp + fp):  # "score > threshold" selects exactly the counted pixels
        assert np.count_nonzero(values.astype(np.float32) > t) == n


# ---------------------------------------------------------------- component level (SegmentMeIfYouCan)
def _two_blobs():
    # Ground truth: blob A rows 1-4 x cols 1-3 (12 px) and blob B rows 1-4 x cols 5-7 (12 px), one
    # in-distribution column (4) between them, so they are two 8-connected components.
    # One predicted component: rows 1-3 x cols 2-6 (15 px) plus (0, 3) and (0, 4): 17 px.
    #   on A: rows 1-3 x cols 2-3 = 6; on B: rows 1-3 x cols 5-6 = 6; on no object: 3 + 2 = 5.
    # sIoU(A) = |A ∩ P| / (|P| + |A| - |A ∩ P| - |P on B|) = 6 / (17 + 12 - 6 - 6) = 6/17 (≈ 0.353);
    #   without the adjustment for B it would be 6 / 23. sIoU(B) = 6/17 by symmetry.
    # PPV(P) = 12/17 (≈ 0.706).
    # τ in {.25, .30, .35}: TP 2, FN 0, FP 0 -> F1 = 1; τ in {.40 .. .70}: TP 0, FN 2, FP 0 -> 0;
    # τ = .75: PPV < τ -> FP 1 -> 0. mean F1 = 3/11.
    label = np.zeros((6, 10), dtype=np.int64)
    label[1:5, 1:4] = 1
    label[1:5, 5:8] = 1
    label[:, 9] = V
    anomaly = np.zeros(label.shape)
    anomaly[1:4, 2:7] = 0.9
    anomaly[0, 3:5] = 0.9
    anomaly[:, 9] = 0.9  # void: never part of a prediction
    return anomaly, label


def test_siou_two_blobs_one_prediction():
    anomaly, label = _two_blobs()
    comp = ComponentMetrics("obstacle", min_pred_size=0, min_gt_size=0)
    comp.update(anomaly, label, threshold=0.5)
    res = comp.result()
    assert res["siou"] == pytest.approx(6 / 17, abs=1e-12)
    assert res["ppv"] == pytest.approx(12 / 17, abs=1e-12)
    assert res["mean_f1"] == pytest.approx(3 / 11, abs=1e-12)


def test_touching_blobs_are_one_component_and_size_filters_apply():
    anomaly, label = _two_blobs()
    label[1:5, 4] = 1  # close the gap: one 28-px object; the prediction covers 15 of it, 2 px outside
    comp = ComponentMetrics("obstacle", min_pred_size=0, min_gt_size=0)
    comp.update(anomaly, label, threshold=0.5)
    assert comp.result()["siou"] == pytest.approx(15 / (17 + 28 - 15), abs=1e-12)
    # Obstacle track (50 / 10): the 17-px prediction is dropped -> sIoU 0, no predicted component.
    track = ComponentMetrics("obstacle")
    track.update(anomaly, label, threshold=0.5)
    res = track.result()
    assert res["siou"] == 0.0 and np.isnan(res["ppv"])
    # A ground-truth object smaller than min_gt_size turns void, and so do the predicted pixels on it.
    small = ComponentMetrics("anomaly", min_pred_size=0, min_gt_size=13)
    anomaly, label = _two_blobs()
    label[1:5, 5:8] = 0
    label[1:5, 5:9] = 1  # B now 16 px, A stays 12 px (< 13: void, with the prediction pixels on it)
    small.update(anomaly, label, threshold=0.5)
    # P inside the ROI: 17 - 6 (on the voided A) = 11 px, 6 on B; sIoU(B) = 6 / (11 + 16 - 6) = 6/21
    assert small.result()["siou"] == pytest.approx(6 / 21, abs=1e-12)
    assert small.result()["ppv"] == pytest.approx(6 / 11, abs=1e-12)


# ---------------------------------------------------------------- confusion, calibration, risk
def test_miou_and_pixel_accuracy_against_sklearn():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(3)
    target = rng.integers(0, 5, (3, 12, 12))
    target[:, :, 0] = V
    target[target == 4] = 3  # class 4 never in the targets; predicted sometimes -> IoU 0
    pred = np.where(rng.random(target.shape) < 0.6, np.where(target == V, 0, target), rng.integers(0, 5, target.shape))
    acc = ConfusionAccumulator(6, V)  # class 5: in neither -> left out of the mean
    for p, t in zip(pred, target):
        acc.update(p, t)
    valid = target != V
    cm = confusion_matrix(target[valid], pred[valid], labels=list(range(6)))
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    expected = tp[union > 0] / union[union > 0]
    assert acc.miou() == pytest.approx(expected.mean(), abs=1e-12)
    assert np.isnan(acc.per_class_iou()[5]) and acc.per_class_iou()[4] == 0.0
    assert acc.pixel_accuracy() == pytest.approx(tp.sum() / cm.sum(), abs=1e-12)
    # per image: the same definition on one image's matrix
    cm0 = confusion_matrix(target[0][valid[0]], pred[0][valid[0]], labels=list(range(6)))
    u0 = cm0.sum(0) + cm0.sum(1) - np.diag(cm0)
    assert image_iou(pred[0], target[0], 6, V) == pytest.approx((np.diag(cm0)[u0 > 0] / u0[u0 > 0]).mean(), abs=1e-12)
    with pytest.raises(ValueError, match="target classes"):
        acc.update(pred[0], np.full((12, 12), 7))


def _probs_case(seed=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 4, 9, 11)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32)
    probs[0, :, 0, 0] = (1.0, 0.0, 0.0, 0.0)  # a confidence of exactly 1: torchmetrics' extra bin
    target = rng.integers(0, 4, (2, 9, 11))
    target[:, 3, :] = V
    return probs, target


def test_pixel_ece_against_torchmetrics_on_all_pixels():
    import torch
    from torchmetrics.classification import MulticlassCalibrationError

    probs, target = _probs_case()
    acc = CalibrationAccumulator(n_bins=15)
    for p, t in zip(probs, target):
        acc.update(p, t, ignore_index=V)
    flat_p = torch.from_numpy(np.moveaxis(probs, 1, -1).reshape(-1, 4))
    flat_t = torch.from_numpy(target.reshape(-1))
    keep = flat_t != V
    ref = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(flat_p[keep], flat_t[keep])
    assert acc.result()["ece"] == pytest.approx(float(ref), abs=1e-6)
    assert acc.pixels == int(keep.sum())


def test_pixel_nll_and_brier_against_the_direct_formula():
    probs, target = _probs_case(5)
    acc = CalibrationAccumulator()
    for p, t in zip(probs, target):
        acc.update(p, t, ignore_index=V)
    p = np.moveaxis(probs, 1, -1).reshape(-1, 4).astype(np.float64)
    t = target.reshape(-1)
    keep = t != V
    p, t = p[keep], t[keep]
    onehot = np.eye(4)[t]
    res = acc.result()
    assert res["nll"] == pytest.approx(np.mean(-np.log(np.maximum(p[np.arange(t.size), t], np.finfo(np.float32).tiny))), rel=1e-6)
    assert res["brier"] == pytest.approx(np.mean(((p - onehot) ** 2).sum(axis=1)), rel=1e-6)


def test_calibration_subsample_is_seeded_and_recorded():
    probs, target = _probs_case(6)
    counts = []
    for _ in range(2):
        acc = CalibrationAccumulator(subsample=0.5, seed=3)
        for p, t in zip(probs, target):
            acc.update(p, t, ignore_index=V)
        counts.append((acc.pixels, acc.result()["ece"]))
    assert counts[0] == counts[1] and 0 < counts[0][0] < (target != V).sum()
    assert acc.subsample == 0.5


def test_pixel_aurc_equals_the_classification_aurc():
    from robustbench_x.metrics.failure import aurc

    rng = np.random.default_rng(7)
    conf = rng.random((2, 10, 10)).astype(np.float16)  # float16: exact in the histogram, with ties
    correct = rng.random(conf.shape) < conf
    assert pixel_aurc(conf, correct) == pytest.approx(aurc(conf.ravel().astype(np.float64), correct.ravel()), abs=1e-12)


def test_specs_are_named_and_protocols_use_registered_metrics():
    names = {s.name for s in METRIC_SPECS}
    assert len(names) == len(METRIC_SPECS)
    for protocol, metrics in PROTOCOL_METRICS.items():
        assert set(metrics) <= names, protocol


def test_metric_specs_pass_the_conformance_checks():
    from robustbench_x.testing.checks import check_metric_direction, check_metric_rejects_bad_input, check_metric_value_sane

    for spec in METRIC_SPECS:
        check_metric_value_sane(spec)
        check_metric_direction(spec)
        check_metric_rejects_bad_input(spec)


def test_max_and_argmax_match_numpy_with_ties():
    from rbx_segmentation.metrics.calibration import max_and_argmax

    rng = np.random.default_rng(8)
    probs = rng.integers(0, 3, (5, 400)).astype(np.float32)  # many ties: the first class wins, as np.argmax
    best, arg = max_and_argmax(probs)
    np.testing.assert_array_equal(best, probs.max(axis=0))
    np.testing.assert_array_equal(arg, probs.argmax(axis=0))
