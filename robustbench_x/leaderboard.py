"""Markdown leaderboards rendered from the result store, deterministically.

One page per suite: for each headline metric and each model, a table of
methods × (dataset, subset), the best value of each column in bold. With
several seeds a cell is ``mean ± std`` (sample std over seeds); with one seed
it is the value and a percentile bootstrap 95 % interval recomputed from the
per-sample outputs (ID and OOD samples resampled separately, fixed RNG seed,
so the page is reproducible). Empty cells say why in a footnote (skipped:
the planner's reason; failed: the error). The page ends with provenance: rbx
and plugin versions, config hashes, model and dataset fingerprints. Nothing
time-dependent is printed, so committed pages can be checked against a fresh
render (``rbx leaderboard --check``).
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_x.api import load_factory
from robustbench_x.registry import get_registry
from robustbench_x.results import read_results, read_scores


def _fmt(value: float, scale: float) -> str:
    digits = 1 if scale >= 100 else (2 if scale >= 10 else 3)
    return f"{value * scale:.{digits}f}"


def render_pages(results_dir: str | Path, n_boot: int = 1000) -> dict[str, str | bytes]:
    frame = read_results(results_dir)
    if frame.empty:
        return {}
    registry = get_registry()
    pages: dict[str, str | bytes] = {}
    for suite_name in sorted(frame["suite"].dropna().unique()):
        rows = frame[frame["suite"] == suite_name]
        try:
            suite = registry.get("suites", suite_name)
        except Exception:
            continue
        page, images = _render_suite(suite, rows, Path(results_dir), n_boot, registry)
        pages[f"{suite_name}.md"] = page
        pages.update(images)
    return pages


def _bootstrap(results_dir: Path, job: pd.Series, metric_spec, subset: str, n_boot: int) -> tuple[float, float] | None:
    scores = read_scores(results_dir, job["suite"], job["model"], job["dataset"], job["method"], job["config_hash"])
    if scores is None or n_boot <= 0:
        return None
    fn = load_factory(metric_spec.fn)
    rng = np.random.default_rng(0)
    values = []
    if metric_spec.kind == "ood":
        s_id = scores.loc[scores["subset"] == "id", "score"].to_numpy()
        s_ood = scores.loc[scores["subset"] == subset, "score"].to_numpy()
        if len(s_id) == 0 or len(s_ood) == 0:
            return None
        for _ in range(n_boot):
            values.append(fn(score_id=s_id[rng.integers(0, len(s_id), len(s_id))], score_ood=s_ood[rng.integers(0, len(s_ood), len(s_ood))]))
    elif metric_spec.name in scores:
        # The evaluator stored the metric's per-sample values (retrieval: one per query): resample them.
        column = scores.loc[scores["subset"] == subset, metric_spec.name].dropna().to_numpy(dtype=float)
        if len(column) == 0:
            return None
        values = [float(column[rng.integers(0, len(column), len(column))].mean()) for _ in range(n_boot)]
    else:
        part = scores[scores["subset"] == subset]
        if part.empty:
            return None
        n = len(part)
        label = part["label"].to_numpy()
        pred = part["prediction"].to_numpy()
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                if metric_spec.kind == "failure":
                    values.append(fn(confidence=part["confidence"].to_numpy()[idx], correct=(pred == label)[idx]))
                elif metric_spec.kind == "calibration":
                    probs = np.stack(part["probs"].to_numpy())
                    values.append(fn(probs=probs[idx], labels=label[idx]))
                else:
                    values.append(fn(prediction=pred[idx], labels=label[idx]))
            except ValueError:
                continue  # a resample with a single class: the metric is undefined there
    if len(values) < max(10, n_boot // 2):
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _render_suite(suite, rows: pd.DataFrame, results_dir: Path, n_boot: int, registry) -> tuple[str, dict[str, bytes]]:
    ok = rows[(rows["status"] == "ok") & rows["metric"].notna()]
    problems = rows[(rows["status"] != "ok")]
    images: dict[str, bytes] = {}
    lines = [f"# Leaderboard: `{suite.name}`", "", suite.summary[:1].upper() + suite.summary[1:] + "." if suite.summary else "", ""]
    seeds = sorted(rows["seed"].dropna().unique().tolist())
    if len(seeds) > 1:
        lines.append(f"Cells are mean ± standard deviation over seeds {', '.join(map(str, seeds))}.")
    else:
        kinds = {registry.get("metrics", m).kind for m in suite.headline}
        how = "; ID and OOD resampled separately" if "ood" in kinds else ("; queries resampled" if "retrieval" in kinds else "")
        lines.append(f"Cells are the value and, in brackets, a bootstrap 95 % interval from the per-sample outputs ({n_boot} resamples{how}).")
    lines += ["Best value per column in bold. ↑ higher is better, ↓ lower is better.", ""]
    footnotes: dict[str, int] = {}

    def note(text: str) -> str:
        if text not in footnotes:
            footnotes[text] = len(footnotes) + 1
        return f"[^{footnotes[text]}]"

    for metric_name in suite.headline:
        if not (rows["metric"] == metric_name).any():
            continue  # e.g. AlexNet-normalised mCE exists only for ImageNet-C
        spec = registry.get("metrics", metric_name)
        arrow = "↑" if spec.higher_is_better else "↓"
        scale = f" (×{spec.scale:g})" if spec.scale != 1 else ""
        lines += [f"## {metric_name} {arrow}{scale}", "", f"{spec.summary}." + (f" Convention: {spec.convention}." if spec.convention else ""), ""]
        for model in sorted(rows["model"].dropna().unique()):
            mrows = ok[(ok["model"] == model) & (ok["metric"] == metric_name)]
            mprob = problems[problems["model"] == model]
            columns = sorted({(d, s) for d, s in zip(mrows["dataset"], mrows["subset"])})
            methods = sorted(set(rows.loc[rows["model"] == model, "method"].dropna()))
            if not methods:
                continue
            lines += [f"### model `{model}`", ""]
            table: dict[str, dict[str, str]] = {}
            numeric: dict[str, dict[str, float]] = {}
            for method in methods:
                table[method], numeric[method] = {}, {}
                for dataset, subset in columns:
                    col = f"{dataset} / {subset}"
                    cell = mrows[(mrows["method"] == method) & (mrows["dataset"] == dataset) & (mrows["subset"] == subset)]
                    if cell.empty:
                        table[method][col] = ""
                        continue
                    vals = cell["value"].to_numpy(dtype=float)
                    numeric[method][col] = float(np.mean(vals))
                    if len(vals) > 1:
                        table[method][col] = f"{_fmt(np.mean(vals), spec.scale)} ± {_fmt(np.std(vals, ddof=1), spec.scale)}"
                    else:
                        ci = _bootstrap(results_dir, cell.iloc[0], spec, subset, n_boot)
                        text = _fmt(vals[0], spec.scale)
                        table[method][col] = f"{text} [{_fmt(ci[0], spec.scale)}, {_fmt(ci[1], spec.scale)}]" if ci else text
                if len(columns) > 1 and len(numeric[method]) == len(columns):
                    numeric[method]["mean"] = float(np.mean(list(numeric[method].values())))
                    table[method]["mean"] = _fmt(numeric[method]["mean"], spec.scale)
                # Empty cells: explain them.
                prob = mprob[mprob["method"] == method]
                for _, p in prob.iterrows():
                    reason = (p["error"] or "").splitlines()[0] if p["error"] else p["status"]
                    mark = ("–" if p["status"] == "skipped" else "ERR") + note(f"{p['status']}: {reason}")
                    if p["metric"] is None or pd.isna(p["metric"]):
                        for dataset, subset in columns:
                            if dataset == p["dataset"] and not table[method].get(f"{dataset} / {subset}"):
                                table[method][f"{dataset} / {subset}"] = mark
                        if not columns:
                            table[method][f"{p['dataset']}"] = mark
                    elif p["metric"] == metric_name:
                        table[method][f"{p['dataset']} / {p['subset']}"] = mark
            header = [c for c in [f"{d} / {s}" for d, s in columns]] + (["mean"] if len(columns) > 1 else [])
            extra = sorted({k for t in table.values() for k in t} - set(header))
            header += extra
            for col in header:
                vals = {m: numeric[m][col] for m in methods if col in numeric[m]}
                if not vals:
                    continue
                best = max(vals.values()) if spec.higher_is_better else min(vals.values())
                for m, v in vals.items():
                    if np.isclose(v, best):
                        table[m][col] = f"**{table[m][col]}**"
            order = sorted(methods, key=lambda m: (_sort_key(numeric[m], header, spec.higher_is_better), m))
            frame = pd.DataFrame([[table[m].get(c, "") for c in header] for m in order], index=order, columns=header)
            frame.index.name = "method"
            lines += [frame.to_markdown(), ""]
    if "reliability" in suite.plots:
        lines += _reliability(rows[rows["status"] == "ok"], results_dir, images, suite.name)
    if footnotes:
        lines += ["## Notes", ""]
        lines += [f"[^{i}]: {text}" for text, i in footnotes.items()] + [""]
    lines += _provenance(rows, registry)
    return "\n".join(lines).rstrip() + "\n", images


def _sort_key(values: dict[str, float], header: list[str], higher: bool) -> float:
    key = "mean" if "mean" in values else next((c for c in header if c in values), None)
    if key is None:
        return float("inf")
    return -values[key] if higher else values[key]


def _reliability(ok: pd.DataFrame, results_dir: Path, images: dict[str, bytes], suite: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustbench_x.metrics.calibration import reliability_bins

    lines = ["## Reliability diagrams", ""]
    jobs = ok.drop_duplicates(["model", "dataset", "method", "seed"]).sort_values(["model", "dataset", "method", "seed"])
    for (model, dataset), group in jobs.groupby(["model", "dataset"], sort=True):
        fig, ax = plt.subplots(figsize=(5, 5), dpi=80)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for _, job in group.drop_duplicates(["method"]).iterrows():
            scores = read_scores(results_dir, job["suite"], model, dataset, job["method"], job["config_hash"])
            if scores is None or "probs" not in scores:
                continue
            part = scores[scores["subset"] == "id"]
            bins = reliability_bins(np.stack(part["probs"].to_numpy()), part["label"].to_numpy())
            keep = bins["count"] > 0
            ax.plot(bins["confidence"][keep], bins["accuracy"][keep], marker="o", linewidth=1, label=job["method"])
        ax.set_xlabel("confidence (15 equal-width bins)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{model} on {dataset}")
        ax.legend(fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        name = f"{suite}-reliability-{_slug(model)}-{_slug(dataset)}.png"
        images[name] = buf.getvalue()
        lines += [f"![reliability diagram: {model} on {dataset}]({name})", ""]
    return lines


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _provenance(rows: pd.DataFrame, registry) -> list[str]:
    lines = ["## Provenance", ""]
    versions = sorted(rows["rbx_version"].dropna().unique())
    lines.append(f"- rbx version(s): {', '.join(versions)}")
    plugins = sorted(rows["plugin"].dropna().unique())
    lines.append(f"- method plugins: {', '.join(plugins)}")
    fps = rows[rows["dataset_fingerprint"].notna()]
    for dataset, group in fps.groupby("dataset", sort=True):
        per_subset = group.drop_duplicates(["subset", "dataset_fingerprint"])
        if per_subset.duplicated("subset").any():
            lines.append(f"- **warning**: dataset `{dataset}` mixes rows computed on different data (several fingerprints for one subset)")
        lines.append(f"- dataset `{dataset}`: " + ", ".join(f"{s} `{f}`" for s, f in zip(per_subset["subset"], per_subset["dataset_fingerprint"])))
    for model, group in rows[rows["model_fingerprint"].notna()].groupby("model", sort=True):
        lines.append(f"- model `{model}`: " + ", ".join(f"`{f}`" for f in sorted(group["model_fingerprint"].unique())))
    jobs = rows.drop_duplicates(["model", "dataset", "method", "seed", "config_hash"]).sort_values(["model", "dataset", "method", "seed"])
    lines += ["", "| model | dataset | method | seed | config hash | status |", "|---|---|---|---|---|---|"]
    statuses = rows.groupby("config_hash")["status"].agg(lambda s: "failed" if (s == "failed").any() and s.isna().all() else s.iloc[0])
    for _, job in jobs.iterrows():
        lines.append(f"| {job['model']} | {job['dataset']} | {job['method']} | {job['seed']} | `{job['config_hash']}` | {statuses[job['config_hash']]} |")
    return lines + [""]


def check_pages(pages: dict[str, str | bytes], directory: str | Path) -> str:
    """A readable diff between rendered pages and those in ``directory`` ("" when equal)."""
    directory = Path(directory)
    chunks = []
    for name, content in sorted(pages.items()):
        path = directory / name
        if not path.exists():
            chunks.append(f"missing: {path} (run `rbx leaderboard ... --out {directory}` and commit it)")
            continue
        if isinstance(content, bytes):
            if path.read_bytes() != content:
                chunks.append(f"differs: {path} (image)")
            continue
        old = path.read_text(encoding="utf-8")
        if old != content:
            chunks.append("".join(difflib.unified_diff(old.splitlines(True), content.splitlines(True), f"committed/{name}", f"rendered/{name}")))
    for path in sorted(directory.glob("*.md")) if directory.exists() else []:
        if path.name not in pages:
            chunks.append(f"stale: {path} is committed but no longer rendered")
    return "\n".join(chunks)
