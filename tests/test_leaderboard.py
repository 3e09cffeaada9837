"""Leaderboard pages from hand-built result stores: which results a cell rests
on, how it is marked, and that rendering survives damaged files and kills."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from robustbench_x import bootstrap, hookimpl
from robustbench_x.api import MethodSpec
from robustbench_x.leaderboard import check_pages, render_pages, write_pages
from robustbench_x.metrics.ood import auroc
from robustbench_x.registry import get_registry
from robustbench_x.results import RESULT_SCHEMA, ResultStore, scores_table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def write_job(out: Path, method: str, rows: list[dict], *, suite="ood", seed=0, config_hash=None, scores=None,
              created=T0, version="0.1.0", params="{}", diagnostics=None, model="m", dataset="embedded-digits", weights="mfp") -> str:
    """One job's results file (and scores file) as the runner writes them."""
    config_hash = config_hash or f"{method}-{seed}-{version}"
    base = dict(suite=suite, model=model, dataset=dataset, method=method, seed=seed, config_hash=config_hash, created_at=created,
                rbx_version=version, plugin="robustbench_x==0.1.0", params=params, diagnostics=diagnostics, duration_s=0.0,
                model_fingerprint=weights, dataset_fingerprint=None, status="ok", error=None, higher_is_better=True, n=1, value=float("nan"),
                subset=None, metric=None)
    table = pa.Table.from_pylist([{**base, **r} for r in rows], schema=RESULT_SCHEMA)
    store = ResultStore(out)
    directory = store.job_dir("results", suite, model, dataset, method)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / f"part-{config_hash}.parquet")
    if scores is not None:
        sdir = store.job_dir("scores", suite, model, dataset, method)
        sdir.mkdir(parents=True, exist_ok=True)
        pq.write_table(scores_table(scores), sdir / f"part-{config_hash}.parquet")
    return config_hash


def ood_job(out: Path, method: str, s_id, s_ood, **kw) -> str:
    """An OOD job on subset ood/x whose auroc row is computed from its scores."""
    s_id, s_ood = np.asarray(s_id, float), np.asarray(s_ood, float)
    scores = {
        "sample_id": np.array([f"i{k}" for k in range(len(s_id))] + [f"o{k}" for k in range(len(s_ood))]),
        "subset": np.array(["id"] * len(s_id) + ["ood/x"] * len(s_ood)),
        "label": np.r_[np.zeros(len(s_id), int), -np.ones(len(s_ood), int)],
        "prediction": np.zeros(len(s_id) + len(s_ood), int),
        "score": np.r_[s_id, s_ood],
    }
    row = {"subset": "ood/x", "metric": "auroc", "value": auroc(s_id, s_ood), "n": len(s_id) + len(s_ood)}
    return write_job(out, method, [row], scores=scores, **kw)


def page_of(out: Path, name="ood", n_boot=200, warnings=None) -> str:
    files = render_pages(out, n_boot=n_boot, warn=(warnings.append if warnings is not None else None))
    return files[f"{name}.md"]


def cell(page: str, method: str) -> str:
    """The first table cell after the method's name."""
    line = next(line for line in page.splitlines() if line.startswith(f"| {method}"))
    return line.split("|")[2].strip()


def separated(n=60, shift=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1, n), rng.normal(0, 1, n)


# --------------------------------------------------------------------------- aggregation


def test_two_config_hashes_of_one_cell_are_never_averaged(tmp_path):
    s_id, s_ood = separated()
    old = ood_job(tmp_path, "msp", s_id, -s_ood, config_hash="aaaaold", created=T0)  # AUROC ~1
    new = ood_job(tmp_path, "msp", s_id, s_ood * 0 + s_id.mean(), config_hash="bbbbnew", created=T0 + timedelta(days=1))
    page = page_of(tmp_path)
    expected = auroc(s_id, s_id.mean() + 0 * s_ood) * 100
    assert cell(page, "msp").startswith(f"**{expected:.1f} [")  # the newest alone, with its interval
    assert "±" not in cell(page, "msp")
    assert "superseded" in page and f"`{old}`" in page and f"superseded by newer config `{new}`" in page
    assert f"`{old}`" not in page.split("## Provenance")[1]  # provenance lists what stands


