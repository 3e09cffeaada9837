"""First-party plugin for object detection, with CURE-TSD as its dataset
(``docs/tasks.md#detection``).

Registers (specs only; nothing heavy is imported at discovery):

* suite ``cure-tsd``: traffic-sign detection by challenge type and level;
  per-frame one-to-one matching, precision, recall, F0.5 and F2
  (evaluator :mod:`.evaluate`, page :mod:`.page`);
* metrics of kind ``"detection"`` (:mod:`.metrics`), called with per-frame
  ``tp``, ``fp``, ``fn`` counts;
* methods ``detections`` (IoU >= 0.5, same sign type) and
  ``detections-any-class`` (IoU >= 0.5, class ignored): the model's
  detections under a matching rule (:mod:`.methods`);
* models ``embedded-detections`` (the detections file of the embedded
  sequences, the default), ``detections-file`` (a user's file) and the family
  ``torchvision`` (a torchvision detection model with a local checkpoint),
  :mod:`.detectors`;
* datasets: the type ``cure-tsd`` (:mod:`.cure_tsd`) and the built-in
  ``embedded-cure-tsd`` (:mod:`.embedded`).

Capability token ``detections``: the model has ``detect(dataset, subset)``
returning per frame ``(boxes (K, 4), sign codes (K,), scores (K,))``.
Method output ``detections``: one ``(K, 6)`` array per frame.
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec, MethodSpec, MetricSpec, ModelSpec, SuiteSpec

_M = "rbx_detection.metrics"
_CASES = f"{_M}:check_cases"
_MATCH = "counts summed over frames; per frame, detections by decreasing score each take the unmatched box of highest IoU >= 0.5 (same sign type for `detections`)"
_PAPERS = "CURE-TSD (Temel et al., arXiv 1902.06857; T-ITS 2019, arXiv 1908.11262)"

METRICS = [
    MetricSpec("det-precision", "detection", f"{_M}:precision", True, 100, f"detection precision TP / (TP + FP), {_PAPERS}", _MATCH, check_cases=_CASES),
    MetricSpec("det-recall", "detection", f"{_M}:recall", True, 100, f"detection recall TP / (TP + FN), {_PAPERS}", _MATCH, check_cases=_CASES),
    MetricSpec("det-f0.5", "detection", f"{_M}:f_half", True, 100, f"F0.5 = 1.25 P R / (0.25 P + R), weighs precision higher, {_PAPERS}", _MATCH, check_cases=_CASES),
    MetricSpec("det-f2", "detection", f"{_M}:f_two", True, 100, f"F2 = 5 P R / (4 P + R), weighs recall higher, {_PAPERS}", _MATCH, check_cases=_CASES),
]

SUITES = [
    SuiteSpec(
        "cure-tsd",
        method_output="detections",
        metrics=tuple(m.name for m in METRICS),
        headline=("det-precision", "det-recall", "det-f0.5", "det-f2"),
        subsets=("id", "c/*"),
        task="detection",
        summary="traffic-sign detection under challenging conditions (CURE-TSD): precision, recall, F0.5, F2 by challenge type and level",
        evaluator="rbx_detection.evaluate:evaluate",
        renderer="rbx_detection.page:render",
    ),
]

_OURS = "The matching rule (IoU >= 0.5, greedy by score, one detection per box) is ours: the CURE-TSD papers do not state theirs."


def _detections(name: str, same_class: bool, summary: str) -> MethodSpec:
    return MethodSpec(
        name=name,
        factory="rbx_detection.methods:Detections",
        requires={"detections"},
        outputs={"detections"},
        params={"min_score": None, "iou_threshold": 0.5, "same_class": same_class},
        summary=summary,
        paper=f"{_PAPERS}: precision, recall, F0.5, F2 of a sign detector",
        deviations=(_OURS,),
    )


METHODS = [
    _detections("detections", True, "the model's detections, matched to the ground truth at IoU >= 0.5 with the same sign type"),
    _detections("detections-any-class", False, "the model's detections, matched at IoU >= 0.5 whatever their sign type (localisation only)"),
]

MODELS = [
    ModelSpec(
        "embedded-detections",
        factory="rbx_detection.detectors:build_embedded",
        provides={"detections"},
        label_space="embedded-cure-tsd",
        default=True,
        option_keys=(),
        summary="the detections file of the embedded CURE-TSD sequences (a colour-threshold blob detector run when they were generated)",
        deviations=("Not a learned detector: a hand-made colour-threshold blob finder, a baseline for the embedded synthetic signs only.",),
    ),
    ModelSpec(
        "detections-file",
        factory="rbx_detection.detectors:build_file",
        check="rbx_detection.detectors:check_file",
        provides={"detections"},
        option_keys={"options", "label_space"},
        option_types={"detections": "path"},
        summary="detections read from a CSV / JSON file (models entry: type: detections-file, options: {detections: <file>})",
    ),
    ModelSpec(
        "torchvision",
        factory="rbx_detection.detectors:build_torchvision",
        provides={"detections"},
        family=True,
        option_keys={"arch", "checkpoint", "num_classes", "label_space"},
        summary="torchvision:<detection arch>, weights=None + a local checkpoint (weights_only=True or safetensors), labels 1..14 = sign codes",
    ),
]

DATASETS = [
    DatasetSpec(
        "cure-tsd",
        factory="rbx_detection.cure_tsd:build",
        provides={"cure"},
        task="detection",
        option_keys={"root", "annotations", "split", "sequence", "frame_step", "label_space"},
        required_keys={"root"},
        option_types={"root": "path", "annotations": "path", "split": "str", "sequence": "str", "frame_step": "int", "label_space": "str"},
        summary="CURE-TSD traffic-sign videos (real / unreal) by challenge type and level; MP4s or extracted frames, one annotation file per sequence",
    ),
    DatasetSpec(
        "embedded-cure-tsd",
        factory="rbx_detection.embedded:build",
        provides={"cure"},
        task="detection",
        builtin=True,
        label_space="embedded-cure-tsd",
        summary="three synthetic 12-frame sequences in the CURE-TSD layout: challenge-free, lens blur and darkening at levels 1-5; no download",
        deviations=(
            "Synthetic stand-in: 128 x 96 frames with flat coloured signs; the lens blur and darkening are numpy approximations of the After Effects filters (docs/datasets.md#embedded-cure-tsd).",
        ),
    ),
]


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES


@hookimpl
def rbx_methods():
    return METHODS


@hookimpl
def rbx_models():
    return MODELS


@hookimpl
def rbx_datasets():
    return DATASETS
