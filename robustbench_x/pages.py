"""What a leaderboard page renderer works with (public: suite plugins import it).

A suite whose results do not fit the default methods × (dataset, subset)
tables names a renderer in ``SuiteSpec.renderer`` (``"module:attr"``). It is
called as ``render(page)`` with a :class:`Page` and returns the Markdown lines
of the page's body; the harness writes the title above it and the notes,
provenance and the machine-readable cell values (``<suite>.cells.json``, what
``rbx leaderboard --check`` compares) below it. A renderer:

* states in its own words what its cells show (value, interval or not,
  mean ± std over seeds), since only it knows;
* labels rows and columns with :meth:`Page.method_label` /
  :meth:`Page.dataset_label` / :meth:`Page.model_heading`, so declared
  deviations and job diagnostics get their footnotes;
* registers every numeric cell with :meth:`Page.record`;
* adds PNGs with :meth:`Page.figure` (cached by the plotted data) or
  :meth:`Page.image`, linked relatively.
* reads a job's per-sample table with :meth:`Page.scores` and the arrays its
  evaluator saved (``ev.arrays``: maps, adversarial inputs) with
  :meth:`Page.arrays`.

``page.rows`` holds only the results that stand (the newest job per (model,
dataset, method, seed) of one configuration: see
:func:`robustbench_x.leaderboard.standing`); superseded and unreadable files
are already footnoted.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_x.api import MetricSpec
from robustbench_x.cachedir import cache_root, cached_bytes
from robustbench_x.files import atomic_write  # noqa: F401  (public here: renderers write their files with it)

__all__ = ["Page", "digits", "fmt", "seed_cell", "markdown_table", "atomic_write", "png_bytes", "slug", "bold", "job_key"]


def digits(scale: float) -> int:
    """Decimals shown for a metric displayed ×``scale`` (1 for percentages, 3 for raw values)."""
    return 1 if scale >= 100 else (2 if scale >= 10 else 3)


def fmt(value: float, scale: float) -> str:
    """``value`` in display units at the page's precision."""
    return f"{value * scale:.{digits(scale)}f}"


def seed_cell(values: "np.ndarray", scale: float) -> tuple[float | None, str]:
    """``(mean, text)`` of one cell's values over seeds, non-finite ones left
    out: the value alone for one seed, ``mean ± std`` (ddof 1) for several,
    ``(None, "")`` for none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None, ""
    if len(values) == 1:
        return float(values[0]), fmt(values[0], scale)
    return float(values.mean()), f"{fmt(values.mean(), scale)} ± {fmt(values.std(ddof=1), scale)}"


def bold(text: str) -> str:
    return f"**{text}**" if text else text


def slug(text: str) -> str:
    """A file-name-safe version of a component name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def job_key(row: Any) -> tuple:
    return (row["suite"], row["model"], row["dataset"], row["method"], row["config_hash"])


