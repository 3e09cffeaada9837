"""Markdown leaderboards rendered from the result store, deterministically.

One page per suite (``<suite>.md``), its PNGs, and ``<suite>.cells.json``: the
value behind every numeric cell, which ``rbx leaderboard --check`` compares.

What a cell is (the page header says it again, for the cells it has):

* **Which results.** The newest job per (suite, model, dataset, method, seed)
  stands; older jobs of the same identity (another config hash: a changed
  default or dataset root, another rbx version) are *superseded*, dropped and
  named in a footnote. The seeds of one cell must share one configuration
  (method parameters and rbx version): seeds run with another configuration
  than the newest one are superseded too. A cell never averages across
  configurations.
* **One seed**: the value and a percentile bootstrap 95 % interval from the
  stored per-sample outputs (:mod:`robustbench_x.bootstrap`; ID and OOD
  resampled separately for OOD metrics; fixed seed; replicates cached by the
  content of the outputs, so an unchanged store re-renders without
  recomputing them).
* **Several seeds**: mean ± sample standard deviation over the seeds that ran
  and their number, ``73.0 ± 0.4 (3 seeds)``. A seed that failed, or whose
  results file is unreadable, is named in the cell, ``73.0 ± 0.4 (2/3 seeds;
  seed 2 failed[^n])``, with the error in one footnote per job.
* **mean** column: the unweighted mean of the row's cells over the columns.
* **Bold**: the best value of the column and every value equal to it at the
  displayed precision. **≈**: not significantly worse than the best, by a
  paired bootstrap over the same samples: replicate ``b`` of both methods uses
  the same resampled sample indices, and the method is marked when the 95 %
  percentile interval of ``best − other`` contains 0. A mean over seeds or
  columns compares the means of the replicates (sample variation only).
* Failure and calibration tables start with the accuracy and the number of
  errors each column rests on (from the ``accuracy`` rows); a method whose
  predictions differ from the rest shows its own in its cells.
* Declared ``deviations`` of a method, dataset or model spec, and the
  diagnostics a job recorded (``Context.record``), are footnotes on that
  row, column or heading.

Empty cells say why in a footnote (skipped: the planner's reason; failed: the
error). A results or scores file that cannot be read is skipped with a
warning and a footnote. The page ends with provenance: rbx and plugin
versions, config hashes, model and dataset fingerprints. Nothing
time-dependent is printed. A suite may replace the tables with its own
renderer (``SuiteSpec.renderer``; see :mod:`robustbench_x.pages`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_x.api import load_factory
from robustbench_x.bootstrap import interval, not_worse, replicates
from robustbench_x.pages import Page, atomic_write, bold, fmt, markdown_table, pyplot, slug
from robustbench_x.registry import get_registry
from robustbench_x.results import PARTITIONS, read_results

__all__ = ["render_pages", "write_pages", "check_pages", "stale_pages", "standing", "load_results", "metric_cells", "Cell", "DEFAULT_TOLERANCE"]

#: ``--check`` tolerance, in units of the last displayed digit: a value moved
#: when it differs by more than half a displayed digit (0.05 on a percentage
#: shown with one decimal, 0.0005 on an NLL shown with three).
DEFAULT_TOLERANCE = 0.5

IDENTITY = ["suite", "model", "dataset", "method", "seed"]
NOT_WORSE = "≈"

Warn = Callable[[str], None]


# --------------------------------------------------------------------------- loading


def load_results(results_dir: str | Path, warn: Warn) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Every readable result row under ``results_dir``, and the files that were
    not readable (path, reason), each also passed to ``warn``."""
    bad: list[tuple[Path, str]] = []

    def skip(path: Path, exc: Exception) -> None:  # truncated, empty or not Parquet: never abort the render
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        warn(f"skipped unreadable results file {path} ({reason})")
        bad.append((path, reason))

    frame = read_results(results_dir, on_error=skip)
    if "diagnostics" not in frame:
        frame["diagnostics"] = None
    # Plain Python strings: the many small selections a page makes are several
    # times faster on object columns than on Arrow-backed ones.
    return frame.astype({c: object for c in frame.columns if pd.api.types.is_string_dtype(frame[c])}), bad


def standing(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows that stand, and one sentence per superseded job.

    Per (suite, model, dataset, method, seed) the newest job (latest
    ``created_at``, then the larger config hash) stands. Per (suite, model,
    dataset, method) the seeds must share the newest job's configuration
    (``params`` and ``rbx_version``); seeds of another one are superseded.
    """
    if frame.empty:
        return frame, []
    cols = IDENTITY + ["config_hash"]
    jobs = (
        frame.assign(params=frame["params"].fillna(""), rbx_version=frame["rbx_version"].fillna(""), weights=frame["model_fingerprint"].fillna(""))
        .groupby(cols, dropna=False, sort=False)
        .agg(created=("created_at", "max"), params=("params", "first"), version=("rbx_version", "first"), weights=("weights", "first"))
        .reset_index()
        .sort_values(IDENTITY + ["created", "config_hash"], na_position="first")
    )
    newest = jobs.drop_duplicates(IDENTITY, keep="last")
    cell = ["suite", "model", "dataset", "method"]
    signature = newest.sort_values(["created", "config_hash"], na_position="first").drop_duplicates(cell, keep="last")[cell + ["params", "version", "config_hash"]]
    newest = newest.merge(signature, on=cell, suffixes=("", "_cell"))
    keep = newest[(newest["params"] == newest["params_cell"]) & (newest["version"] == newest["version_cell"])]
    kept = set(keep["config_hash"])
    notes = []
    for _, job in jobs[~jobs["config_hash"].isin(kept)].iterrows():
        same = keep[(keep[cell] == job[cell]).all(axis=1)]
        by_seed = same[same["seed"] == job["seed"]]
        winner = by_seed.iloc[0] if len(by_seed) else (same.iloc[-1] if len(same) else None)
        why = f"config `{job['config_hash']}` (rbx {job['version'] or '?'})"
        if winner is None:
            continue
        relation = "newer" if len(by_seed) else "the newest configuration of its other seeds:"
        changed = [what for what, key in (("the model's weights", "weights"), ("the method's parameters", "params"), ("the rbx version", "version"))
                   if job[key] and winner[key] and job[key] != winner[key]]
        because = f" because {' and '.join(changed)} changed" if changed else ""
        notes.append(f"`{job['method']}` on {job['model']} / {job['dataset']}, seed {job['seed']}: {why} superseded by {relation} config `{winner['config_hash']}` (rbx {winner['version'] or '?'}){because}")
    return frame[frame["config_hash"].isin(kept)], sorted(notes)


# --------------------------------------------------------------------------- rendering


def render_pages(results_dir: str | Path, n_boot: int = 1000, warn: Warn | None = None) -> dict[str, str | bytes]:
    """Every page, PNG and ``<suite>.cells.json`` file name → content."""
    warn = warn or (lambda message: None)
    frame, unreadable = load_results(results_dir, warn)
    if frame.empty:
        return {}
    registry = get_registry()
    files: dict[str, str | bytes] = {}
    for suite_name in sorted(frame["suite"].dropna().unique()):
        try:
            suite = registry.get("suites", suite_name)
        except Exception:
            warn(f"results of suite '{suite_name}' are not rendered: no installed plugin provides that suite")
            continue
        rows, superseded = standing(frame[frame["suite"] == suite_name])
        bad = [(p, r) for p, r in unreadable if f"suite={suite_name}" in p.parts or not any(x.startswith("suite=") for x in p.parts)]
        page = Page(suite=suite, rows=rows, results_dir=Path(results_dir), n_boot=n_boot, registry=registry, warn=warn)
        fixes = _Fixes(str(results_dir), rows)
        for path, reason in bad:
            job = _partitions(path)
            if job and job[0] == suite_name:
                seed = fixes.seed_of(path)
                page.lost.setdefault(job[1:], {})[seed] = f"its results file is unreadable ({reason}; {fixes.rerun(path)})"
        files[f"{suite_name}.md"] = _render_suite(page, superseded, bad, fixes)
        files.update(page.images)
        files[f"{suite_name}.cells.json"] = json.dumps(
            {"suite": suite_name, "unit": "display units (the value as shown on the page)", "cells": page.cells}, indent=1, sort_keys=True
        ) + "\n"
    return files


def _render_suite(page: Page, superseded: list[str], unreadable: list[tuple[Path, str]], fixes: "_Fixes") -> str:
    suite = page.suite
    body: list[str] | None = None
    if suite.renderer:
        try:
            body = load_factory(suite.renderer)(page)
        except Exception as exc:  # a plugin's renderer must not take the other pages down
            page.warn(f"suite '{suite.name}': its page renderer {suite.renderer} failed ({type(exc).__name__}: {exc}); the default tables are shown")
            page.footnotes.clear()
            page.images.clear()
            page.cells.clear()
            page._recorded.clear()
            body = [f"The suite's page renderer `{suite.renderer}` failed ({type(exc).__name__}: {exc}): these are the default tables.", ""]
            body += metric_tables(page)
    if body is None:
        body = metric_tables(page)
    if "reliability" in suite.plots:
        body += _reliability(page)
    head = [f"# Leaderboard: `{suite.name}`", ""]
    if suite.summary:
        head += [suite.summary[:1].upper() + suite.summary[1:] + ".", ""]
    if superseded:
        head += [f"Older results of {len(superseded)} job(s) were superseded by newer ones and are not shown{page.note('Superseded (not shown): ' + '; '.join(superseded) + '.')}.", ""]
    if unreadable:
        mark = page.note("Unreadable results files, skipped: " + "; ".join(f"{p} ({r}; {fixes.rerun(p)})" for p, r in unreadable) + ".")
        head += [f"{len(unreadable)} results file(s) could not be read and are not shown{mark}.", ""]
    if page.unreadable_scores:
        mark = page.note("Unreadable per-sample outputs: " + "; ".join(f"{p} ({r}; {fixes.rerun(p)})" for p, r in page.unreadable_scores) + ".")
        head += [f"{len(page.unreadable_scores)} per-sample outputs file(s) could not be read: the cells that need them have no interval or mark{mark}.", ""]
    tail = ["## Notes", ""] + [f"[^{i}]: {text}" for text, i in page.footnotes.items()] + [""] if page.footnotes else []
    return "\n".join(head + body + tail + _provenance(page.rows)).rstrip() + "\n"


def _partitions(path: Path) -> tuple[str, str, str, str] | None:
    """(suite, model, dataset, method) of a stored file, from its folder names."""
    parts = dict(p.partition("=")[::2] for p in path.parts if "=" in p)
    if not all(k in parts for k in PARTITIONS):
        return None
    return tuple(urllib.parse.unquote(parts[k]) for k in PARTITIONS)  # type: ignore[return-value]


class _Fixes:
    """The commands that recompute the job a stored file belongs to, runnable
    as printed: the store as it was given to ``rbx leaderboard`` and the seed
    (from the rows that stand, else from the run manifests under ``runs/``)."""

    def __init__(self, store: str, rows: pd.DataFrame) -> None:
        self.store = store
        self.seeds = {str(h): int(s) for h, s in zip(rows["config_hash"], rows["seed"]) if pd.notna(s)}
        self.cell_seeds = {k: sorted(int(s) for s in v if pd.notna(s)) for k, v in rows.groupby(list(PARTITIONS), sort=False)["seed"].unique().items()}
        self._manifests: dict[str, int] | None = None

    def seed_of(self, path: Path) -> int | None:
        config_hash = path.stem.removeprefix("part-")
        if config_hash not in self.seeds:
            if self._manifests is None:
                self._manifests = {}
                for manifest in sorted((Path(self.store) / "runs").glob("*.json")):
                    try:
                        for job in json.loads(manifest.read_text(encoding="utf-8")).get("plan", []):
                            self._manifests[str(job["config_hash"])] = int(str(job["job"]).rsplit("/", 1)[1])
                    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
                        continue  # a damaged manifest only loses the seed of the fix
            return self._manifests.get(config_hash)
        return self.seeds[config_hash]

    def rerun(self, path: Path) -> str:
        job = _partitions(path)
        out = shlex.quote(self.store)
        if job is None:
            return f"fix: re-run its job with `rbx run ... --out {out} --force`"
        seed = self.seed_of(path)
        suite, model, dataset, method = (shlex.quote(v) for v in job)
        command = f"rbx run --suite {suite} --models {model} --datasets {dataset} --methods {method}"
        if seed is None:  # not recorded: recompute every seed of the cell (or the default one)
            seeds = self.cell_seeds.get(job) or [0]
            return f"fix: `{command} --seeds {','.join(map(str, seeds))} --out {out} --force` (its seed is not recorded under {self.store}/runs: this recomputes seed(s) {', '.join(map(str, seeds))})"
        return f"fix: `{command} --seeds {seed} --out {out} --force`"


@dataclass
class Cell:
    """One table cell: its text, the value behind it and its bootstrap replicates."""

    text: str = ""
    value: float | None = None
    reps: np.ndarray | None = None
    suffix: str = ""


def metric_cells(page: Page, spec, model: str, columns: list[tuple[str, str]], methods: list[str], stats: set[str]) -> dict[str, dict[tuple[str, str], Cell]]:
    """Cells of ``spec`` for ``model``: method → (dataset, subset) → :class:`Cell`.
    ``stats`` collects what the cells show (``interval``, ``no-interval``, ``seeds``)."""
    rows = page.rows[page.rows["model"] == model]
    ok = page.ok
    ok = ok[(ok["model"] == model) & (ok["metric"] == spec.name)]
    ok = ok[np.isfinite(ok["value"].to_numpy(dtype=float))]
    problems = page.problems
    problems = problems[problems["model"] == model]
    # One grouping each instead of a selection per cell: a page has hundreds of cells.
    values_of = {k: g.sort_values("seed") for k, g in ok.groupby(["method", "dataset", "subset"], sort=False)}
    seeds_of = {k: sorted(v) for k, v in rows.groupby(["method", "dataset"], sort=False)["seed"].unique().items()}
    problems_of = {k: g for k, g in problems.groupby(["method", "dataset"], sort=False)}
    empty = problems.iloc[0:0]
    out: dict[str, dict[tuple[str, str], Cell]] = {}
    for method in methods:
        out[method] = {}
        for dataset, subset in columns:
            seeds = seeds_of.get((method, dataset), [])
            here = values_of.get((method, dataset, subset), empty)
            prob = problems_of.get((method, dataset), empty)
            if here.empty:
                out[method][(dataset, subset)] = _empty_cell(page, prob, spec.name, subset)
                continue
            values = here["value"].to_numpy(dtype=float)
            reps = [replicates(s, spec, subset, page.n_boot) if (s := page.scores(job)) is not None else None for _, job in here.iterrows()]
            cell = Cell(value=float(values.mean()))
            if all(r is not None for r in reps):
                cell.reps = np.mean(np.stack(reps), axis=0)
            if len(values) == 1:
                ci = interval(reps[0])
                cell.text = fmt(values[0], spec.scale) + (f" [{fmt(ci[0], spec.scale)}, {fmt(ci[1], spec.scale)}]" if ci else "")
                stats.add("interval" if ci else "no-interval")
            else:
                cell.text = f"{fmt(values.mean(), spec.scale)} ± {fmt(values.std(ddof=1), spec.scale)}"
                stats.add("seeds")
            ran = set(here["seed"])
            lost = page.lost.get((model, dataset, method), {})
            # A seed whose only results file is unreadable is missing like a failed one.
            failed = [s for s in seeds if s not in ran] + sorted(s for s in lost if s is not None and s not in seeds)
            kinds: dict[str, tuple[list[str], list[str]]] = {"failed": ([], []), "unreadable": ([], [])}
            for s in failed:
                if s in lost and s not in seeds:
                    kind, text = "unreadable", f"`{method}` on {model} / {dataset}, seed {s}: {lost[s]}"
                elif len(p := prob[(prob["seed"] == s) & (prob["metric"] == spec.name) & (prob["subset"] == subset)]):  # this metric alone
                    kind, text = "failed", f"`{method}` on {model} / {dataset} / {subset}, {spec.name}, seed {s}: {_reason(p.iloc[0])}"
                else:  # the whole job: one note for all its cells
                    p = prob[(prob["seed"] == s) & prob["metric"].isna()]
                    kind, text = "failed", f"`{method}` on {model} / {dataset}, seed {s}: " + (_reason(p.iloc[0]) if len(p) else "no value")
                kinds[kind][0].append(str(s))
                kinds[kind][1].append(page.note(text))
            missing = sum(len(names) for names, _ in kinds.values())
            if missing:
                said = "; ".join(f"seed{'s' if len(names) > 1 else ''} {', '.join(names)} {kind}{''.join(marks)}" for kind, (names, marks) in kinds.items() if names)
                cell.suffix = f" ({len(values)}/{len(values) + missing} seeds; {said})"
            elif len(values) > 1:
                cell.suffix = f" ({len(values)} seeds)"
            out[method][(dataset, subset)] = cell
    return out


def _reason(row) -> str:
    return f"{row['status']}: {(row['error'] or '').splitlines()[0]}" if isinstance(row["error"], str) and row["error"] else str(row["status"])


def _empty_cell(page: Page, prob: pd.DataFrame, metric: str, subset: str) -> Cell:
    """An empty cell's mark and footnote: why there is no value."""
    whole_job = prob[prob["metric"].isna()]
    this = prob[(prob["metric"] == metric) & (prob["subset"] == subset)]
    for part in (this, whole_job):
        if len(part):
            p = part.iloc[0]
            return Cell(text=("–" if p["status"] == "skipped" else "ERR") + page.note(_reason(p)))
    return Cell()


def mark_best(cells: dict[str, Cell], higher_is_better: bool, scale: float) -> None:
    """Bold the best cell and every cell equal to it at the displayed precision;
    mark the others that a paired bootstrap cannot tell from the best."""
    valued = {m: c for m, c in cells.items() if c.value is not None}
    if not valued:
        return
    best = (max if higher_is_better else min)((valued[m] for m in sorted(valued)), key=lambda c: c.value)
    shown = fmt(best.value, scale)
    for method, cell in valued.items():
        if fmt(cell.value, scale) == shown:
            cell.text = bold(cell.text)
        elif best.reps is not None and cell.reps is not None and not_worse(best.reps, cell.reps):
            cell.text = f"{cell.text} {NOT_WORSE}"


def _accuracy(page: Page, model: str, columns: list[tuple[str, str]], methods: list[str]) -> tuple[list[str], dict[str, dict[tuple[str, str], str]]]:
    """The ``accuracy · errors`` row (the value most methods share) and, for the
    methods whose predictions differ, their own figures per column."""
    ok = page.ok
    acc = ok[(ok["model"] == model) & (ok["metric"] == "accuracy")]
    row, own = [], {m: {} for m in methods}
    for dataset, subset in columns:
        col = acc[(acc["dataset"] == dataset) & (acc["subset"] == subset)]
        texts = {}
        for method, group in col.groupby("method"):
            a = group["value"].to_numpy(dtype=float)
            errors = float(np.mean((1 - a) * group["n"].to_numpy(dtype=float)))
            page.record("accuracy · errors", str(method), f"{dataset} / {subset}", float(a.mean()), 100)
            shown = f"{errors:.0f}" if abs(errors - round(errors)) < 1e-9 else f"{errors:.1f}"
            texts[method] = f"acc {fmt(a.mean(), 100)} · {shown} errors" + (f", mean of {len(a)} seeds" if len(a) > 1 else "")
        if not texts:
            row.append("")
            continue
        common = pd.Series(list(texts.values())).value_counts().sort_index().idxmax()
        row.append(f"*{common}*")
        for method, text in texts.items():
            if text != common and method in own:
                own[method][(dataset, subset)] = f" ({text})"
    return row, own


def metric_tables(page: Page) -> list[str]:
    """The default page body: per headline metric and model, methods × (dataset, subset)."""
    suite = page.suite
    body: list[str] = []
    stats: set[str] = set()
    for metric_name in suite.headline:
        if not (page.rows["metric"] == metric_name).any():
            continue  # e.g. AlexNet-normalised mCE exists only for ImageNet-C
        spec = page.metric(metric_name)
        arrow = "↑" if spec.higher_is_better else "↓"
        scale = f" (×{spec.scale:g})" if spec.scale != 1 else ""
        body += [f"## {metric_name} {arrow}{scale}", "", f"{spec.summary}." + (f" Convention: {spec.convention}." if spec.convention else ""), ""]
        for model in sorted(page.rows["model"].dropna().unique()):
            methods = sorted(set(page.rows.loc[page.rows["model"] == model, "method"].dropna()))
            if methods:
                body += _table(page, spec, model, methods, stats)
    if not body:
        return _nothing_ran(page)
    return _header(page, stats) + body


def _nothing_ran(page: Page) -> list[str]:
    """No headline metric has a row: one line per distinct cause with the jobs it hit."""
    problems = page.problems[page.problems["metric"].isna()].sort_values(["model", "dataset", "method", "seed"])
    if problems.empty:
        return ["No job of this suite recorded a headline metric.", ""]
    causes: dict[str, list[str]] = {}
    for _, p in problems.iterrows():
        causes.setdefault(_reason(p), []).append(f"`{p['method']}` on {p['model']} / {p['dataset']}, seed {p['seed']}")
    lines = [f"No job of this suite produced a result: {len(problems)} job(s) skipped or failed.", "", "| cause | jobs |", "|:---|:---|"]
    lines += [f"| {cause.replace('|', chr(92) + '|')} | {'; '.join(jobs)} |" for cause, jobs in sorted(causes.items())]
    return lines + [""]


def _table(page: Page, spec, model: str, methods: list[str], stats: set[str]) -> list[str]:
    rows = page.rows[(page.rows["model"] == model) & (page.rows["metric"] == spec.name)]
    columns = sorted({(d, s) for d, s in zip(rows["dataset"], rows["subset"]) if isinstance(s, str)})
    if not columns:  # no job of this model ran: one column per dataset says why
        columns = [(d, "") for d in sorted(page.rows.loc[page.rows["model"] == model, "dataset"].dropna().unique())]
    cells = metric_cells(page, spec, model, columns, methods, stats)
    if len(columns) > 1:
        stats.add("mean")
        for method in methods:
            parts = [cells[method][c] for c in columns]
            mean = Cell()
            if all(c.value is not None for c in parts):
                mean.value = float(np.mean([c.value for c in parts]))
                mean.text = fmt(mean.value, spec.scale)
                if all(c.reps is not None for c in parts):
                    mean.reps = np.mean(np.stack([c.reps for c in parts]), axis=0)
            cells[method][("mean", "")] = mean
    keys = columns + ([("mean", "")] if len(columns) > 1 else [])
    if any(c.reps is not None for row in cells.values() for c in row.values()):
        stats.add("paired")
    for key in keys:
        mark_best({m: cells[m][key] for m in methods}, spec.higher_is_better, spec.scale)
    table = f"{spec.name} / {model}"
    for method in methods:
        for (d, s), cell in cells[method].items():
            page.record(table, method, f"{d} / {s}" if s else d, cell.value, spec.scale)
    header = ["method"] + [f"{page.dataset_label(d)} / {s}" if s else d for d, s in keys]
    first = keys[-1] if len(keys) > 1 else (keys[0] if keys else None)
    order = sorted(methods, key=lambda m: (_rank(cells[m].get(first), spec.higher_is_better), m))
    acc_row: list[str] = []
    own: dict[str, dict] = {m: {} for m in methods}
    if spec.kind in ("failure", "calibration"):
        acc_row, own = _accuracy(page, model, columns, methods)
    body = []
    if any(acc_row):
        body.append(["*accuracy · errors*"] + acc_row + ([""] if len(columns) > 1 else []))
    for m in order:
        body.append([page.method_label(m)] + [cells[m][k].text + cells[m][k].suffix + own[m].get(k, "") for k in keys])
    return [page.model_heading(model), "", *markdown_table(header, body), ""]


def _rank(cell: Cell | None, higher: bool) -> float:
    if cell is None or cell.value is None:
        return float("inf")
    return -cell.value if higher else cell.value


def _header(page: Page, stats: set[str]) -> list[str]:
    """What the default tables' cells show, for the cells this page has."""
    kinds = {page.metric(m).kind for m in page.suite.headline if (page.rows["metric"] == m).any()}
    how = "ID and OOD samples resampled separately" if "ood" in kinds else "samples resampled"
    lines = []
    if page.n_boot == 0:
        if stats & {"interval", "no-interval"}:
            lines.append("A cell from one seed is the value; bootstrap intervals and the ≈ marks were not computed (`--bootstrap 0`).")
    elif stats & {"interval", "no-interval"}:
        text = f"A cell from one seed is the value and, in brackets, a percentile bootstrap 95 % interval from the stored per-sample outputs ({page.n_boot} resamples, {how})"
        if "no-interval" in stats:
            text += "; a value without brackets has no interval (no per-sample outputs, fewer than 10 samples, or the metric undefined on more than 5 % of the resamples)"
        lines.append(text + ".")
    if "seeds" in stats:
        lines.append("A cell from several seeds is the mean ± sample standard deviation over the seeds that ran, followed by their number (`(3 seeds)`); "
                     "a seed that failed or whose results file is unreadable is named in its cell (`(2/3 seeds; seed 2 failed)`). No interval is shown for it.")
    if "mean" in stats:
        lines.append("`mean`: the unweighted mean of the row's values over the table's dataset / subset columns (each column counts once, whatever its number "
                     "of samples or seeds); empty when a column has no value.")
    paired = ""
    if page.n_boot > 0 and "paired" in stats:
        paired = (f"{NOT_WORSE}: not significantly worse than the best, by a paired bootstrap over the same samples "
                  f"({page.n_boot} resamples, both methods on the same ones; marked when the 95 % interval of best − other contains 0")
        if "seeds" in stats:
            paired += "; for a mean over seeds, a replicate is the mean of the seeds' replicates on the same resampled samples, so the mark reflects sample variation only, not seed-to-seed variation"
        if "mean" in stats:
            paired += "; for `mean`, a replicate is the mean of the columns' replicates"
        paired += "). "
    lines.append(f"**Bold**: the best value of the column and every value equal to it at the displayed precision. {paired}↑ higher is better, ↓ lower is better.")
    return lines + [""]


# --------------------------------------------------------------------------- reliability


def _reliability(page: Page) -> list[str]:
    """Small multiples: one reliability panel per method with per-bin sample
    counts and the ECE in its title."""
    from robustbench_x.metrics.calibration import reliability_bins

    ok = page.ok
    lines = ["## Reliability diagrams", "", "One panel per method (first seed): accuracy per confidence bin (15 equal-width bins), the number of samples in each bin along the top, ECE (×100) in the title.", ""]
    jobs = ok.drop_duplicates(["model", "dataset", "method", "seed"]).sort_values(["model", "dataset", "method", "seed"])
    for (model, dataset), group in jobs.groupby(["model", "dataset"], sort=True):
        panels = []
        for _, job in group.drop_duplicates(["method"]).iterrows():
            scores = page.scores(job)
            if scores is None or "probs" not in scores:
                continue
            part = scores[scores["subset"] == "id"]
            if part.empty:
                continue
            ece = ok[(ok["model"] == model) & (ok["dataset"] == dataset) & (ok["method"] == job["method"]) & (ok["seed"] == job["seed"]) & (ok["metric"] == "ece") & (ok["subset"] == "id")]
            bins = reliability_bins(np.stack(part["probs"].to_numpy()), part["label"].to_numpy())
            panels.append({"method": job["method"], "count": bins["count"], "accuracy": bins["accuracy"], "ece": float(ece["value"].iloc[0]) if len(ece) else None})
        if panels:
            name = f"{page.suite.name}-reliability-{slug(model)}-{slug(dataset)}.png"
            lines += page.figure(name, f"reliability diagrams: {model} on {dataset}", panels, lambda p=panels, t=f"{model} on {dataset}": _reliability_figure(p, t))
    return lines


def _reliability_figure(panels: list[dict], title: str):
    plt = pyplot()
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), dpi=80, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        count, accuracy = np.asarray(panel["count"]), np.asarray(panel["accuracy"])
        edges = np.linspace(0, 1, len(count) + 1)
        width = edges[1] - edges[0]
        keep = count > 0
        ax.bar(edges[:-1][keep], accuracy[keep], width=width, align="edge", color="#4c72b0", edgecolor="white", linewidth=0.5)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for left, n in zip(edges[:-1][keep], count[keep]):
            ax.text(left + width / 2, 1.02, str(int(n)), ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_title(panel["method"] + (f" · ECE {panel['ece'] * 100:.1f}" if panel["ece"] is not None else ""), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.18)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.tick_params(labelbottom=True)
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- provenance


def _provenance(rows: pd.DataFrame) -> list[str]:
    lines = ["## Provenance", ""]
    lines.append(f"- rbx version(s): {', '.join(sorted(rows['rbx_version'].dropna().unique()))}")
    lines.append(f"- method plugins: {', '.join(sorted(rows['plugin'].dropna().unique()))}")
    fps = rows[rows["dataset_fingerprint"].notna()]
    for dataset, group in fps.groupby("dataset", sort=True):
        per_subset = group.drop_duplicates(["subset", "dataset_fingerprint"]).sort_values("subset")
        if per_subset.duplicated("subset").any():
            lines.append(f"- **warning**: dataset `{dataset}` mixes rows computed on different data (several fingerprints for one subset)")
        pairs = [f"{s} `{f}`" for s, f in zip(per_subset["subset"], per_subset["dataset_fingerprint"])]
        if len(pairs) > 8:  # a corruption dataset has 76 subsets: one combined fingerprint reads better
            combined = hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]
            pairs = [f"{len(pairs)} subsets, combined fingerprint `{combined}` (sha256 of the sorted per-subset fingerprints)"]
        lines.append(f"- dataset `{dataset}`: " + ", ".join(pairs))
    for model, group in rows[rows["model_fingerprint"].notna()].groupby("model", sort=True):
        lines.append(f"- model `{model}`: " + ", ".join(f"`{f}`" for f in sorted(group["model_fingerprint"].unique())))
    lines += ["", "| model | dataset | method | seed | config hash | status |", "|---|---|---|---|---|---|"]
    for (model, dataset, method, seed, config), job in rows.groupby(["model", "dataset", "method", "seed", "config_hash"], sort=True):
        whole = job[job["metric"].isna()]
        status = whole["status"].iloc[0] if len(whole) and (whole["status"] != "ok").all() else "ok"
        undefined = int((job["metric"].notna() & (job["status"] != "ok")).sum())
        lines.append(f"| {model} | {dataset} | {method} | {seed} | `{config}` | {status}{f' ({undefined} metric value(s) undefined)' if undefined else ''} |")
    return lines + [""]


