"""The corruption page on an incomplete grid (severities 1 and 5 only, say):
it says which levels its per-condition means are over, and why an aggregate
(mCE) has no value, instead of leaving the reason in the provenance table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from rbx_robustness.page import _levels_present, _not_computed


def _rows(levels: dict[str, list[int]]) -> pd.DataFrame:
    subsets = ["id", *(f"c/{c}/{lv}" for c, lvs in levels.items() for lv in lvs), *(f"c/{c}" for c in levels)]
    return pd.DataFrame({"subset": subsets, "metric": "error", "value": np.linspace(0.1, 0.5, len(subsets)), "method": "msp"})


def test_a_full_grid_needs_no_note():
    assert _levels_present(_rows({"fog": [1, 2, 3, 4, 5], "snow": [1, 2, 3, 4, 5]})) == []


def test_gaps_and_unequal_levels_are_listed():
    [line, _] = _levels_present(_rows({"fog": [1, 5], "gaussian_noise": [1, 5]}))
    assert line.startswith("Levels present: fog 1, 5; gaussian_noise 1, 5 (not every level of 1–5 for every condition)")
    [line, _] = _levels_present(_rows({"fog": [1, 2, 3], "snow": [1, 2, 3, 4, 5]}))
    assert "fog 1, 2, 3; snow 1, 2, 3, 4, 5" in line


def test_an_undefined_aggregate_shows_the_evaluators_reason():
    problems = pd.DataFrame({
        "model": ["m", "m", "other"], "dataset": ["d", "d", "d"], "metric": ["mce-unnormalised", None, "mce"],
        "error": ["metric undefined: needs all 15 corruptions; missing fog (severities 2, 3, 4)", "job failed", "elsewhere"],
    })
    lines = _not_computed(SimpleNamespace(problems=problems), "m", "d")
    assert lines == ["Not computed:", "", "- `mce-unnormalised`: needs all 15 corruptions; missing fog (severities 2, 3, 4)", ""]
    assert _not_computed(SimpleNamespace(problems=problems.iloc[1:2]), "m", "d") == []  # a failed job is the "Not run" section's
