"""Pixel-level anomaly metrics under each benchmark's convention.

Inputs, one image at a time: ``anomaly`` (H, W), **higher = more anomalous**
(the evaluator passes ``-score``), and ``label`` (H, W) in the
SegmentMeIfYouCan encoding: 0 in-distribution, 1 anomaly, 255 void (void
pixels are dropped). The anomaly is the positive class.

* :class:`ImageAveragedAnomaly` -- StreetHazards / BDD-Anomaly (hendrycks/anomaly-seg
  ``eval_ood.py`` + ``anom_utils.py``): AUROC, AUPR (sklearn average precision)
  and FPR95 per image, over the images that have both anomalous and
  in-distribution pixels, then averaged over those images. FPR95 rule
  ``"closest"``: the threshold whose recall is closest to 95 % (anomaly-seg);
  ``"first"``: the first threshold reaching 95 % TPR (torch-uncertainty's
  ``SegmentationFPR95``, SegmentMeIfYouCan). Exact (each image is sorted).
* :class:`PooledAnomaly` -- SegmentMeIfYouCan pixel level
  (SegmentMeIfYouCan/road-anomaly-benchmark ``metrics/pixel_classification.py``,
  ``pixel_classification_curves.py``): one curve over every pixel of the
  dataset; AP (``area_PRC``), FPR at the first threshold with TPR >= 95 %
  (``tpr95_fpr``) and the best F1 (``best_f1``). Streamed through
  :class:`~rbx_segmentation.metrics.curves.OrderedHistogram` (scores rounded
  to 12 significant bits, 16 MiB whatever the dataset size); the official
  code bins too (768 per-frame percentile bins or 4096 uniform bins on
  [0, 1]), so its numbers differ from exact ones by its own binning.
"""

from __future__ import annotations

import numpy as np

from rbx_segmentation.metrics.curves import (
    OrderedHistogram,
    auroc,
    average_precision,
    best_f1,
    exact_curve,
    fpr_at_tpr_closest,
    fpr_at_tpr_first,
)

__all__ = ["ImageAveragedAnomaly", "PooledAnomaly", "split_roi", "VOID"]

VOID = 255
FPR_RULES = ("closest", "first")


def split_roi(anomaly: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, is_anomaly)`` of the non-void pixels; checks shapes and the 0/1/255 encoding."""
    anomaly, label = np.asarray(anomaly), np.asarray(label)
    if anomaly.shape != label.shape or anomaly.ndim != 2:
        raise ValueError(f"anomaly map {anomaly.shape} and label mask {label.shape} must both be (H, W)")
    bad = ~np.isin(label, (0, 1, VOID))
    if bad.any():
        raise ValueError(
            f"anomaly labels must be 0 (in-distribution), 1 (anomaly) or 255 (void); found {np.unique(label[bad])[:5].tolist()}: "
            "fix: convert the mask with the dataset's anomaly subset (SegmentMeIfYouCan encoding)"
        )
    roi = label != VOID
    return anomaly[roi], label[roi] == 1


class ImageAveragedAnomaly:
    """AUROC / AUPR / FPR95 per image, averaged over the images with both classes."""

    def __init__(self, fpr_rule: str = "closest") -> None:
        if fpr_rule not in FPR_RULES:
            raise ValueError(f"fpr_rule must be one of {FPR_RULES}, got {fpr_rule!r}")
        self.fpr_rule = fpr_rule
        self._values: dict[str, list[float]] = {"auroc": [], "aupr": [], "fpr95": []}

    def update(self, anomaly: np.ndarray, label: np.ndarray) -> None:
        scores, positive = split_roi(anomaly, label)
        n_pos = int(positive.sum())
        if n_pos == 0 or n_pos == positive.size:
            for values in self._values.values():
                values.append(float("nan"))  # skipped, as anomaly-seg does with an image lacking either class
            return
        _, tp, fp = exact_curve(scores, positive)
        fpr = fpr_at_tpr_closest if self.fpr_rule == "closest" else fpr_at_tpr_first
        self._values["auroc"].append(auroc(tp, fp))
        self._values["aupr"].append(average_precision(tp, fp))
        self._values["fpr95"].append(fpr(tp, fp))

    def per_image(self) -> dict[str, np.ndarray]:
        """One value per updated image, NaN where the image was skipped."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in self._values.items()}

    def result(self) -> dict[str, float]:
        per = self.per_image()
        if per["auroc"].size == 0 or np.isnan(per["auroc"]).all():
            raise ValueError("no image has both anomalous and in-distribution pixels: image-averaged metrics are undefined")
        return {k: float(np.nanmean(v)) for k, v in per.items()}


class PooledAnomaly:
    """SegmentMeIfYouCan pixel level over all pixels pooled: AP, FPR at 95 % TPR (first), best F1."""

    def __init__(self, mantissa_bits: int = 11) -> None:
        self.histogram = OrderedHistogram(mantissa_bits)

    def update(self, anomaly: np.ndarray, label: np.ndarray) -> None:
        scores, positive = split_roi(anomaly, label)
        self.histogram.add(scores, positive)

    def _curve(self):
        if self.histogram.positives == 0 or self.histogram.negatives == 0:
            raise ValueError("pooled anomaly metrics need both anomalous and in-distribution pixels")
        return self.histogram.curve()

    def result(self) -> dict[str, float]:
        _, tp, fp = self._curve()
        return {"ap": average_precision(tp, fp), "fpr95": fpr_at_tpr_first(tp, fp), "f1_best": best_f1(tp, fp)[0]}

    def best_f1_threshold(self) -> float:
        """The threshold of the best F1: ``anomaly > t`` selects that operating point's pixels
        (what :class:`~rbx_segmentation.metrics.components.ComponentMetrics` binarises with,
        as SegmentMeIfYouCan's ``get_thresh_p_from_curve``)."""
        thresholds, tp, fp = self._curve()
        return float(thresholds[best_f1(tp, fp)[1]])
