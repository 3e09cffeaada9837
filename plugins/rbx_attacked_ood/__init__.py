"""First-party plugin: OOD detectors under attack (the ``ood-attacked`` suite).

For each OOD method, the in-distribution test samples are perturbed within ε to
look OOD and the OOD samples to look in-distribution, and AUROC / FPR@95TPR
are reported under attack beside the clean values of the same samples
(:mod:`rbx_attacked_ood.evaluate`). How each method is attacked (PGD on its
own score, or a declared transfer attack) is the table of
:mod:`rbx_attacked_ood.objectives`; the threat model is
:data:`rbx_attacked_ood.attack.THREAT`. The PGD is the ``adversarial``
plugin's (``rbx_attacks.pgd``, imported by :mod:`rbx_attacked_ood.attack`).
Definitions: ``docs/metrics.md`` "OOD detection under attack".

This module only lists specs; it imports neither torch nor the attack.
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import MetricSpec, SuiteSpec

__all__ = ["METRICS", "SUITES", "DEFAULT_METHODS"]

_OOD = "robustbench_x.metrics.ood"
_CASES = "rbx_attacked_ood.cases:check_cases"
KIND = "attacked-ood"

_WHICH = {
    "-id-attacked": "in-distribution samples attacked to look OOD, OOD samples clean",
    "-ood-attacked": "OOD samples attacked to look in-distribution, in-distribution samples clean",
    "-attacked": "both attacked: in-distribution samples to look OOD, OOD samples to look in-distribution",
}

METRICS = [
    spec
    for suffix, which in _WHICH.items()
    for spec in (
        MetricSpec(f"auroc{suffix}", KIND, f"{_OOD}:auroc", True, 100, f"AUROC, ID vs each OOD set, {which}", "ID positive, ties count 1/2; same samples as the clean auroc", _CASES),
        MetricSpec(f"fpr@95tpr{suffix}", KIND, f"{_OOD}:fpr_at_95_tpr", False, 100, f"fraction of OOD accepted at 95 % TPR, {which}", "ID positive; same samples as the clean fpr@95tpr", _CASES),
    )
]

#: The default run's methods: every method attacked by its own score, and ODIN, transfer-attacked.
#: The others run with --methods: their fits or scores (HEAT's sampler, ensembles, ConfidNet, MC
#: Dropout's passes on clean and attacked inputs) would take the cold default run past its budget.
DEFAULT_METHODS = (
    "msp", "maxlogit", "energy", "temperature_scaling", "temperature_scaling-lbfgs", "gradnorm",
    "mahalanobis", "knn", "vim", "react", "odin",
)  # fmt: skip

SUITES = [
    SuiteSpec(
        "ood-attacked",
        method_output="score",
        metrics=("auroc", "fpr@95tpr", *(m.name for m in METRICS)),
        headline=("auroc", "auroc-attacked", "fpr@95tpr", "fpr@95tpr-attacked"),
        subsets=("id", "ood/*"),
        dataset_requires={"ood_subsets"},
        summary="OOD detection under attack: ID samples pushed by PGD to look OOD, OOD samples to look ID, beside the clean values",
        evaluator="rbx_attacked_ood.evaluate:evaluate",
        renderer="rbx_attacked_ood.page:render",
        default_methods=DEFAULT_METHODS,
    ),
]


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES
