"""Leaderboard pages of the ``segmentation`` and ``anomaly-segmentation`` suites.

Per (model, dataset) and evaluated subset, a table: methods as rows, the
suite's metrics as columns. On the anomaly page each subset's table is headed
by its benchmark protocol (which pixels are pooled, which FPR95 threshold
rule, the component thresholds), because numbers under different protocols
are not comparable. Cells are point values over the whole subset (these
metrics pool pixels or average over images inside one number; no interval is
shown), or mean ± standard deviation over seeds. **Bold**: the best value of
the column and every value equal to it at the displayed precision.

Figures, from the example arrays the evaluator stored (``Page.arrays``; the
full-size maps are never loaded): two example images of a subset, their
ground truth and, side by side, the
per-pixel map of the baseline method (``seg-msp``) and of the best method by
the table's first metric: the anomaly score ``-score`` on the anomaly page,
the prediction and its confidence on the segmentation page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustbench_x.pages import Page, bold, digits, fmt, markdown_table, pyplot, slug

BASELINE = "seg-msp"

PROTOCOL_NOTES = {
    "smiyc-anomaly": "SegmentMeIfYouCan, anomaly track: pixels pooled over all images (void dropped), AP, FPR at the first threshold "
    "reaching 95 % TPR, best F1; components (8-connected) at the pooled best-F1 threshold, sIoU, PPV, mean F1 over τ = 0.25…0.75",
    "smiyc-obstacle": "SegmentMeIfYouCan, obstacle track: as the anomaly track with the obstacle track's size filters (50 / 10 px)",
    "streethazards": "StreetHazards / BDD-Anomaly: AUROC, AUPR and FPR95 per image (images with both labels), averaged over images; "
    "FPR95 at the threshold whose recall is closest to 95 %",
    "fishyscapes": "Fishyscapes: AP and FPR at 95 % TPR, pixels pooled",
}


def render_segmentation(page: Page) -> list[str]:
    lines = [
        "Semantic segmentation on the `val` and `test` subsets (one table each): mIoU and pixel accuracy from one confusion matrix over every non-ignored pixel; "
        "ECE (15 bins, top-label), NLL and Brier over every non-ignored pixel; pixel AURC of the method's score against pixel correctness. "
        "Methods that only rescore one network's softmax (MSP, MaxLogit, entropy, energy, ConfidNet) share its prediction and probabilities, "
        "so their mIoU, accuracy, ECE, NLL and Brier are the same; only their score, and so the pixel AURC, differs.",
        *_legend(),
    ]
    return lines + _body(page, kind="segmentation") + _problems(page)


def render_anomaly(page: Page) -> list[str]:
    lines = [
        "Anomalous pixels, anomaly score = −score (higher = more anomalous), each subset under its own benchmark's protocol "
        "(stated above its table: numbers under different protocols are not comparable).",
        *_legend(),
    ]
    return lines + _body(page, kind="anomaly") + _problems(page)


def _legend() -> list[str]:
    return [
        "Cells are point values over the whole subset (no interval: these metrics pool pixels or average over images inside one number); "
        "with several seeds, mean ± standard deviation. **Bold**: the best value of the column and every value equal to it at the displayed "
        "precision. ↑ higher is better, ↓ lower is better.",
        "",
    ]


def _body(page: Page, kind: str) -> list[str]:
    lines: list[str] = []
    for model, dataset, rows in page.groups():
        lines += [page.group_heading(model, dataset), ""]
        for subset in sorted(rows["subset"].unique()):
            sub = rows[rows["subset"] == subset]
            metrics = [m for m in page.suite.metrics if m in set(sub["metric"])]
            protocol = _protocol(page, sub)
            heading = f"### `{subset}`" + (f" — protocol `{protocol}`" if protocol else "")
            lines += [heading, ""]
            if protocol in PROTOCOL_NOTES:
                lines += [PROTOCOL_NOTES[protocol] + ".", ""]
            table = f"{model} / {dataset} / {subset}"
            lines += _table(page, sub, metrics, table)
            lines += _figure(page, sub, metrics, kind, model, dataset, subset)
    return lines


def _protocol(page: Page, rows: pd.DataFrame) -> str | None:
    """The protocol the evaluator scored the subset under (its per-image ``protocol`` column)."""
    subset = rows["subset"].iloc[0]
    for _, job in rows.drop_duplicates(["method", "seed"]).iterrows():
        scores = page.scores(job, columns=("subset", "protocol"))
        if scores is not None and "protocol" in scores:
            values = scores.loc[scores["subset"] == subset, "protocol"].dropna().unique()
            if len(values):
                return str(values[0])
    return None


def _table(page: Page, rows: pd.DataFrame, metrics: list[str], table: str) -> list[str]:
    specs = {m: page.metric(m) for m in metrics}
    stats = rows.groupby(["method", "metric"])["value"].agg(["mean", "std", "count"])
    best = {}
    for m, spec in specs.items():
        values = [round(stats.loc[(meth, m), "mean"] * spec.scale, digits(spec.scale)) for meth in rows["method"].unique() if (meth, m) in stats.index]
        if values:
            best[m] = max(values) if spec.higher_is_better else min(values)
    header = ["method"] + [f"{m} {'↑' if specs[m].higher_is_better else '↓'}" for m in metrics]
    body = []
    for method in sorted(rows["method"].unique()):
        cells = [page.method_label(method)]
        for m in metrics:
            if (method, m) not in stats.index:
                cells.append("")
                continue
            s, spec = stats.loc[(method, m)], specs[m]
            text = fmt(s["mean"], spec.scale) + (f" ± {fmt(s['std'], spec.scale)}" if s["count"] > 1 else "")
            if round(s["mean"] * spec.scale, digits(spec.scale)) == best.get(m):
                text = bold(text)
            cells.append(text)
            page.record(table, method, m, s["mean"], spec.scale)
        body.append(cells)
    conventions = [f"`{m}`: {specs[m].convention}" for m in metrics if specs[m].convention]
    return markdown_table(header, body, align="l" + "r" * len(metrics)) + [""] + (["Conventions: " + "; ".join(conventions) + ".", ""] if conventions else [])


def _best_method(rows: pd.DataFrame, metrics: list[str], page: Page) -> str | None:
    if not metrics:
        return None
    first = metrics[0]
    means = rows[rows["metric"] == first].groupby("method")["value"].mean().dropna()
    if means.empty:
        return None
    return str(means.idxmax() if page.metric(first).higher_is_better else means.idxmin())


def _maps(page: Page, rows: pd.DataFrame, method: str, subset: str, what: str):
    job = rows[rows["method"] == method].sort_values("seed").iloc[0]
    store = page.arrays(job)
    name = f"{subset.replace('/', '-')}.{what}"
    if name not in store.names():
        return None
    values, ids = store.load(name)
    return values, [str(i) for i in ids]


def _figure(page: Page, rows: pd.DataFrame, metrics: list[str], kind: str, model: str, dataset: str, subset: str) -> list[str]:
    best = _best_method(rows, metrics, page)
    methods = [m for m in dict.fromkeys([BASELINE, best]) if m and m in set(rows["method"])]
    if not methods:
        return []
    examples = _maps(page, rows, methods[0], subset, "examples")
    truth = _maps(page, rows, methods[0], subset, "examples-mask")
    if examples is None or truth is None:
        return []
    images, ids = examples
    masks = truth[0]
    panels = []
    for method in methods:
        stored = _maps(page, rows, method, subset, "examples-score")
        if stored is None or stored[1] != ids:
            return []
        panels.append((method, stored[0].astype(np.float32)))
    if kind == "anomaly":
        panels = [(f"{m}: anomaly score (−score)", -v) for m, v in panels]
    else:
        panels = [(f"{m}: score (↑ = in-distribution)", v) for m, v in panels]  # MSP and ConfidNet are emitted minus 1
    data = {"images": images, "masks": masks, "panels": [[t, v] for t, v in panels], "ids": ids}
    name = f"{slug(page.suite.name)}-{slug(model)}-{slug(dataset)}-{slug(subset)}.png"
    alt = f"{subset}: example images, ground truth and per-pixel maps of {', '.join(methods)}"

    def draw():
        plt = pyplot()
        n, cols = len(images), 2 + len(panels)
        top = max(1, int(masks[masks != 255].max(initial=1)))
        fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
        for r in range(n):
            axes[r][0].imshow(images[r])
            mask = masks[r].astype(np.float32)
            shown = np.ma.masked_where(masks[r] == 255, mask)
            # one colour per class across the rows (void, 255, left blank)
            axes[r][1].imshow(shown, cmap="viridis" if kind != "anomaly" else "gray", interpolation="nearest", vmin=0, vmax=top)
            for c, (title, values) in enumerate(panels):
                im = axes[r][2 + c].imshow(values[r], cmap="magma")
                fig.colorbar(im, ax=axes[r][2 + c], fraction=0.046, pad=0.02)
                if r == 0:
                    axes[r][2 + c].set_title(title, fontsize=7)
            if r == 0:
                axes[r][0].set_title("image", fontsize=7)
                axes[r][1].set_title("ground truth" + (" (white = anomaly)" if kind == "anomaly" else ""), fontsize=7)
            axes[r][0].set_ylabel(ids[r], fontsize=6)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
        return fig

    return page.figure(name, alt, data, draw)


def _problems(page: Page) -> list[str]:
    """Methods that did not run (skipped or failed), with the reason."""
    problems = page.problems[page.problems["metric"].isna()]
    if problems.empty:
        return []
    lines = ["## Not run", ""]
    lines += markdown_table(["model", "dataset", "method", "seed", "status"], align="lllll", rows=[
        [p["model"], p["dataset"], p["method"], str(p["seed"]),
         str(p["status"]) + page.note(f"{p['status']}: {(p['error'] or '').splitlines()[0] if isinstance(p['error'], str) else ''}")]
        for _, p in problems.sort_values(["model", "dataset", "method", "seed"]).iterrows()
    ])
    return lines + [""]
