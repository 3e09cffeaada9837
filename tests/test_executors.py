"""Executors: the same rows whatever runs them; faults become failed rows."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from robustbench_x.results import read_results

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
KEY = ["model", "dataset", "subset", "method", "metric", "seed"]
METHODS = "msp,energy,mahalanobis,knn"


def _values(out: Path):
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "error"]]
    return frame.set_index(KEY)["value"].sort_index()


@pytest.fixture(scope="module")
def ray_cluster(ray_head):
    return ray_head["address"]


def test_inline_local_and_ray_produce_identical_rows(cli, tmp_path, ray_cluster):
    common = ["--quiet", "run", "--suite", "ood", "--methods", METHODS, "--seeds", "0,1", "--format", "json"]
    assert cli(*common, "--executor", "inline", "--out", str(tmp_path / "inline")).code == 0
    local = cli(*common, "--executor", "local", "--workers", "2", "--out", str(tmp_path / "local"))
    assert local.code == 0, local
    ray = cli(*common, "--executor", "ray", "--ray-address", ray_cluster, "--out", str(tmp_path / "ray"))
    assert ray.code == 0, ray
    inline = _values(tmp_path / "inline")
    assert inline.index.get_level_values("seed").nunique() == 2
    for other in ("local", "ray"):
        values = _values(tmp_path / other)
        assert values.index.equals(inline.index)
        assert (values == inline).all(), other


def test_ray_refuses_a_cluster_without_the_gpus_it_needs(cli, tmp_path, ray_cluster):
    result = cli("run", "--suite", "ood", "--methods", "msp", "--executor", "ray", "--ray-address", ray_cluster, "--ray-gpus", "1", "--out", str(tmp_path))
    assert result.code == 2, result
    assert "has 0 GPU(s)" in result.err and "--ray-gpus 0" in result.err


def test_ray_unreachable_address_is_a_usage_error(cli, tmp_path, free_port):
    pytest.importorskip("ray")
    result = cli("run", "--suite", "ood", "--methods", "msp", "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert result.code == 2, result
    assert "cannot reach the Ray cluster" in result.err and "ray start --head" in result.err


@pytest.mark.parametrize(
    "method, extra, cause",
    [
        ("raises", [], "deliberate failure in fit"),
        ("dies", [], "worker died (exit code 3)"),
        ("hangs", ["--job-timeout", "8"], "timed out after 8 s"),
    ],
)
def test_worker_faults_become_failed_rows_and_the_rest_goes_on(cli, tmp_path, monkeypatch, method, extra, cause):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RBX_PLUGINS", "misbehaving_methods,faulty_methods")
    # The timeout covers building the model: train and cache the built-in one first.
    assert cli("--quiet", "run", "--suite", "ood", "--methods", "msp", "--executor", "inline", "--out", str(tmp_path / "warm")).code == 0
    result = cli("--quiet", "run", "--suite", "ood", "--methods", f"energy,{method},msp", "--executor", "local", "--workers", "2",
                 *extra, "--out", str(tmp_path), "--format", "json")
    assert result.code == 1, result
    frame = read_results(tmp_path)
    by_method = frame.groupby("method")["status"].agg(set)
    assert by_method["energy"] == {"ok"} and by_method["msp"] == {"ok"}
    assert by_method[method] == {"failed"}
    assert cause in frame.loc[frame["method"] == method, "error"].iloc[0]


def test_job_timeout_covers_building_the_model(cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RBX_PLUGINS", "hanging_model")
    result = cli("--quiet", "run", "--suite", "ood", "--models", "hangs-building", "--methods", "msp,energy", "--executor", "local",
                 "--job-timeout", "5", "--out", str(tmp_path), "--format", "json")
    assert result.code == 1, result
    frame = read_results(tmp_path)
    assert set(frame["method"]) == {"msp", "energy"} and set(frame["status"]) == {"failed"}
    assert all("timed out after 5 s while building the model and dataset" in e for e in frame["error"])
