"""The registered metric functions: whole-subset arrays in, one number out.

They stream the images of the arrays through the accumulators of this package
(an evaluator with images arriving one at a time uses the accumulators
directly). Keywords, by kind:

* ``segmentation``: ``prediction`` (N, H, W) int, ``labels`` (N, H, W) with
  ``ignore_index`` (255), ``num_classes`` (else the largest class seen + 1);
  ``probs`` (N, C, H, W); ``confidence`` and ``correct`` (N, H, W) for AURC
  (``labels`` given: ignored pixels are dropped);
* ``anomaly-segmentation``: ``anomaly`` (N, H, W), higher = more anomalous,
  and ``masks`` (N, H, W) in {0, 1, 255}; ``track`` ("anomaly" / "obstacle")
  and ``threshold`` (default: the best pooled F1 threshold) for components.
"""

from __future__ import annotations

import numpy as np

from rbx_segmentation.metrics.anomaly import ImageAveragedAnomaly, PooledAnomaly
from rbx_segmentation.metrics.calibration import CalibrationAccumulator
from rbx_segmentation.metrics.components import ComponentMetrics
from rbx_segmentation.metrics.confusion import ConfusionAccumulator
from rbx_segmentation.metrics.risk import RiskCoverageAccumulator

IGNORE = 255


def _stack(name: str, value, ndim: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"missing '{name}': segmentation metrics take whole-subset arrays (see rbx_segmentation.metrics.functions)")
    arr = np.asarray(value)
    if arr.ndim != ndim or arr.shape[0] == 0:
        raise ValueError(f"'{name}' must be a non-empty {ndim}-D array (images first), got shape {arr.shape}")
    return arr


def _paired(a_name, a, b_name, b, ndim_a=3):
    a, b = _stack(a_name, a, ndim_a), _stack(b_name, b, 3)
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"'{a_name}' {a.shape} and '{b_name}' {b.shape} do not describe the same images")
    return a, b


def _confusion(prediction, labels, num_classes, ignore_index) -> ConfusionAccumulator:
    prediction, labels = _paired("prediction", prediction, "labels", labels)
    if num_classes is None:
        valid = labels != ignore_index
        num_classes = int(max(prediction.max(), labels[valid].max() if valid.any() else 0)) + 1
    acc = ConfusionAccumulator(num_classes, ignore_index)
    for p, t in zip(prediction, labels):
        acc.update(p, t)
    return acc


def miou(*, prediction=None, labels=None, num_classes=None, ignore_index=IGNORE, **_) -> float:
    return _confusion(prediction, labels, num_classes, ignore_index).miou()


def pixel_accuracy(*, prediction=None, labels=None, num_classes=None, ignore_index=IGNORE, **_) -> float:
    return _confusion(prediction, labels, num_classes, ignore_index).pixel_accuracy()


def _calibration(probs, labels, ignore_index, subsample=None) -> dict[str, float]:
    probs, labels = _paired("probs", probs, "labels", labels, ndim_a=4)
    acc = CalibrationAccumulator(subsample=subsample)
    for p, t in zip(probs, labels):
        acc.update(p, t, ignore_index)
    return acc.result()


def pixel_ece(*, probs=None, labels=None, ignore_index=IGNORE, subsample=None, **_) -> float:
    return _calibration(probs, labels, ignore_index, subsample)["ece"]


def pixel_nll(*, probs=None, labels=None, ignore_index=IGNORE, subsample=None, **_) -> float:
    return _calibration(probs, labels, ignore_index, subsample)["nll"]


def pixel_brier(*, probs=None, labels=None, ignore_index=IGNORE, subsample=None, **_) -> float:
    return _calibration(probs, labels, ignore_index, subsample)["brier"]


def pixel_aurc_metric(*, confidence=None, correct=None, labels=None, ignore_index=IGNORE, **_) -> float:
    confidence, correct = _paired("confidence", confidence, "correct", correct)
    if labels is not None and np.shape(labels) != confidence.shape:
        raise ValueError(f"'labels' {np.shape(labels)} and 'confidence' {confidence.shape} do not describe the same images")
    acc = RiskCoverageAccumulator()
    for i in range(confidence.shape[0]):
        keep = np.ones(confidence.shape[1:], bool) if labels is None else np.asarray(labels[i]) != ignore_index
        acc.update(confidence[i][keep], np.asarray(correct[i])[keep])
    return acc.aurc()


def _image_averaged(anomaly, masks, rule) -> dict[str, float]:
    anomaly, masks = _paired("anomaly", anomaly, "masks", masks)
    acc = ImageAveragedAnomaly(rule)
    for a, m in zip(anomaly, masks):
        acc.update(a, m)
    return acc.result()


