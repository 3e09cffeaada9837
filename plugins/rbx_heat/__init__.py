"""HEAT (Lafon, Ramzi, Rambour & Thome, ICML 2023): hybrid energy-based
models in feature space for OOD detection (``docs/methods.md#heat``).

This module only *lists* the methods; it imports neither torch nor the method
modules (``rbx_heat.method``, ``rbx_heat.ebm``, ``rbx_heat.priors``), so
``rbx list`` stays cheap. See :mod:`rbx_heat.method` for the definitions,
defaults (official ``scripts/cifar10.sh``) and deviations.

=================  ====================================================
name               energies (composition: standardised sum, β = 0)
=================  ====================================================
``heat``           GMM + EL + GMM-std (the paper's composed HEAT)
``heat-gmm``       GMM prior + residual (single energy, raw)
``heat-el``        energy-of-logits prior + residual (single energy)
``heat-gmm-std``   GMM on std-pooled features + residual (single energy)
=================  ====================================================

All return ``score`` = ``confidence`` = −energy (higher = more in-distribution).
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec

__all__ = ["rbx_methods"]

_REQUIRES = {"features", "feature_maps", "linear_head", "train_split"}
_OUTPUTS = {"score", "confidence"}
_PAPER = "Lafon, Ramzi, Rambour & Thome, Hybrid Energy Based Model in the Feature Space for Out-of-Distribution Detection, ICML 2023"
_COMMON = {"budget": "cpu", "preset": "cifar10", "width": None, "epochs": None, "batch_size": None, "lr": None}
_DEVIATIONS = (
    "CPU budget: residual MLP 128 wide instead of 1024 with the learning rate scaled by 1024/128, batches of at most "
    "64 instead of 1024 (GMM) or 256 (EL); the official CIFAR-10 script's optimiser-step count (960 GMM and GMM-std, "
    "3,900 EL) is kept, which on a small training split means many more epochs.",
    "Hyperparameters are the CIFAR-10 script's whatever the dataset; features come from the model's declared last "
    "stage rather than a ResNet layer4 hook.",
)


def _spec(name: str, energies: list[str], summary: str, beta: float = 0.0) -> MethodSpec:
    return MethodSpec(
        name=name,
        factory="rbx_heat.method:HEAT",
        requires=_REQUIRES,
        outputs=_OUTPUTS,
        params={"energies": energies, "beta": beta, **_COMMON},
        summary=summary,
        paper=_PAPER,
        stochastic=True,  # SGLD proposals and MLP training draw from the seeded RNG
        deviations=_DEVIATIONS,
    )


@hookimpl
def rbx_methods() -> list[MethodSpec]:
    """HEAT and its single energies; ``params`` are the defaults (CPU budget)."""
    return [
        _spec("heat", ["gmm", "el", "gmm_std"], "HEAT: standardised sum (beta=0) of the GMM, EL and GMM-std hybrid energies."),
        _spec("heat-gmm", ["gmm"], "HEAT-GMM: residual EBM on a shared-covariance GMM prior over normalised features."),
        _spec("heat-el", ["el"], "HEAT-EL: residual EBM on the energy-of-logits prior."),
        _spec("heat-gmm-std", ["gmm_std"], "HEAT-GMM-std: residual EBM on a GMM prior over normalised std-pooled feature maps."),
    ]
