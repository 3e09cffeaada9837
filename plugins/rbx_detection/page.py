"""Leaderboard page of the ``cure-tsd`` suite (``SuiteSpec.renderer``).

Per (model, dataset), laid out as the CURE-TSR page lays out challenges:

* a summary table: precision, recall, F0.5 and F2 of each method (matching
  rule) on the challenge-free videos, on every challenge video, and on all
  frames;
* per method and headline metric, a table with the challenge types as rows,
  the levels 1–5 and "all levels" as columns, the challenge-free value
  beside them, and a row "all types" (every challenge type at that level);
* ``cure-tsd-<model>-<dataset>.png``: each metric against the level, one
  line per challenge type, level 0 being the challenge-free value.

Cells are point values: counts are summed over the frames of a group and the
metric taken once (no interval); with several seeds, mean ± standard
deviation. A value that is undefined (precision without any detection) is
empty, its reason under "Not defined". Only :mod:`robustbench_x.pages` is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustbench_x.pages import Page, markdown_table, pyplot, seed_cell, slug

SUMMARY = (("id", "challenge-free"), ("challenged", "all challenges"), ("all", "all frames"))


def render(page: Page) -> list[str]:
    lines = [
        "Detections are matched to the ground-truth signs one-to-one in every frame (by decreasing score, each detection takes the "
        "unmatched box of highest IoU >= 0.5; `detections` also requires the same sign type, `detections-any-class` does not); "
        "counts are summed over the frames of a group and precision, recall, F0.5 and F2 computed once (docs/metrics.md#detection). "
        "Cells are point values (no interval); with several seeds, mean ± standard deviation. ↑ higher is better.",
        "",
    ]
    for model, dataset, rows in page.groups():
        where = f"{model} / {dataset}"
        lines += [page.group_heading(model, dataset), ""]
        lines += _summary(page, rows, where)
        for method in sorted(rows["method"].unique()):
            lines += [f"### {page.method_label(method)}", ""]
            for metric in page.suite.headline:
                lines += _conditions(page, rows[rows["method"] == method], metric, f"{where} / {method}")
        lines += _plot(page, rows, model, dataset)
    return lines + _undefined(page) + page.not_run()


def _cell(rows: pd.DataFrame, metric: str, subset: str, scale: float) -> tuple[float | None, str]:
    return seed_cell(rows.loc[(rows["metric"] == metric) & (rows["subset"] == subset), "value"].to_numpy(dtype=float), scale)


def _summary(page: Page, rows: pd.DataFrame, where: str) -> list[str]:
    metrics = list(page.suite.headline)
    body = []
    for subset, label in SUMMARY:
        for method in sorted(rows["method"].unique()):
            cells = [label, page.method_label(method)]
            for metric in metrics:
                scale = page.metric(metric).scale
                value, text = _cell(rows[rows["method"] == method], metric, subset, scale)
                cells.append(text)
                if value is not None:
                    page.record(f"{where} summary", f"{label} / {method}", metric, value, scale)
            body.append(cells)
    return [*markdown_table(["frames", "method", *(f"{m} ↑" for m in metrics)], body, align="ll" + "r" * len(metrics)), ""]


def _conditions(page: Page, rows: pd.DataFrame, metric: str, where: str) -> list[str]:
    conditions = [s.split("/") for s in rows["subset"].unique() if s.startswith("c/") and not s.endswith("/all")]
    if not conditions:
        return []
    challenges = sorted({c for _, c, _ in conditions})
    levels = sorted({int(lv) for _, _, lv in conditions})
    scale = page.metric(metric).scale
    header = ["challenge", *(f"level {lv}" for lv in levels), "all levels", "challenge-free"]
    body = []
    for challenge in [*challenges, None]:
        label = challenge or "all types"
        subsets = [f"c/{challenge}/{lv}" if challenge else f"level/{lv}" for lv in levels] + [f"c/{challenge}/all" if challenge else "challenged", "id"]
        cells = [label]
        for subset, column in zip(subsets, header[1:]):
            value, text = _cell(rows, metric, subset, scale)
            cells.append(text)
            if value is not None:
                page.record(f"{where} {metric}", label, column, value, scale)
        body.append(cells)
    return [f"{metric} ↑ by challenge type and level:", "", *markdown_table(header, body), ""]


def _plot(page: Page, rows: pd.DataFrame, model: str, dataset: str) -> list[str]:
    conditions = sorted({tuple(s.split("/")[1:]) for s in rows["subset"].unique() if s.startswith("c/") and not s.endswith("/all")})
    if not conditions:
        return []
    metrics, methods = list(page.suite.headline), sorted(rows["method"].unique())
    challenges = sorted({c for c, _ in conditions})
    data = {}
    for method in methods:
        for metric in metrics:
            part = rows[(rows["method"] == method) & (rows["metric"] == metric)].groupby("subset")["value"].mean()
            clean = float(part.get("id", np.nan))
            data[f"{method}|{metric}"] = {c: [[0, clean]] + [[int(lv), float(part.get(f"c/{c}/{lv}", np.nan))] for cc, lv in conditions if cc == c] for c in challenges}

    def draw():
        plt = pyplot()
        fig, axes = plt.subplots(len(methods), len(metrics), figsize=(3.0 * len(metrics), 2.6 * len(methods)), squeeze=False, sharey=True)
        for i, method in enumerate(methods):
            for j, metric in enumerate(metrics):
                ax = axes[i][j]
                for challenge, points in data[f"{method}|{metric}"].items():
                    xs, ys = zip(*points)
                    ax.plot(xs, np.asarray(ys) * 100, marker="o", label=challenge)
                ax.set_title(f"{method}: {metric}", fontsize=8)
                ax.set_xlabel("level (0 = challenge-free)", fontsize=7)
                ax.set_ylim(-2, 102)
                ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("%")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        return fig

    name = f"cure-tsd-{slug(model)}-{slug(dataset)}.png"
    return page.figure(name, f"detection metrics against challenge level, {model} on {dataset}", data, draw)


def _undefined(page: Page) -> list[str]:
    """Metric values that are undefined (failed rows with a metric), grouped by reason."""
    rows = page.problems[page.problems["metric"].notna()]
    if rows.empty:
        return []
    out = ["## Not defined", ""]
    for (model, dataset, method, error), part in rows.groupby(["model", "dataset", "method", "error"]):
        out.append(f"- {model} / {dataset} / {method}: {error} ({', '.join(f'{m} on {s}' for m, s in zip(part['metric'], part['subset']))})")
    return out + [""]
