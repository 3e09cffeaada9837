"""The result store: one Parquet file per job, written atomically.

Layout under ``--out``::

    results/suite=<s>/model=<m>/dataset=<d>/method=<x>/part-<config_hash>.parquet
    scores/suite=<s>/model=<m>/dataset=<d>/method=<x>/part-<config_hash>.parquet
    runs/<timestamp>-<suite>.json

A file is written as ``.<name>.<uuid>.tmp`` in its final directory, fsynced
and renamed: "the file exists" therefore means "the job finished", and a
leftover temporary file from a killed writer is never read (its name starts
with a dot). The scores file is written before the results file, so a results
file never points at missing per-sample outputs.

The identity columns ``suite, model, dataset, method`` live only in the path,
in both trees, never inside the files: a column that is both a hive directory
and a file column is a string in one place and a dictionary in the other, and
pandas (through pyarrow's dictionary partitioning) then refuses to read the
tree. So every table library reads a whole tree with one call::

    pd.read_parquet("out/results")                                  # identity columns: category
    pyarrow.dataset.dataset("out/results", partitioning="hive")
    duckdb.read_parquet("out/results/**/*.parquet", hive_partitioning=True)
    polars.scan_parquet("out/results", hive_partitioning=True)

:func:`read_results` adds the identity columns back as strings from the path
(so a model called ``007`` stays ``"007"``) and still reads stores written
before this layout, whose files carry them.
"""

from __future__ import annotations

import functools
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from robustbench_x.files import TEMPORARY, atomic_write

# pyarrow and numpy are imported where they are used: `rbx run` into a finished
# store decides that there is nothing to do from file names alone, without them.


