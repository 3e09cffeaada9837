"""The leaderboard page of the ``ood-attacked`` suite.

Per model and dataset, one row per method: how it is attacked, then AUROC and
FPR@95TPR clean, with the ID samples attacked, with the OOD samples attacked
and with both, each the mean over the dataset's OOD subsets (and over seeds);
then the same per OOD subset. The threat model heads the page; the table of
objectives follows it.
"""

from __future__ import annotations

import json

import numpy as np

from rbx_attacked_ood.attack import THREAT
from rbx_attacked_ood.objectives import objective_for
from robustbench_x.pages import Page, fmt, markdown_table

__all__ = ["render"]

#: (column header, metric) in table order.
COLUMNS = (
    ("AUROC clean ↑", "auroc"),
    ("AUROC ID attacked ↑", "auroc-id-attacked"),
    ("AUROC OOD attacked ↑", "auroc-ood-attacked"),
    ("AUROC both attacked ↑", "auroc-attacked"),
    ("FPR95 clean ↓", "fpr@95tpr"),
    ("FPR95 ID attacked ↓", "fpr@95tpr-id-attacked"),
    ("FPR95 OOD attacked ↓", "fpr@95tpr-ood-attacked"),
    ("FPR95 both attacked ↓", "fpr@95tpr-attacked"),
)


def _threats(page: Page) -> str:
    """The threat models the standing results recorded (``threat`` diagnostic)."""
    found = set()
    for text in page.rows.get("diagnostics", []):
        try:
            value = json.loads(text).get("threat") if isinstance(text, str) else None
        except ValueError:
            value = None
        if value:
            found.add(value)
    if found == {THREAT.short}:
        return f"**{THREAT}**"
    if not found:
        return f"**{THREAT}** (the suite's current setting; the results recorded none)"
    return "; ".join(f"**{t}**" for t in sorted(found)) + " (the results' recorded settings)"


def render(page: Page) -> list[str]:
    lines = [
        f"Threat model: {_threats(page)}. In-distribution test samples are moved to lower the detector's score (look OOD), "
        "OOD samples to raise it (look in-distribution); the attacked inputs stay in float. "
        "Every attacked score is computed by the method itself on the model's outputs for the attacked inputs, "
        "and the clean values come from the same samples in the same job.",
        "",
        "Cells: AUROC and FPR@95TPR ×100 (ID positive), the mean over the dataset's OOD subsets and over seeds; "
        "per-subset values below. *own score*: PGD on the method's own score; *transfer*: PGD on the classifier's "
        "log max softmax, the method scoring the inputs that attack produced (a weaker, transfer attack).",
        "",
    ]
    ok = page.ok
    if ok.empty:
        return lines + ["No results.", ""] + _problems(page)
    methods = sorted(ok["method"].unique())
    lines += ["## How each method is attacked", ""]
    lines += markdown_table(["method", "objective"], [[page.method_label(m), objective_for(m).how] for m in methods], align="ll")
    lines.append("")
    for model in sorted(ok["model"].unique()):
        lines += [page.model_heading(model), ""]
        by_model = ok[ok["model"] == model]
        for dataset in sorted(by_model["dataset"].unique()):
            rows = by_model[by_model["dataset"] == dataset]
            lines += [f"#### {page.dataset_label(dataset)}: mean over OOD subsets", ""]
            lines += _table(page, rows, f"{model} / {dataset}", None)
            for subset in sorted(rows["subset"].unique()):
                lines += [f"#### {page.dataset_label(dataset)} / {subset}", ""]
                lines += _table(page, rows[rows["subset"] == subset], f"{model} / {dataset} / {subset}", subset)
    return lines + _problems(page)


def _table(page: Page, rows, table: str, subset: str | None) -> list[str]:
    means = rows.groupby(["method", "metric"])["value"].mean()
    scale = {metric: page.metric(metric).scale for _, metric in COLUMNS}

    def value(method: str, metric: str) -> float:
        return float(means.get((method, metric), np.nan))

    order = sorted(rows["method"].unique(), key=lambda m: (-np.nan_to_num(value(m, "auroc-attacked"), nan=-1.0), m))
    body = []
    for method in order:
        kind = objective_for(method).kind
        if kind == "transfer" and value(method, "auroc-attacked") > value(method, "auroc"):
            kind += page.note(
                "AUROC rose under a transfer attack: the surrogate (the classifier's max softmax) ranks samples against "
                "this method's score, so moving it does not move the score the way an attack on the score would."
            )
        elif kind != "transfer" and value(method, "auroc-attacked") > value(method, "auroc"):
            kind += page.note(
                "AUROC rose under an attack on this method's own score: PGD's last iterate (one random start, a fixed "
                "step) left the OOD scores further from the in-distribution side on average (the diagnostics' mean "
                "score shift), so the attack failed here; an attack only bounds the attacked AUROC from above, and "
                "this row does not say that the method gained robustness from being attacked."
            )
        cells = [page.method_label(method), kind]
        for header, metric in COLUMNS:
            v = value(method, metric)
            cells.append(fmt(v, scale[metric]) if np.isfinite(v) else "–")
            page.record(table, method, header, v, scale[metric])
        body.append(cells)
    return [*markdown_table(["method", "attacked by", *(h for h, _ in COLUMNS)], body, align="ll" + "r" * len(COLUMNS)), ""]


def _problems(page: Page) -> list[str]:
    bad = page.problems
    if bad.empty:
        return []
    lines = ["## Not evaluated", ""]
    seen = set()
    body = []
    for _, row in bad.sort_values(["model", "dataset", "method"]).iterrows():
        key = (row["model"], row["dataset"], row["method"], row["status"])
        if key in seen:
            continue
        seen.add(key)
        body.append([row["model"], row["dataset"], page.method_label(row["method"]), row["status"], str(row["error"] or "")])
    return lines + markdown_table(["model", "dataset", "method", "status", "reason"], body, align="lllll") + [""]
