"""Per-frame one-to-one matching, the P / R / F-beta metrics against
scikit-learn, and the evaluator's per-level aggregation worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rbx_detection.evaluate import metric_values
from rbx_detection.matching import box_iou, match_frame
from rbx_detection.metrics import f_half, f_two, precision, recall

BOX = np.array([[10.0, 10.0, 30.0, 30.0]])


def match(det_boxes, det_classes, det_scores, gt_boxes=BOX, gt_classes=(6,), **kw):
    return match_frame(np.asarray(det_boxes, float).reshape(-1, 4), np.asarray(det_classes), np.asarray(det_scores, float), np.asarray(gt_boxes, float).reshape(-1, 4), np.asarray(gt_classes), **kw)


def test_box_iou_matches_torchvision():
    from torchvision.ops import box_iou as reference

    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 50, (7, 2, 2)), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 50, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    import torch

    np.testing.assert_allclose(box_iou(a, b), reference(torch.as_tensor(a), torch.as_tensor(b)).numpy(), rtol=1e-12)


def test_two_detections_on_one_box_the_higher_score_matches():
    counts, matched = match([[10, 10, 30, 30], [11, 11, 30, 30]], [6, 6], [0.2, 0.9])
    assert counts == (1, 1, 0)
    assert matched.tolist() == [-1, 0]  # the 0.9 detection takes the box, though the 0.2 one overlaps it exactly


def test_wrong_class_is_a_false_positive_and_a_miss_unless_class_is_ignored():
    assert match([[10, 10, 30, 30]], [14], [0.9])[0] == (0, 1, 1)
    assert match([[10, 10, 30, 30]], [14], [0.9], same_class=False)[0] == (1, 0, 0)


def test_empty_frame_no_detections_and_no_ground_truth():
    assert match(np.zeros((0, 4)), [], [], gt_boxes=np.zeros((0, 4)), gt_classes=[])[0] == (0, 0, 0)
    assert match(np.zeros((0, 4)), [], [])[0] == (0, 0, 1)  # a sign, no detection: a miss
    assert match([[0, 0, 5, 5]], [6], [0.5], gt_boxes=np.zeros((0, 4)), gt_classes=[])[0] == (0, 1, 0)  # a detection, no sign


def test_iou_threshold_is_inclusive_and_a_parameter():
    half = [[10, 10, 30, 20]]  # IoU with BOX = 200 / 400 = 0.5 exactly
    assert match(half, [6], [1.0])[0] == (1, 0, 0)
    assert match(half, [6], [1.0], iou_threshold=0.6)[0] == (0, 1, 1)
    with pytest.raises(ValueError, match="iou_threshold"):
        match(half, [6], [1.0], iou_threshold=0.0)


def test_greedy_takes_the_best_free_box_not_a_global_optimum():
    # Detection A (score .9) overlaps boxes 0 (IoU .98) and 1 (IoU .68); B (score .8) only box 0 (IoU .54).
    # COCO's greedy rule gives box 0 to A and leaves B without a box (the optimum would pair A-1, B-0).
    gt = [[0, 0, 10, 10], [2, 0, 12, 10]]
    a = [0.2, 0, 10, 10]
    counts, matched = match([a, [-3, 0, 7, 10]], [6, 6], [0.9, 0.8], gt_boxes=gt, gt_classes=[6, 6])
    iou = box_iou(np.asarray([a, [-3, 0, 7, 10]]), np.asarray(gt, float))
    assert iou[0, 0] > iou[0, 1] >= 0.5 and iou[1, 0] >= 0.5 > iou[1, 1]
    assert matched.tolist() == [0, -1] and counts == (1, 1, 1)


def _as_labels(tp, fp, fn):
    """Counts as binary vectors scikit-learn reads: TP (1, 1), FP (0, 1), FN (1, 0)."""
    y_true = np.r_[np.ones(tp), np.zeros(fp), np.ones(fn)]
    y_pred = np.r_[np.ones(tp), np.ones(fp), np.zeros(fn)]
    return y_true, y_pred


@pytest.mark.parametrize("tp, fp, fn", [(7, 3, 5), (1, 0, 9), (4, 11, 0), (0, 2, 3)])
def test_metrics_match_scikit_learn(tp, fp, fn):
    from sklearn.metrics import fbeta_score, precision_score, recall_score

    rng = np.random.default_rng(tp * 100 + fp * 10 + fn)
    # spread the totals over 6 frames: the metrics sum counts over frames first
    counts = {k: rng.multinomial(v, np.ones(6) / 6) for k, v in (("tp", tp), ("fp", fp), ("fn", fn))}
    y_true, y_pred = _as_labels(tp, fp, fn)
    assert precision(**counts) == pytest.approx(precision_score(y_true, y_pred, zero_division=0))
    assert recall(**counts) == pytest.approx(recall_score(y_true, y_pred))
    assert f_half(**counts) == pytest.approx(fbeta_score(y_true, y_pred, beta=0.5, zero_division=0))
    assert f_two(**counts) == pytest.approx(fbeta_score(y_true, y_pred, beta=2.0, zero_division=0))


def test_undefined_values_raise_with_the_reason():
    none = {"tp": np.zeros(3, np.int64), "fp": np.zeros(3, np.int64), "fn": np.array([1, 0, 2])}
    with pytest.raises(ValueError, match="no detection"):
        precision(**none)
    assert recall(**none) == 0.0 and f_half(**none) == 0.0 and f_two(**none) == 0.0
    with pytest.raises(ValueError, match="no ground-truth sign"):
        recall(tp=np.zeros(2, np.int64), fp=np.array([1, 0]), fn=np.zeros(2, np.int64))


class _Spec:
    def __init__(self, name, fn):
        self.name, self.fn, self.higher_is_better = name, fn, True


def test_per_level_and_per_type_aggregation_by_hand():
    # 6 frames: (subset, tp, fp, fn)
    frames = [("id", 2, 0, 0), ("c/LensBlur/1", 1, 1, 0), ("c/LensBlur/1", 0, 0, 1), ("c/Darkening/1", 1, 0, 1), ("c/LensBlur/2", 0, 2, 2), ("c/Darkening/2", 0, 0, 0)]
    table = {"subset": np.array([f[0] for f in frames], dtype=object)} | {k: np.array([f[i] for f in frames]) for i, k in ((1, "tp"), (2, "fp"), (3, "fn"))}
    specs = [_Spec("p", "rbx_detection.metrics:precision"), _Spec("r", "rbx_detection.metrics:recall"), _Spec("f2", "rbx_detection.metrics:f_two")]
    values = {(v.subset, v.metric): v for v in metric_values(specs, table)}
    # level 1 = LensBlur/1 + Darkening/1: TP 2, FP 1, FN 2 -> P 2/3, R 2/4, F2 = 5*2 / (5*2 + 4*2 + 1) = 10/19
    assert values[("level/1", "p")].value == pytest.approx(2 / 3) and values[("level/1", "r")].value == pytest.approx(0.5)
    assert values[("level/1", "f2")].value == pytest.approx(10 / 19) and values[("level/1", "p")].n == 3
    # level 2 = LensBlur/2 + Darkening/2: TP 0, FP 2, FN 2
    assert values[("level/2", "p")].value == 0.0 and values[("level/2", "r")].value == 0.0
    # LensBlur over its levels: TP 1, FP 3, FN 3
    assert values[("c/LensBlur/all", "p")].value == pytest.approx(1 / 4) and values[("c/LensBlur/all", "r")].value == pytest.approx(1 / 4)
    # Darkening/2 has neither detections nor signs: every metric undefined, with the reason
    assert values[("c/Darkening/2", "p")].error.startswith("metric undefined: no detection") and np.isnan(values[("c/Darkening/2", "p")].value)
    assert values[("c/Darkening/2", "f2")].error is not None
    # every challenge frame (TP 2, FP 3, FN 4), and every frame with the clean one (TP 4, FP 3, FN 4)
    assert values[("challenged", "p")].value == pytest.approx(2 / 5) and values[("challenged", "r")].value == pytest.approx(2 / 6)
    assert values[("all", "p")].value == pytest.approx(4 / 7) and values[("all", "r")].value == pytest.approx(4 / 8)
    assert values[("all", "p")].n == 6


def test_every_detection_is_kept_by_default_negative_scores_included():
    """Scores may be logits: no default cut-off drops the negative ones."""
    from rbx_detection.methods import Detections

    class Ctx:
        class model:  # noqa: N801
            name = "logits"

            @staticmethod
            def detect(dataset, subset):
                return [(np.array([[0, 0, 4, 4], [5, 5, 9, 9]]), np.array([3, 4]), np.array([-0.3, 0.5]))]

        dataset = None

    assert Detections().score(Ctx, "id")["detections"][0][:, 4].tolist() == [-0.3, 0.5]
    assert Detections(min_score=0.0).score(Ctx, "id")["detections"][0][:, 4].tolist() == [0.5]