def auroc_img(*, anomaly=None, masks=None, **_) -> float:
    return _image_averaged(anomaly, masks, "closest")["auroc"]


def aupr_img(*, anomaly=None, masks=None, **_) -> float:
    return _image_averaged(anomaly, masks, "closest")["aupr"]


def fpr95_img_closest(*, anomaly=None, masks=None, **_) -> float:
    return _image_averaged(anomaly, masks, "closest")["fpr95"]


def fpr95_img_first(*, anomaly=None, masks=None, **_) -> float:
    return _image_averaged(anomaly, masks, "first")["fpr95"]


def _pooled(anomaly, masks) -> PooledAnomaly:
    anomaly, masks = _paired("anomaly", anomaly, "masks", masks)
    acc = PooledAnomaly()
    for a, m in zip(anomaly, masks):
        acc.update(a, m)
    return acc


def ap_pooled(*, anomaly=None, masks=None, **_) -> float:
    return _pooled(anomaly, masks).result()["ap"]


def fpr95_pooled(*, anomaly=None, masks=None, **_) -> float:
    return _pooled(anomaly, masks).result()["fpr95"]


def f1_best_pooled(*, anomaly=None, masks=None, **_) -> float:
    return _pooled(anomaly, masks).result()["f1_best"]


def _components(anomaly, masks, track, threshold) -> dict[str, float]:
    if threshold is None:
        threshold = _pooled(anomaly, masks).best_f1_threshold()
    anomaly, masks = _paired("anomaly", anomaly, "masks", masks)
    acc = ComponentMetrics(track)
    for a, m in zip(anomaly, masks):
        acc.update(a, m, threshold)
    return acc.result()


def siou(*, anomaly=None, masks=None, track="anomaly", threshold=None, **_) -> float:
    return _components(anomaly, masks, track, threshold)["siou"]


def ppv(*, anomaly=None, masks=None, track="anomaly", threshold=None, **_) -> float:
    return _components(anomaly, masks, track, threshold)["ppv"]


def mean_f1(*, anomaly=None, masks=None, track="anomaly", threshold=None, **_) -> float:
    return _components(anomaly, masks, track, threshold)["mean_f1"]


def segmentation_check_cases():
    """Conformance-kit inputs (``MetricSpec.check_cases``) for the ``segmentation`` kind:
    a perfect segmenter (and a confidence that ranks its errors last), a random one, and
    input every metric must reject."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (4, 8, 8))
    labels[:, 0, :] = IGNORE
    truth = np.where(labels == IGNORE, 0, labels)
    correct = rng.random(labels.shape) < 0.7
    perfect = {"prediction": truth, "labels": labels, "num_classes": 3,
               "probs": np.moveaxis(np.eye(3)[truth], -1, 1) * 0.98 + 0.02 / 3, "correct": correct,
               "confidence": np.where(correct, rng.uniform(0.6, 1.0, labels.shape), rng.uniform(0.0, 0.4, labels.shape))}
    rand = {"prediction": rng.integers(0, 3, labels.shape), "labels": labels, "num_classes": 3,
            "probs": rng.dirichlet(np.ones(3), labels.shape).transpose(0, 3, 1, 2), "correct": correct,
            "confidence": rng.random(labels.shape)}
    empty = {k: np.zeros((0,) + v.shape[1:]) if isinstance(v, np.ndarray) else v for k, v in rand.items()}
    mismatched = {k: v[:2] if k in ("labels", "correct") else v for k, v in rand.items()}
    return perfect, rand, [("empty inputs", empty), ("mismatched image counts", mismatched)]


def anomaly_check_cases():
    """Conformance-kit inputs for the ``anomaly-segmentation`` kind (component metrics use the
    obstacle track's size filters, 50 / 10 pixels, on 40 x 40 images)."""
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 40, 40), dtype=np.int64)
    masks[:, 10:25, 12:30] = 1
    masks[:, :, :2] = IGNORE
    perfect = {"anomaly": masks.astype(float) + rng.uniform(0, 0.1, masks.shape), "masks": masks, "track": "obstacle"}
    rand = {"anomaly": rng.random(masks.shape), "masks": masks, "track": "obstacle"}
    bad = [("empty inputs", {"anomaly": np.zeros((0, 4, 4)), "masks": np.zeros((0, 4, 4))}),
           ("labels outside 0/1/255", {"anomaly": rand["anomaly"], "masks": masks * 2}),
           ("NaN scores", {"anomaly": np.where(masks == 1, np.nan, 0.0), "masks": masks})]
    return perfect, rand, bad
