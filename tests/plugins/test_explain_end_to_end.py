"""``rbx run --suite explanation`` on the embedded default, VOICE in the failure suite,
and the page with its example grid; the models' declared explanation layers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from robustbench_x.evaluation import ArrayStore


@pytest.fixture(scope="module")
def explained(tmp_path_factory, shared_cache):
    """One explanation run and one failure run of ``voice`` into the same store, then the pages."""
    import os
    import sys

    from robustbench_x import cli as cli_module
    from robustbench_x import registry

    out = tmp_path_factory.mktemp("explain-results")
    pages = tmp_path_factory.mktemp("explain-pages")
    old_cache, old_argv = os.environ.get("RBX_CACHE_DIR"), sys.argv
    os.environ["RBX_CACHE_DIR"] = str(shared_cache)
    codes = []
    try:
        for args in (["run", "--suite", "explanation", "--out", str(out), "--quiet"],
                     ["run", "--suite", "failure", "--methods", "voice", "--out", str(out), "--quiet"],
                     ["leaderboard", str(out), "--out", str(pages)]):
            registry._REGISTRY = None
            sys.argv = ["rbx", *args]
            try:
                cli_module.main()
                codes.append(0)
            except SystemExit as exc:
                codes.append(int(exc.code or 0))
    finally:
        sys.argv = old_argv
        registry._REGISTRY = None
        if old_cache is None:
            os.environ.pop("RBX_CACHE_DIR", None)
        else:
            os.environ["RBX_CACHE_DIR"] = old_cache
    return codes, out, pages


def _results(out, suite: str) -> pd.DataFrame:
    from robustbench_x.results import read_results

    rows = read_results(out)
    return rows[rows["suite"] == suite]


def _scores(out, suite: str) -> pd.DataFrame:
    from robustbench_x.results import read_scores

    return read_scores(out, suite, "builtin-cnn", "embedded-digits", "voice")


def test_explanation_suite_runs_and_stores_its_metrics_columns_and_maps(explained):
    codes, out, _ = explained
    assert codes == [0, 0, 0]
    results = _results(out, "explanation")
    ok = results[results["status"] == "ok"]
    assert set(ok["metric"]) >= {"iou@0.1-correct", "iou@0.1-incorrect", "snr-correct", "iou-error-auroc"}
    assert set(ok["subset"]) == {"id", "shift/covariate", "shift/new-class"}
    scores = _scores(out, "explanation")
    ids = scores[scores["subset"] == "id"]
    assert len(ids) == 383 and {"iou@0.1", "snr", "confidence"} <= set(scores.columns)
    np.testing.assert_allclose(ids["confidence"], 1 - ids["iou@0.1"])
    # the stored means are the means of the stored per-image columns, per group
    right = ids["prediction"] == ids["label"]
    value = ok[(ok["subset"] == "id") & (ok["metric"] == "iou@0.1-incorrect")]
    assert value["n"].item() == (~right).sum() and value["value"].item() == pytest.approx(ids.loc[~right, "iou@0.1"].mean())
    store = ArrayStore(next((out / "arrays" / "suite=explanation").rglob("explanation.id.npz")).parent)
    maps, map_ids = store.load("uncertainty.id")
    assert maps.shape == (383, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(maps.max(axis=(1, 2)), 1.0)
    assert list(map_ids) == list(ids["sample_id"].astype(str))
    examples, example_ids = store.load("examples.id")
    assert examples.shape == (8, 8, 8, 3) and examples.dtype == np.uint8
    wrong = set(ids.loc[~right, "sample_id"].astype(str))
    assert wrong <= set(example_ids)  # the four wrong predictions come first in the grid


def test_voice_joins_the_failure_suite(explained):
    codes, out, pages = explained
    results = _results(out, "failure")
    auroc = results[(results["metric"] == "failure-auroc") & (results["subset"] == "id")]
    assert auroc["status"].item() == "ok" and auroc["method"].item() == "voice"
    assert "voice" in (pages / "failure.md").read_text()


def test_page_shows_the_table_and_the_example_grid(explained):
    _, _, pages = explained
    text = (pages / "explanation.md").read_text()
    assert "renderer" not in text.split("## Notes")[0]  # the plugin's own page, not the fallback tables
    assert "| id | 379 / 4 |" in text
    png = pages / "explanation-grid-builtin-cnn-embedded-digits-voice.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({png.name})" in text
    cells = json.loads((pages / "explanation.cells.json").read_text())
    recorded = {(c["row"], c["column"]) for c in cells["cells"] if c["table"] == "builtin-cnn / embedded-digits / voice"}
    assert ("id", "iou-error-auroc") in recorded and ("shift/covariate", "snr-incorrect") in recorded


def test_models_declare_their_explanation_layer():
    import torch

    from robustbench_x.api import Model
    from rbx_models.timm_model import build

    assert Model().explanation_layer() is None
    resnet = build("test_resnet", {"pretrained": False, "num_classes": 6})
    assert "explanation_layer" in resnet.provides and resnet.explanation_layer() is resnet.net.layer4
    from rbx_explain.voice import voice_batch

    _, e, u, _ = voice_batch(resnet.module, resnet.explanation_layer(), torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), 3)
    assert e.shape == u.shape == (2, 64, 64) and 0 <= float(u.min()) and float(u.max()) == 1.0
    vit = build("test_vit", {"pretrained": False, "num_classes": 6})
    assert "explanation_layer" not in vit.provides and vit.explanation_layer() is None
    from rbx_models.smallcnn import BuiltinCNN, SmallCNN

    cnn = BuiltinCNN(SmallCNN(6), fingerprint="x")
    seen = {}

    def hook(_module, _inputs, output):
        seen["shape"] = tuple(output.shape)

    cnn.explanation_layer().register_forward_hook(hook)
    cnn.forward(torch.zeros(2, 1, 8, 8))
    assert seen["shape"] == (2, 64, 4, 4)