def test_the_superseded_note_says_what_changed(tmp_path):
    s_id, s_ood = separated()
    ood_job(tmp_path, "msp", s_id, s_ood, config_hash="aaaaold", created=T0, weights="w-old")
    ood_job(tmp_path, "msp", s_id, s_ood, config_hash="bbbbnew", created=T0 + timedelta(days=1), weights="w-new")
    ood_job(tmp_path, "energy", s_id, s_ood, config_hash="ccccold", created=T0, params='{"T": 1}')
    ood_job(tmp_path, "energy", s_id, s_ood, config_hash="ddddnew", created=T0 + timedelta(days=1), params='{"T": 2}')
    ood_job(tmp_path, "odin", s_id, s_ood, config_hash="eeeeold", created=T0)
    ood_job(tmp_path, "odin", s_id, s_ood, config_hash="ffffnew", created=T0 + timedelta(days=1))
    page = page_of(tmp_path)
    assert "superseded by newer config `bbbbnew` (rbx 0.1.0) because the model's weights changed" in page
    assert "superseded by newer config `ddddnew` (rbx 0.1.0) because the method's parameters changed" in page
    assert "superseded by newer config `ffffnew` (rbx 0.1.0)." in page  # nothing recorded changed: no reason given


def test_seeds_of_another_configuration_or_rbx_version_are_not_averaged_with_the_newest(tmp_path):
    s_id, s_ood = separated()
    ood_job(tmp_path, "msp", s_id, s_ood, seed=0, version="0.1.0", created=T0)
    ood_job(tmp_path, "msp", s_id, s_ood - 1, seed=1, version="0.2.0", created=T0 + timedelta(days=1))
    page = page_of(tmp_path)
    assert "±" not in cell(page, "msp")
    assert f"{auroc(s_id, s_ood - 1) * 100:.1f}" in cell(page, "msp")
    assert "seed 0: config `msp-0-0.1.0` (rbx 0.1.0) superseded by the newest configuration of its other seeds" in page


def test_a_failed_seed_is_marked_in_its_cell_with_one_note_for_all_its_cells(tmp_path):
    for seed, shift in [(0, 2.0), (1, 1.5)]:
        s_id, s_ood = separated(shift=shift, seed=seed)
        ood_job(tmp_path, "msp", s_id, s_ood, seed=seed)
    write_job(tmp_path, "msp", [{"status": "failed", "error": "RuntimeError: out of memory"}], seed=2)
    page = page_of(tmp_path)
    values = [auroc(*separated(shift=s, seed=k)) * 100 for k, s in [(0, 2.0), (1, 1.5)]]
    text = cell(page, "msp")
    assert text.startswith(f"**{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}** (2/3 seeds; seed 2 failed[^")
    mark = re.search(r"failed(\[\^\d+\])", text).group(1)
    assert f"{mark}: `msp` on m / embedded-digits, seed 2: failed: RuntimeError: out of memory" in page
    assert "mean ± sample standard deviation over the seeds that ran" in page
    # Two subsets × two headline metrics: four cells name the failed seed, one footnote says why.
    tmp = tmp_path / "wide"
    for seed in (0, 1):
        write_job(tmp, "msp", [{"subset": s, "metric": m, "value": 0.5 + 0.1 * seed} for s in ("ood/x", "ood/y") for m in ("auroc", "fpr@95tpr")], seed=seed)
    write_job(tmp, "msp", [{"status": "failed", "error": "RuntimeError: out of memory"}], seed=2)
    page = page_of(tmp)
    assert page.count("(2/3 seeds; seed 2 failed[^") == 4
    notes = [line for line in page.splitlines() if line.startswith("[^") and "out of memory" in line]
    assert len(notes) == 1, notes


def test_a_mean_over_seeds_says_how_many_seeds_and_what_its_mark_means(tmp_path):
    for seed in (0, 1, 2):
        s_id, s_ood = separated(seed=seed)
        ood_job(tmp_path, "msp", s_id, s_ood, seed=seed)
    s_id, s_ood = separated(seed=9)
    ood_job(tmp_path, "knn", s_id, s_ood)
    page = page_of(tmp_path)
    assert re.fullmatch(r"(\*\*)?[\d.]+ ± [\d.]+(\*\*)?( ≈)? \(3 seeds\)", cell(page, "msp")), cell(page, "msp")
    assert re.fullmatch(r"(\*\*)?[\d.]+ \[[\d.]+, [\d.]+\](\*\*)?( ≈)?", cell(page, "knn")), cell(page, "knn")
    assert "followed by their number (`(3 seeds)`)" in page
    assert "for a mean over seeds, a replicate is the mean of the seeds' replicates on the same resampled samples" in page


