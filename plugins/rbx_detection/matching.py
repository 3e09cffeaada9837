"""One-to-one matching of detections to ground-truth boxes within a frame
(``docs/metrics.md#detection``).

The rule is COCO's greedy assignment (pycocotools ``cocoeval.py``,
``evaluateImg``): detections are taken in decreasing score (ties: the order
given, a stable sort), and each takes the still-unmatched ground-truth box of
highest IoU among those with IoU >= ``iou_threshold`` and, when
``same_class``, the same sign type. On an exact IoU tie between two boxes
this takes the first box where pycocotools takes the later one; nothing else
differs. A matched
detection is a true positive, an unmatched one a false positive, an
unmatched box a false negative. The defaults, IoU >= 0.5 with the same
class, are ours: the CURE-TSD papers report precision and recall without
stating their matching rule; 0.5 is the PASCAL VOC / COCO AP50 threshold.

Boxes are ``x1, y1, x2, y2`` in pixels, continuous (area
``(x2 - x1) * (y2 - y1)``, as torchvision's ``box_iou``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IOU_THRESHOLD = 0.5
SAME_CLASS = True


class FrameCounts(NamedTuple):
    tp: int
    fp: int
    fn: int


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of two sets of ``x1, y1, x2, y2`` boxes (0 where the union is empty)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_frame(
    det_boxes: np.ndarray,
    det_classes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    *,
    iou_threshold: float = IOU_THRESHOLD,
    same_class: bool = SAME_CLASS,
) -> tuple[FrameCounts, np.ndarray]:
    """Counts of one frame and, per detection (in the order given), the index of
    its matched box or -1."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    n_det, n_gt = len(det_scores), len(gt_classes)
    matched = np.full(n_det, -1, dtype=np.int64)
    if n_det and n_gt:
        iou = box_iou(det_boxes, gt_boxes)
        eligible = iou >= iou_threshold
        if same_class:
            eligible &= np.asarray(det_classes)[:, None] == np.asarray(gt_classes)[None, :]
        taken = np.zeros(n_gt, dtype=bool)
        for d in np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable"):
            free = eligible[d] & ~taken
            if free.any():
                g = int(np.argmax(np.where(free, iou[d], -1.0)))
                taken[g] = True
                matched[d] = g
    tp = int((matched >= 0).sum())
    return FrameCounts(tp, n_det - tp, n_gt - tp), matched
