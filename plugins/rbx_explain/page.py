"""Leaderboard page of the ``explanation`` suite (``SuiteSpec.renderer``).

Per (model, dataset): one table per method, the subsets as rows and the
headline metrics as columns, with the number of right and wrong predictions
each group holds; cells are point values over the subset's images (no
interval), or mean ± standard deviation over seeds. Then, per method, a grid
of example images of the ``id`` subset (wrong predictions first): the image,
its Grad-CAM explanation and its VOICE uncertainty map (colour scale 0 to 1),
titled with the label, the prediction and the image's IoU and SNR, drawn from
the arrays the evaluator saved (first seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustbench_x.pages import Page, markdown_table, pyplot, seed_cell, slug

__all__ = ["render"]

GRID_SUBSET = "id"


def render(page: Page) -> list[str]:
    lines = [
        "How much each explanation is uncertain about the very pixels it highlights: the IoU of the Grad-CAM map and its VOICE map "
        "(both binarised at 0.1) and the SNR of the VOICE map, for right and wrong predictions, and how well each separates them (AUROC, wrong = positive). "
        "Cells are point values over the subset's images (no interval); with several seeds, mean ± standard deviation. "
        "↑ higher is better, ↓ lower is better; a blank cell has no image in its group.",
        "",
    ]
    for model, dataset, rows in page.groups():
        lines += [page.group_heading(model, dataset), ""]
        for method in sorted(rows["method"].unique()):
            mine = rows[rows["method"] == method]
            lines += _table(page, mine, method, f"{model} / {dataset} / {method}")
            lines += _grid(page, mine, model, dataset, method)
    lines += _problems(page)
    return lines


def _table(page: Page, rows: pd.DataFrame, method: str, table: str) -> list[str]:
    metrics = [m for m in page.suite.headline if (rows["metric"] == m).any()]
    specs = {m: page.metric(m) for m in metrics}
    subsets = sorted(rows["subset"].unique(), key=lambda s: (s != "id", s))
    body = []
    for subset in subsets:
        here = rows[rows["subset"] == subset]
        n_right = here.loc[here["metric"] == "iou@0.1-correct", "n"].mean()
        n_wrong = here.loc[here["metric"] == "iou@0.1-incorrect", "n"].mean()
        counts = f"{_count(n_right)} / {_count(n_wrong)}"
        cells = []
        for m in metrics:
            value, text = seed_cell(here.loc[here["metric"] == m, "value"].to_numpy(dtype=float), specs[m].scale)
            page.record(table, subset, m, value, specs[m].scale)
            cells.append(text)
        body.append([subset, counts, *cells])
    header = ["subset", "right / wrong", *(f"{m} {'↑' if specs[m].higher_is_better else '↓'}" + (f" (×{specs[m].scale:g})" if specs[m].scale != 1 else "") for m in metrics)]
    notes = "; ".join(f"`{m}`: {specs[m].summary}" for m in metrics)
    return [f"### {page.method_label(method)}", "", notes + ".", "", *markdown_table(header, body), ""]


def _count(n: float) -> str:
    return str(int(n)) if np.isfinite(n) else "0"


def _grid(page: Page, rows: pd.DataFrame, model: str, dataset: str, method: str) -> list[str]:
    jobs = rows[rows["subset"] == GRID_SUBSET].sort_values("seed")
    if jobs.empty:
        return []
    job = jobs.iloc[0]
    store = page.arrays(job)
    names = {f"{kind}.{GRID_SUBSET}" for kind in ("examples", "explanation", "uncertainty")}
    if not names <= set(store.names()):
        return [f"*No example grid: the job stored no maps for `{GRID_SUBSET}`.*", ""]
    images, ids = store.load(f"examples.{GRID_SUBSET}")
    maps = {}
    for kind in ("explanation", "uncertainty"):
        values, map_ids = store.load(f"{kind}.{GRID_SUBSET}")
        where = {str(s): i for i, s in enumerate(map_ids)}
        maps[kind] = np.stack([values[where[str(s)]] for s in ids])
    table = page.scores(job, columns=("sample_id", "subset", "label", "prediction", "iou@0.1", "snr"))
    if table is None:
        return []
    table = table[table["subset"] == GRID_SUBSET]
    table = table.set_index(table["sample_id"].astype(str))
    info = [
        {"label": int(table.at[str(s), "label"]), "prediction": int(table.at[str(s), "prediction"]), "iou": float(table.at[str(s), "iou@0.1"]), "snr": float(table.at[str(s), "snr"])}
        for s in ids
    ]
    name = f"{page.suite.name}-grid-{slug(model)}-{slug(dataset)}-{slug(method)}.png"
    title = f"{method} on {dataset} ({model}), subset '{GRID_SUBSET}', seed {job['seed']}"
    data = [images, maps["explanation"], maps["uncertainty"], info, title]
    alt = f"example images, Grad-CAM explanations and VOICE maps: {model} on {dataset}"
    return [
        "Examples (wrong predictions first): the image, its Grad-CAM explanation of the prediction, and its VOICE map; "
        "titles give the label → prediction (✗ wrong) and the image's IoU@0.1 and SNR.",
        "",
        *page.figure(name, alt, data, lambda: _grid_figure(images, maps["explanation"], maps["uncertainty"], info, title)),
    ]


def _grid_figure(images: np.ndarray, explanation: np.ndarray, uncertainty: np.ndarray, info: list[dict], title: str):
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.45 * n + 0.9, 5.0), dpi=90, squeeze=False)
    rows = [("image", None), ("Grad-CAM", explanation), ("VOICE", uncertainty)]
    shown = None
    for j in range(n):
        wrong = info[j]["label"] != info[j]["prediction"]
        head = f"{info[j]['label']} → {info[j]['prediction']}{' ✗' if wrong else ''}\nIoU {info[j]['iou']:.2f} SNR {info[j]['snr']:.2f}"
        for i, (label, maps) in enumerate(rows):
            ax = axes[i, j]
            if maps is None:
                ax.imshow(images[j], interpolation="nearest")
                ax.set_title(head, fontsize=8, color="crimson" if wrong else "black")
            else:
                shown = ax.imshow(maps[j], cmap="jet", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    if shown is not None:
        cax = fig.add_axes((0.945, 0.08, 0.012, 0.55))
        fig.colorbar(shown, cax=cax).ax.tick_params(labelsize=7)
    return fig


def _problems(page: Page) -> list[str]:
    """Jobs that were skipped or failed, one bullet each with the reason's first line."""
    jobs = page.problems[page.problems["metric"].isna()].sort_values(["model", "dataset", "method", "seed"])
    if jobs.empty:
        return []
    reason = lambda p: (p["error"] or "").splitlines()[0] if isinstance(p["error"], str) else ""  # noqa: E731
    return ["## Not run", "", *(f"- `{p['method']}` on {p['model']} / {p['dataset']}, seed {p['seed']}: {p['status']} ({reason(p)})" for _, p in jobs.iterrows()), ""]
