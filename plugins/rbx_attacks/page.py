"""Leaderboard page of the ``adversarial`` suites (``SuiteSpec.renderer``).

Per (model, dataset): the threat model (norm, ε as number and canonical
string, whether it is RobustBench's protocol) and one row per attack method:
the attack sequence, clean accuracy, robust accuracy (the headline: a sample
counts only if every attack of the sequence failed on it) and the robust
accuracy after each attack of the sequence. Then, for every RobustBench
dataset and threat model with imported ``model_info`` files
(:mod:`rbx_attacks.robustbench`), a table of the *published* rows beside the
*measured* ones of the same protocol, each published row with its paper link
and file. Cells are point values over the evaluated samples (mean ± std over
seeds where several ran).
"""

from __future__ import annotations

import json

import pandas as pd

from robustbench_x.evaluation import UNDEFINED
from robustbench_x.pages import Page, bold, fmt, markdown_table
from rbx_attacks.robustbench import load_published

SUBSET = "id"


def _diag(rows: pd.DataFrame) -> dict:
    values = rows["diagnostics"].dropna() if "diagnostics" in rows else []
    for text in values:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            continue
    return {}


def _cell(page: Page, values: pd.Series, table: str, row: str, column: str) -> tuple[str, float | None]:
    values = values.dropna()
    if values.empty:
        return "–", None
    mean = float(values.mean())
    page.record(table, row, column, mean, 100)
    text = fmt(mean, 100)
    if len(values) > 1:
        text += f" ± {fmt(float(values.std(ddof=1)), 100)}"
    return text, mean


def threat_line(diag: dict) -> str:
    norm = {"Linf": "ℓ∞", "L2": "ℓ2"}.get(diag.get("norm", ""), diag.get("norm", "?"))
    if diag.get("protocol"):
        where = f"RobustBench's {diag['protocol']} protocol"
    elif diag.get("protocol (not comparable)"):
        where = (f"RobustBench's {diag['protocol (not comparable)']} ε, but not its preprocessing, so not comparable with its "
                 "leaderboard")
    else:
        where = "not a RobustBench protocol"
    pre = f"; inputs: {diag['preprocessing']}" if diag.get("preprocessing") else ""
    label, eps = diag.get("eps_label", "?"), diag.get("eps", float("nan"))
    number = "" if label == repr(eps) else f" = {eps:.6g}"
    return f"Threat model: {norm}, ε = {label}{number} in [0, 1] pixel units; {where}{pre}."


def render(page: Page) -> list[str]:
    lines = [
        "Robust accuracy counts a sample only when it is correctly classified and no attack of the method's sequence found a misclassified "
        "point within the threat model (the ε-ball intersected with [0, 1]); the columns after it give the robust accuracy after each attack "
        "of the sequence. Attacks can only over-estimate the true robust accuracy: a lower value is a stronger attack. Only "
        "`autoattack-standard` is AutoAttack. Cells are point values over the evaluated samples (mean ± std over seeds where several ran); "
        "**bold**: the lowest robust accuracy of the table. The adversarial inputs are stored in float32 (never quantised).",
        "",
    ]
    measured = []
    for model, dataset, rows in page.groups():
        lines += [page.group_heading(model, dataset), ""]
        lines += _table(page, rows, model, dataset, measured)
    lines += _published(page, measured)
    lines += _problems(page)
    return lines


