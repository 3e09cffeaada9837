"""`rbx run --suite corruption` / `--suite perturbation` on the embedded default
(nothing configured), end to end, and the leaderboard pages they render."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rbx_robustness.tables import IMAGENET_C_TEST, IMAGENET_P_TEST
from robustbench_x.results import read_results

METHODS = ["msp", "maxlogit", "energy", "react"]


def _scores(out, suite, dataset, method):
    files = list(out.glob(f"scores/suite={suite}/model=builtin-cnn/dataset={dataset}/method={method}/part-*.parquet"))
    assert len(files) == 1, files
    return pq.read_table(files[0]).to_pandas()


def test_corruption_suite_on_the_embedded_default(cli, tmp_path):
    from rbx_robustness.embedded import C_IMAGES

    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "corruption", "--methods", ",".join(METHODS), "--out", str(out), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["ok"] == len(METHODS) and summary["failed"] == 0 and summary["skipped"] == 0, summary

    frame = read_results(out)
    assert set(frame["dataset"]) == {"embedded-digits-c"}  # the only built-in dataset with corruptions
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "metric", "subset", "error"]]
    n_sub = C_IMAGES
    for method in METHODS:
        rows = frame[frame["method"] == method]
        err = rows[rows["metric"] == "error"].set_index("subset")["value"]
        assert sorted(err.index) == sorted(["id"] + [f"c/{c}/{s}" for c in IMAGENET_C_TEST for s in range(1, 6)])
        assert err.between(0, 1).all()
        assert (rows.loc[rows["metric"] == "error", "n"] == n_sub).all()
        per_c = rows[rows["metric"] == "corruption-error"].set_index("subset")["value"]
        assert sorted(per_c.index) == sorted(f"c/{c}" for c in IMAGENET_C_TEST)
        for c in IMAGENET_C_TEST:
            assert per_c[f"c/{c}"] == pytest.approx(np.mean([err[f"c/{c}/{s}"] for s in range(1, 6)]), abs=1e-12)
        agg = rows[rows["subset"] == "all"].set_index("metric")
        assert set(agg.index) == {"mce-unnormalised", "clean-error"}  # no AlexNet normaliser off ImageNet-C
        assert agg.loc["mce-unnormalised", "value"] == pytest.approx(per_c.mean(), abs=1e-12)
        assert agg.loc["mce-unnormalised", "n"] == 75 * n_sub
        assert agg.loc["clean-error", "value"] == pytest.approx(err["id"], abs=1e-12)
        assert not agg["higher_is_better"].any()
        # the corruptions hurt: the mean corrupted error is above the clean error
        assert agg.loc["mce-unnormalised", "value"] > agg.loc["clean-error", "value"]
        det = rows[rows["metric"] == "detection-auroc"]
        assert len(det) == 75 and det["value"].between(0, 1).all() and det["higher_is_better"].all()
        assert (det["n"] == 2 * n_sub).all()

        scores = _scores(out, "corruption", "embedded-digits-c", method)
        assert len(scores) == 76 * n_sub
        assert {"sample_id", "subset", "label", "prediction", "score"} <= set(scores.columns)
        fog = scores[scores["subset"] == "c/fog/3"]
        assert fog["sample_id"].str.startswith("fog/3/digits/").all()
        assert np.mean(fog["prediction"] != fog["label"]) == pytest.approx(err["c/fog/3"], abs=1e-12)
    # post-hoc methods that keep the argmax share their errors
    msp = frame[(frame["method"] == "msp") & (frame["metric"] == "error")].set_index("subset")["value"]
    energy = frame[(frame["method"] == "energy") & (frame["metric"] == "error")].set_index("subset")["value"]
    assert np.allclose(msp.sort_index(), energy.sort_index())

    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "corruption.md").read_text()
    # The suite's own page: one column per distinct prediction, corruptions as rows, a severity PNG.
    assert "| *the model* |" in page and "mce-unnormalised ↓ (×100)" in page and "### corruption-error ↓ (×100)" in page
    assert "on `embedded-digits-c`" in page and "| fog |" in page and "msp" in page
    assert "](corruption-severity-builtin-cnn-embedded-digits-c.png)" in page
    assert (tmp_path / "pages" / "corruption-severity-builtin-cnn-embedded-digits-c.png").read_bytes().startswith(b"\x89PNG")
    assert "## Provenance" in page

    again = cli("--quiet", "run", "--suite", "corruption", "--methods", ",".join(METHODS), "--out", str(out), "--format", "json")
    assert again.code == 0 and json.loads(again.out)["cached"] == len(METHODS)


def test_perturbation_suite_on_the_embedded_default(cli, tmp_path):
    from rbx_robustness.embedded import P_SEQUENCES
    from rbx_robustness.definitions import flip_probability, is_noise

    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "perturbation", "--methods", ",".join(METHODS), "--out", str(out), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["ok"] == len(METHODS) and summary["failed"] == 0 and summary["skipped"] == 0, summary

    frame = read_results(out)
    assert set(frame["dataset"]) == {"embedded-digits-p"}
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "metric", "subset", "error"]]
    for method in METHODS:
        rows = frame[frame["method"] == method]
        fp = rows[rows["metric"] == "flip-probability"].set_index("subset")
        ut = rows[rows["metric"] == "ut5d"].set_index("subset")
        assert sorted(fp.index) == sorted(f"p/{p}" for p in IMAGENET_P_TEST) == sorted(ut.index)
        assert fp["value"].between(0, 1).all() and ut["value"].between(0, 15).all()
        assert fp.loc["p/translate", "n"] == 41 * P_SEQUENCES and fp.loc["p/rotate", "n"] == 31 * P_SEQUENCES
        agg = rows[rows["subset"] == "all"].set_index("metric")
        assert set(agg.index) == {"mfp-unnormalised", "mut5d-unnormalised"}  # not ImageNet-P: no mFR / mT5D
        assert agg.loc["mfp-unnormalised", "value"] == pytest.approx(fp["value"].mean(), abs=1e-12)
        assert agg.loc["mut5d-unnormalised", "value"] == pytest.approx(ut["value"].mean(), abs=1e-12)

        # the per-frame columns recompute both metrics without the model
        scores = _scores(out, "perturbation", "embedded-digits-p", method)
        assert len(scores) == P_SEQUENCES * (9 * 31 + 41)
        assert {"sequence", "frame", "flip", "top5_distance", "prediction"} <= set(scores.columns)
        for subset, part in scores.groupby("subset"):
            name = subset[2:]
            per_seq = part.groupby("sequence")["flip"].mean()  # NaN (reference-only frames) skipped
            assert per_seq.mean() == pytest.approx(fp.loc[subset, "value"], abs=1e-12)
            assert part.groupby("sequence")["top5_distance"].mean().mean() == pytest.approx(ut.loc[subset, "value"], abs=1e-9)
            grid = part.sort_values(["sequence", "frame"])["prediction"].to_numpy().reshape(P_SEQUENCES, -1)
            assert flip_probability(grid, noise=is_noise(name)) == pytest.approx(fp.loc[subset, "value"], abs=1e-12)
            assert part["sample_id"].str.match(rf"^{name}/digits/\d+#\d+$").all()

    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "perturbation.md").read_text()
    assert "mfp-unnormalised ↓ (×100)" in page and "### flip-probability ↓ (×100)" in page and "mut5d-unnormalised ↓" in page
    assert "| translate |" in page and "msp" in page
