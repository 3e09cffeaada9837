"""Leaderboard page of the robustness suites (``corruption``, ``perturbation``,
``cure``): named as ``SuiteSpec.renderer``, it replaces the default
methods × subsets tables.

These suites score the *prediction* only, and most methods do not change the
model's prediction (MSP, energy, ODIN… only rescore it). Methods whose stored
``prediction`` columns are identical on every subset and seed are therefore one
row, "the model" for the largest such group (the plain argmax) with its
members listed; only methods that predict differently (ensembles, MC dropout)
get rows of their own. Per (model, dataset):

* a summary table: groups × the headline metrics computed over all subsets
  (mCE, unnormalised mean corruption error, clean error; mFR / mT5D…);
* per per-condition headline metric (error per corruption, flip probability
  per perturbation, accuracy per challenge), a table with the conditions as
  rows and the groups as columns, and a mean row;
* when the suite stores a classification metric per ``c/<condition>/<level>``
  subset, ``<suite>-severity-<model>-<dataset>.png``: that metric against the
  level, one small panel per condition and one line per group.

Cells are point values (these metrics aggregate over whole subsets; no
interval is shown), or mean ± standard deviation over seeds. Bold marks the
best value of a row or column and every value equal to it at the displayed
precision. Only :mod:`robustbench_x.pages` and :mod:`robustbench_x.api` are
used.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pandas as pd

from robustbench_x.evaluation import UNDEFINED
from robustbench_x.pages import Page, bold, fmt, markdown_table, pyplot, seed_cell, slug

ALL = "all"


def render(page: Page) -> list[str]:
    lines = [
        "Methods that return the same predictions on every subset give the same numbers here: they share one row or column, "
        "*the model* for the largest such group (its members are listed), and only methods that change the prediction stand alone.",
        "Cells are point values (these metrics aggregate over whole subsets; no interval is shown); with several seeds, mean ± standard deviation. "
        "**Bold**: the best value of the row (condition tables) or column (summary) and every value equal to it at the displayed precision. "
        "↑ higher is better, ↓ lower is better.",
        "",
    ]
    for model, dataset, rows in page.groups():
        jobs = page.rows[(page.rows["model"] == model) & (page.rows["dataset"] == dataset)]
        seeds = jobs.groupby("method")["seed"].nunique().to_dict()
        groups = _groups(page, rows)
        lines += [page.group_heading(model, dataset), ""]
        lines += _members(page, groups)
        lines += _levels_present(rows)
        lines += _summary(page, rows, groups, seeds, f"{model} / {dataset}")
        lines += _not_computed(page, model, dataset)
        for metric in page.suite.headline:
            per = rows[(rows["metric"] == metric) & (rows["subset"] != ALL)]
            if not per.empty:
                lines += _conditions(page, per, groups, seeds, metric, f"{model} / {dataset}")
        lines += _severity_plot(page, rows, groups, model, dataset)
    lines += page.not_run()
    return lines


def _groups(page: Page, rows: pd.DataFrame) -> dict[str, list[str]]:
    """Group label → methods with identical predictions (largest group first)."""
    by_print: dict[str, list[str]] = defaultdict(list)
    for method in sorted(rows["method"].unique()):
        jobs = rows[rows["method"] == method].drop_duplicates("seed").sort_values("seed")
        digest = hashlib.sha256()
        for _, job in jobs.iterrows():
            scores = page.scores(job, columns=("subset", "sample_id", "prediction"))
            if scores is None or "prediction" not in scores:
                digest.update(method.encode())  # nothing to compare: a row of its own
                continue
            order = np.lexsort((scores["sample_id"].astype(str).to_numpy(), scores["subset"].astype(str).to_numpy()))
            digest.update(f"{job['seed']}|".encode())
            digest.update(scores["prediction"].to_numpy(dtype=np.int64)[order].tobytes())
        by_print[digest.hexdigest()].append(method)
    ordered = sorted(by_print.values(), key=lambda ms: (-len(ms), ms))
    out = {}
    for i, members in enumerate(ordered):
        if len(members) == 1:
            out[members[0]] = members
        else:
            out["the model" if i == 0 else " = ".join(members)] = members
    return out


def _members(page: Page, groups: dict[str, list[str]]) -> list[str]:
    shared = [(label, ms) for label, ms in groups.items() if len(ms) > 1]
    lines = [f"- *{label}*: {', '.join(page.method_label(m) for m in ms)}" for label, ms in shared]
    alone = [page.method_label(ms[0]) for ms in groups.values() if len(ms) == 1]
    if alone:
        lines.append(f"- own predictions: {', '.join(alone)}")
    return lines + [""]


def _text(rows: pd.DataFrame, method: str, metric: str, subset: str, scale: float, seeds: dict[str, int]) -> tuple[float | None, str]:
    """(mean, text) of one method's metric on one subset over its seeds; seeds
    without a value (failed: see "Not run") are counted in the text."""
    values = rows.loc[(rows["method"] == method) & (rows["metric"] == metric) & (rows["subset"] == subset), "value"].to_numpy(dtype=float)
    n = int(np.isfinite(values).sum())
    expected = seeds.get(method, n)
    value, text = seed_cell(values, scale)
    return value, text + (f" ({n}/{expected} seeds)" if text and n < expected else "")


def _bold_best(values: dict[str, float | None], texts: dict[str, str], higher: bool, scale: float) -> None:
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return
    best = fmt((max if higher else min)(present.values()), scale)
    for key, value in present.items():
        if fmt(value, scale) == best:
            texts[key] = bold(texts[key])


def _summary(page: Page, rows: pd.DataFrame, groups: dict[str, list[str]], seeds: dict[str, int], table: str) -> list[str]:
    metrics = [m for m in page.suite.headline if ((rows["metric"] == m) & (rows["subset"] == ALL)).any()]
    if not metrics:
        return []
    specs = {m: page.metric(m) for m in metrics}
    texts = {label: {} for label in groups}
    for metric, spec in specs.items():
        values, column = {}, {}
        for label, members in groups.items():
            values[label], column[label] = _text(rows, members[0], metric, ALL, spec.scale, seeds)
            page.record(f"summary / {table}", label, metric, values[label], spec.scale)
        _bold_best(values, column, spec.higher_is_better, spec.scale)
        for label in groups:
            texts[label][metric] = column[label]
    header = ["", *(f"{m} {'↑' if specs[m].higher_is_better else '↓'}" + (f" (×{specs[m].scale:g})" if specs[m].scale != 1 else "") for m in metrics)]
    body = [[f"*{label}*" if len(groups[label]) > 1 else label, *(texts[label][m] for m in metrics)] for label in groups]
    notes = "; ".join(f"{m}: {specs[m].summary}" for m in metrics)
    return ["### Summary", "", f"Over all subsets ({notes}).", "", *markdown_table(header, body), ""]


def _conditions(page: Page, per: pd.DataFrame, groups: dict[str, list[str]], seeds: dict[str, int], metric: str, table: str) -> list[str]:
    spec = page.metric(metric)
    conditions = sorted(per["subset"].unique())
    body, means = [], {label: [] for label in groups}
    for subset in conditions:
        values, texts = {}, {}
        for label, members in groups.items():
            values[label], texts[label] = _text(per, members[0], metric, subset, spec.scale, seeds)
            page.record(f"{metric} / {table}", subset, label, values[label], spec.scale)
            means[label].append(values[label])
        _bold_best(values, texts, spec.higher_is_better, spec.scale)
        body.append([subset.split("/", 1)[-1], *(texts[label] for label in groups)])
    if len(conditions) > 1:
        values = {label: (float(np.mean(v)) if all(x is not None for x in v) else None) for label, v in means.items()}
        texts = {label: (fmt(v, spec.scale) if v is not None else "") for label, v in values.items()}
        for label, v in values.items():
            page.record(f"{metric} / {table}", "mean", label, v, spec.scale)
        _bold_best(values, texts, spec.higher_is_better, spec.scale)
        body.append(["*mean*", *(texts[label] for label in groups)])
    arrow = "↑" if spec.higher_is_better else "↓"
    scale = f" (×{spec.scale:g})" if spec.scale != 1 else ""
    header = [per["subset"].iloc[0].split("/", 1)[0] + "/…", *groups]
    intro = f"{spec.summary}." + (f" Convention: {spec.convention}." if spec.convention else "")
    return [f"### {metric} {arrow}{scale}", "", intro, "", *markdown_table(header, body), ""]


def _levels_present(rows: pd.DataFrame) -> list[str]:
    """A grid with gaps (severities 1 and 5 of 1-5, or another set per condition):
    every per-condition value is a mean over the levels present, which the
    metric's own summary ("mean over its severities") does not say."""
    levelled = _levels(rows)
    if levelled.empty:
        return []
    per = levelled.groupby("condition")["level"].agg(lambda v: tuple(sorted(set(v))))
    full = tuple(float(k) for k in range(1, int(max(max(v) for v in per)) + 1))
    if all(v == full for v in per):
        return []
    def text(levels):
        return ", ".join(f"{x:g}" for x in levels)
    listed = "; ".join(f"{c} {text(v)}" for c, v in per.items())
    return [f"Levels present: {listed} (not every level of 1–{len(full)} for every condition): each per-condition value below "
            "is the mean over the levels present, so conditions and datasets with other levels do not compare.", ""]


def _not_computed(page: Page, model: str, dataset: str) -> list[str]:
    """Metrics without a value whose job ran (mCE without its reference errors, a
    grid too incomplete for the aggregate), with the evaluator's reason."""
    bad = page.problems
    bad = bad[(bad["model"] == model) & (bad["dataset"] == dataset) & bad["metric"].notna()]
    if bad.empty:
        return []
    lines = []
    for (metric, error), _ in bad.groupby(["metric", bad["error"].fillna("")], sort=True):
        lines.append(f"- `{metric}`: {error.removeprefix(UNDEFINED) or 'no value'}")
    return ["Not computed:", "", *lines, ""]


def _levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows on ``c/<condition>/<level>`` subsets, with ``condition`` and numeric ``level`` columns."""
    parts = rows["subset"].astype(str).str.split("/", expand=True)
    if parts.shape[1] != 3:
        return rows.iloc[0:0]
    keep = (parts[0] == "c") & parts[2].str.fullmatch(r"\d+(\.\d+)?").fillna(False)
    out = rows[keep.to_numpy()].copy()
    out["condition"], out["level"] = parts[1][keep].to_numpy(), parts[2][keep].astype(float).to_numpy()
    return out


def _severity_plot(page: Page, rows: pd.DataFrame, groups: dict[str, list[str]], model: str, dataset: str) -> list[str]:
    metric = next((m for m in page.suite.metrics if page.metric(m).kind == "classification" and (rows["metric"] == m).any()), None)
    if metric is None:
        return []
    spec = page.metric(metric)
    levelled = _levels(rows[rows["metric"] == metric])
    if levelled.empty:
        return []
    clean = rows[(rows["metric"] == metric) & (rows["subset"] == "id")]
    conditions = sorted(levelled["condition"].unique())
    curves = []
    for label, members in groups.items():
        mine = levelled[levelled["method"] == members[0]].groupby(["condition", "level"])["value"].mean() * spec.scale
        per = {c: [mine.loc[c].index.tolist(), mine.loc[c].tolist()] for c in conditions if c in mine.index.get_level_values(0)}
        mean = mine.groupby(level="level").mean()
        base = float(clean.loc[clean["method"] == members[0], "value"].mean() * spec.scale) if (clean["method"] == members[0]).any() else None
        curves.append({"label": label, "conditions": per, "mean": [mean.index.tolist(), mean.tolist()], "clean": base})
    ylabel = f"{metric} (×{spec.scale:g})" if spec.scale != 1 else metric
    title = f"{metric} per level on {dataset} ({model}); dotted: the clean 'id' set"
    name = f"{page.suite.name}-severity-{slug(model)}-{slug(dataset)}.png"
    alt = f"{metric} per level: {model} on {dataset}"
    return [f"### {metric} per level", "", *page.figure(name, alt, [conditions, curves, ylabel, title], lambda: _severity_figure(conditions, curves, ylabel, title))]


def _severity_figure(conditions: list[str], curves: list[dict], ylabel: str, title: str):
    """Small multiples: the mean over conditions, then one panel per condition; one line per group."""
    plt = pyplot()
    ncols = min(5, len(conditions) + 1)
    nrows = -(-(len(conditions) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.3 * nrows), dpi=80, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(conditions) + 1:]:
        ax.axis("off")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = [("mean over conditions", lambda c: c["mean"])] + [(cond, lambda c, cond=cond: c["conditions"].get(cond)) for cond in conditions]
    for ax, (panel_title, pick) in zip(axes.flat, panels):
        for i, curve in enumerate(curves):
            colour = colours[i % len(colours)]
            xy = pick(curve)
            if xy:
                ax.plot(xy[0], xy[1], marker="o", markersize=3, linewidth=1.2, color=colour, label=curve["label"])
            if curve["clean"] is not None:
                ax.axhline(curve["clean"], color=colour, linestyle=":", linewidth=0.8)
        ax.set_title(panel_title, fontsize=9)
        ax.tick_params(labelbottom=True)
    for ax in axes[-1]:
        ax.set_xlabel("level", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