@functools.cache
def result_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("suite", pa.string()),
            ("model", pa.string()),
            ("dataset", pa.string()),
            ("subset", pa.string()),
            ("method", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("higher_is_better", pa.bool_()),
            ("n", pa.int64()),
            ("seed", pa.int64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("config_hash", pa.string()),
            ("duration_s", pa.float64()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("rbx_version", pa.string()),
            ("plugin", pa.string()),
            ("model_fingerprint", pa.string()),
            ("dataset_fingerprint", pa.string()),
            ("params", pa.string()),
            ("diagnostics", pa.string()),
        ],
        metadata={b"rbx_schema": b"1"},
    )


def __getattr__(name: str):
    if name == "RESULT_SCHEMA":  # the public name, built lazily (PEP 562)
        return result_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PARTITIONS = ("suite", "model", "dataset", "method")


def _segment(key: str, value: str) -> str:
    return f"{key}={urllib.parse.quote(str(value), safe='')}"


def _whole(path: Path) -> bool:
    """The file exists and starts and ends with Parquet's magic bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
    except OSError:  # missing, or shorter than its magic bytes
        return False
    return head == tail == b"PAR1"


#: A temporary file this old has lost its writer: a result file is written in well under a second.
STALE_TEMPORARY_S = 3600.0


class ResultStore:
    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)

    def clean_temporary(self, older_than_s: float = STALE_TEMPORARY_S) -> list[Path]:
        """Remove the temporary files of writers killed mid-write (never read, but
        they pile up). Only names this store writes, and only old ones: another
        run writing into the same ``--out`` right now keeps its files."""
        removed = []
        cutoff = time.time() - older_than_s
        for kind in ("results", "scores", "runs"):
            root = self.out / kind
            for path in root.rglob(".*tmp") if root.is_dir() else ():
                try:
                    if path.is_file() and TEMPORARY.fullmatch(path.name) and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
                except OSError:
                    continue  # gone meanwhile, or not ours to remove
        return removed

    def job_dir(self, kind: str, suite: str, model: str, dataset: str, method: str) -> Path:
        parts = [_segment(k, v) for k, v in zip(PARTITIONS, (suite, model, dataset, method))]
        return self.out.joinpath(kind, *parts)

    def path(self, kind: str, job) -> Path:
        return self.job_dir(kind, job.suite, job.model.name, job.dataset.name, job.method) / f"part-{job.config_hash}.parquet"

    def failed_marker(self, job) -> Path:
        """Present while the job's stored rows say the job itself failed. A
        dot-file: every Parquet reader skips it."""
        path = self.path("results", job)
        return path.with_name(f".{path.stem}.failed")

    def done(self, job) -> bool:
        """A job is done when its results and per-sample scores files are whole
        and the job itself did not fail (a metric undefined on the data is an
        answer, not a failure). Every finished job writes both; without its
        scores a page would lose the job's intervals and significance marks.
        Decided from file names and the Parquet magic bytes, without reading
        the files: a re-run into a finished store must cost next to nothing."""
        return _whole(self.path("results", job)) and _whole(self.path("scores", job)) and not self.failed_marker(job).exists()

    def write(self, job, rows: list[dict[str, Any]], scores=None) -> Path:
        import pyarrow as pa

        if scores is not None:
            _atomic_write(scores.drop_columns([c for c in PARTITIONS if c in scores.column_names]), self.path("scores", job))
        table = pa.Table.from_pylist(rows, schema=result_schema()).drop_columns(list(PARTITIONS))
        path = self.path("results", job)
        marker = self.failed_marker(job)
        failed = any(r.get("status") == "failed" and r.get("metric") is None for r in rows)
        if failed:  # the marker first: a crash in between leaves the job to be re-run, never "done"
            path.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        _atomic_write(table, path)
        if not failed:
            marker.unlink(missing_ok=True)
        return path

    def read(self):
        """Every result row of this store as a pandas DataFrame."""
        return read_results(self.out)


def _atomic_write(table, path: Path) -> None:
    import pyarrow.parquet as pq

    atomic_write(path, lambda fh: pq.write_table(table, fh))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("part-*.parquet") if not any(part.startswith((".", "_")) for part in p.parts[len(root.parts):]))


def read_results(out: str | os.PathLike, on_error=None):
    """Every result row under ``out`` as a pandas DataFrame (empty if none).
    ``on_error(path, exc)``, if given, is called for a file that cannot be read,
    which is then skipped (without it the error propagates)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(out) / "results"
    tables = []
    for f in _files(root) if root.exists() else []:
        try:
            tables.append(_with_identity(pq.read_table(f), f, root))
        except Exception as exc:
            if on_error is None:
                raise
            on_error(f, exc)
    if not tables:
        return pd.DataFrame({f.name: pd.Series(dtype=object) for f in result_schema()})
    table = pa.concat_tables(tables, promote_options="permissive")
    order = [f.name for f in result_schema() if f.name in table.column_names]
    return table.select(order + [c for c in table.column_names if c not in order]).to_pandas()


def _with_identity(table, path: Path, root: Path):
    """Put the path's ``key=value`` identity back as string columns (files of
    older stores carry them already and are left as they are)."""
    for segment in path.parent.relative_to(root).parts:
        key, sep, value = segment.partition("=")
        if sep and key in PARTITIONS and key not in table.column_names:
            import pyarrow as pa

            table = table.append_column(pa.field(key, pa.string()), pa.array([urllib.parse.unquote(value)] * len(table), pa.string()))
    return table


def read_scores(out: str | os.PathLike, suite: str, model: str, dataset: str, method: str, config_hash: str | None = None):
    """The per-sample outputs of one job (the newest file when no hash is given)."""
    import pyarrow.parquet as pq

    store = ResultStore(out)
    directory = store.job_dir("scores", suite, model, dataset, method)
    if config_hash:
        path = directory / f"part-{config_hash}.parquet"
        return pq.read_table(path).to_pandas() if path.exists() else None
    files = sorted(directory.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    return pq.read_table(files[-1]).to_pandas() if files else None


def scores_table(columns: dict[str, Any]):
    """Per-sample outputs as an Arrow table; ``probs`` becomes a fixed-size list column."""
    import numpy as np
    import pyarrow as pa

    arrays, names = [], []
    for name, values in columns.items():
        values = np.asarray(values)
        if values.ndim == 2:
            flat = pa.array(values.astype(np.float32).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        else:
            arrays.append(pa.array(values))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)