def markdown_table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A GitHub Markdown table (pipes in cells escaped), as lines. ``align`` has
    one letter per column (``l`` / ``r``); default: the first column left, the
    others (numbers) right."""
    align = align or "l" + "r" * (len(header) - 1)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|", *(line(r) for r in rows)]




def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes without time-dependent metadata; closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Page:
    """One suite's page while it is rendered."""

    suite: Any
    rows: pd.DataFrame
    results_dir: Path
    n_boot: int
    registry: Any
    warn: Any = print
    footnotes: dict[str, int] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)
    _scores: dict[tuple, pd.DataFrame | None] = field(default_factory=dict)
    #: ``(path, reason)`` of the scores files that could not be read (the page footnotes them).
    unreadable_scores: list[tuple[Path, str]] = field(default_factory=list)
    #: ``(model, dataset, method) → {seed (None: unknown) → why}`` for jobs whose
    #: results file could not be read: their cells count them as missing seeds.
    lost: dict[tuple[str, str, str], dict[int | None, str]] = field(default_factory=dict)
    _recorded: set[tuple[str, str, str]] = field(default_factory=set)
    _diagnostics: dict[str, list[str]] = field(default_factory=dict)

    # ------------------------------------------------------------- selections
    @property
    def ok(self) -> pd.DataFrame:
        """Metric rows of jobs that ran (status ``ok``, a metric named)."""
        return self.rows[(self.rows["status"] == "ok") & self.rows["metric"].notna()]

    @property
    def problems(self) -> pd.DataFrame:
        """Rows of skipped and failed jobs or metrics."""
        return self.rows[self.rows["status"] != "ok"]

    def metric(self, name: str) -> MetricSpec:
        return self.registry.suite_metric(self.suite, name)

    # -------------------------------------------------------------- footnotes
    def note(self, text: str) -> str:
        """A footnote mark for ``text`` (the same text gets the same number)."""
        if text not in self.footnotes:
            self.footnotes[text] = len(self.footnotes) + 1
        return f"[^{self.footnotes[text]}]"

    def _spec(self, kind: str, name: str):
        try:
            return self.registry.get(kind, name)
        except Exception:  # a configured dataset name, or a plugin no longer installed
            return None

    def method_label(self, method: str) -> str:
        """The method's name, with a footnote listing its declared deviations
        and the diagnostics its jobs recorded."""
        parts = []
        spec = self._spec("methods", method)
        for text in getattr(spec, "deviations", ()) or ():
            parts.append(f"deviation: {text}")
        diag = self.diagnostics(method)
        if diag:
            parts.append("diagnostics: " + "; ".join(diag))
        return f"{method}{self.note(f'`{method}`: ' + ' '.join(p if p.endswith('.') else p + '.' for p in parts))}" if parts else method

    def groups(self) -> "Iterator[tuple[str, str, pd.DataFrame]]":
        """``(model, dataset, ok rows)`` for every model × dataset pair that has
        results, models then datasets in sorted order: the sections of a page."""
        ok = self.ok
        for model in sorted(self.rows["model"].dropna().unique()):
            for dataset in sorted(self.rows.loc[self.rows["model"] == model, "dataset"].dropna().unique()):
                rows = ok[(ok["model"] == model) & (ok["dataset"] == dataset)]
                if not rows.empty:
                    yield model, dataset, rows

    def group_heading(self, model: str, dataset: str) -> str:
        """``## model `m` on `dataset` `` with both footnotes, the heading of a :meth:`groups` section."""
        return f"{self.model_heading(model)} on `{self.dataset_label(dataset)}`".replace("### ", "## ", 1)

    def not_run(self) -> list[str]:
        """The ``## Not run`` section: jobs skipped or failed as a whole, the reason in a footnote."""
        problems = self.problems[self.problems["metric"].isna()]
        if problems.empty:
            return []
        rows = [
            [p["model"], p["dataset"], p["method"], str(p["seed"]),
             str(p["status"]) + self.note(f"{p['status']}: {(p['error'] or '').splitlines()[0] if isinstance(p['error'], str) else ''}")]
            for _, p in problems.sort_values(["model", "dataset", "method", "seed"]).iterrows()
        ]
        return ["## Not run", "", *markdown_table(["model", "dataset", "method", "seed", "status"], rows, align="lllll"), ""]

    def dataset_label(self, dataset: str) -> str:
        spec = self._spec("datasets", dataset)
        devs = getattr(spec, "deviations", ()) or ()
        return f"{dataset}{self.note(f'dataset `{dataset}`: ' + ' '.join(devs))}" if devs else dataset

    def model_heading(self, model: str) -> str:
        spec = self._spec("models", model)
        devs = getattr(spec, "deviations", ()) or ()
        return f"### model `{model}`" + (self.note(f"model `{model}`: " + " ".join(devs)) if devs else "")

    def diagnostics(self, method: str) -> list[str]:
        """``"<model> / <dataset>, seed s: key value, …"`` per job of ``method`` that recorded any."""
        if method not in self._diagnostics:
            self._diagnostics[method] = self._read_diagnostics(method)
        return self._diagnostics[method]

    def _read_diagnostics(self, method: str) -> list[str]:
        if "diagnostics" not in self.rows:
            return []
        jobs = self.rows[(self.rows["method"] == method) & self.rows["diagnostics"].notna()]
        jobs = jobs.drop_duplicates(["model", "dataset", "seed"]).sort_values(["model", "dataset", "seed"])
        out = []
        for _, job in jobs.iterrows():
            try:
                values = json.loads(job["diagnostics"])
            except (TypeError, ValueError):
                continue
            if not isinstance(values, dict) or not values:
                continue
            shown = ", ".join(f"{k.replace('_', ' ')} {_short(v)}" for k, v in sorted(values.items()))
            out.append(f"{job['model']} / {job['dataset']}, seed {job['seed']}: {shown}")
        return out

    # ------------------------------------------------------------------- data
    def scores(self, job: Any, columns: tuple[str, ...] | None = None) -> pd.DataFrame | None:
        """The per-sample outputs of the job a result row belongs to (None when
        the job stored none; an unreadable file is warned about and footnoted).
        ``columns`` reads only those (the ones the file has)."""
        key = (*job_key(job), columns)
        if key not in self._scores:
            from robustbench_x.results import ResultStore

            path = ResultStore(self.results_dir).job_dir("scores", *key[:4]) / f"part-{key[4]}.parquet"
            self._scores[key] = None
            if path.exists() and path not in {p for p, _ in self.unreadable_scores}:
                try:
                    import pyarrow.parquet as pq

                    names = None if columns is None else [c for c in columns if c in pq.read_schema(path).names]
                    frame = pq.read_table(path, columns=names).to_pandas()
                    self._scores[key] = frame.astype({c: object for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})
                except Exception as exc:  # a truncated or foreign file: skip it, say so
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    self.warn(f"unreadable per-sample outputs {path} ({reason}); the cells that need them get no interval or mark")
                    self.unreadable_scores.append((path, reason))
        return self._scores[key]

    def arrays(self, job: Any):
        """The extra per-sample arrays (``ev.arrays``: maps, adversarial inputs)
        of the job a result row belongs to, as a read-only
        :class:`~robustbench_x.evaluation.ArrayStore` (``names()``, ``load(name)``)."""
        from robustbench_x.evaluation import ArrayStore
        from robustbench_x.results import ResultStore

        key = job_key(job)
        return ArrayStore(ResultStore(self.results_dir).job_dir("arrays", *key[:4]) / key[4])

    def image(self, name: str, data: bytes, alt: str) -> list[str]:
        """Add a PNG next to the page; returns its Markdown (a relative link)."""
        self.images[name] = data
        return [f"![{alt}]({name})", ""]

    def figure(self, name: str, alt: str, data: Any, draw: Callable[[], Any]) -> list[str]:
        """Add the PNG of ``draw()`` (a matplotlib figure) drawn from ``data``
        (JSON-able, arrays allowed), cached under ``$RBX_CACHE_DIR/figures`` by
        the content of ``data``, the name, matplotlib's version and the source
        of the module that defines ``draw``: an unchanged store re-renders
        without importing matplotlib."""
        from importlib.metadata import version

        # The drawing code is part of the key: editing the module that draws redraws.
        source = Path(getattr(sys.modules.get(draw.__module__), "__file__", "") or "")
        code = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else draw.__module__
        blob = json.dumps([name, alt, version("matplotlib"), code, data], default=_plain, sort_keys=True).encode()
        # Sealed with a manifest (sizes, SHA-256): a damaged PNG is redrawn, never published.
        png = cached_bytes(cache_root() / "figures" / f"{hashlib.sha256(blob).hexdigest()}.png", lambda: png_bytes(draw()))
        return self.image(name, png, alt)

    def record(self, table: str, row: str, column: str, value: float, scale: float) -> None:
        """Register the value behind a cell (display units) for ``rbx leaderboard --check``."""
        if value is None or not np.isfinite(value) or (table, row, column) in self._recorded:
            return
        self._recorded.add((table, row, column))
        self.cells.append({"table": table, "row": row, "column": column, "value": round(float(value) * scale, 10), "digits": digits(scale)})


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot key a figure on {type(value).__name__}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
