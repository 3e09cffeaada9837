"""``rbx run --suite segmentation`` / ``--suite anomaly-segmentation`` on the embedded
default, as a user runs them, then the leaderboard pages (docs/tasks.md, section 7)."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.slow


def _table(out, kind):
    return pads.dataset(out / kind, format="parquet", partitioning="hive").to_table().to_pandas()


def _arrays(out, name):
    (path,) = list((out / "arrays").rglob(f"method=seg-msp/*/{name}.npz"))
    with np.load(path, allow_pickle=False) as data:
        return data["values"], data["sample_id"]


def test_segmentation_suite_end_to_end(cli, tmp_path):
    out = tmp_path / "results"
    run = cli("--quiet", "run", "--suite", "segmentation", "--methods", "seg-msp,seg-mc-dropout-mi", "--out", str(out))
    assert run.code == 0, run
    rows = _table(out, "results")
    assert set(rows["model"]) == {"builtin-segmenter"} and (rows["status"] == "ok").all()
    value = rows[rows["subset"] == "test"].set_index(["method", "metric"])["value"]
    # the built-in segmenter makes real mistakes but is far better than chance
    assert 0.5 < value["seg-msp", "miou"] < 0.95 and 0.9 < value["seg-msp", "pixel-accuracy"] < 0.995
    assert value["seg-msp", "pixel-ece"] > 0 and value["seg-msp", "pixel-aurc"] > 0
    # the stored per-image confusion matrices give the same mIoU, exactly
    confusion, ids = _arrays(out, "test.confusion")
    total = confusion.sum(axis=0).astype(float)
    inter, union = np.diag(total), total.sum(0) + total.sum(1) - np.diag(total)
    assert np.isclose(np.mean(inter[union > 0] / union[union > 0]), value["seg-msp", "miou"], rtol=1e-12)
    prediction, pred_ids = _arrays(out, "test.prediction")
    assert prediction.dtype == np.uint8 and prediction.shape == (120, 64, 64) and list(pred_ids) == list(ids)
    scores = _table(out, "scores")
    assert {"sample_id", "subset", "image-iou", "image-pixel-accuracy"} <= set(scores.columns)
    assert len(scores[scores["method"] == "seg-msp"]) == 240 and set(scores["subset"]) == {"val", "test"}

    pages = tmp_path / "pages"
    board = cli("leaderboard", str(out), "--out", str(pages))
    assert board.code == 0, board
    text = (pages / "segmentation.md").read_text()
    assert "### `test`" in text and "### `val`" in text and "seg-mc-dropout-mi" in text and "miou ↑" in text
    assert list(pages.glob("segmentation-*.png"))


def test_anomaly_segmentation_suite_end_to_end(cli, tmp_path):
    out = tmp_path / "results"
    run = cli("--quiet", "run", "--suite", "anomaly-segmentation", "--methods", "seg-msp,seg-maxlogit", "--out", str(out))
    assert run.code == 0, run
    rows = _table(out, "results")
    ok = rows[rows["status"] == "ok"]
    # SegmentMeIfYouCan's protocol: pooled pixel metrics and component metrics, never the image-averaged ones
    assert set(ok["metric"]) == {"ap-pooled", "fpr95-pooled", "f1-best-pooled", "siou", "ppv", "mean-f1"}
    value = ok.set_index(["method", "metric"])["value"]
    from rbx_segmentation.scenes import ANOMALY_SUBSET, generate

    masks = generate(ANOMALY_SUBSET).masks
    anomaly_share = (masks == 1).sum() / (masks != 255).sum()  # chance AP: the anomalous share of the non-void pixels
    assert value["seg-msp", "ap-pooled"] > 2 * anomaly_share
    score, _ = _arrays(out, "anomaly-unseen-shape.score")
    assert score.dtype == np.float16 and score.shape == (120, 64, 64)
    pages = tmp_path / "pages"
    assert cli("leaderboard", str(out), "--out", str(pages)).code == 0
    text = (pages / "anomaly-segmentation.md").read_text()
    assert "protocol `smiyc-anomaly`" in text and "first threshold reaching 95 % TPR" in text
    assert list(pages.glob("anomaly-segmentation-*.png"))
