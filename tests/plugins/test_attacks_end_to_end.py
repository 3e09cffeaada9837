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

    # FAB-T's 9 targets need 10 classes: the job answers "undefined" before attacking, which the page does not call a failure
    assert cli("--quiet", "run", "--suite", "adversarial", "--methods", "fab-t", "--out", str(out)).code == 0
    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"))
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "adversarial.md").read_text()
    assert "Threat model: ℓ∞, ε = 0.1" in page and "not a RobustBench protocol" in page
    assert f"{100 * values['id', 'robust-accuracy']:.1f}" in page
    assert "× `fab-t` (not applicable): AutoAttack 'standard' runs fab-t on 9 target classes" in page
    assert "(failed)" not in page and "metric undefined" not in page


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
    assert diag["preprocessing"].startswith("model transform")  # the built-in CNN takes 1x8x8, not ToTensor's 3x32x32
    # RobustBench's epsilon, but attacked on the model's own resized images: never listed or exported as comparable
    assert "protocol" not in diag and (diag["protocol (not comparable)"], diag["eps_label"]) == ("cifar10", "8/255")

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
    assert "| measured |" not in table
    assert "RobustBench's cifar10 ε, but not its preprocessing, so not comparable with its leaderboard" in page

    assert main(["export", str(out), str(tmp_path / "export")]) == 0
    assert not list((tmp_path / "export").rglob("*.json"))


def _write_store(root, rows):
    """A result store in the documented layout: results/suite=/model=/dataset=/method=/part-*.parquet."""
    import pandas as pd

    for (suite, model, dataset, method), group in pd.DataFrame(rows).groupby(["suite", "model", "dataset", "method"]):
        folder = root / "results" / f"suite={suite}" / f"model={model}" / f"dataset={dataset}" / f"method={method}"
        folder.mkdir(parents=True)
        group.drop(columns=["suite", "model", "dataset", "method"]).to_parquet(folder / "part-0.parquet", index=False)


def test_export_writes_each_threat_model_apart_and_only_comparable_jobs(tmp_path):
    from rbx_attacks.robustbench import export_model_info

    def job(suite, norm, eps, clean, robust, tag="protocol", seed=0):
        diag = json.dumps({tag: "cifar10", "norm": norm, "eps_label": eps})
        return [dict(suite=suite, model="net", dataset="c10", method="autoattack-standard", status="ok", metric=m, subset="id",
                     value=v, seed=seed, diagnostics=diag) for m, v in (("clean-accuracy", clean), ("robust-accuracy", robust))]

    rows = job("adversarial", "Linf", "8/255", 0.9, 0.4) + job("adversarial-l2", "L2", "0.5", 0.9, 0.7)
    rows += [dict(r, model="resized") for r in job("adversarial", "Linf", "8/255", 0.9, 0.1, tag="protocol (not comparable)")]
    _write_store(tmp_path / "store", rows)
    written = export_model_info(tmp_path / "store", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "cifar10/L2/net__autoattack-standard.json", "cifar10/Linf/net__autoattack-standard.json"]
    linf, l2 = (json.loads((tmp_path / "out" / "cifar10" / n / "net__autoattack-standard.json").read_text()) for n in ("Linf", "L2"))
    assert (linf["autoattack_acc"], linf["eps"]) == ("40.0", "8/255") and (l2["autoattack_acc"], l2["eps"]) == ("70.0", "0.5")
    assert linf["footnote"].endswith("seed 0")
