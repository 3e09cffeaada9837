"""Planning: segmenters serve only segmentation suites (``ModelSpec.tasks``), per-pixel
methods pair only with segmentation suites (output ``pixel_maps``), and a built-in
default model that can run nothing in a suite is left out of its plan."""

from __future__ import annotations

import pytest

from robustbench_x.config import load_config
from robustbench_x.errors import UsageError
from robustbench_x.plan import make_plan
from robustbench_x.registry import get_registry


@pytest.fixture
def planned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no datasets.yaml
    registry = get_registry()
    config = load_config(None, registry)
    return lambda suite, **kw: make_plan(registry, config, suite, **kw)


def test_segmentation_suites_plan_the_segmenter_and_only_per_pixel_methods(planned):
    for suite in ("segmentation", "anomaly-segmentation"):
        plan = planned(suite)
        assert {j.model.name for j in plan.jobs} == {"builtin-segmenter"}  # the idle built-in CNN is left out
        assert {j.dataset.name for j in plan.jobs} == {"embedded-scenes"}
        assert all(j.method.startswith("seg-") for j in plan.jobs) and not plan.skipped


def test_classification_suites_never_plan_the_segmenter(planned):
    plan = planned("ood")
    assert "builtin-segmenter" not in {j.model.name for j in plan.jobs}
    assert not any(j.method.startswith("seg-") for j in plan.jobs)
    with pytest.raises(UsageError, match="serves segmentation suites"):
        planned("ood", models=["builtin-segmenter"])


def test_a_named_model_that_can_run_nothing_is_still_planned_and_skipped(planned):
    plan = planned("segmentation", models=["builtin-cnn"])
    assert plan.jobs and not plan.runnable
    assert all("dense_logits" in j.skip_reason for j in plan.skipped)
