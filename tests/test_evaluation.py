"""The task contract (robustbench_x.evaluation): the array store for extra
per-sample arrays, dense outputs through the feature cache, and a dense task
(tests/fixtures/dense_task.py: a toy segmentation with per-pixel logits and
an ignore label, written against the public API only) run by the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustbench_x.errors import PluginError
from robustbench_x.evaluation import ArrayStore

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]


def test_array_store_round_trip_and_sample_ids(tmp_path):
    store = ArrayStore(tmp_path / "job")
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = store.save("pixel_logits", values, ["a", "b"])
    assert path == tmp_path / "job" / "pixel_logits.npz"
    loaded, ids = store.load("pixel_logits")
    np.testing.assert_array_equal(loaded, values)
    assert ids.tolist() == ["a", "b"]
    assert store.names() == ["pixel_logits"]
    assert not list((tmp_path / "job").glob(".*tmp"))  # atomic: no temporary left behind


@pytest.mark.parametrize(
    ("name", "values", "ids", "message"),
    [
        ("x", np.zeros((3, 2)), ["a", "b"], "first axis must have one row per sample"),
        ("x", np.array([{"a": 1}, {"b": 2}], dtype=object), ["a", "b"], "dtype object"),
        ("../escape", np.zeros(2), ["a", "b"], "simple file name"),
        ("", np.zeros(2), ["a", "b"], "simple file name"),
    ],
)
def test_array_store_rejects_what_it_cannot_store_safely(tmp_path, name, values, ids, message):
    with pytest.raises(PluginError, match=message):
        ArrayStore(tmp_path).save(name, values, ids)


@pytest.fixture
def dense(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))
    import dense_task

    return dense_task


def test_the_feature_cache_keeps_dense_logits_and_masks(tmp_path, dense):
    from robustbench_x.cache import compute_outputs

    compute_outputs(dense.DenseModel(), dense.SegDataset(), "id", tmp_path, batch_size=2)
    logits = np.load(tmp_path / "logits.npy")
    labels = np.load(tmp_path / "labels.npy")
    images, masks = dense.toy_images_and_masks()
    assert logits.shape == (3, 2, 4, 5) and labels.shape == (3, 4, 5)
    np.testing.assert_array_equal(labels[2], masks[2])
    np.testing.assert_array_equal(logits.argmax(axis=1)[0], images[0] > 127)


def test_a_dense_task_runs_through_the_runner_with_nothing_task_specific_in_the_core(tmp_path, dense, rbx_registry, monkeypatch):
    from robustbench_x.config import Config
    from robustbench_x.plan import make_plan
    from robustbench_x.results import read_results, read_scores
    from robustbench_x.runner import RunOptions, run_group

    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    registry = rbx_registry(dense)
    plan = make_plan(registry, Config(), "toy-seg", models=["toy-segmenter"], datasets=["toy-seg"], methods=None, seeds=(0,))
    out = tmp_path / "out"
    outcomes = [o for group in plan.groups() for o in run_group(group, RunOptions(out=str(out)))]
    assert [o.status for o in outcomes] == ["ok"], outcomes

    rows = read_results(out)
    assert rows[["subset", "metric", "status", "n"]].values.tolist() == [["id", "pixel-accuracy", "ok", 3]]
    # hand count: 20 pixels per image; image 1 has 5 wrong pixels, image 2 ignores 4
    assert rows["value"].iloc[0] == pytest.approx((20 + 15 + 16) / (20 + 20 + 16))
    job = rows.iloc[0]
    scores = read_scores(out, "toy-seg", "toy-segmenter", "toy-seg", "argmax-pixels", job["config_hash"])
    np.testing.assert_allclose(scores["pixel-accuracy"], [1.0, 0.75, 1.0])
    arrays = ArrayStore(out / "arrays" / "suite=toy-seg" / "model=toy-segmenter" / "dataset=toy-seg" / "method=argmax-pixels" / job["config_hash"])
    predictions, ids = arrays.load("id-prediction")
    assert predictions.shape == (3, 4, 5) and ids.tolist() == ["img0", "img1", "img2"]
    images, _ = dense.toy_images_and_masks()
    np.testing.assert_array_equal(predictions[1], images[1] > 127)


# ----------------------------------------------------------------- what a metric returns


def _spec(name="m", kind="ood"):
    from robustbench_x.api import MetricSpec

    return MetricSpec(name, kind, f"somewhere:{name}", higher_is_better=True)


@pytest.mark.parametrize(
    ("returned", "value", "error"),
    [
        (0.25, 0.25, None),
        (np.float32(0.5), 0.5, None),
        (np.array(0.75), 0.75, None),
        (np.array([1.0, np.nan, 0.0]), 0.5, None),  # per-sample values, NaN where undefined: their mean
        (float("nan"), None, "metric undefined: 'm' returned NaN"),
        (np.array([np.nan, np.nan]), None, "metric undefined: 'm' is undefined on every sample"),
        (float("inf"), None, "metric 'm' (somewhere:m) returned inf"),
        (None, None, "returned None; a metric returns a float"),
        ("0.93", None, "returned '0.93'; a metric returns a float"),
        (np.zeros((2, 2)), None, "returned an array of shape (2, 2)"),
    ],
)
def test_what_a_metric_returns_becomes_a_value_or_the_reason_it_has_none(returned, value, error):
    from robustbench_x.evaluation import metric_value

    got, why = metric_value(_spec(), returned)
    if value is None:
        assert np.isnan(got) and error in why
    else:
        assert got == pytest.approx(value) and why is None


def test_a_metric_returning_none_fails_its_own_row_only(monkeypatch):
    """Before, `float(None)` failed the whole job and named no metric: every other row was lost."""
    from robustbench_x import evaluation

    returns = {"good:fn": lambda **kw: 0.9, "bad:fn": lambda **kw: None}
    monkeypatch.setattr(evaluation, "load_factory", lambda ref: returns[ref])
    from robustbench_x.api import MetricSpec

    specs = [MetricSpec("good", "ood", "good:fn", True), MetricSpec("bad", "ood", "bad:fn", True)]
    data = {"id": {"score": np.array([1.0, 2.0])}, "ood/x": {"score": np.array([0.0, 0.5])}}
    rows = {r.metric: r for r in evaluation.compute_metrics(specs, data)}
    assert rows["good"].value == 0.9 and rows["good"].error is None
    assert np.isnan(rows["bad"].value) and "metric 'bad' (bad:fn) returned None" in rows["bad"].error


def test_a_suite_with_a_metric_kind_the_default_evaluator_skips_is_refused(monkeypatch):
    """Before: the run said "1 ok", stored no row of the metric, and the page had no table for it."""
    from robustbench_x.api import MetricSpec, SuiteSpec
    from robustbench_x.config import Config
    from robustbench_x.errors import UsageError
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry()
    odd = MetricSpec("odd-metric", "odd", "somewhere:odd", True)
    suite = SuiteSpec("odd-suite", method_output="score", metrics=("auroc", "odd-metric"), headline=("auroc",), subsets=("id", "ood/*"))
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda kind, name: {("suites", "odd-suite"): suite, ("metrics", "odd-metric"): odd}.get((kind, name)) or real_get(kind, name))
    with pytest.raises(UsageError, match=r"odd-metric \(kind 'odd'\)[\s\S]*fix: give the suite an evaluator"):
        make_plan(registry, Config(), "odd-suite", methods=["msp"])
