"""End to end on the embedded default: the acceptance of the core issue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from robustbench_x.results import RESULT_SCHEMA, read_results

pytestmark = pytest.mark.slow

CONTRACT_COLUMNS = {
    "model", "dataset", "subset", "method", "metric", "value", "higher_is_better", "n", "seed",
    "status", "error", "config_hash", "duration_s", "created_at", "rbx_version", "plugin",
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ood_run(tmp_path_factory, shared_cache):
    """One `rbx run --suite ood` shared by the tests of this module."""
    import os
    import sys

    from robustbench_x import cli, registry

    out = tmp_path_factory.mktemp("ood") / "store"
    os.environ["RBX_CACHE_DIR"] = str(shared_cache)
    registry._REGISTRY = None
    argv, sys.argv = sys.argv, ["rbx", "--quiet", "run", "--suite", "ood", "--out", str(out), "--format", "json"]
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code == 0
    finally:
        sys.argv = argv
    return out


def test_ood_run_follows_the_contracts(ood_run):
    frame = read_results(ood_run)
    assert CONTRACT_COLUMNS <= set(frame.columns)
    ok = frame[frame["status"] == "ok"]
    assert ok["method"].nunique() >= 8
    assert {s for s in ok["subset"].unique() if s.startswith("ood/")} >= {"ood/digits-6to9", "ood/photos", "ood/textures"}
    assert ok["value"].notna().all()
    assert (ok.loc[ok["metric"] == "auroc", "value"].between(0, 1)).all()
    # Types as the contract says.
    table = pq.read_table(next((ood_run / "results").rglob("part-*.parquet")))
    for name in ("value", "n", "seed", "higher_is_better"):
        assert table.schema.field(name).type == RESULT_SCHEMA.field(name).type
    # Per-sample outputs sit beside the results, one file per job, with ID and OOD subsets.
    scores = list((ood_run / "scores").rglob("part-*.parquet"))
    assert len(scores) == ok.drop_duplicates(["method"]).shape[0]
    sample = pq.read_table(scores[0]).to_pandas()
    assert {"sample_id", "subset", "label", "prediction", "score"} <= set(sample.columns)
    assert set(sample["subset"]) == {"id", "ood/digits-6to9", "ood/photos", "ood/textures"}
    assert (sample.loc[sample["subset"] != "id", "label"] == -1).all()


def test_rerun_adds_nothing_and_recomputes_nothing(ood_run, cli):
    before = _files(ood_run)
    mtimes = {p: p.stat().st_mtime_ns for p in (ood_run / "results").rglob("*.parquet")}
    result = cli("--quiet", "run", "--suite", "ood", "--out", str(ood_run), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["ok"] == 0 and summary["failed"] == 0
    assert summary["cached"] == summary["jobs"] - summary["skipped"]
    assert _files(ood_run) == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (ood_run / "results").rglob("*.parquet")}


def test_rerun_into_a_finished_store_imports_nothing_heavy(ood_run, shared_cache):
    """Nothing to do is decided from file names: no runner, torch, pandas, sklearn or ray."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from robustbench_x.cli import main\n"
        f"sys.argv = ['rbx', '--quiet', 'run', '--suite', 'ood', '--out', {str(ood_run)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = ('torch', 'pandas', 'sklearn', 'ray', 'pyarrow', 'robustbench_x.runner')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    env = dict(os.environ, RBX_CACHE_DIR=str(shared_cache))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout + run.stderr
    assert "22 already done" in run.stdout or "already done" in run.stdout


def test_fresh_store_and_fresh_cache_reproduce_every_value(ood_run, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "fresh-cache"))
    result = cli("--quiet", "run", "--suite", "ood", "--out", str(tmp_path / "again"), "--format", "json")
    assert result.code == 0, result
    key = ["model", "dataset", "subset", "method", "metric", "seed"]
    first, second = read_results(ood_run), read_results(tmp_path / "again")
    assert (first["status"] == "skipped").sum() == (second["status"] == "skipped").sum()
    first = first[first["status"] == "ok"].set_index(key)["value"].sort_index()
    second = second[second["status"] == "ok"].set_index(key)["value"].sort_index()
    assert first.index.equals(second.index)
    differ = (first != second)
    assert not differ.any(), f"values differ:\n{first[differ]}\n{second[differ]}"


