"""The opt-in pytest plugin ``robustbench_x.testing.pytest_plugin``: its fixtures work."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_x.registry import get_registry
from robustbench_x.testing import CheckEnv

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def rbx_cache_dir(shared_cache):
    """The conformance tests' cache (the built-in model trains once per session)."""
    path = shared_cache.parent / "rbx-conformance-cache"
    path.mkdir(exist_ok=True)
    return path


def test_rbx_embedded_is_the_trained_builtin_model_on_the_embedded_default(rbx_embedded):
    assert isinstance(rbx_embedded, CheckEnv)
    assert rbx_embedded.dataset.name == "embedded-digits" and rbx_embedded.model.num_classes == 6
    ctx = rbx_embedded.context(seed=3)
    out = ctx.outputs("id")
    assert ctx.seed == 3 and out.logits.shape == (len(out), 6)
    accuracy = (np.asarray(out.logits).argmax(1) == np.asarray(out.labels)).mean()
    assert accuracy > 0.9


def test_rbx_registry_holds_only_the_given_plugins(rbx_registry, test_plugins):
    test_plugins()  # puts tests/fixtures on sys.path
    registry = rbx_registry("rbx_standard", "conformance_good")
    assert registry.names("methods") == ["good-feature-norm", "good-noisy-msp"]
    assert "auroc" in registry.names("metrics") and registry.names("models") == []
    assert get_registry() is registry  # what the runner and the CLI read during the test


def test_rbx_run_returns_the_result_rows(rbx_run):
    rows = rbx_run("ood", methods=["msp", "energy"])
    assert set(rows["method"]) == {"msp", "energy"} and (rows["status"] == "ok").all()
    auroc = rows[(rows["metric"] == "auroc") & (rows["subset"] == "ood/photos")]
    assert len(auroc) == 2 and (auroc["value"] > 0.5).all()


def test_rbx_run_with_an_isolated_registry(rbx_registry, rbx_run, test_plugins):
    test_plugins()
    rbx_registry("rbx_standard", "rbx_models", "rbx_datasets", "conformance_good")
    rows = rbx_run("failure")
    assert set(rows["method"]) == {"good-feature-norm", "good-noisy-msp"}
    assert (rows["status"] == "ok").all()
