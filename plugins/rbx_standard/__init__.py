"""First-party plugin: the standard metrics, the ``ood`` / ``failure`` /
``calibration`` suites and the ``inline`` / ``local`` executors.

Registered through the ``robustbench_x`` entry point like any third-party
plugin. Metric conventions are those of ``robustbench_x.metrics`` (documented
there and in the README): OOD detection treats in-distribution as the positive
class with higher scores for ID; peer variants carry their own names.
"""

from robustbench_x import hookimpl
from robustbench_x.api import ExecutorSpec, MetricSpec, SuiteSpec

_M = "robustbench_x.metrics"

METRICS = [
    MetricSpec("accuracy", "classification", f"{_M}.classification:accuracy", True, 100, "top-1 accuracy", "a label -1 (a class the model does not know) is never correct"),
    MetricSpec("errors", "classification", f"{_M}.classification:errors", False, 1, "number of wrong predictions: what a failure or calibration column rests on", "a label -1 (new-class shift) is always an error"),
    # OOD detection, ID positive, score higher for ID (the OOD papers' convention).
    MetricSpec("auroc", "ood", f"{_M}.ood:auroc", True, 100, "area under the ROC curve, ID vs each OOD set", "ties count 1/2"),
    MetricSpec("fpr@95tpr", "ood", f"{_M}.ood:fpr_at_95_tpr", False, 100, "fraction of OOD accepted when 95% of ID is accepted", "ID positive (ODIN/Energy/KNN/GalLoP papers)"),
    MetricSpec("aupr-in", "ood", f"{_M}.ood:aupr_in", True, 100, "average precision, ID positive", "step-wise AP (sklearn)"),
    MetricSpec("aupr-out", "ood", f"{_M}.ood:aupr_out", True, 100, "average precision, OOD positive on -score", "step-wise AP (sklearn)"),
    MetricSpec("detection-error", "ood", f"{_M}.ood:detection_error", False, 100, "min over thresholds of (1-TPR)/2 + FPR/2", "ODIN calMetric.detection"),
    MetricSpec("fpr@95tpr-openood", "ood", f"{_M}.ood:fpr_at_95_tpr_openood", False, 100, "fraction of ID flagged OOD when 95% of OOD is caught", "OOD positive (OpenOOD v1.5)"),
    MetricSpec("aupr-in-trapz", "ood", f"{_M}.ood:aupr_in_trapezoid", True, 100, "trapezoidal PR area, ID positive", "OpenOOD / pytorch-ood"),
    MetricSpec("aupr-out-trapz", "ood", f"{_M}.ood:aupr_out_trapezoid", True, 100, "trapezoidal PR area, OOD positive", "OpenOOD / pytorch-ood"),
    # Failure prediction / selective classification.
    MetricSpec("failure-auroc", "failure", f"{_M}.failure:failure_auroc", True, 100, "AUROC of confidence for correct vs wrong predictions"),
    MetricSpec("ap-error", "failure", f"{_M}.failure:ap_error", True, 100, "average precision of errors scored by -confidence (ConfidNet's AUPR-Error)"),
    MetricSpec("ap-success", "failure", f"{_M}.failure:ap_success", True, 100, "average precision of correct predictions"),
    MetricSpec("failure-fpr@95tpr", "failure", f"{_M}.failure:failure_fpr_at_95_tpr", False, 100, "fraction of errors accepted when 95% of correct predictions are"),
    MetricSpec("aurc", "failure", f"{_M}.failure:aurc", False, 1000, "area under the risk-coverage curve", "ties grouped, trapezoid (FD-Shifts)"),
    MetricSpec("e-aurc", "failure", f"{_M}.failure:eaurc", False, 1000, "AURC minus the AURC of a perfect ranking (Geifman et al. 2019)"),
    MetricSpec("augrc", "failure", f"{_M}.failure:augrc", False, 1000, "area under the generalized risk-coverage curve (FD-Shifts, NeurIPS 2024)"),
    MetricSpec("aurc-per-sample", "failure", f"{_M}.failure:aurc_per_sample", False, 1000, "AURC on a per-sample grid, no tie grouping", "Geifman / torch-uncertainty parity"),
    MetricSpec("auac", "failure", f"{_M}.coverage:auac", True, 100, "area under accuracy of retained samples vs min-max rescaled threshold", "our definition; GradTrust's is unpublished (see metrics/coverage.py)"),
    MetricSpec("aufc", "failure", f"{_M}.coverage:aufc", True, 100, "area under failure fraction of rejected samples vs rescaled threshold", "our definition; not comparable with GradTrust Table I"),
    # Calibration.
    MetricSpec("ece", "calibration", f"{_M}.calibration:ece", False, 100, "expected calibration error, 15 equal-width bins (Guo et al. 2017)"),
    MetricSpec("nll", "calibration", f"{_M}.calibration:nll", False, 1, "negative log-likelihood"),
    MetricSpec("brier", "calibration", f"{_M}.calibration:brier", False, 1, "multi-class Brier score (sum over classes)"),
]

SUITES = [
    SuiteSpec(
        "ood",
        method_output="score",
        metrics=("accuracy", "auroc", "fpr@95tpr", "aupr-in", "aupr-out", "detection-error", "fpr@95tpr-openood", "aupr-in-trapz", "aupr-out-trapz"),
        headline=("auroc", "fpr@95tpr"),
        subsets=("id", "ood/*"),
        dataset_requires={"ood_subsets"},
        summary="out-of-distribution detection: in-distribution test set vs each OOD set",
    ),
    SuiteSpec(
        "failure",
        method_output="confidence",
        metrics=("accuracy", "errors", "failure-auroc", "ap-error", "ap-success", "failure-fpr@95tpr", "aurc", "e-aurc", "augrc", "aurc-per-sample", "auac", "aufc"),
        headline=("aurc", "failure-auroc", "ap-error"),
        # FD-Shifts' study types: i.i.d. (id), covariate and new-class shift (shift/covariate, shift/new-class)
        # where the dataset has them; new-class samples (label -1) are failures whatever the prediction.
        subsets=("id", "shift/*"),
        summary="failure prediction on i.i.d. and shifted test sets: does the confidence rank wrong predictions below right ones",
    ),
    SuiteSpec(
        "calibration",
        method_output="probs",
        metrics=("accuracy", "errors", "ece", "nll", "brier"),
        headline=("ece", "nll", "brier"),
        # Calibration under covariate shift as well (Ovadia et al., NeurIPS 2019); not under new-class
        # shift, where no probability over the known classes can be right and NLL is undefined.
        subsets=("id", "shift/covariate"),
        plots=("reliability",),
        summary="calibration of predicted probabilities on the in-distribution test set and under covariate shift",
    ),
]

EXECUTORS = [
    ExecutorSpec("inline", "robustbench_x.executors.inline:InlineExecutor", "every group in this process, sequentially", options=()),
    ExecutorSpec("local", "robustbench_x.executors.local:LocalExecutor", "one worker per visible GPU, or --workers CPU workers",
                 options={"workers", "devices", "job_timeout"}),
    ExecutorSpec("ray", "robustbench_x.executors.ray_executor:RayExecutor", "one Ray task per job group on an existing cluster (--ray-address)",
                 options={"ray_address", "ray_gpus"}),
]


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES


@hookimpl
def rbx_executors():
    return EXECUTORS
