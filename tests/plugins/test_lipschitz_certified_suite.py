"""`rbx run --suite certified` on the embedded default, end to end: the built-in
Lipschitz CNN runs (a model without a declared constant is skipped with the reason), every stored number is
recomputed from the per-sample table, ε = 0 equals clean accuracy, and the page renders
its table and curve."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from robustbench_x.results import read_results


def test_certified_suite_runs_end_to_end_and_renders_a_page(cli, tmp_path):
    from rbx_lipschitz.grid import CLASSIFICATION_GRID, parse_eps

    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "certified", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["ok"] == 1 and summary["failed"] == 0 and summary["skipped"] == 0

    frame = read_results(out)
    rows = frame[frame["status"] == "ok"]
    assert set(rows["model"]) == {"lipschitz-cnn"}
    files = list(out.glob("scores/suite=certified/model=lipschitz-cnn/dataset=embedded-digits/method=lipschitz-margin/part-*.parquet"))
    scores = pq.read_table(files[0]).to_pandas()
    correct = scores["prediction"].to_numpy() == scores["label"].to_numpy()
    np.testing.assert_array_equal(correct, scores["correct"].to_numpy())
    constant = scores["lipschitz_constant"].to_numpy()
    assert np.all(constant == constant[0]) and 0.9 < constant[0] <= 1.001
    np.testing.assert_allclose(scores["certified_radius"], np.maximum(scores["margin"], 0) / (np.sqrt(2) * constant))
    values = rows.set_index(["subset", "metric"])["value"]
    for text in CLASSIFICATION_GRID:
        eps = parse_eps(text)
        expected = np.mean(correct & ((scores["certified_radius"].to_numpy() > eps) | (eps == 0)))
        assert values[(f"id/l2/{text}", "certified-accuracy")] == pytest.approx(expected, abs=1e-15)
    assert values[("id/l2/0", "certified-accuracy")] == values[("id", "accuracy")] == pytest.approx(correct.mean())
    assert values[("id/l2/36/255", "certified-accuracy")] > 0.8  # the shipped network is robust at deel-lip's default radius
    assert values[("id", "mean-certified-radius")] == pytest.approx(scores["mean-certified-radius"].mean())

    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"))
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "certified.md").read_text()
    assert "| 36/255 | " in page
    png = tmp_path / "pages" / "certified-curve-lipschitz-cnn-embedded-digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = json.loads((tmp_path / "pages" / "certified.cells.json").read_text())
    cells = cells["cells"] if isinstance(cells, dict) else cells
    zero = [c for c in cells if c["row"] == "lipschitz-margin ε=0" and c["column"] == "certified-accuracy"]
    assert len(zero) == 1 and zero[0]["value"] == pytest.approx(100 * correct.mean())


def test_a_model_without_a_constant_is_refused_by_the_method():
    from types import SimpleNamespace

    from robustbench_x.errors import PluginError
    from rbx_lipschitz.methods import LipschitzMargin

    outputs = SimpleNamespace(logits=np.array([[2.0, 0.0]]), labels=np.array([0]))
    for model in (SimpleNamespace(name="m"), SimpleNamespace(name="m", lipschitz_constant=float("inf")), SimpleNamespace(name="m", lipschitz_constant=-1)):
        ctx = SimpleNamespace(model=model, outputs=lambda subset: outputs)
        with pytest.raises(PluginError, match="lipschitz_constant"):
            LipschitzMargin().score(ctx, "id")
    ctx = SimpleNamespace(model=SimpleNamespace(name="m", lipschitz_constant=2.0), outputs=lambda subset: outputs)
    out = LipschitzMargin().score(ctx, "id")
    assert out["certified_radius"].tolist() == pytest.approx([2.0 / (np.sqrt(2) * 2.0)])


def test_suite_default_models_join_the_default_ones_only_for_that_suite():
    from robustbench_x.config import Config
    from robustbench_x.registry import get_registry

    from robustbench_x.plan import make_plan

    registry = get_registry()
    models = lambda plan: sorted({j.model.name for j in plan.jobs})  # noqa: E731
    # the default CNN has no constant: no method of the suite can use it, so the default run leaves it out
    assert models(make_plan(registry, Config(), "certified")) == ["lipschitz-cnn"]
    assert "lipschitz-cnn" not in models(make_plan(registry, Config(), "ood"))
    # named explicitly, a model without a declared constant is skipped with the reason
    plan = make_plan(registry, Config(), "certified", models=["builtin-cnn"])
    assert [j.model.name for j in plan.jobs] == ["builtin-cnn"]
    assert "requires lipschitz" in plan.jobs[0].skip_reason
