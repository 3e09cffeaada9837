"""SegmentMeIfYouCan component-level metrics: sIoU, PPV and mean F1.

Source: SegmentMeIfYouCan/road-anomaly-benchmark ``metrics/instance_segmentation.py``
(``default_instancer``, ``segment_metrics``, ``MetricSegment.aggregate``);
Chan et al., "SegmentMeIfYouCan", NeurIPS 2021 Datasets and Benchmarks, Sec. 4.

Per image, with ``label`` in {0, 1, 255} and a threshold ``t`` (the benchmark
uses the threshold of the best pooled pixel F1,
:meth:`~rbx_segmentation.metrics.anomaly.PooledAnomaly.best_f1_threshold`):

1. predicted anomaly = ``anomaly > t``, set to 0 on void pixels;
2. 8-connected components of the prediction and of the ground truth (label 1);
3. predicted components smaller than ``min_pred_size`` pixels are dropped;
   ground-truth components smaller than ``min_gt_size`` become void
   (AnomalyTrack 500 / 100, ObstacleTrack 50 / 10);
4. only the region of interest (label != 255 after step 3) is counted.

For a ground-truth component ``k`` and the set ``P(k)`` of predicted
components that intersect it, ``sIoU(k) = |k ∩ P(k)| / |(k ∪ P(k)) \\ A(k)|``
where ``A(k)`` are the pixels of ``P(k)`` lying on *other* ground-truth
components (a prediction spanning two objects is not penalised on either for
the part that covers the other). For a predicted component ``j``,
``PPV(j) = |j ∩ ground truth| / |j|``. At each of the 11 thresholds
``τ ∈ {0.25, 0.30, ..., 0.75}``: TP = components with sIoU >= τ, FN = those
below, FP = predicted components with PPV < τ, summed over images;
``F1_τ = 2 TP / (2 TP + FN + FP)``; **mean F1** is their mean. **sIoU** and
**PPV** are means over every component of the dataset (not per image).
"""

from __future__ import annotations

import numpy as np

from rbx_segmentation.metrics.anomaly import VOID, split_roi

__all__ = ["ComponentMetrics", "TRACK_SIZES", "SIOU_THRESHOLDS"]

#: (min predicted component size, min ground-truth component size) per track
TRACK_SIZES = {"anomaly": (500, 100), "obstacle": (50, 10)}
SIOU_THRESHOLDS = np.linspace(0.25, 0.75, 11)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy.ndimage import label

    return label(mask, structure=np.ones((3, 3), dtype=np.uint8))


class ComponentMetrics:
    def __init__(self, track: str = "anomaly", *, min_pred_size: int | None = None, min_gt_size: int | None = None) -> None:
        if track not in TRACK_SIZES:
            raise ValueError(f"track must be one of {sorted(TRACK_SIZES)}, got {track!r}")
        pred_size, gt_size = TRACK_SIZES[track]
        self.track = track
        self.min_pred_size = pred_size if min_pred_size is None else int(min_pred_size)
        self.min_gt_size = gt_size if min_gt_size is None else int(min_gt_size)
        self._siou: list[np.ndarray] = []
        self._ppv: list[np.ndarray] = []
        self._counts = np.zeros((len(SIOU_THRESHOLDS), 3), dtype=np.int64)  # TP, FN, FP per τ

    def update(self, anomaly: np.ndarray, label: np.ndarray, threshold: float) -> None:
        split_roi(anomaly, label)  # validates shapes and the encoding
        label = np.asarray(label)
        anomaly = np.asarray(anomaly, dtype=np.float32)
        pred = (anomaly > np.float32(threshold)) & (label != VOID)
        gt_ids, n_gt = _components(label == 1)
        pred_ids, n_pred = _components(pred)
        pred_sizes = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
        pred_ids[(pred_sizes < self.min_pred_size)[pred_ids] & (pred_ids > 0)] = 0
        gt_sizes = np.bincount(gt_ids.ravel(), minlength=n_gt + 1)
        roi = (label != VOID) & ~((gt_sizes < self.min_gt_size)[gt_ids] & (gt_ids > 0))
        g, p = gt_ids[roi].astype(np.int64), pred_ids[roi].astype(np.int64)
        siou, ppv = _segment_scores(g, p)
        self._siou.append(siou)
        self._ppv.append(ppv)
        for i, tau in enumerate(SIOU_THRESHOLDS):
            self._counts[i] += (np.count_nonzero(siou >= tau), np.count_nonzero(siou < tau), np.count_nonzero(ppv < tau))

    def result(self) -> dict[str, float]:
        siou = np.concatenate(self._siou) if self._siou else np.zeros(0)
        ppv = np.concatenate(self._ppv) if self._ppv else np.zeros(0)
        if siou.size == 0:
            raise ValueError("no ground-truth anomaly component (after the size filter): component metrics are undefined")
        tp, fn, fp = self._counts.T.astype(np.float64)
        f1 = 2 * tp / (2 * tp + fn + fp)
        return {"siou": float(siou.mean()), "ppv": float(ppv.mean()) if ppv.size else float("nan"), "mean_f1": float(f1.mean())}


def _segment_scores(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sIoU per ground-truth component and PPV per predicted component, from the ROI's
    (gt id, pred id) pairs; id 0 is background. Works on the joint counts of the pixels
    that belong to some component."""
    gt_ids = np.unique(g[g > 0])
    pred_ids = np.unique(p[p > 0])
    both = (g > 0) | (p > 0)
    width = int(p.max(initial=0)) + 1
    codes, counts = np.unique(g[both] * width + p[both], return_counts=True)
    k_of, j_of = codes // width, codes % width
    pred_size = np.bincount(j_of, weights=counts, minlength=width)
    pred_on_gt = np.bincount(j_of, weights=counts * (k_of > 0), minlength=width)
    gt_size = np.bincount(k_of, weights=counts, minlength=int(g.max(initial=0)) + 1)
    siou = []
    for k in gt_ids.tolist():
        mine = (k_of == k) & (j_of > 0)
        touched, intersection = j_of[mine], float(counts[mine].sum())
        covered = float(pred_size[touched].sum())
        on_other_gt = float(pred_on_gt[touched].sum()) - intersection
        siou.append(intersection / (covered + gt_size[k] - intersection - on_other_gt))
    ppv = pred_on_gt[pred_ids] / pred_size[pred_ids]
    return np.asarray(siou, dtype=np.float64), np.asarray(ppv, dtype=np.float64)
