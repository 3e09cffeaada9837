"""Logit baselines: MSP, MaxLogit and Energy (``methods.md`` §2.1–2.3).

All three read only the cached logits ``z = ctx.outputs(subset).logits``; none
fits anything. ``prediction`` is ``argmax_c z_c`` (the logits each score uses).

* **MSP** — Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
  Out-of-Distribution Examples in Neural Networks", ICLR 2017 (the "softmax
  prediction probability" baseline): score ``max_c softmax(z)_c`` on the
  *un-tempered* softmax; no hyperparameter [deeplearning-wisc/gradnorm_ood
  ``test_ood.py::iterate_data_msp``; deeplearning-wisc/react
  ``score.py::get_msp_score``]. Also returns ``probs = softmax(z)``.
* **MaxLogit** — Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt
  & Song, "Scaling Out-of-Distribution Detection for Real-World Settings",
  ICML 2022 (the MaxLogit detector): score ``max_c z_c``; no hyperparameter.
* **Energy** — Liu, Wang, Owens & Li, "Energy-based Out-of-distribution
  Detection", NeurIPS 2020, §3.1 (energy as an inference-time OOD score): the
  free energy of a softmax classifier is ``E(x) = −T·logsumexp(z/T)`` and the
  score is ``−E = T·logsumexp(z/T)``. Default ``temperature = 1``: the paper
  scores with T = 1, as do gradnorm_ood ``iterate_data_energy`` and react
  ``get_energy_score`` (``methods.md`` §2.3).
"""

from __future__ import annotations

import numpy as np

from rbx_posthoc._common import PosthocMethod, f64, logsumexp, score_dict, softmax
from robustbench_x.api import Context

__all__ = ["MSP", "MaxLogit", "Energy"]


class MSP(PosthocMethod):
    """Maximum softmax probability ``max_c softmax(z)_c`` (no hyperparameters)."""

    name = "msp"

    def __init__(self) -> None:
        super().__init__()

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        z = f64(ctx.outputs(subset).logits)
        probs = softmax(z, axis=1)
        return score_dict(probs.max(axis=1), probs=probs, prediction=z.argmax(axis=1))


class MaxLogit(PosthocMethod):
    """Maximum logit ``max_c z_c`` (no hyperparameters)."""

    name = "maxlogit"

    def __init__(self) -> None:
        super().__init__()

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        z = f64(ctx.outputs(subset).logits)
        return score_dict(z.max(axis=1), prediction=z.argmax(axis=1))


class Energy(PosthocMethod):
    """Negative free energy ``T·logsumexp(z/T)``; ``temperature`` defaults to 1."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"energy: temperature must be > 0, got {temperature!r}")
        super().__init__(temperature=temperature)
        self.temperature = float(temperature)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        z = f64(ctx.outputs(subset).logits)
        t = self.temperature
        return score_dict(t * logsumexp(z / t, axis=1), prediction=z.argmax(axis=1))
