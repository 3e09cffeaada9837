"""Leaderboard pages of the ``certified`` and ``certified-segmentation`` suites.

Per (model, dataset) and data subset: a table with one row per ε of the grid
and one column per certified metric stored at ``<subset>/l2/<ε>`` (and per
method when there are several), then a table of the metrics stored on the
subset itself (mean certified radius, clean accuracy, ``robustness@α``…) with
the declared Lipschitz constant read from the stored per-sample table; then the certified curve as a PNG (classification: the exact
step function of ε from every sample's stored radius; segmentation: the grid
values). Cells are point values (mean ± standard deviation over seeds when there
are several). Methods that did not run are listed with the reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustbench_x.pages import Page, markdown_table, pyplot, seed_cell, slug

from rbx_lipschitz.grid import parse_eps, split_eps_subset

__all__ = ["render"]


def render(page: Page) -> list[str]:
    lines = [
        "Certified values hold for every input perturbation of ℓ2 norm at most ε (in the model's input space, [0, 1] pixels), "
        "given the model's declared Lipschitz constant L. ε = 0 is the clean value. Cells are point values "
        "(mean ± standard deviation over seeds when there are several); ↑ higher is better.",
        "",
    ]
    for model, dataset, rows in page.groups():
        lines += [page.group_heading(model, dataset), ""]
        lines += _tables(page, rows, f"{model} / {dataset}")
        lines += _curve(page, rows, model, dataset)
    return lines + page.not_run()


def _constant(page: Page, rows: pd.DataFrame, method: str) -> str:
    job = rows[rows["method"] == method].iloc[0]
    scores = page.scores(job, columns=("lipschitz_constant",))
    if scores is None or "lipschitz_constant" not in scores or not len(scores):
        return ""
    return f"{float(scores['lipschitz_constant'].iloc[0]):.4f}"


def _arrow(spec) -> str:
    return ("↑" if spec.higher_is_better else "↓") + (f" (×{spec.scale:g})" if spec.scale != 1 else "")


def _tables(page: Page, rows: pd.DataFrame, table: str) -> list[str]:
    """Per data subset: ε as rows and (method, per-ε metric) as columns; then the subset's own metrics and L per method."""
    lines = []
    split = rows["subset"].map(split_eps_subset)
    per_eps = rows[split.notna().to_numpy()].copy()
    per_eps["data_subset"] = [s[0] for s in split.dropna()]
    per_eps["eps"] = [s[1] for s in split.dropna()]
    flat = rows[split.isna().to_numpy()]
    multi = rows["method"].nunique() > 1
    for subset in sorted(set(per_eps["data_subset"]) | set(flat["subset"])):
        mine = per_eps[per_eps["data_subset"] == subset]
        own = flat[flat["subset"] == subset]
        methods = sorted(set(mine["method"]) | set(own["method"]))
        lines += [f"### subset `{subset}`", ""]
        metrics_eps = [m for m in page.suite.metrics if (mine["metric"] == m).any()]
        if metrics_eps:
            pairs = [(method, metric) for method in methods for metric in metrics_eps]
            header = ["ε (ℓ2)"] + [f"{metric} {_arrow(page.metric(metric))}" + (f" · {page.method_label(method)}" if multi else "") for method, metric in pairs]
            body = []
            for eps in sorted(mine["eps"].unique(), key=parse_eps):
                cells = [eps]
                for method, metric in pairs:
                    spec = page.metric(metric)
                    values = mine.loc[(mine["method"] == method) & (mine["metric"] == metric) & (mine["eps"] == eps), "value"].to_numpy(float)
                    cells.append(seed_cell(values, spec.scale)[1])
                    page.record(f"{table} / {subset}", f"{method} ε={eps}", metric, float(np.nanmean(values)) if len(values) else None, spec.scale)
                body.append(cells)
            notes = " ".join(f"`{m}`: {page.metric(m).summary}; {page.metric(m).convention}." for m in metrics_eps)
            method_note = "" if multi else f" Method: {page.method_label(methods[0])}."
            lines += [notes + method_note, "", *markdown_table(header, body), ""]
        metrics_flat = [m for m in page.suite.metrics if (own["metric"] == m).any()]
        header = ["method", *(f"{m} {_arrow(page.metric(m))}" for m in metrics_flat), "declared L"]
        body = []
        for method in methods:
            cells = [page.method_label(method)]
            for metric in metrics_flat:
                spec = page.metric(metric)
                values = own.loc[(own["method"] == method) & (own["metric"] == metric), "value"].to_numpy(float)
                cells.append(seed_cell(values, spec.scale)[1])
                page.record(f"{table} / {subset}", method, metric, float(np.nanmean(values)) if len(values) else None, spec.scale)
            cells.append(_constant(page, rows, method))
            body.append(cells)
        notes = " ".join(f"`{m}`: {page.metric(m).summary}." for m in metrics_flat)
        lines += [(notes + " " if notes else "") + "L: the Lipschitz constant the model declared.", "", *markdown_table(header, body), ""]
    return lines


def _curve(page: Page, rows: pd.DataFrame, model: str, dataset: str) -> list[str]:
    """Classification: the exact certified-accuracy step function from the stored radii;
    otherwise every per-ε metric at the grid's values."""
    curves = []
    per_eps = [m for m in page.suite.metrics if rows.loc[rows["metric"] == m, "subset"].map(split_eps_subset).notna().any()]
    for method in sorted(rows["method"].unique()):
        job = rows[rows["method"] == method].iloc[0]
        scores = page.scores(job, columns=("certified_radius", "correct"))
        if scores is not None and {"certified_radius", "correct"} <= set(scores.columns) and len(scores):
            scale = page.metric(page.suite.headline[0]).scale
            radius = np.sort(np.where(scores["correct"].to_numpy(bool), scores["certified_radius"].to_numpy(float), -1.0))
            eps = np.unique(np.concatenate([[0.0], radius[radius >= 0]]))
            share = [float(np.mean(radius > e)) if e > 0 else float(np.mean(radius >= 0)) for e in eps]
            curves.append({"label": f"{method}: {page.suite.headline[0]}", "eps": eps.tolist(), "value": [v * scale for v in share], "step": True})
            continue
        for metric in per_eps:
            mine = rows[(rows["method"] == method) & (rows["metric"] == metric)]
            split = mine["subset"].map(split_eps_subset)
            keep = split.notna().to_numpy()
            if not keep.any():
                continue
            frame = pd.DataFrame({"eps": [parse_eps(s[1]) for s in split[keep]], "value": mine["value"].to_numpy(float)[keep]})
            mean = frame.groupby("eps")["value"].mean() * page.metric(metric).scale
            curves.append({"label": f"{method}: {metric}", "eps": mean.index.tolist(), "value": mean.tolist(), "step": False})
    if not curves:
        return []
    title = f"certified values against ε: {model} on {dataset}"
    name = f"{page.suite.name}-curve-{slug(model)}-{slug(dataset)}.png"
    return ["### Certified values against ε", "", *page.figure(name, title, [curves, title], lambda: _figure(curves, title))]


def _figure(curves: list[dict], title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=90)
    for curve in curves:
        if curve["step"]:
            ax.step(curve["eps"], curve["value"], where="post", label=curve["label"], linewidth=1.4)
        else:
            ax.plot(curve["eps"], curve["value"], marker="o", markersize=3, label=curve["label"], linewidth=1.4)
    ax.set_xlabel("ε (ℓ2, input space)")
    ax.set_ylabel("certified value (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
