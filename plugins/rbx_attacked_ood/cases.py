"""Inputs for the conformance kit (``MetricSpec.check_cases``) of the attacked-OOD metrics.

They are the OOD metrics applied to attacked scores, so they take the same
keywords (``score_id``, ``score_ood``) and must reject the same bad input."""

from __future__ import annotations

import numpy as np


def check_cases() -> tuple[dict, dict, list[tuple[str, dict]]]:
    rng = np.random.default_rng(0)
    perfect = {"score_id": rng.uniform(1, 2, 200), "score_ood": rng.uniform(-2, -1, 200)}
    rand = {"score_id": rng.normal(size=200), "score_ood": rng.normal(size=200)}
    bad = [
        ("an empty OOD set", {"score_id": rng.normal(size=10), "score_ood": np.zeros(0)}),
        ("NaN scores", {"score_id": np.array([0.1, np.nan, 0.3]), "score_ood": np.array([0.0, 0.2])}),
    ]
    return perfect, rand, bad
