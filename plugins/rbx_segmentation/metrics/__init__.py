"""Segmentation and anomaly-segmentation metrics (numpy, streaming: every
accumulator takes one image at a time and holds a fixed amount of memory).

* :class:`ConfusionAccumulator`, :func:`image_iou` -- mIoU, per-class IoU, pixel accuracy;
* :class:`CalibrationAccumulator` -- pixel ECE (torchmetrics binning), NLL, Brier;
* :class:`ImageAveragedAnomaly` -- StreetHazards / BDD-Anomaly AUROC, AUPR, FPR95 per image;
* :class:`PooledAnomaly` -- SegmentMeIfYouCan pooled AP, FPR at 95 % TPR, best F1;
* :class:`ComponentMetrics` -- SegmentMeIfYouCan sIoU, PPV, mean F1 with the track's size filters;
* :func:`pixel_aurc`, :class:`RiskCoverageAccumulator` -- pixel failure prediction.

:data:`METRIC_SPECS` names them for the registry; :data:`PROTOCOL_METRICS`
says which an anomaly subset is scored with under its benchmark's protocol
(a dataset's ``anomaly_protocol(subset)``). Conventions and sources:
``docs/metrics.md``, section "Segmentation and anomaly segmentation".
"""

from __future__ import annotations

from robustbench_x.api import MetricSpec
from rbx_segmentation.metrics.anomaly import ImageAveragedAnomaly, PooledAnomaly
from rbx_segmentation.metrics.calibration import CalibrationAccumulator
from rbx_segmentation.metrics.components import ComponentMetrics
from rbx_segmentation.metrics.confusion import ConfusionAccumulator, image_iou
from rbx_segmentation.metrics.risk import RiskCoverageAccumulator, pixel_aurc

__all__ = [
    "ConfusionAccumulator",
    "image_iou",
    "CalibrationAccumulator",
    "ImageAveragedAnomaly",
    "PooledAnomaly",
    "ComponentMetrics",
    "RiskCoverageAccumulator",
    "pixel_aurc",
    "METRIC_SPECS",
    "PROTOCOL_METRICS",
]

_F = "rbx_segmentation.metrics.functions"
_SEG = f"{_F}:segmentation_check_cases"
_ANO = f"{_F}:anomaly_check_cases"

METRIC_SPECS: list[MetricSpec] = [
    MetricSpec("miou", "segmentation", f"{_F}:miou", True, 100, "mean intersection over union over the classes",
               "dataset-level confusion matrix; classes absent from targets and predictions left out", _SEG),
    MetricSpec("pixel-accuracy", "segmentation", f"{_F}:pixel_accuracy", True, 100, "fraction of labelled pixels predicted right",
               "ignore label dropped", _SEG),
    MetricSpec("pixel-ece", "segmentation", f"{_F}:pixel_ece", False, 100, "expected calibration error over pixels (15 bins)",
               "every non-ignored pixel (torchmetrics binning); torch-uncertainty samples 1 %", _SEG),
    MetricSpec("pixel-nll", "segmentation", f"{_F}:pixel_nll", False, 1, "mean negative log-likelihood of the true class per pixel",
               "probability floored at 1.2e-38", _SEG),
    MetricSpec("pixel-brier", "segmentation", f"{_F}:pixel_brier", False, 1, "multiclass Brier score per pixel",
               "sum over classes, not divided by C", _SEG),
    MetricSpec("pixel-aurc", "segmentation", f"{_F}:pixel_aurc_metric", False, 1000, "area under the risk-coverage curve over pixels",
               "tie-grouped (FD-Shifts), confidences grouped at 12 significant bits", _SEG),
    MetricSpec("auroc-img", "anomaly-segmentation", f"{_F}:auroc_img", True, 100, "AUROC per image, averaged over images",
               "StreetHazards / BDD-Anomaly: images with both classes only", _ANO),
    MetricSpec("aupr-img", "anomaly-segmentation", f"{_F}:aupr_img", True, 100, "average precision per image, averaged over images",
               "StreetHazards / BDD-Anomaly: anomaly positive, sklearn AP", _ANO),
    MetricSpec("fpr95-img-closest", "anomaly-segmentation", f"{_F}:fpr95_img_closest", False, 100,
               "FPR at 95 % recall per image, averaged", "threshold whose recall is closest to 95 % (anomaly-seg)", _ANO),
    MetricSpec("fpr95-img-first", "anomaly-segmentation", f"{_F}:fpr95_img_first", False, 100,
               "FPR at 95 % TPR per image, averaged", "first threshold reaching 95 % TPR (torch-uncertainty)", _ANO),
    MetricSpec("ap-pooled", "anomaly-segmentation", f"{_F}:ap_pooled", True, 100, "average precision over all pixels pooled",
               "SegmentMeIfYouCan area_PRC; 12-significant-bit score bins", _ANO),
    MetricSpec("fpr95-pooled", "anomaly-segmentation", f"{_F}:fpr95_pooled", False, 100, "FPR at 95 % TPR over all pixels pooled",
               "SegmentMeIfYouCan tpr95_fpr: first threshold reaching 95 % TPR", _ANO),
    MetricSpec("f1-best-pooled", "anomaly-segmentation", f"{_F}:f1_best_pooled", True, 100, "best pixel F1 over thresholds, pooled",
               "SegmentMeIfYouCan best_f1", _ANO),
    MetricSpec("siou", "anomaly-segmentation", f"{_F}:siou", True, 100, "mean component sIoU of the ground-truth anomalies",
               "SegmentMeIfYouCan, 8-connected, best-F1 threshold, the track's size filters", _ANO),
    MetricSpec("ppv", "anomaly-segmentation", f"{_F}:ppv", True, 100, "mean component precision of the predicted anomalies",
               "SegmentMeIfYouCan prec_pred", _ANO),
    MetricSpec("mean-f1", "anomaly-segmentation", f"{_F}:mean_f1", True, 100, "component F1 averaged over sIoU thresholds 0.25..0.75",
               "SegmentMeIfYouCan f1_mean, counts summed over images", _ANO),
]

#: the metrics an anomaly subset is scored with under its benchmark's protocol
PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {
    "streethazards": ("auroc-img", "aupr-img", "fpr95-img-closest"),
    "smiyc-anomaly": ("ap-pooled", "fpr95-pooled", "f1-best-pooled", "siou", "ppv", "mean-f1"),
    "smiyc-obstacle": ("ap-pooled", "fpr95-pooled", "f1-best-pooled", "siou", "ppv", "mean-f1"),
    "fishyscapes": ("ap-pooled", "fpr95-pooled"),
}