# --------------------------------------------------------------------------- writing and checking


def write_pages(files: dict[str, str | bytes], directory: str | Path) -> None:
    """Write every file atomically (temporary name, then rename) unless it is
    already there with the same bytes; leftovers of a killed earlier write are
    removed first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in files:
        for leftover in directory.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)
    for name, content in sorted(files.items()):
        target = directory / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        try:
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                continue  # unchanged: no write, no fsync
        except OSError:
            pass
        atomic_write(target, data)


def check_pages(files: dict[str, str | bytes], directory: str | Path, tolerance: float = DEFAULT_TOLERANCE) -> list[str]:
    """The cells whose values moved by more than ``tolerance`` displayed digits
    between ``files`` and the pages committed in ``directory``, plus missing,
    added, removed and stale pages and cells ([] when everything matches)."""
    directory = Path(directory)
    problems = []
    for name in sorted(n for n in files if n.endswith(".md")):
        suite = name[: -len(".md")]
        committed = directory / f"{suite}.cells.json"
        if not (directory / name).exists() or not committed.exists():
            problems.append(f"missing: {directory / name if not (directory / name).exists() else committed} (run `rbx leaderboard RESULTS --out {directory}` and commit it)")
            continue
        try:
            old = _cells(json.loads(committed.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"unreadable: {committed} ({exc}); re-render and commit it")
            continue
        new = _cells(json.loads(files[f"{suite}.cells.json"]))
        for key in sorted(old.keys() | new.keys()):
            where = f"{name} · table {key[0]} · row {key[1]} · column {key[2]}"
            if key not in new:
                problems.append(f"removed: {where} (was {old[key][0]})")
            elif key not in old:
                problems.append(f"added: {where} (now {new[key][0]})")
            else:
                (a, d), (b, _) = old[key], new[key]
                tol = tolerance * 10.0 ** (-d)
                if abs(a - b) > tol + 1e-12:
                    problems.append(f"moved: {where}: {a:.{d}f} → {b:.{d}f} (|Δ| {abs(a - b):.{d + 1}f} > {tol:g})")
        try:
            text = (directory / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"unreadable: {directory / name} ({exc}); re-render and commit it")
            continue
        edit = _text_difference(text, str(files[name]), tolerance)
        if edit:
            problems.append(f"edited: {directory / name} {edit} (re-render it with `rbx leaderboard RESULTS --out {directory}` and commit it)")
        for image in sorted(n for n in files if not n.endswith((".md", ".json")) and f"]({n})" in str(files[name])):
            if not (directory / image).exists():
                problems.append(f"missing: {directory / image}, linked from {name} (run `rbx leaderboard RESULTS --out {directory}` and commit it)")
    for name, own in stale_pages(files, directory).items():
        problems.append(f"stale: {directory / name} is committed but the results have no suite '{name[:-3]}' "
                        f"(fix: delete it, `rm {' '.join(shlex.quote(str(directory / f)) for f in own)}`, or render from a store that has that suite)")
    return problems


def stale_pages(files: dict[str, str | bytes], directory: str | Path) -> dict[str, list[str]]:
    """Pages in ``directory`` that ``files`` does not render (a suite no longer
    in the store) → the files that belong to each: the page, its
    ``.cells.json`` and the PNGs it links. Writing keeps them (a store may hold
    only some suites); ``--check`` reports them."""
    directory = Path(directory)
    stale: dict[str, list[str]] = {}
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        if path.name in files:
            continue
        own = [path.name] + [n for n in [f"{path.stem}.cells.json"] if (directory / n).exists()]
        try:
            own += sorted({m for m in re.findall(r"\]\(([^)/\s]+\.png)\)", path.read_text(encoding="utf-8")) if (directory / m).exists() and m not in files})
        except (OSError, UnicodeDecodeError):
            pass
        stale[path.name] = own
    return stale


#: A number standing alone (not part of a hash or a name like ``digits-6to9``).
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


def _text_difference(committed: str, rendered: str, tolerance: float) -> str:
    """Where a committed page's Markdown differs from its fresh rendering in
    more than its non-integer numbers ("" when it does not).

    The values behind the cells are compared in ``.cells.json``; here a number
    with decimals (or an exponent) may differ by ``tolerance`` units of its last
    digit plus one, since float noise across machines can round a value to the
    neighbouring digit (or print ``0.999`` instead of ``1`` with ``%g``), and
    the marks that follow from such values (``**``, ``≈``) are ignored.
    Integers (counts, footnote numbers), words, hashes and lines must match
    exactly: a hand edit, an appended line or a stale legend is reported."""
    def split(line: str) -> tuple[str, list[str]]:
        line = line.replace("**", "").replace(f" {NOT_WORSE}", "")
        return _NUMBER.sub("#", line), _NUMBER.findall(line)

    old, new = committed.splitlines(), rendered.splitlines()
    for i in range(max(len(old), len(new))):
        if i >= len(old):
            return f"line {i + 1}: the rendering has more lines (committed {len(old)}, rendered {len(new)})"
        if i >= len(new):
            return f"line {i + 1}: the committed page has more lines (committed {len(old)}, rendered {len(new)}): {old[i][:80]!r}"
        (a_shape, a_nums), (b_shape, b_nums) = split(old[i]), split(new[i])
        if a_shape != b_shape or any(_number_moved(x, y, tolerance) for x, y in zip(a_nums, b_nums)):
            return f"line {i + 1}: committed {old[i][:80]!r}, rendered {new[i][:80]!r}"
    return ""


def _number_moved(a: str, b: str, tolerance: float) -> bool:
    def unit(token: str) -> float:
        mantissa, _, exponent = token.partition("e")
        return 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))

    if not any(c in token for token in (a, b) for c in ".e"):
        return a != b
    x, y = float(a), float(b)
    return abs(x - y) > (tolerance + 1) * max(unit(a), unit(b)) + 1e-12 * max(abs(x), abs(y))


def _cells(data: dict) -> dict[tuple[str, str, str], tuple[float, int]]:
    return {(c["table"], c["row"], c["column"]): (float(c["value"]), int(c["digits"])) for c in data["cells"]}
