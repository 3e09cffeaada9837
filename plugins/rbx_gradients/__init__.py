"""Gradient-introspection methods of the OLIVES group (``docs/methods.md#gradient-introspection``).

This module only *lists* the methods; it imports neither torch nor the method
modules, so ``rbx list`` stays cheap.

====================  ======================  ==============================================================
name                  module                  definition
====================  ======================  ==============================================================
``introspective``     :mod:`.introspective`   3-layer MLP H on closed-form gradients ``(p − e_i) hᵀ``
``purview-initial``   :mod:`.purview`         −mean ‖∇θ_j BCE(z, 1)‖² over the first half of the tensors
``purview-final``     :mod:`.purview`         the same over the second half
``gradtrust``         :mod:`.gradtrust`       ``max_c a_c / mean_c a_c``, ``a_c = (z_c − 1/C)⁴``
====================  ======================  ==============================================================

Every method returns ``score`` and ``confidence`` (higher = more
in-distribution / more trustworthy); ``introspective`` also returns ``probs``
and ``prediction`` (those of H).
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec

__all__ = ["rbx_methods"]

_SCORE = {"score", "confidence"}
_PURVIEW = "Lee, Lehman, Prabhushankar & AlRegib, Probing the Purview of Neural Networks via Gradient Analysis, IEEE Access 2023"
_PURVIEW_DEVIATIONS = (
    "Reproduces the authors' demo score (minus the mean squared per-layer gradient norm, higher = ID); on the built-in "
    "CNN it ranks OOD above ID (AUROC 0.1 to 0.2), the opposite of the paper's benchmark, and the paper's own use of "
    "the per-layer norms (a fitted detector or a plain average) is not published in code.",
)


@hookimpl
def rbx_methods() -> list[MethodSpec]:
    """The gradient-introspection methods; ``params`` are the defaults."""
    return [
        MethodSpec(
            name="introspective",
            factory="rbx_gradients.introspective:Introspective",
            requires={"logits", "features", "linear_head", "train_split"},
            outputs={*_SCORE, "probs", "prediction"},
            params={"hidden": [256, 256], "epochs": 30, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.0, "max_features": 2**20},
            summary="Introspective learning: 3-layer MLP on the last-layer gradients (p - e_i) h^T for every class i "
            "(architecture and normalisation not published: our choice).",
            paper="Prabhushankar & AlRegib, Introspective Learning: A Two-Stage Approach for Inference in Neural Networks, NeurIPS 2022",
            stochastic=True,
            deviations=(
                "A reconstruction: the authors released no code for the introspective features or H, so H's width, "
                "input normalisation, optimiser and epochs are ours.",
            ),
        ),
        MethodSpec(
            name="purview-initial",
            factory="rbx_gradients.purview:Purview",
            requires={"grad"},
            outputs=_SCORE,
            params={"part": "initial", "split": "demo", "batch_size": 32},
            summary="Purview: minus the mean squared gradient norm of BCE(z, all-ones) over the first half of the parameter tensors.",
            paper=_PURVIEW,
            deviations=_PURVIEW_DEVIATIONS,
        ),
        MethodSpec(
            name="purview-final",
            factory="rbx_gradients.purview:Purview",
            requires={"grad"},
            outputs=_SCORE,
            params={"part": "final", "split": "demo", "batch_size": 32},
            summary="Purview: minus the mean squared gradient norm of BCE(z, all-ones) over the second half of the parameter tensors.",
            paper=_PURVIEW,
            deviations=_PURVIEW_DEVIATIONS,
        ),
        MethodSpec(
            name="gradtrust",
            factory="rbx_gradients.gradtrust:GradTrust",
            requires={"logits", "features", "linear_head"},
            outputs=_SCORE,
            params={"top_k": None},
            deviations=(
                "The authors' demo formula over all classes; the paper describes the top-k competing classes "
                "without publishing k (top_k is an option).",
            ),
            summary="GradTrust: max_c / mean_c of Var_d of the squared last-layer gradients of MSE(z, 1/C) (closed form in the logits).",
            paper="Prabhushankar & AlRegib, Counterfactual Gradients-based Quantification of Prediction Trust in Neural Networks, MIPR 2024",
        ),
    ]
