"""RobustBench's ``model_info`` JSON files: import the published ones, export
measured results in the same shape.

Shape (RobustBench/robustbench ``model_info/<dataset>/<threat_model>/<Model_Name>.json``
at 78fcc9e48a07a861268f295a777b975f25155964; written by ``robustbench/utils.py``
``update_json`` from the ``ModelInfo`` fields): strings ``link``, ``name``,
``authors``, ``dataset``, ``venue``, ``architecture``, ``eps`` ("8/255",
"0.5"), ``footnote``; ``additional_data`` and ``unreliable`` booleans;
``number_forward_passes`` an int; accuracies as **strings in percent with two
decimals** (``str(round(acc * 100, 2))``): ``clean_acc``, ``autoattack_acc``,
``reported`` (what the paper reported) and ``external`` (a stronger
adaptive attack; when present it is the leaderboard's ranking value, before
``autoattack_acc``).

* :func:`import_model_info` copies the files of ``<source>/model_info`` (a
  clone of the repository) or ``<source>`` (a folder laid out
  ``<dataset>/<threat_model>/<name>.json``) into
  ``<results>/robustbench/model_info/``, where the ``adversarial`` page shows
  them as *published* rows beside the measured ones (same dataset and threat
  model), each with its paper link and file.
* :func:`export_model_info` writes one file per measured (model, dataset,
  threat model, method) of a RobustBench dataset. ``autoattack_acc`` is filled
  only for ``autoattack-standard``; any other attack's robust accuracy is said
  in ``footnote`` and never stored as an AutoAttack number.

Command line: ``python -m rbx_attacks.robustbench import <source> <results>``
and ``python -m rbx_attacks.robustbench export <results> <out>``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from robustbench_x.api import atomic_write
from robustbench_x.errors import UsageError

PUBLISHED = Path("robustbench") / "model_info"
THREAT_MODELS = ("Linf", "L2")
#: The leaderboard's ranking value: the first key present (robustbench ``ACC_FIELDS``).
RANKING_KEYS = ("external", "autoattack_acc")
AUTOATTACK = "autoattack-standard"


@dataclass(frozen=True)
class Published:
    dataset: str
    threat_model: str
    key: str  # the file's stem (RobustBench's model name)
    info: dict
    file: str  # where it was imported from

    def accuracy(self, field: str) -> float | None:
        value = self.info.get(field)
        try:
            return None if value in (None, "") else float(value) / 100
        except (TypeError, ValueError):
            return None

    @property
    def ranking(self) -> tuple[str, float] | None:
        for key in RANKING_KEYS:
            if self.accuracy(key) is not None:
                return key, self.accuracy(key)
        return None


def percent(acc: float) -> str:
    """RobustBench's string form of an accuracy: percent, rounded to 2 decimals."""
    return str(round(acc * 100, 2))


def _read(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON file ({exc})\n  fix: remove it or restore it from the RobustBench repository") from None
    if not isinstance(info, dict):
        raise UsageError(f"{path}: a model_info file holds one JSON object, this one holds {type(info).__name__}")
    for key in ("clean_acc", "autoattack_acc", "external", "reported"):
        value = info.get(key)
        if value not in (None, ""):
            try:
                float(value)
            except (TypeError, ValueError):
                raise UsageError(f"{path}: key '{key}' is {value!r}, not a percentage like \"73.71\"") from None
    return info


def published_files(root: Path) -> list[tuple[str, str, Path]]:
    """``(dataset, threat model, file)`` of the model_info files under ``root`` (adversarial threat models only)."""
    out = []
    for path in sorted(root.glob("*/*/*.json")):
        dataset, threat = path.parent.parent.name, path.parent.name
        if threat in THREAT_MODELS:
            out.append((dataset, threat, path))
    return out


def import_model_info(source: str | Path, results: str | Path) -> list[Path]:
    """Copy the adversarial model_info files of ``source`` into ``results`` (see the module docstring)."""
    source = Path(source)
    root = source / "model_info" if (source / "model_info").is_dir() else source
    files = published_files(root)
    if not files:
        raise UsageError(f"no model_info files under {root}\n  fix: give a clone of RobustBench/robustbench or a folder "
                         "laid out <dataset>/<Linf|L2>/<Model_Name>.json")
    written = []
    for dataset, threat, path in files:
        info = _read(path)
        info.setdefault("rbx_source", str(path))
        target = Path(results) / PUBLISHED / dataset / threat / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps(info, indent=2, sort_keys=True) + "\n")
        written.append(target)
    return written


def load_published(results: str | Path) -> list[Published]:
    root = Path(results) / PUBLISHED
    return [Published(d, t, p.stem, info, str(info.get("rbx_source", p))) for d, t, p in published_files(root) for info in [_read(p)]]


def measured_rows(results: str | Path):
    """The adversarial suites' result rows of the store (pandas), read with pyarrow from the documented layout."""
    import pyarrow.dataset as ds

    frames = []
    for suite in ("adversarial", "adversarial-l2"):
        folder = Path(results) / "results" / f"suite={suite}"
        if folder.is_dir():
            frame = ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pandas()
            frame["suite"] = suite
            frames.append(frame)
    if not frames:
        raise UsageError(f"no adversarial results under {results}\n  fix: run `rbx run --suite adversarial --out {results}` first")
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def export_model_info(results: str | Path, out: str | Path) -> list[Path]:
    """One model_info file per measured (model, dataset, threat model, method) of a RobustBench dataset."""
    rows = measured_rows(results)
    rows = rows[(rows["status"] == "ok") & rows["metric"].notna()]
    written = []
    for (_suite, model, dataset, method), job in rows.groupby(["suite", "model", "dataset", "method"]):  # Linf and L2 apart
        diag = json.loads(job["diagnostics"].dropna().iloc[0]) if job["diagnostics"].notna().any() else {}
        bench = diag.get("protocol")
        if not bench:
            continue  # not a RobustBench dataset: no leaderboard to export to
        value = {m: float(job[(job["metric"] == m) & (job["subset"] == "id")]["value"].mean()) for m in ("clean-accuracy", "robust-accuracy")}
        info = {"name": model, "dataset": bench, "eps": diag.get("eps_label"), "clean_acc": percent(value["clean-accuracy"]),
                "additional_data": None, "number_forward_passes": 1, "link": None, "authors": None, "venue": None, "architecture": None,
                "reported": None}
        if method == AUTOATTACK:
            info["autoattack_acc"] = percent(value["robust-accuracy"])
            seeds = sorted(job["seed"].unique().tolist())
            info["footnote"] = ("measured with robustbench_x, AutoAttack standard via pyautoattack, "
                                + (f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {seeds}"))
        else:
            info["footnote"] = (f"measured with robustbench_x: robust accuracy {percent(value['robust-accuracy'])}% under {method} "
                                f"({diag.get('attacks', method)}), not AutoAttack")
        name = f"{model}__{method}".replace("/", "_").replace(":", "_")
        target = Path(out) / bench / diag.get("norm", "Linf") / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps({k: v for k, v in info.items() if v is not None}, indent=2) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m rbx_attacks.robustbench import <source> <results> | export <results> <out>"
    if len(args) != 3 or args[0] not in ("import", "export"):
        print(usage, file=sys.stderr)
        return 2
    try:
        files = import_model_info(args[1], args[2]) if args[0] == "import" else export_model_info(args[1], args[2])
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args[0]}ed {len(files)} model_info file{'s' if len(files) != 1 else ''} → {args[2]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
