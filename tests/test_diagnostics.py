"""Job diagnostics (``Context.record``): stored as a JSON object on every result
row of the job, and still there when the fitted state comes from the cache."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from robustbench_x.errors import PluginError
from robustbench_x.results import read_results
from robustbench_x.runner import diagnostic_value


def _diagnostics(out, method: str) -> dict:
    frame = read_results(out)
    rows = frame[frame["method"] == method]
    assert len(rows) > 0 and (rows["status"] == "ok").all(), rows[["status", "error"]]
    values = set(rows["diagnostics"])
    assert len(values) == 1, values  # the same object on every row of the job
    return json.loads(values.pop())


def test_recorded_values_are_on_every_row_and_survive_a_reused_fitted_state(cli, test_plugins, tmp_path):
    test_plugins("diagnostic_methods")
    import diagnostic_methods

    builds = diagnostic_methods.BUILDS
    before = len(builds)  # the list lives as long as the process
    first = cli("--quiet", "run", "--suite", "ood", "--methods", "recorder", "--out", str(tmp_path / "a"))
    assert first.code == 0, first
    assert len(builds) == before + 1
    recorded = _diagnostics(tmp_path / "a", "recorder")
    assert recorded["rule"] == "max logit"
    assert recorded["undefined"] == "nan"  # JSON has no NaN
    assert isinstance(recorded["train_logit_mean"], float)

    again = cli("--quiet", "run", "--suite", "ood", "--methods", "recorder", "--out", str(tmp_path / "b"))
    assert again.code == 0, again
    assert len(builds) == before + 1  # the fitted state was reused, not rebuilt...
    assert _diagnostics(tmp_path / "b", "recorder") == recorded  # ...and what its build recorded is still there


def test_force_refits_the_state_once_per_run_and_a_plain_rerun_reuses_it(cli, test_plugins, tmp_path, monkeypatch):
    """The fitted state's key covers parameters, weights and data, not the
    method's code: ``--force`` is how an edited method gets refitted."""
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))  # refitting must not touch other tests' states
    test_plugins("diagnostic_methods")
    out = str(tmp_path / "a")
    assert cli("--quiet", "run", "--suite", "ood", "--methods", "recorder,sharer-a,sharer-b", "--out", out).code == 0
    builds, shared = sys.modules["diagnostic_methods"].BUILDS, sys.modules["diagnostic_methods"].SHARED_BUILDS
    before = (len(builds), len(shared))  # the lists live as long as the process
    forced = cli("--quiet", "run", "--suite", "ood", "--methods", "recorder,sharer-a,sharer-b", "--out", out, "--force")
    assert forced.code == 0, forced
    assert (len(builds), len(shared)) == (before[0] + 1, before[1] + 1)  # refitted; the shared state once for both
    assert cli("--quiet", "run", "--suite", "ood", "--methods", "recorder", "--out", str(tmp_path / "b")).code == 0
    assert len(builds) == before[0] + 1  # a run without --force reuses what the forced run fitted


def test_shared_fitted_state_is_built_once_for_methods_with_different_names_and_params(cli, test_plugins, tmp_path):
    test_plugins("diagnostic_methods")
    import diagnostic_methods

    before = len(diagnostic_methods.SHARED_BUILDS)  # the list lives as long as the process
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "sharer-a,sharer-b", "--out", str(tmp_path))
    assert result.code == 0, result
    assert len(diagnostic_methods.SHARED_BUILDS) == before + 1
    frame = read_results(tmp_path)
    a = frame[(frame["method"] == "sharer-a") & (frame["metric"] == "auroc")]["value"].to_numpy()
    b = frame[(frame["method"] == "sharer-b") & (frame["metric"] == "auroc")]["value"].to_numpy()
    assert len(a) == len(b) > 0


def test_a_method_without_diagnostics_has_a_null_column(cli, tmp_path):
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "energy", "--out", str(tmp_path))
    assert result.code == 0, result
    assert read_results(tmp_path)["diagnostics"].isna().all()


def test_a_diagnostic_that_is_not_a_scalar_fails_the_job_with_its_name(cli, test_plugins, tmp_path):
    test_plugins("diagnostic_methods")
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "bad-recorder,energy", "--out", str(tmp_path))
    assert result.code == 1, result
    frame = read_results(tmp_path)
    error = frame.loc[frame["method"] == "bad-recorder", "error"].iloc[0]
    assert "bad-recorder" in error and "'curve'" in error and "record a number or a string" in error
    assert (frame.loc[frame["method"] == "energy", "status"] == "ok").all()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(np.int64(3), 3), (np.float32(0.5), 0.5), ("val loss", "val loss"), (True, True), (float("inf"), "inf")],
)
def test_diagnostic_values_become_json_scalars(value, expected):
    out = diagnostic_value("m", "k", value)
    assert out == expected and type(out) is type(expected)
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(("key", "value"), [("", 1), (3, 1), ("k", None), ("k", [1, 2])])
def test_bad_diagnostics_are_refused(key, value):
    with pytest.raises(PluginError, match="method 'm'"):
        diagnostic_value("m", key, value)


def test_two_plugins_methods_of_one_name_keep_their_own_state_and_rows(cli, test_plugins, tmp_path):
    """Two labs register `fitm` (same name, no params, different fitted states): the
    state is keyed by the plugin too, and the rows are stored under qualified names,
    so neither reads the other's state nor overwrites the other's row."""
    test_plugins("fit_lab_a", "fit_lab_b")
    for lab in ("fit_lab_a", "fit_lab_b"):  # one run each: the second would reuse the first's state if keyed by name only
        result = cli("--quiet", "run", "--suite", "ood", "--methods", f"{lab}::fitm", "--out", str(tmp_path))
        assert result.code == 0, result
    frame = read_results(tmp_path)
    auroc = frame[frame["metric"] == "auroc"].set_index(["method", "subset"])["value"]
    assert set(frame["method"]) == {"fit_lab_a::fitm", "fit_lab_b::fitm"}
    a, b = auroc["fit_lab_a::fitm"].sort_index(), auroc["fit_lab_b::fitm"].sort_index()
    np.testing.assert_allclose(a.to_numpy(), 1 - b.to_numpy(), atol=1e-12)  # opposite signs, opposite rankings
    assert (a > 0.5).all()


def test_one_method_named_three_ways_runs_once(cli, tmp_path):
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "msp,robustbench_x::msp,posthoc::msp", "--out", str(tmp_path), "--format", "json")
    assert result.code == 0 and json.loads(result.out)["jobs"] == 1, result
    assert set(read_results(tmp_path)["method"]) == {"msp"}