def test_values_tied_at_the_displayed_precision_are_all_bold(tmp_path):
    for method, value in [("a", 0.95012), ("b", 0.95038), ("c", 0.9494)]:
        write_job(tmp_path, method, [{"subset": "ood/x", "metric": "auroc", "value": value}])
    page = page_of(tmp_path)
    assert cell(page, "a") == "**95.0**" and cell(page, "b") == "**95.0**"
    assert cell(page, "c") == "94.9"
    assert "a value without brackets has no interval" in page
    assert "≈" not in page  # no per-sample outputs: no cell can carry the mark, no legend for it


# --------------------------------------------------------------------------- significance


def test_replicates_equal_an_independent_paired_bootstrap_with_sklearn():
    s_id, s_ood = separated(n=40, shift=1.0)
    frame = _scores_frame(s_id, s_ood)
    spec = get_registry().get("metrics", "auroc")
    got = bootstrap.replicates(frame, spec, "ood/x", 50)
    # Independent: same scheme (samples in sample_id order, one rng, ID then OOD indices per replicate), sklearn's AUROC.
    order_id, order_ood = np.argsort([f"i{k}" for k in range(40)], kind="stable"), np.argsort([f"o{k}" for k in range(40)], kind="stable")
    a, b = s_id[order_id], s_ood[order_ood]
    rng = np.random.default_rng(0)
    want = []
    for _ in range(50):
        i, j = rng.integers(0, 40, 40), rng.integers(0, 40, 40)
        want.append(roc_auc_score(np.r_[np.ones(40), np.zeros(40)], np.r_[a[i], b[j]]))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_no_interval_from_too_few_samples_or_too_many_undefined_resamples():
    spec = get_registry().get("metrics", "auroc")
    s_id, s_ood = separated(n=9, shift=1.0)  # 9 OOD samples: below MIN_SAMPLES
    assert bootstrap.replicates(_scores_frame(s_id, s_ood), spec, "ood/x", 50) is None
    s_id, s_ood = separated(n=10, shift=1.0)
    assert bootstrap.replicates(_scores_frame(s_id, s_ood), spec, "ood/x", 50) is not None
    values = np.linspace(0.5, 0.9, 1000)
    some_undefined = values.copy()
    some_undefined[:40] = np.nan  # 4 % undefined: the defined ones stand
    assert bootstrap.interval(some_undefined) is not None and bootstrap.not_worse(some_undefined, values) is not None
    some_undefined[:60] = np.nan  # 6 %: the defined ones are conditional on an event the data does not guarantee
    assert bootstrap.interval(some_undefined) is None and bootstrap.not_worse(some_undefined, values) is None


def test_not_worse_is_a_paired_decision():
    rng = np.random.default_rng(1)
    best = rng.normal(0.9, 0.02, 1000)
    assert bootstrap.not_worse(best, best) is True  # identical methods
    assert bootstrap.not_worse(best, best - 0.01) is False  # always 0.01 worse on the same resamples
    assert bootstrap.not_worse(best, best + rng.normal(0, 0.01, 1000)) is True


def test_a_method_worse_on_the_same_samples_is_not_marked_although_its_interval_overlaps(tmp_path):
    s_id, s_ood = separated(n=200, shift=1.5)
    ood_job(tmp_path, "best", s_id, s_ood)
    worse = s_ood.copy()
    worse[np.argsort(s_ood)[:5]] = s_id.max() + 1  # five OOD samples now look more ID than any ID sample
    ood_job(tmp_path, "worse", s_id, worse)
    noisy = s_ood + np.random.default_rng(3).normal(0, 0.05, len(s_ood))  # the same detector up to noise
    ood_job(tmp_path, "noisy", s_id, noisy)
    page = page_of(tmp_path, n_boot=400)
    lo_best = float(re.search(r"\[([\d.]+),", cell(page, "best")).group(1))
    hi_worse = float(re.search(r", ([\d.]+)\]", cell(page, "worse")).group(1))
    assert hi_worse > lo_best  # unpaired intervals overlap...
    assert not cell(page, "worse").endswith("≈")  # ...but on the same resamples it is worse every time
    best, noisy_cell = cell(page, "best"), cell(page, "noisy")
    assert best.startswith("**") and (noisy_cell.endswith("≈") or noisy_cell.startswith("**"))
    assert "paired bootstrap over the same samples" in page


def _scores_frame(s_id, s_ood):
    import pandas as pd

    return pd.DataFrame({
        "sample_id": [f"i{k}" for k in range(len(s_id))] + [f"o{k}" for k in range(len(s_ood))],
        "subset": ["id"] * len(s_id) + ["ood/x"] * len(s_ood),
        "score": np.r_[s_id, s_ood],
    })


def test_replicates_are_cached_by_content(tmp_path, monkeypatch):
    frame = _scores_frame(*separated(n=30))
    spec = get_registry().get("metrics", "auroc")
    first = bootstrap.replicates(frame, spec, "ood/x", 40)
    assert len(list((Path(os.environ["RBX_CACHE_DIR"]) / "bootstrap").rglob("*.npy"))) >= 1
    monkeypatch.setattr(bootstrap, "load_factory", lambda ref: pytest.fail("recomputed a cached replicate"))
    np.testing.assert_array_equal(bootstrap.replicates(frame, spec, "ood/x", 40), first)
    changed = frame.assign(score=frame["score"] + np.arange(len(frame)) * 1e-3)
    with pytest.raises(pytest.fail.Exception):
        bootstrap.replicates(changed, spec, "ood/x", 40)  # other outputs: another key


def test_a_damaged_replicate_entry_is_redrawn_not_read(tmp_path):
    # a valid .npy of the right shape but other values (bit rot, a bad copy) must not become the interval
    import io

    frame = _scores_frame(*separated(n=30))
    spec = get_registry().get("metrics", "auroc")
    first = bootstrap.replicates(frame, spec, "ood/x", 40)
    [entry] = [p for p in (Path(os.environ["RBX_CACHE_DIR"]) / "bootstrap").glob("*.npy") if np.array_equal(np.load(p), first, equal_nan=True)]
    buf = io.BytesIO()
    np.save(buf, np.full(40, 0.5))
    assert len(buf.getvalue()) == entry.stat().st_size  # same size: only the checksum can tell
    entry.write_bytes(buf.getvalue())
    os.utime(entry, (entry.stat().st_atime, entry.stat().st_mtime + 5))
    from robustbench_x import cachedir

    cachedir._checked.clear()
    np.testing.assert_array_equal(bootstrap.replicates(frame, spec, "ood/x", 40), first)
    np.testing.assert_array_equal(np.load(entry), first)  # healed in place


def test_cache_verify_removes_sealed_entries_without_a_manifest(tmp_path, cli):
    # what a run would discard ("no manifest"), verify removes too, instead of calling it "not written by this cache API"
    root = Path(os.environ["RBX_CACHE_DIR"])
    legacy = root / "bootstrap" / "ab" / "abcd.npy"  # the layout of an older rbx
    legacy.parent.mkdir(parents=True, exist_ok=True)
    np.save(legacy, np.zeros(3))
    memo = root / "digests" / "x.json"  # a self-checking memo: not the cache API's to judge
    memo.parent.mkdir(parents=True, exist_ok=True)  # the session's cache may already hold digests
    memo.write_text("{}")
    result = cli("cache", "verify")
    assert result.code == 1 and f"damaged: {legacy.parent}: no manifest" in " ".join(result.out.split()), result
    assert not legacy.parent.exists() and memo.exists()


# --------------------------------------------------------------------------- what a column rests on


def test_failure_columns_show_accuracy_and_error_count(tmp_path):
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    shared = [0, 1, 0, 0, 1, 1, 1, 1]
    for method, pred, conf in [("msp", shared, np.linspace(1, 0.2, 8)), ("energy", shared, np.linspace(1, 0.3, 8)), ("ens", [0, 1, 1, 0, 1, 1, 1, 1], np.linspace(1, 0.1, 8))]:
        pred = np.array(pred)
        acc = float(np.mean(pred == labels))
        scores = {"sample_id": np.array([f"s{k}" for k in range(8)]), "subset": np.array(["id"] * 8), "label": labels, "prediction": pred, "confidence": conf}
        write_job(tmp_path, method, [
            {"subset": "id", "metric": "accuracy", "value": acc, "n": 8},
            {"subset": "id", "metric": "failure-auroc", "value": 0.8, "n": 8},
        ], suite="failure", scores=scores)
    page = page_of(tmp_path, "failure", n_boot=20)
    assert "| *accuracy · errors* | *acc 75.0 · 2 errors* |" in page  # what most methods' predictions score
    assert cell(page, "ens").endswith("(acc 87.5 · 1 errors)") and "acc" not in cell(page, "msp")


def test_deviations_and_diagnostics_are_footnotes_of_the_method(tmp_path):
    class Plugin:
        @hookimpl
        def rbx_methods(self):
            return [MethodSpec("devmethod", "x:y", deviations=("Runs 20 optimiser steps instead of the paper's 980 (CPU budget).",))]

    get_registry().register_object(Plugin(), "devplugin")
    write_job(tmp_path, "devmethod", [{"subset": "ood/x", "metric": "auroc", "value": 0.9}], diagnostics=json.dumps({"chosen_epoch": 37, "residual_share_el": 0.1234}))
    page = page_of(tmp_path)
    label = next(line for line in page.splitlines() if line.startswith("| devmethod")).split("|")[1]
    mark = re.search(r"\[\^\d+\]", label).group(0)
    note = next(line for line in page.splitlines() if line.startswith(f"{mark}:"))
    assert "deviation: Runs 20 optimiser steps instead of the paper's 980 (CPU budget)." in note
    assert "m / embedded-digits, seed 0: chosen epoch 37, residual share el 0.123" in note


# --------------------------------------------------------------------------- faults


def test_unreadable_results_and_truncated_scores_are_named_and_the_page_still_renders(tmp_path):
    s_id, s_ood = separated()
    ood_job(tmp_path, "msp", s_id, s_ood)
    h = ood_job(tmp_path, "knn", s_id, s_ood + 0.5)
    scores = ResultStore(tmp_path).job_dir("scores", "ood", "m", "embedded-digits", "knn") / f"part-{h}.parquet"
    scores.write_bytes(scores.read_bytes()[:100])  # truncated
    broken = ResultStore(tmp_path).job_dir("results", "ood", "m", "embedded-digits", "energy") / "part-dead.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"")
    warnings: list[str] = []
    page = page_of(tmp_path, warnings=warnings)
    assert any(str(scores) in w for w in warnings) and any(str(broken) in w for w in warnings)
    assert "1 results file(s) could not be read and are not shown[^" in page
    assert "1 per-sample outputs file(s) could not be read: the cells that need them have no interval or mark[^" in page
    assert str(scores) in page and str(broken) in page  # the footnotes name them
    # Runnable as printed: the store as given and the seed (knn's from its rows; energy's file names none).
    assert f"fix: `rbx run --suite ood --models m --datasets embedded-digits --methods knn --seeds 0 --out {tmp_path} --force`" in page
    assert f"fix: `rbx run --suite ood --models m --datasets embedded-digits --methods energy --seeds 0 --out {tmp_path} --force` (its seed is not recorded" in page
    assert re.fullmatch(r"[\d.]+", cell(page, "knn").strip("*"))  # its value, without an interval
    assert "[" in cell(page, "msp")


def test_a_failing_write_leaves_the_previous_page_intact(tmp_path, monkeypatch):
    (tmp_path / "ood.md").write_text("previous page\n")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_pages({"ood.md": "new page\n" * 1000}, tmp_path)
    assert (tmp_path / "ood.md").read_text() == "previous page\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ood.md"]


def test_killing_rbx_leaderboard_mid_write_leaves_every_page_whole(tmp_path):
    store, pages = tmp_path / "store", tmp_path / "pages"
    write_job(store, "msp", [{"subset": "ood/x", "metric": "auroc", "value": 0.9}])
    write_job(store, "msp", [{"subset": "id", "metric": "failure-auroc", "value": 0.8}], suite="failure")
    pages.mkdir()
    for name in ("failure.cells.json", "failure.md", "ood.cells.json", "ood.md"):
        (pages / name).write_text(f"old {name}\n")
    # SIGKILL `rbx leaderboard` right before it renames its third file (failure.cells.json
    # and failure.md are in place, ood.cells.json is written under its temporary name).
    script = textwrap.dedent(f"""
        import os, signal, sys
        calls = []
        real = os.replace
        def replace(src, dst):
            calls.append(dst)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        os.replace = replace
        sys.argv = ["rbx", "--quiet", "leaderboard", {str(store)!r}, "--out", {str(pages)!r}, "--bootstrap", "0"]
        from robustbench_x.cli import main
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == -9, proc.stderr
    assert (pages / "failure.md").read_text().startswith("# Leaderboard: `failure`")
    assert (pages / "ood.cells.json").read_text() == "old ood.cells.json\n" and (pages / "ood.md").read_text() == "old ood.md\n"
    leftovers = [p.name for p in pages.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".ood.cells.json.")  # hidden, never read as a page
    # The next render completes and removes the killed writer's temporary file.
    subprocess.run([sys.executable, "-m", "robustbench_x.cli", "--quiet", "leaderboard", str(store), "--out", str(pages), "--bootstrap", "0"], check=True, capture_output=True)
    assert sorted(p.name for p in pages.iterdir()) == ["failure.cells.json", "failure.md", "ood.cells.json", "ood.md"]
    assert (pages / "ood.md").read_text().startswith("# Leaderboard: `ood`")


# --------------------------------------------------------------------------- --check


def test_check_lists_the_cells_that_moved_beyond_the_tolerance(tmp_path):
    write_job(tmp_path, "msp", [{"subset": "ood/x", "metric": "auroc", "value": 0.95012}])
    write_job(tmp_path, "knn", [{"subset": "ood/x", "metric": "auroc", "value": 0.9}])
    files = render_pages(tmp_path, n_boot=0)
    write_pages(files, tmp_path / "pages")
    assert check_pages(files, tmp_path / "pages") == []
    cells = json.loads(files["ood.cells.json"])
    for c in cells["cells"]:
        if c["row"] == "msp":
            c["value"] += 0.04  # within half a displayed digit
        if c["row"] == "knn":
            c["value"] -= 0.2
    moved = check_pages({**files, "ood.cells.json": json.dumps(cells)}, tmp_path / "pages")
    assert moved == ["moved: ood.md · table auroc / m · row knn · column embedded-digits / ood/x: 90.0 → 89.8 (|Δ| 0.20 > 0.05)"]
    assert check_pages({**files, "ood.cells.json": json.dumps(cells)}, tmp_path / "pages", tolerance=3) == []


# --------------------------------------------------------------------------- robustness page


def test_corruption_page_collapses_identical_predictions_and_shows_corruptions_as_rows(tmp_path):
    subsets = ["id", "c/noise/1", "c/noise/2", "c/blur/1", "c/blur/2"]
    labels = np.tile([0, 1, 2, 3], 5)
    base = labels.copy()
    base[[4, 8, 9, 12, 13, 14, 16, 17, 18]] = 0  # errors grow with the level
    other = base.copy()
    other[[9, 17]] = labels[[9, 17]]  # the ensemble gets two of them right
    for method, pred in [("msp", base), ("energy", base), ("ensemble", other)]:
        scores = {"sample_id": np.array([f"s{k % 4}" for k in range(20)]), "subset": np.repeat(subsets, 4), "label": labels, "prediction": pred}
        err = {s: float(np.mean(pred[i * 4:(i + 1) * 4] != labels[i * 4:(i + 1) * 4])) for i, s in enumerate(subsets)}
        rows = [{"subset": s, "metric": "error", "value": v, "higher_is_better": False} for s, v in err.items()]
        rows += [{"subset": f"c/{c}", "metric": "corruption-error", "value": (err[f"c/{c}/1"] + err[f"c/{c}/2"]) / 2, "higher_is_better": False} for c in ("noise", "blur")]
        rows += [{"subset": "all", "metric": "mce-unnormalised", "value": np.mean([err[s] for s in subsets[1:]]), "higher_is_better": False},
                 {"subset": "all", "metric": "clean-error", "value": err["id"], "higher_is_better": False}]
        write_job(tmp_path, method, rows, suite="corruption", dataset="embedded-digits-c", scores=scores)
    write_job(tmp_path, "ensemble", [{"status": "failed", "error": "MemoryError"}], suite="corruption", dataset="embedded-digits-c", seed=1)
    files = render_pages(tmp_path, n_boot=20)
    page = files["corruption.md"]
    assert "- *the model*: energy, msp" in page and "- own predictions: ensemble" in page
    assert "| c/… | the model | ensemble |" in page  # corruptions are rows, one column per distinct prediction
    assert "| blur | 50.0 | **37.5 (1/2 seeds)** |" in page and "| noise | 12.5 | **0.0 (1/2 seeds)** |" in page
    assert "| m | embedded-digits-c | ensemble | 1 | failed[^" in page  # the failed seed, named with its error
    assert not re.search(r"\[\d", page.split("## Provenance")[0])  # no interval promised or shown
    assert "no interval is shown" in page
    png = "corruption-severity-m-embedded-digits-c.png"
    assert files[png].startswith(b"\x89PNG") and f"]({png})" in page


def test_a_failing_page_renderer_falls_back_to_the_default_tables(tmp_path, monkeypatch):
    import rbx_robustness.page

    def broken(page):
        page.note("half-written note")
        raise KeyError("boom")

    monkeypatch.setattr(rbx_robustness.page, "render", broken)
    write_job(tmp_path, "msp", [{"subset": "all", "metric": "mce-unnormalised", "value": 0.4, "higher_is_better": False}], suite="corruption", dataset="embedded-digits-c")
    warnings: list[str] = []
    page = page_of(tmp_path, "corruption", warnings=warnings)
    assert any("rbx_robustness.page:render failed (KeyError" in w for w in warnings)
    assert "| msp | **40.0** |" in page and "half-written note" not in page
    assert "The suite's page renderer `rbx_robustness.page:render` failed (KeyError: 'boom'): these are the default tables." in page


def test_seed_cell_is_the_value_for_one_seed_and_mean_sd_for_several():
    import numpy as np

    from robustbench_x.pages import seed_cell

    assert seed_cell(np.array([0.5]), 100) == (0.5, "50.0")
    value, text = seed_cell(np.array([0.5, 0.7, np.nan]), 100)  # the NaN (a failed seed) is left out
    assert value == pytest.approx(0.6) and text == "60.0 ± 14.1"  # sd with ddof 1: 0.1414
    assert seed_cell(np.array([np.nan]), 1) == (None, "")
    assert seed_cell(np.array([0.12345, 0.12345]), 1) == (pytest.approx(0.12345), "0.123 ± 0.000")


# --------------------------------------------------------------------------- what the page says about itself


def test_a_seed_whose_results_file_is_unreadable_is_missing_from_its_cell_and_its_fix_names_store_and_seed(tmp_path):
    store = tmp_path / "my store"
    for seed in (0, 1, 2):
        s_id, s_ood = separated(seed=seed)
        ood_job(store, "msp", s_id, s_ood, seed=seed)
    lost = ResultStore(store).job_dir("results", "ood", "m", "embedded-digits", "msp") / "part-msp-2-0.1.0.parquet"
    lost.write_bytes(b"not parquet")
    (store / "runs").mkdir()
    (store / "runs" / "r.json").write_text(json.dumps({"plan": [{"job": "ood/m/embedded-digits/msp/2", "config_hash": "msp-2-0.1.0"}]}))
    page = page_of(store)
    text = cell(page, "msp")
    assert re.fullmatch(r"\*\*[\d.]+ ± [\d.]+\*\* \(2/3 seeds; seed 2 unreadable\[\^\d+\]\)", text), text
    fix = f"fix: `rbx run --suite ood --models m --datasets embedded-digits --methods msp --seeds 2 --out '{store}' --force`"
    assert fix in page


def test_a_suite_whose_jobs_all_failed_lists_each_cause_once_and_no_legend(tmp_path):
    for method in ("msp", "knn"):
        for seed in (0, 1):
            write_job(tmp_path, method, [{"status": "failed", "error": "RuntimeError: CUDA out of memory\nTraceback ..."}], seed=seed)
    write_job(tmp_path, "energy", [{"status": "skipped", "error": "requires vlm"}])
    page = page_of(tmp_path)
    assert "No job of this suite produced a result: 5 job(s) skipped or failed." in page
    assert "| failed: RuntimeError: CUDA out of memory | `knn` on m / embedded-digits, seed 0; `knn` on m / embedded-digits, seed 1; `msp` on m / embedded-digits, seed 0; `msp` on m / embedded-digits, seed 1 |" in page
    assert "| skipped: requires vlm | `energy` on m / embedded-digits, seed 0 |" in page
    assert "≈" not in page and "**Bold**" not in page and "bootstrap" not in page


def test_bootstrap_0_says_intervals_were_not_computed(tmp_path):
    ood_job(tmp_path, "msp", *separated())
    page = page_of(tmp_path, n_boot=0)
    assert "bootstrap intervals and the ≈ marks were not computed (`--bootstrap 0`)" in page
    assert "resamples" not in page and "a value without brackets" not in page


def test_the_mean_column_and_a_mean_error_count_are_defined_on_the_page(tmp_path):
    labels = np.array([0, 1, 1, 0])
    for seed, pred in ((0, [0, 1, 1, 1]), (1, [1, 0, 1, 1])):  # 1 and 3 errors: 2 on average
        scores = {"sample_id": np.array([f"s{k}" for k in range(4)]), "subset": np.array(["id"] * 4), "label": labels, "prediction": np.array(pred), "confidence": np.linspace(1, 0.2, 4)}
        acc = float(np.mean(np.array(pred) == labels))
        write_job(tmp_path, "msp", [{"subset": s, "metric": "accuracy", "value": acc, "n": 4} for s in ("id", "shift/x")]
                  + [{"subset": s, "metric": "ece", "value": 0.1, "n": 4, "higher_is_better": False} for s in ("id", "shift/x")],
                  suite="calibration", scores=scores, seed=seed)
    page = page_of(tmp_path, "calibration", n_boot=0)
    assert "`mean`: the unweighted mean of the row's values over the table's dataset / subset columns" in page
    assert "| *accuracy · errors* | *acc 50.0 · 2 errors, mean of 2 seeds* |" in page


def test_an_empty_store_is_a_usage_error_naming_it(cli, tmp_path):
    (tmp_path / "empty" / "results").mkdir(parents=True)
    for extra in ((), ("--check",)):
        result = cli("leaderboard", str(tmp_path / "empty"), "--out", str(tmp_path / "x2"), *extra)
        assert result.code == 2, result
        assert f"no results under {tmp_path / 'empty'}" in result.err and f"`rbx run --suite <suite> --out {tmp_path / 'empty'}` first" in result.err
    assert not (tmp_path / "x2").exists()


def test_a_page_of_a_suite_no_longer_in_the_store_is_kept_and_check_says_how_to_remove_it(cli, tmp_path):
    write_job(tmp_path / "store", "msp", [{"subset": "ood/x", "metric": "auroc", "value": 0.9}])
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "gone.md").write_text("# gone\n![plot](gone-a.png)\n")
    (pages / "gone.cells.json").write_text("{}")
    (pages / "gone-a.png").write_bytes(b"png")
    wrote = cli("--quiet", "leaderboard", str(tmp_path / "store"), "--out", str(pages), "--bootstrap", "0")
    assert wrote.code == 0 and (pages / "gone.md").exists()
    assert f"kept {pages / 'gone.md'}" in wrote.err and f"`rm {pages / 'gone.md'} {pages / 'gone.cells.json'} {pages / 'gone-a.png'}`" in wrote.err
    checked = cli("--quiet", "leaderboard", str(tmp_path / "store"), "--out", str(pages), "--bootstrap", "0", "--check")
    assert checked.code == 1
    assert f"stale: {pages / 'gone.md'} is committed but the results have no suite 'gone' (fix: delete it, `rm {pages / 'gone.md'} {pages / 'gone.cells.json'} {pages / 'gone-a.png'}`" in checked.out


def test_check_reports_an_edited_page_and_a_missing_png_but_not_a_neighbouring_digit(tmp_path):
    write_job(tmp_path, "msp", [{"subset": "ood/x", "metric": "auroc", "value": 0.94449999}])
    write_job(tmp_path, "knn", [{"subset": "ood/x", "metric": "auroc", "value": 0.9}])
    files = render_pages(tmp_path, n_boot=0)
    pages = tmp_path / "pages"
    write_pages({**files, "ood-plot.png": b"png"}, pages)
    linked = {**files, "ood-plot.png": b"png", "ood.md": files["ood.md"] + "![plot](ood-plot.png)\n"}
    (pages / "ood.md").write_text(linked["ood.md"])
    assert check_pages(linked, pages) == []
    # Float noise on another machine: 94.4499… renders as 94.5 there; the cell is within tolerance, the text too.
    noisy = json.loads(files["ood.cells.json"])
    for c in noisy["cells"]:
        c["value"] += 0.00002 if c["row"] == "msp" else 0
    assert check_pages({**linked, "ood.cells.json": json.dumps(noisy), "ood.md": linked["ood.md"].replace("94.4", "94.5")}, pages) == []
    # A number changed by hand, a line appended, a PNG deleted: each is reported.
    (pages / "ood.md").write_text(linked["ood.md"].replace("94.4", "97.4"))
    assert [p.split(" line ")[0] for p in check_pages(linked, pages)] == [f"edited: {pages / 'ood.md'}"]
    (pages / "ood.md").write_text(linked["ood.md"] + "sneaked in\n")
    assert "the committed page has more lines" in check_pages(linked, pages)[0]
    (pages / "ood.md").write_text(linked["ood.md"])
    (pages / "ood-plot.png").unlink()
    assert check_pages(linked, pages) == [f"missing: {pages / 'ood-plot.png'}, linked from ood.md (run `rbx leaderboard RESULTS --out {pages}` and commit it)"]
