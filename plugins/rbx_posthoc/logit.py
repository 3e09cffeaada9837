"""Logit baselines: MSP, MaxLogit and Energy (``docs/methods.md#msp``).

All three read only the cached logits ``z = ctx.outputs(subset).logits``; none
fits anything. ``prediction`` is ``argmax_c z_c`` (the logits each score uses).

* **MSP** — Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
  Out-of-Distribution Examples in Neural Networks", ICLR 2017 (the "softmax
  prediction probability" baseline): score ``max_c softmax(z)_c`` on the
  *un-tempered* softmax; no hyperparameter [deeplearning-wisc/gradnorm_ood
  ``test_ood.py::iterate_data_msp``; deeplearning-wisc/react
  ``score.py::get_msp_score``]. Also returns ``probs = softmax(z)``.
  ``score`` and ``confidence`` are emitted as ``max_c softmax(z)_c − 1``,
  computed as minus the sum of the non-maximal probabilities
  (:func:`robustbench_x.api.max_probability_minus_one`): the exact MSP's
  ranking, which the MSP itself loses where it rounds to 1.0 (float64 from a
  logit margin of about 37 nats); every ranking metric and AUAC/AUFC (affine
  invariant) equal the exact MSP's. ``probs`` are the true probabilities.
* **MaxLogit** — Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt
  & Song, "Scaling Out-of-Distribution Detection for Real-World Settings",
  ICML 2022 (the MaxLogit detector): score ``max_c z_c``; no hyperparameter.
* **Energy** — Liu, Wang, Owens & Li, "Energy-based Out-of-distribution
  Detection", NeurIPS 2020, §3.1 (energy as an inference-time OOD score): the
  free energy of a softmax classifier is ``E(x) = −T·logsumexp(z/T)`` and the
  score is ``−E = T·logsumexp(z/T)``. Default ``temperature = 1``: the paper
  scores with T = 1, as do gradnorm_ood ``iterate_data_energy`` and react
  ``get_energy_score`` (``docs/methods.md#energy``).
"""

from __future__ import annotations

import numpy as np

from rbx_posthoc._common import PosthocMethod, chunks, f64, logsumexp, score_dict, softmax
from robustbench_x.api import Context, max_probability_minus_one

__all__ = ["MSP", "MaxLogit", "Energy"]


class MSP(PosthocMethod):
    """Maximum softmax probability ``max_c softmax(z)_c``, emitted minus 1 (no hyperparameters)."""

    name = "msp"

    def __init__(self) -> None:
        super().__init__()

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        logits = ctx.outputs(subset).logits
        n = len(logits)
        score, prediction = np.empty(n), np.empty(n, dtype=np.int64)
        keep_probs = "probs" in ctx.wants  # an N × C matrix only when a metric reads it
        probs = np.empty(logits.shape, dtype=np.float64) if keep_probs else None
        for rows in chunks(n):  # chunked: the cached logits may be a large memory map
            p = softmax(f64(logits[rows]), axis=1)
            score[rows], prediction[rows] = max_probability_minus_one(p, axis=1), p.argmax(axis=1)
            if keep_probs:
                probs[rows] = p
        extra = {"probs": probs} if keep_probs else {}
        return score_dict(score, prediction=prediction, **extra)


class MaxLogit(PosthocMethod):
    """Maximum logit ``max_c z_c`` (no hyperparameters)."""

    name = "maxlogit"

    def __init__(self) -> None:
        super().__init__()

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        logits = ctx.outputs(subset).logits
        score, prediction = np.empty(len(logits)), np.empty(len(logits), dtype=np.int64)
        for rows in chunks(len(logits)):
            z = f64(logits[rows])
            score[rows], prediction[rows] = z.max(axis=1), z.argmax(axis=1)
        return score_dict(score, prediction=prediction)


class Energy(PosthocMethod):
    """Negative free energy ``T·logsumexp(z/T)``; ``temperature`` defaults to 1."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"energy: temperature must be > 0, got {temperature!r}")
        super().__init__(temperature=temperature)
        self.temperature = float(temperature)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        logits = ctx.outputs(subset).logits
        t = self.temperature
        score, prediction = np.empty(len(logits)), np.empty(len(logits), dtype=np.int64)
        for rows in chunks(len(logits)):
            z = f64(logits[rows])
            score[rows], prediction[rows] = t * logsumexp(z / t, axis=1), z.argmax(axis=1)
        return score_dict(score, prediction=prediction)