def _table(page: Page, rows: pd.DataFrame, model: str, dataset: str, measured: list) -> list[str]:
    table = f"{model} / {dataset}"
    by_threat: dict[str, list] = {}
    for method in sorted(rows["method"].unique()):
        job = rows[rows["method"] == method]
        diag = _diag(job)
        by_threat.setdefault(threat_line(diag), []).append((method, job, diag))
    out = []
    for threat, entries in by_threat.items():
        body, robust_values = [], []
        for method, job, diag in entries:
            main = job[job["subset"] == SUBSET]
            clean, _ = _cell(page, main[main["metric"] == "clean-accuracy"].groupby("seed")["value"].mean(), table, method, "clean-accuracy")
            robust, value = _cell(page, main[main["metric"] == "robust-accuracy"].groupby("seed")["value"].mean(), table, method, "robust-accuracy")
            steps = []
            for attack in str(diag.get("attacks", "")).split(","):
                if not attack:
                    continue
                per = job[(job["subset"] == f"after/{attack}") & (job["metric"] == "robust-accuracy")].groupby("seed")["value"].mean()
                text, _ = _cell(page, per, table, method, f"after/{attack}")
                steps.append(f"{attack} {text}")
            body.append([page.method_label(method), clean, robust, " → ".join(steps), str(int(main["n"].max()) if len(main) else 0)])
            robust_values.append(value)
            measured.append({"model": model, "dataset": dataset, "method": method, "diag": diag, "clean": clean, "robust": robust})
        finite = [v for v in robust_values if v is not None]
        if finite:
            best = fmt(min(finite), 100)
            for row, value in zip(body, robust_values):
                if value is not None and fmt(value, 100) == best:
                    row[2] = bold(row[2])
        out += [threat, ""]
        out += markdown_table(["method", "clean accuracy ↑", "robust accuracy ↑", "robust accuracy after each attack ↑", "samples"], body, "lrrlr")
        out.append("")
    return out


def _published(page: Page, measured: list) -> list[str]:
    try:
        published = load_published(page.results_dir)
    except Exception as exc:  # a damaged import must not cost the measured tables
        page.warn(f"published RobustBench files not shown: {exc}")
        return []
    out = []
    for (dataset, threat) in sorted({(p.dataset, p.threat_model) for p in published}):
        group = [p for p in published if p.dataset == dataset and p.threat_model == threat]
        table = f"RobustBench {dataset} {threat}"
        body = []
        for p in sorted(group, key=lambda p: -(p.ranking[1] if p.ranking else -1)):
            name = p.info.get("name") or p.key
            link = f"[{name}]({p.info['link']})" if p.info.get("link") else name
            rank = p.ranking
            robust = "–"
            if rank:
                page.record(table, p.key, "robust-accuracy", rank[1], 100)
                robust = fmt(rank[1], 100) + (" (external)" if rank[0] == "external" else " (AutoAttack)")
            clean = p.accuracy("clean_acc")
            if clean is not None:
                page.record(table, p.key, "clean-accuracy", clean, 100)
            body.append(["published", link, p.info.get("eps") or "–", fmt(clean, 100) if clean is not None else "–", robust, f"`{p.file}`"])
        for m in measured:
            if m["diag"].get("protocol") == dataset and m["diag"].get("norm") == threat:
                body.append(["measured", f"`{m['model']}` × {page.method_label(m['method'])}", m["diag"].get("eps_label", "–"), m["clean"],
                             m["robust"] + ("" if m["method"] == "autoattack-standard" else f" ({m['method']})"), "this run"])
        out += [f"## RobustBench {dataset}, {threat}: published and measured", "",
                "Published rows are RobustBench's `model_info` files as imported (`python -m rbx_attacks.robustbench import`); their robust "
                "accuracy is the leaderboard's ranking value (`external` when present, else `autoattack_acc`). Measured rows are this store's "
                "jobs under the same protocol.", ""]
        out += markdown_table(["row", "model", "ε", "clean accuracy ↑", "robust accuracy ↑", "source"], body, "llrrrl")
        out.append("")
    return out


def _problems(page: Page) -> list[str]:
    problems = page.problems
    if problems.empty:
        return []
    out = ["## Not run", ""]
    seen = set()
    for _, row in problems.sort_values(["model", "dataset", "method"]).iterrows():
        key = (row["model"], row["dataset"], row["method"], row["status"], row["error"])
        if key in seen:
            continue
        seen.add(key)
        error, status = str(row["error"] or ""), str(row["status"])
        if pd.notna(row["metric"]) and error.startswith(UNDEFINED):
            # The job ran and refused a protocol the model cannot meet: not a failure of the job.
            error, status = error.removeprefix(UNDEFINED), "not applicable"
        out.append(f"* `{row['model']}` × `{row['dataset']}` × `{row['method']}` ({status}): {error}")
    return out + [""]


__all__ = ["render", "threat_line"]