def test_leaderboard_renders_the_run(ood_run, cli, tmp_path):
    result = cli("leaderboard", str(ood_run), "--out", str(tmp_path / "pages"), "--bootstrap", "50")
    assert result.code == 0, result
    page = (tmp_path / "pages" / "ood.md").read_text()
    assert "## auroc" in page and "## fpr@95tpr" in page
    assert re.search(r"embedded-digits(\[\^\d+\])? / ood/photos", page)  # the dataset's declared deviation is a footnote
    assert "**" in page  # the best value is bold
    assert "## Provenance" in page
    check = cli("leaderboard", str(ood_run), "--out", str(tmp_path / "pages"), "--bootstrap", "50", "--check")
    assert check.code == 0, check


@pytest.mark.parametrize("suite, metric", [("failure", "aurc"), ("calibration", "ece")])
def test_failure_and_calibration_suites_run_on_the_embedded_default(cli, tmp_path, suite, metric):
    result = cli("--quiet", "run", "--suite", suite, "--out", str(tmp_path), "--format", "json")
    assert result.code == 0, result
    frame = read_results(tmp_path)
    ok = frame[(frame["status"] == "ok") & (frame["metric"] == metric)]
    assert "msp" in set(ok["method"])
    if suite == "failure":  # a trained method stores the epoch it kept with its rows
        (diagnostics,) = set(frame.loc[frame["method"] == "confidnet", "diagnostics"])
        assert json.loads(diagnostics)["chosen_epoch"] > 1
    # i.i.d. and shifted test sets; calibration only under covariate shift (new-class samples have no true class)
    expected = {"id", "shift/covariate", "shift/new-class"} if suite == "failure" else {"id", "shift/covariate"}
    assert set(frame.loc[frame["status"] == "ok", "subset"]) == expected
    counted = frame[(frame["status"] == "ok") & frame["metric"].isin(["accuracy", "errors"])]
    assert (counted.groupby(["method", "subset"]).size() == 2).all()  # every column has its accuracy and error count
    pages = cli("leaderboard", str(tmp_path), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0
    assert f"## {metric}" in (tmp_path / "pages" / f"{suite}.md").read_text()
    if suite == "calibration":
        assert list((tmp_path / "pages").glob("calibration-reliability-*.png"))


def test_suite_all_runs_every_suite_that_has_something_to_run(cli, tmp_path):
    result = cli("--quiet", "run", "--suite", "all", "--methods", "msp", "--out", str(tmp_path), "--format", "json")
    assert result.code == 0, result
    summaries = json.loads(result.out)
    ran = {s["suite"] for s in summaries}
    # msp outputs score, confidence, probs and prediction: every classification-style suite with an embedded dataset.
    assert {"ood", "failure", "calibration", "corruption", "perturbation"} <= ran
    assert "retrieval" not in ran  # msp gives no embedding
    assert all(s["failed"] == 0 for s in summaries)


def test_failure_suite_rests_on_hundreds_of_errors_and_new_class_samples_are_failures(cli, tmp_path):
    result = cli("--quiet", "run", "--suite", "failure", "--methods", "msp", "--out", str(tmp_path), "--format", "json")
    assert result.code == 0, result
    frame = read_results(tmp_path)
    ok = frame[frame["status"] == "ok"]
    errors = ok[ok["metric"] == "errors"].set_index("subset")["value"]
    accuracy = ok[ok["metric"] == "accuracy"].set_index("subset")["value"]
    assert set(errors.index) == {"id", "shift/covariate", "shift/new-class"}
    assert errors.sum() >= 100, errors
    assert errors["shift/covariate"] >= 100  # the covariate shift alone, before any new-class sample
    for subset in errors.index:
        assert {"failure-auroc", "aurc", "ap-error", "augrc"} <= set(ok.loc[ok["subset"] == subset, "metric"])
    # the stored counts are those of the stored per-sample outputs
    scores = pq.read_table(next((tmp_path / "scores").rglob("part-*.parquet"))).to_pandas()
    for subset, part in scores.groupby("subset"):
        wrong = int((part["prediction"] != part["label"]).sum())
        assert errors[subset] == wrong and accuracy[subset] == pytest.approx(1 - wrong / len(part))
    new = scores[(scores["subset"] == "shift/new-class") & (scores["label"] == -1)]
    assert len(new) == 714 and (new["prediction"] >= 0).all()
    iid_errors = int((scores.loc[scores["subset"] == "id", "prediction"] != scores.loc[scores["subset"] == "id", "label"]).sum())
    assert errors["shift/new-class"] == len(new) + iid_errors  # every new-class sample is a failure
