"""Metrics of the ``adversarial`` suite (kind ``"adversarial"``), called by
:mod:`rbx_attacks.evaluate` as ``fn(prediction=, label=)``: the per-sample
correctness, whose mean is the accuracy.

* ``clean-accuracy``: ``prediction`` is the clean prediction;
* ``robust-accuracy``: ``prediction`` is the adversarial prediction (for a
  sample that no attack broke, the clean one; for a misclassified clean sample,
  the clean one too), so a sample counts iff it is correct and no attack of the
  sequence changed its class: AutoAttack's ``robust_flags`` after the last
  attack (fra31/auto-attack ``autoattack/autoattack.py``
  ``run_standard_evaluation``). The per-attack rows (subset ``after/<attack>``)
  apply the same function after each attack of the sequence.
"""

from __future__ import annotations

import numpy as np


def correct(prediction, label) -> np.ndarray:
    """1.0 where ``prediction == label``, per sample."""
    if prediction is None or label is None:
        raise ValueError("need per-sample prediction and label")
    prediction, label = np.asarray(prediction), np.asarray(label)
    if prediction.shape != label.shape or prediction.ndim != 1 or len(label) == 0:
        raise ValueError(f"prediction {prediction.shape} and label {label.shape} must be equal-length, non-empty 1-D arrays")
    return (prediction == label).astype(np.float64)


def check_cases() -> tuple[dict, dict, list[tuple[str, dict]]]:
    """Conformance-kit inputs: all correct, a quarter correct, and bad input."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, 64)
    wrong = np.where(rng.random(64) < 0.75, (label + 1) % 10, label)
    return ({"prediction": label.copy(), "label": label}, {"prediction": wrong, "label": label},
            [("missing predictions", {"prediction": None, "label": label}), ("length mismatch", {"prediction": label[:3], "label": label})])
