"""`rbx run --suite adversarial` end to end: the embedded default, the stored
per-sample outputs and float32 inputs checked against the threat model, the
page; a CIFAR-10 binary release under RobustBench's protocol with published
`model_info` rows imported beside the measured one, and the export."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from robustbench_x.results import read_results


def _store(out, method, dataset="embedded-digits", suite="adversarial"):
    base = f"suite={suite}/model=builtin-cnn/dataset={dataset}/method={method}"
    (scores,) = out.glob(f"scores/{base}/part-*.parquet")
    (arrays,) = out.glob(f"arrays/{base}/*")
    return pq.read_table(scores).to_pandas(), arrays


def test_embedded_default_stores_checkable_outputs_and_renders(cli, tmp_path):
    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "adversarial", "--methods", "pgd-10", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[["method", "error"]]
    values = frame.set_index(["subset", "metric"])["value"]
    scores, arrays = _store(out, "pgd-10")
    assert len(scores) == 383 and (scores["subset"] == "id").all()
    # every number is recomputable from the per-sample table
    assert values["id", "clean-accuracy"] == pytest.approx((scores["prediction"] == scores["label"]).mean(), abs=1e-12)
    assert values["id", "robust-accuracy"] == pytest.approx(scores["robust"].mean(), abs=1e-12)
    assert values["after/pgd-10", "robust-accuracy"] == pytest.approx(scores["robust_after/pgd-10"].mean(), abs=1e-12)
    assert 0.05 < values["id", "robust-accuracy"] < values["id", "clean-accuracy"]  # ε = 0.1 breaks some, not all
    assert set(scores.loc[~scores["robust"], "broken_by"]) <= {"clean", "pgd-10"}
    diag = json.loads(frame["diagnostics"].iloc[0])
    assert (diag["norm"], diag["eps"], diag["eps_label"]) == ("Linf", 0.1, "0.1")
    # and the ε-ball from the stored float32 inputs
    with np.load(arrays / "input.npz") as a, np.load(arrays / "adversarial_input.npz") as b:
        x, x_adv = a["values"], b["values"]
        assert x.dtype == x_adv.dtype == np.float32 and list(b["sample_id"]) == list(scores["sample_id"])
    size = np.abs(x_adv - x).reshape(len(x), -1).max(1)
    assert size.max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.allclose(size, scores["perturbation_norm"], atol=1e-7)
    assert (size[scores["robust"].to_numpy()] == 0).all()

    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"))
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "adversarial.md").read_text()
    assert "Threat model: ℓ∞, ε = 0.1" in page and "not a RobustBench protocol" in page
    assert f"{100 * values['id', 'robust-accuracy']:.1f}" in page


def test_missing_extra_skips_autoattack_with_the_install_hint(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyautoattack" else real(name, *a))
    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "adversarial", "--methods", "autoattack-standard", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    (row,) = read_results(out).itertuples()
    assert row.status == "skipped"
    assert row.error == "needs the optional package pyautoattack, which is not installed; to run it, pip install 'robustbench_x[attacks]'"


def _cifar10(root, n_train=120, n_test=24):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", n_train // 5) for i in range(1, 6)] + [("test_batch.bin", n_test)]:
        labels = np.arange(n) % 10
        # class c: a bright square in a class-specific place, on noise (learnable by the tiny CNN)
        pixels = rng.integers(0, 60, (n, 3, 32, 32))
        for i, c in enumerate(labels):
            pixels[i, :, (c // 5) * 16:(c // 5) * 16 + 16, (c % 5) * 6:(c % 5) * 6 + 6] = 255
        (root / name).write_bytes(np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1).astype(np.uint8).tobytes())


PUBLISHED = {
    "Carmon2019Unlabeled": {"link": "https://arxiv.org/abs/1905.13736", "name": "Unlabeled Data Improves Adversarial Robustness",
                            "authors": "Yair Carmon, Aditi Raghunathan, Ludwig Schmidt, Percy Liang, John C. Duchi", "additional_data": True,
                            "number_forward_passes": 1, "dataset": "cifar10", "venue": "NeurIPS 2019", "architecture": "WideResNet-28-10",
                            "eps": "8/255", "clean_acc": "89.69", "reported": "62.5", "autoattack_acc": "59.53", "unreliable": False},
    "Standard": {"link": "https://github.com/RobustBench/robustbench/", "name": "Standardly trained model", "authors": "", "additional_data": False,
                 "number_forward_passes": 1, "dataset": "cifar10", "venue": "N/A", "architecture": "WideResNet-28-10", "eps": "8/255",
                 "clean_acc": "94.78", "reported": "0.0", "autoattack_acc": "0.0", "external": "0.0"},
}


def test_robustbench_protocol_published_rows_and_export(cli, tmp_path):
    from rbx_attacks.robustbench import main

    data = tmp_path / "cifar-10-batches-bin"
    data.mkdir()
    _cifar10(data)
    (tmp_path / "datasets.yaml").write_text(f"datasets:\n  tinycifar:\n    type: cifar10\n    root: {tmp_path}\n")
    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "adversarial", "--datasets", "tinycifar", "--methods", "pgd-10", "--out", str(out), cwd=tmp_path)
    assert result.code == 0, result
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[["method", "error"]]
    diag = json.loads(frame["diagnostics"].iloc[0])
    assert (diag["protocol"], diag["eps_label"]) == ("cifar10", "8/255")
    assert diag["preprocessing"].startswith("model transform")  # the built-in CNN takes 1x8x8, not ToTensor's 3x32x32

    published = tmp_path / "clone" / "model_info" / "cifar10" / "Linf"
    published.mkdir(parents=True)
    for key, info in PUBLISHED.items():
        (published / f"{key}.json").write_text(json.dumps(info))
    assert main(["import", str(tmp_path / "clone"), str(out)]) == 0
    assert cli("leaderboard", str(out), "--out", str(tmp_path / "pages")).code == 0
    page = (tmp_path / "pages" / "adversarial.md").read_text()
    table = page[page.index("## RobustBench cifar10, Linf"):]
    assert "| published | [Unlabeled Data Improves Adversarial Robustness](https://arxiv.org/abs/1905.13736) | 8/255 | 89.7 | 59.5 (AutoAttack) |" in table
    assert "| published | [Standardly trained model](https://github.com/RobustBench/robustbench/) | 8/255 | 94.8 | 0.0 (external) |" in table
    clean = frame[(frame["metric"] == "clean-accuracy")]["value"].iloc[0]
    assert f"| measured | `builtin-cnn` × pgd-10" in table and f"| 8/255 | {100 * clean:.1f} |" in table

    assert main(["export", str(out), str(tmp_path / "export")]) == 0
    (exported,) = (tmp_path / "export" / "cifar10" / "Linf").glob("*.json")
    info = json.loads(exported.read_text())
    assert info["dataset"] == "cifar10" and info["eps"] == "8/255" and info["clean_acc"] == str(round(clean * 100, 2))
    assert "autoattack_acc" not in info and "not AutoAttack" in info["footnote"]  # a PGD number is never an AutoAttack one
    assert set(info) <= set(PUBLISHED["Carmon2019Unlabeled"]) | {"footnote", "external"}
