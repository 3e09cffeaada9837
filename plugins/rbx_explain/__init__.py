"""First-party plugin: explanation uncertainty (VOICE) on gradient explanations.

Registers (specs only; torch is imported by the modules a job loads):

* method ``voice`` (:mod:`.method`): Grad-CAM of the prediction at the
  model's declared explanation layer (capability ``explanation_layer``,
  ``Model.explanation_layer()``), the contrastive Grad-CAM maps toward every
  other class, their pixelwise variance (the VOICE map), and per image the
  IoU@0.1 of the explanation and its VOICE map, the map's SNR and a
  ``confidence`` = 1 - IoU, so it also joins the failure suite;
* metrics of kind ``"explanation"`` (:mod:`.metrics`), called as
  ``fn(iou=, snr=, correct=)`` by the suite's evaluator;
* suite ``explanation`` (evaluator :mod:`.evaluate`, page :mod:`.page`).
"""

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec, MetricSpec, SuiteSpec

__all__ = ["rbx_methods", "rbx_metrics", "rbx_suites"]

_M = "rbx_explain.metrics"
_MAPS = f"{_M}:check_cases_maps"
_AUROC = f"{_M}:check_cases_auroc"
_IOU = "IoU of the explanation and its VOICE map, both binarised at > 0.1, (|E∧U| + 1e-6) / (|E∨U| + 1e-6) (VOICE demo.py)"
_SNR = "mean / std (ddof 0) of the VOICE map's pixels (VOICE demo.py), 0 for a constant map (the release: NaN)"
_AUC = "AUROC, wrong predictions positive, ranked by the per-image value (ties: average rank)"

METRICS = [
    MetricSpec("iou@0.1", "explanation", f"{_M}:iou", False, 100, "overlap of the explanation and its uncertainty (VOICE IoU), mean over images", _IOU, check_cases=_MAPS),
    MetricSpec("iou@0.1-correct", "explanation", f"{_M}:iou_correct", False, 100, "VOICE IoU over the correctly predicted images", _IOU, check_cases=_MAPS),
    MetricSpec("iou@0.1-incorrect", "explanation", f"{_M}:iou_incorrect", False, 100, "VOICE IoU over the wrongly predicted images", _IOU, check_cases=_MAPS),
    MetricSpec("snr", "explanation", f"{_M}:snr", False, 1, "signal-to-noise ratio of the VOICE map, mean over images", _SNR, check_cases=_MAPS),
    MetricSpec("snr-correct", "explanation", f"{_M}:snr_correct", False, 1, "VOICE SNR over the correctly predicted images", _SNR, check_cases=_MAPS),
    MetricSpec("snr-incorrect", "explanation", f"{_M}:snr_incorrect", False, 1, "VOICE SNR over the wrongly predicted images", _SNR, check_cases=_MAPS),
    MetricSpec("iou-error-auroc", "explanation", f"{_M}:iou_error_auroc", True, 100, "misclassification detection by the VOICE IoU (higher IoU = suspect)", _AUC, check_cases=_AUROC),
    MetricSpec("snr-error-auroc", "explanation", f"{_M}:snr_error_auroc", True, 100, "misclassification detection by the VOICE SNR (higher SNR = suspect)", _AUC, check_cases=_AUROC),
]

SUITES = [
    SuiteSpec(
        "explanation",
        method_output="explanation_iou",
        metrics=tuple(m.name for m in METRICS),
        headline=("iou@0.1-correct", "iou@0.1-incorrect", "snr-correct", "snr-incorrect", "iou-error-auroc", "snr-error-auroc"),
        subsets=("id", "shift/*"),
        summary="explanation uncertainty: how much a Grad-CAM explanation overlaps its VOICE uncertainty map, for right and wrong predictions",
        evaluator="rbx_explain.evaluate:evaluate",
        renderer="rbx_explain.page:render",
    ),
]

METHODS = [
    MethodSpec(
        name="voice",
        factory="rbx_explain.method:Voice",
        check="rbx_explain.contrast:check",
        requires={"explanation_layer", "grad"},
        outputs={"explanation_iou", "confidence"},
        params={"contrast": "all", "batch_size": 64, "threads": 1},
        summary="VOICE: variance over the contrast classes Q of the contrastive Grad-CAM maps (why P rather than Q); "
        "per image the IoU@0.1 of Grad-CAM and its VOICE map, the map's SNR, confidence = 1 - IoU.",
        paper="Prabhushankar & AlRegib, VOICE: Variance of Induced Contrastive Explanations to quantify Uncertainty in "
        "Neural Network Interpretability, IEEE J-STSP 2024 (arXiv 2406.00573); code olivesgatech/VOICE-Uncertainty",
        deviations=(
            "Maps are min-max normalised per image and a constant map is set to zeros, where the release divides 0 by 0 "
            "and gets NaN (a constant contrast map makes its whole VOICE map NaN); such images are counted in the diagnostics.",
            "Higher SNR counts as suspect (snr-error-auroc, snr metrics lower-is-better): our choice, matching the IoU; "
            "the release and the paper's summary give the SNR no direction.",
            "confidence = 1 - IoU is our score for misclassification detection, from the paper's observation that IoU is high under wrong predictions; the paper does not rank predictions by it.",
        ),
    ),
]


@hookimpl
def rbx_methods():
    return METHODS


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES
