"""The result store is one call away in every table library.

``results/`` and ``scores/`` keep ``suite, model, dataset, method`` only in the
hive path, so pandas, pyarrow, DuckDB and polars read either tree whole and
agree with :func:`read_results` row for row and column for column.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from robustbench_x.results import PARTITIONS, RESULT_SCHEMA, ResultStore, read_results, read_scores, scores_table

duckdb = pytest.importorskip("duckdb")
polars = pytest.importorskip("polars")
pads = pytest.importorskip("pyarrow.dataset")


def _job(model: str, method: str, config_hash: str):
    ref = lambda name: SimpleNamespace(name=name)  # noqa: E731 - the store reads names only
    return SimpleNamespace(suite="ood", model=ref(model), dataset=ref("embedded-digits"), method=method, config_hash=config_hash)


def _row(job, subset: str, metric: str, value: float, status: str = "ok") -> dict:
    return {
        "suite": job.suite, "model": job.model.name, "dataset": job.dataset.name, "subset": subset, "method": job.method,
        "metric": metric, "value": value, "higher_is_better": True, "n": 10, "seed": 0, "status": status,
        "error": None if status == "ok" else "boom", "config_hash": job.config_hash, "duration_s": 0.5,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "rbx_version": "0.1", "plugin": "robustbench_x==0.1",
        "model_fingerprint": "fp", "dataset_fingerprint": None, "params": "{}", "diagnostics": None,
    }  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Names with a ':' and an '@' (percent-encoded in the path) next to plain ones."""
    out = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    results = ResultStore(out)
    for i, (model, method) in enumerate([("builtin-cnn", "msp"), ("builtin-cnn", "energy"), ("timm:resnet18", "msp"), ("timm:resnet18", "fpr@ish")]):
        job = _job(model, method, f"{i:016x}")
        n = 6
        scores = scores_table({
            "sample_id": np.array([f"s{k}" for k in range(n)], dtype=object), "subset": np.array(["id"] * 3 + ["ood/x"] * 3, dtype=object),
            "label": np.arange(n) % 3, "prediction": np.arange(n) % 2, "score": rng.normal(size=n), "probs": rng.dirichlet(np.ones(3), size=n),
            "seed": np.zeros(n, dtype=np.int64),
        })  # fmt: skip
        rows = [_row(job, "ood/x", "auroc", 0.5 + i / 10), _row(job, "ood/x", "fpr@95tpr", 0.1 * i, status="failed" if i == 3 else "ok")]
        results.write(job, rows, scores)
    failed = _job("builtin-cnn", "broken", "f" * 16)  # a job that failed as a whole leaves its marker beside its file
    results.write(failed, [_row(failed, None, None, float("nan"), status="failed")])
    assert results.failed_marker(failed).exists()
    return out


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or name in PARTITIONS:
            frame[name] = column.astype(str)
        elif pd.api.types.is_datetime64_any_dtype(column):
            frame[name] = pd.to_datetime(column, utc=True).astype("datetime64[us, UTC]")
        elif column.dtype == object and column.notna().any() and isinstance(column.dropna().iloc[0], (list, np.ndarray)):
            frame[name] = [tuple(np.round(np.asarray(v, dtype=float), 6)) for v in column]
        elif column.dtype == object or pd.api.types.is_string_dtype(column):
            frame[name] = column.astype(object).where(column.notna(), None)
    frame = frame[sorted(frame.columns)]
    keys = [c for c in ("suite", "model", "dataset", "method", "subset", "metric", "sample_id") if c in frame.columns]
    return frame.sort_values(keys, na_position="first").reset_index(drop=True)


def _readers(tree: str):
    return {
        "pandas": lambda: pd.read_parquet(tree),
        "pyarrow": lambda: pads.dataset(tree, partitioning="hive").to_table().to_pandas(),
        "duckdb": lambda: duckdb.sql(f"SELECT * FROM read_parquet('{tree}/**/*.parquet', hive_partitioning=true)").df(),
        "polars": lambda: polars.scan_parquet(tree, hive_partitioning=True).collect().to_pandas(),
    }


@pytest.mark.parametrize("library", ["pandas", "pyarrow", "duckdb", "polars"])
def test_results_tree_reads_the_same_in_every_library(store, library):
    expected = _normalise(read_results(store))
    assert set(expected["model"]) == {"builtin-cnn", "timm:resnet18"} and "fpr@ish" in set(expected["method"])
    assert list(read_results(store).columns) == [f.name for f in RESULT_SCHEMA]  # read_results keeps its frame
    got = _normalise(_readers(str(store / "results"))[library]())
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.parametrize("library", ["pandas", "pyarrow", "duckdb", "polars"])
def test_scores_tree_reads_the_same_in_every_library(store, library):
    jobs = [("builtin-cnn", "msp"), ("builtin-cnn", "energy"), ("timm:resnet18", "msp"), ("timm:resnet18", "fpr@ish")]
    parts = []
    for model, method in jobs:
        frame = read_scores(store, "ood", model, "embedded-digits", method)
        parts.append(frame.assign(suite="ood", model=model, dataset="embedded-digits", method=method))
    expected = _normalise(pd.concat(parts, ignore_index=True))
    got = _normalise(_readers(str(store / "scores"))[library]())
    assert len(got) == 24
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_identity_columns_live_only_in_the_path(store):
    for tree in ("results", "scores"):
        for path in (store / tree).rglob("part-*.parquet"):
            assert not set(PARTITIONS) & set(pq.read_schema(path).names), path


def test_stores_written_with_identity_columns_in_the_files_still_read(tmp_path):
    """Stores from before the path-only layout carried the columns in the files too."""
    import pyarrow as pa

    job = _job("builtin-cnn", "msp", "0" * 16)
    path = ResultStore(tmp_path).path("results", job)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_row(job, "ood/x", "auroc", 0.9)], schema=RESULT_SCHEMA), path)
    frame = read_results(tmp_path)
    assert frame[["suite", "model", "dataset", "method", "value"]].values.tolist() == [["ood", "builtin-cnn", "embedded-digits", "msp", 0.9]]


def test_done_is_decided_from_file_names_and_magic_bytes(tmp_path):
    store = ResultStore(tmp_path)
    job = _job("builtin-cnn", "msp", "1" * 16)
    assert not store.done(job)
    store.write(job, [_row(job, None, None, float("nan"), status="failed")])
    assert not store.done(job) and store.failed_marker(job).exists()  # a failed job is run again
    import pyarrow as pa

    scores = pa.table({"sample_id": ["a"], "subset": ["ood/x"], "score": [0.5]})
    rows = [_row(job, "ood/x", "auroc", 0.9), _row(job, "ood/x", "ece", float("nan"), status="failed")]
    store.write(job, rows)
    assert not store.done(job)  # no per-sample scores: the page would lose the job's intervals
    store.write(job, rows, scores)
    assert store.done(job) and not store.failed_marker(job).exists()  # an undefined metric is an answer
    for kind in ("results", "scores"):
        path = store.path(kind, job)
        whole = path.read_bytes()
        path.write_bytes(whole[:-10])  # damaged: the footer's magic bytes are gone
        assert not store.done(job), kind
        path.unlink()
        assert not store.done(job), kind
        path.write_bytes(whole)
        assert store.done(job)


def test_temporary_files_of_killed_writers_are_removed_when_old(tmp_path):
    """What a writer killed between open and rename leaves: removed by the next
    run once an hour old; a fresh one (a concurrent writer's) and files of other
    names stay."""
    import os
    import time

    store = ResultStore(tmp_path)
    job = _job("builtin-cnn", "msp", "2" * 16)
    folder = store.path("results", job).parent
    folder.mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    old = [folder / f".part-{'2' * 16}.parquet.{'a' * 32}.tmp", tmp_path / "runs" / f".20261207T000000Z-ood.json.{'c' * 32}.tmp"]
    young = folder / f".part-{'2' * 16}.parquet.{'b' * 32}.tmp"
    foreign = [folder / ".notes.tmpx", folder / "part-x.parquet", folder / ".tmp123"]
    for path in [*old, young, *foreign]:
        path.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    for path in [*old, *foreign]:
        os.utime(path, (hours_ago, hours_ago))
    assert sorted(store.clean_temporary()) == sorted(old)
    assert young.exists() and all(p.exists() for p in foreign)
