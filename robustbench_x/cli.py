"""The ``rbx`` command line (typer).

Exit codes: 0 every job ok; 1 some job failed (the others are still written);
2 bad usage or configuration (the message names the file, key and fix).
No traceback reaches the user unless ``--debug``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from robustbench_x import __version__
from robustbench_x.errors import RbxError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="robustbench_x: evaluate vision models out of distribution.")
datasets_app = typer.Typer(no_args_is_help=True, help="Prepare, verify and build datasets.")
app.add_typer(datasets_app, name="datasets")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect, verify and clear the cache ($RBX_CACHE_DIR): features, fitted state, model weights.")
app.add_typer(cache_app, name="cache")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
STATE = {"debug": False, "quiet": False}
#: numpy's legacy global seed (``np.random.seed``, which a run also sets) takes 32 bits.
MAX_SEED = 2**32
#: Fewer resamples leave a 95 % percentile interval nothing beyond its ends (and the
#: pages need at least 10 defined ones); more would only cost memory and time.
MIN_BOOTSTRAP, MAX_BOOTSTRAP = 20, 100_000

KIND_NAMES = ["methods", "datasets", "metrics", "models", "suites", "executors"]


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return items or None


#: Flags that belong to ``rbx`` itself but are accepted after the subcommand as
#: well (``rbx run --suite ood --quiet``), where users and the README put them.
GLOBAL_FLAGS = ("--quiet", "-q", "--debug")


@app.callback()
def main_callback(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also accepted after the command)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or log lines (also accepted after the command)."),
) -> None:
    STATE["debug"] = debug or os.environ.get("RBX_DEBUG") == "1"
    STATE["quiet"] = quiet


@app.command()
def run(
    suite: str = typer.Option(..., "--suite", help="Suite to run (rbx list suites), or 'all'."),
    models: Optional[list[str]] = typer.Option(None, "--models", callback=lambda v: _names(v, "--models"), help="Models (comma-separated or repeated). Default: built-in and configured models."),
    datasets: Optional[list[str]] = typer.Option(None, "--datasets", callback=lambda v: _names(v, "--datasets"), help="Datasets. Default: built-in and configured datasets that can serve the suite."),
    methods: Optional[list[str]] = typer.Option(None, "--methods", callback=lambda v: _names(v, "--methods"), help="Methods. Default: every method producing what the suite scores."),
    seeds: Optional[list[str]] = typer.Option(None, "--seeds", callback=lambda v: _seed_list(v), help="Seeds: integers from 0 to 2**32 - 1, comma-separated or repeated; a repeated seed runs once. Default: 0."),
    executor: str = typer.Option("local", "--executor", help="Executor (rbx list executors)."),
    devices: Optional[list[str]] = typer.Option(None, "--devices", callback=lambda v: _names(v, "--devices"), help="GPU ids for the local executor."),
    workers: int = typer.Option(1, "--workers", min=1, help="CPU worker processes when no GPU is visible (at least 1)."),
    job_timeout: Optional[float] = typer.Option(
        None, "--job-timeout", callback=lambda v: _positive_seconds(v),
        help="Seconds (positive) a job may run, building its model and dataset included, before its worker is killed and the job marked failed (local executor).",
    ),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster HOST:PORT (default $RAY_ADDRESS; 'local' starts one)."),
    ray_gpus: Optional[float] = typer.Option(None, "--ray-gpus", help="GPUs per Ray task (default: 1 if the cluster has GPUs, else 0)."),
    out_dir: Path = typer.Option(Path("rbx-results"), "--out", help="Result store directory."),
    config: Optional[Path] = typer.Option(None, "--config", help="datasets.yaml (default: $RBX_CONFIG, then ./datasets.yaml)."),
    force: bool = typer.Option(False, "--force", help="Recompute jobs that already have results and refit their methods' state (temperatures, trained heads); cached features are reused."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Plan every compatible (model, dataset, method) job of a suite and run it.

    ``--suite all`` runs every registered suite that has something to run with
    the current models and datasets.
    """
    from robustbench_x.config import load_config
    from robustbench_x.executors import build_executor
    from robustbench_x.preflight import check_cache_dir, check_models, check_out_dir, open_datasets
    from robustbench_x.results import ResultStore
    from robustbench_x.registry import get_registry

    _check_format(fmt)
    seed_list = seeds or [0]
    registry = get_registry()
    # an unknown name, or an option the executor would ignore, is a usage error before any work, even when nothing is left to run
    _check_executor_options(registry, registry.get("executors", executor), workers=workers if workers != 1 else None, devices=devices,
                            job_timeout=job_timeout, ray_address=ray_address, ray_gpus=ray_gpus)
    if devices and executor == "local":
        from robustbench_x.executors.local import check_devices

        check_devices(_split(devices))
    cfg = load_config(config, registry)
    opened: dict = {}
    for note in open_datasets(registry, cfg, _split(datasets), opened):
        err.print(f"warning: {note}", markup=False, highlight=False, style="yellow")
    names = registry.names("suites") if suite == "all" else [suite]
    plans = []
    for name in names:
        plan = _plan(registry, cfg, name, models, datasets, methods, seed_list, quiet_empty=suite == "all", opened=opened)
        if plan is not None:
            plans.append(plan)
    if not plans:
        raise UsageError("no suite has anything to run with the configured models and datasets. See `rbx list`.")
    check_out_dir(out_dir)
    check_cache_dir()
    store = ResultStore(out_dir)
    check_models(registry, cfg, plans, pending=lambda job: force or not store.done(job), opened=opened)
    built: list = []

    def ex():  # built on first use: a finished store never imports torch or starts a cluster
        if not built:
            built.append(build_executor(registry, executor, workers=workers, devices=_split(devices), job_timeout=job_timeout, ray_address=ray_address, ray_gpus=ray_gpus))
        return built[0]

    summaries = [_run_plan(plan, ex, cfg, out_dir, force, fmt) for plan in plans]
    if fmt == "json":
        print(json.dumps(summaries[0] if suite != "all" else summaries, indent=2))
    raise typer.Exit(1 if any(s["failed"] for s in summaries) else 0)


def _check_executor_options(registry, spec, **given) -> None:
    if spec.options is None:
        return
    for option, value in given.items():
        if value is not None and option not in spec.options:
            flag = "--" + option.replace("_", "-")
            readers = [s.name for s in registry.specs("executors") if s.options and option in s.options]
            use = " or ".join(f"--executor {name}" for name in readers) or "another executor"
            raise UsageError(f"{flag} is not read by the '{spec.name}' executor, so it would be ignored.\n  fix: use {use}, or drop {flag}")


def _names(values: Optional[list[str]], flag: str) -> Optional[list[str]]:
    """An empty item (``msp,,energy``, or ``--methods "$EMPTY"``) is a usage error: dropping it
    silently would turn an empty list into "the default", every method."""
    if values is not None and any(not item.strip() for value in values for item in value.split(",")):
        raise typer.BadParameter(f"empty item in {','.join(values)!r}; write names as a,b,c", param_hint=f"'{flag}'")
    return values


def _seed_list(values: Optional[list[str]]) -> list[int] | None:
    """``--seeds 0,1 --seeds 2`` → [0, 1, 2]; a repeated seed runs once (a note says so)."""
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(",")]
    if any(not item for item in items):
        raise typer.BadParameter(f"empty item in {','.join(values)!r}; write seeds as 0,1,2", param_hint="'--seeds'")
    try:
        seeds = [int(item) for item in items]
    except ValueError:
        raise typer.BadParameter(f"seeds are integers, got {','.join(values)!r}", param_hint="'--seeds'") from None
    if any(seed < 0 for seed in seeds):
        raise typer.BadParameter(f"seeds are non-negative (numpy and torch refuse negative seeds), got {','.join(values)!r}", param_hint="'--seeds'")
    if any(seed >= MAX_SEED for seed in seeds):
        # numpy's legacy global seed takes 32 bits: a larger seed would repeat a smaller one's run under its own name
        raise typer.BadParameter(f"seeds are below 2**32 = {MAX_SEED} (numpy's seed range), got {','.join(values)!r}", param_hint="'--seeds'")
    unique = list(dict.fromkeys(seeds))
    if len(unique) < len(seeds):
        err.print(f"note: --seeds repeats a seed; running seeds {','.join(map(str, unique))} once each", markup=False, highlight=False)
    return unique


def _positive_seconds(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a positive number of seconds, got {value:g}; omit it for no limit", param_hint="'--job-timeout'")
    return value


def _plan(registry, cfg, name, models, datasets, methods, seeds, quiet_empty: bool, opened: dict | None = None):
    from robustbench_x.errors import ConfigError
    from robustbench_x.plan import make_plan
    from robustbench_x.preflight import check_methods

    try:
        plan = make_plan(registry, cfg, name, models=_split(models), datasets=_split(datasets), methods=_split(methods), seeds=seeds)
    except ConfigError:
        raise
    except UsageError:
        if quiet_empty:
            return None
        raise
    plan = check_methods(registry, plan, opened or {})
    if not plan.jobs:
        excluded = "".join(f"\n  dataset '{d}' not evaluated: {why}" for d, why in plan.excluded.items())
        if quiet_empty:
            if not STATE["quiet"]:
                err.print(f"suite '{name}': nothing to run with the configured models and datasets{excluded}", markup=False)
            return None
        raise UsageError(f"suite '{name}' has nothing to run: no dataset or method qualifies.{excluded}\n  fix: see `rbx list datasets` and `rbx list methods`")
    if not plan.runnable and not quiet_empty and (models or datasets):
        # a model and dataset named together that cannot run at all (a label-space or capability mismatch):
        # say why, instead of "0 ok, N skipped", exit 0. Methods alone keep their skipped rows (a missing
        # optional package is recorded, with its install hint, for the page).
        reasons = sorted({j.skip_reason for j in plan.skipped})
        # a reason that says how to run it ("…; to run it, <fix>"), the same for every job: that is the fix
        fixes = {r.partition("; to run it, ")[2] for r in reasons}
        fix = fixes.pop() if len(fixes) == 1 and "" not in fixes else None
        shown = "".join(f"\n  {sum(j.skip_reason == r for j in plan.skipped)} job(s): {r.partition('; to run it, ')[0] if fix else r}" for r in reasons[:5])
        raise UsageError(f"suite '{name}': every job of the models and datasets named is skipped:{shown}\n"
                         f"  fix: {fix or 'name a model and dataset that fit each other (label space, capabilities; `rbx list capabilities`)'}")
    return plan


def _run_plan(plan, executor, cfg, out_dir: Path, force: bool, fmt: str) -> dict:
    from robustbench_x.results import ResultStore

    suite = plan.suite
    started = time.time()
    if fmt != "json":
        for dataset, why in plan.excluded.items():
            err.print(f"{suite}: dataset '{dataset}' not evaluated: {why}", markup=False, highlight=False, style="yellow")
    store = ResultStore(out_dir)
    if store.clean_temporary() and fmt != "json" and not STATE["quiet"]:
        err.print(f"{suite}: removed temporary files of killed writers under {out_dir}", markup=False, highlight=False)
    if not force and all(store.done(j) for j in plan.runnable) and all(store.path("results", j).exists() for j in plan.skipped):
        # Nothing to do, decided from file names: no runner, torch or pandas imported.
        return _summary(plan, out_dir, started, {"cached": len(plan.runnable)}, [], fmt)
    from robustbench_x.runner import RunOptions, write_skipped

    ex = executor()
    for job in plan.skipped:
        write_skipped(job, out_dir)
    options = RunOptions(out=str(out_dir), force=force, refit_before=time.time() if force else None, config_file=str(cfg.path) if cfg.path else None)
    runnable = plan.runnable

    def log(message: str) -> None:
        if not STATE["quiet"] and fmt == "table":
            err.log(message)

    finished: dict[str, int] = {}

    def count(status: str) -> None:
        finished[status] = finished.get(status, 0) + 1

    try:
        if STATE["quiet"] or fmt == "json":
            outcomes = ex.run(plan.groups(), options, on_job=lambda job, status: count(status), log=log)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err) as progress:
                task = progress.add_task(f"{suite}: {len(runnable)} jobs", total=len(runnable))

                def on_job(job, status: str) -> None:
                    count(status)
                    progress.update(task, advance=1, description=f"{suite}: {job.model.name} × {job.dataset.name} × {job.method}")

                outcomes = ex.run(plan.groups(), options, on_job=on_job, log=lambda m: progress.console.log(m))
    except KeyboardInterrupt:
        # The jobs that finished are in the store; the run's record says so, and that it stopped.
        if finished.get("ok") or finished.get("failed"):
            summary = {"suite": suite, "out": str(out_dir), "jobs": len(plan.jobs), "interrupted": True,
                       **{k: finished.get(k, 0) for k in ("ok", "cached", "failed")},
                       "duration_s": round(time.time() - started, 2)}
            _write_manifest(out_dir, suite, plan, summary)
        raise
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return _summary(plan, out_dir, started, counts, [o for o in outcomes if o.status == "failed"], fmt)


def _summary(plan, out_dir: Path, started: float, counts: dict[str, int], failed: list, fmt: str) -> dict:
    suite = plan.suite
    summary = {
        "suite": suite,
        "out": str(out_dir),
        "jobs": len(plan.jobs),
        "ok": counts.get("ok", 0),
        "cached": counts.get("cached", 0),
        "failed": len(failed),
        "skipped": len(plan.skipped),
        "duration_s": round(time.time() - started, 2),
        "failures": [{"job": "/".join(map(str, o.key)), "error": o.error} for o in failed],
        "skipped_jobs": [{"job": "/".join(map(str, j.key)), "reason": j.skip_reason} for j in plan.skipped],
        "excluded_datasets": [{"dataset": d, "reason": why} for d, why in plan.excluded.items()],
    }
    if summary["ok"] or summary["failed"]:  # a run that changed nothing leaves the store untouched
        _write_manifest(out_dir, suite, plan, summary)
    if fmt != "json":
        out.print(
            f"[bold]{suite}[/bold]: {summary['ok']} ok, {summary['cached']} already done, {summary['failed']} failed, "
            f"{summary['skipped']} skipped in {summary['duration_s']} s → {out_dir}"
        )
        for f in summary["failures"]:
            out.print(f"failed {f['job']}: {f['error'].splitlines()[0] if f['error'] else ''}", markup=False, style="red")
        if summary["skipped"] and not STATE["quiet"]:
            for reason in sorted({j.skip_reason for j in plan.skipped})[:5]:
                out.print(f"skipped {sum(j.skip_reason == reason for j in plan.skipped)} job(s): {reason}", markup=False, style="yellow")
    return summary


def _write_manifest(out_dir: Path, suite: str, plan, summary: dict) -> None:
    import platform

    from robustbench_x.files import atomic_write
    from robustbench_x.registry import get_registry

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    registry = get_registry()
    manifest = {
        "rbx_version": __version__,
        "python": platform.python_version(),
        "created_at": stamp,
        "argv": sys.argv[1:],
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "status": p.status} for p in registry.plugins],
        "plan": [{"job": "/".join(map(str, j.key)), "config_hash": j.config_hash, "skip_reason": j.skip_reason} for j in plan.jobs],
        "summary": summary,
    }
    atomic_write(out_dir / "runs" / f"{stamp}-{suite}.json", json.dumps(manifest, indent=2, default=str))


@app.command("list")
def list_cmd(
    kind: Optional[str] = typer.Argument(None, help="methods | datasets | metrics | models | suites | executors | capabilities (default: all but capabilities)"),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """List registered components, or the capability tokens (never imports torch)."""
    from dataclasses import asdict

    from robustbench_x.registry import get_registry

    _check_format(fmt)
    kinds = KIND_NAMES if kind is None else [kind]
    for k in kinds:
        if k not in KIND_NAMES + ["capabilities"]:
            from robustbench_x.errors import UnknownComponent

            raise UsageError(str(UnknownComponent("kind", k, KIND_NAMES + ["capabilities"], fix="`rbx list --help`")))
    registry = get_registry()
    if kind == "capabilities":
        _list_capabilities(registry, fmt)
        return
    data = {}
    for k in kinds:
        items = []
        for name in registry.names(k):
            providers = registry.providers(k, name)
            for plugin, spec in providers:  # a name two plugins register is listed once per provider
                record = {key: (sorted(v) if isinstance(v, frozenset) else v) for key, v in asdict(spec).items()}
                record["plugin"] = plugin.label
                if len(providers) > 1:
                    record["conflict"] = f"also registered by another plugin; run it as {plugin.distribution}::{name}"
                items.append(record)
        data[k] = items
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
        return
    from rich.table import Table

    for k, items in data.items():
        table = Table(title=k, show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("details")
        table.add_column("plugin", style="dim")
        for item in items:
            conflict = f"[red]conflict:[/red] {item['conflict']}; " if "conflict" in item else ""
            table.add_row(item["name"], conflict + _describe_spec(k, item), item["plugin"])
        out.print(table)


def _list_capabilities(registry, fmt: str) -> None:
    """Every token a method may require: the core's and any a model or dataset adds, with who provides and requires it."""
    from robustbench_x.api import CAPABILITIES

    def names(kind: str, attr: str, token: str) -> list[str]:
        return [s.name for s in registry.specs(kind) if token in getattr(s, attr)]

    extra = {t for k in ("models", "datasets") for s in registry.specs(k) for t in s.provides} - set(CAPABILITIES)
    rows = [
        {"token": token, "meaning": CAPABILITIES.get(token, "(declared by a plugin)"),
         "provided_by": names("models", "provides", token) + names("datasets", "provides", token),
         "required_by": names("methods", "requires", token)}
        for token in [*CAPABILITIES, *sorted(extra)]
    ]
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="capabilities (a method requires them; a model or dataset provides them)")
    for col in ("token", "meaning", "provided by", "required by"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["token"], row["meaning"], ", ".join(row["provided_by"]) or "-", ", ".join(row["required_by"]) or "-")
    out.print(table)


def _describe_spec(kind: str, item: dict) -> str:
    if kind == "methods":
        return f"outputs {', '.join(item['outputs'])}; requires {', '.join(item['requires']) or '-'}; {item['summary']}"
    if kind == "metrics":
        arrow = "↑" if item["higher_is_better"] else "↓"
        return f"{item['kind']} {arrow} {item['summary']}"
    if kind == "models":
        keys = item.get("option_keys")
        entry = "" if keys is None else f"; entry keys {', '.join(keys)}" if keys else "; an entry takes no key but type"
        return f"{'family ' if item['family'] else ''}{item['summary']}{entry}"
    if kind == "datasets":
        what = "built-in" if item["builtin"] else f"type; keys {', '.join(item['option_keys'])}"
        return f"{what}; {item['summary']}"
    if kind == "suites":
        return f"scores '{item['method_output']}'; headline {', '.join(item['headline'])}; {item['summary']}"
    return item.get("summary", "")


@app.command()
def plugins(fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """Show every plugin: what loaded, from which distribution, what failed and why."""
    from dataclasses import asdict

    from robustbench_x.registry import get_registry

    _check_format(fmt)
    registry = get_registry()
    conflicts = [
        {"kind": kind[:-1], "name": name, "providers": [f"{r.distribution}::{name}" for r in providers]}
        for (kind, name), providers in registry.conflicts().items()
    ]
    records = []
    for p in registry.plugins:
        record = asdict(p)
        record["conflicts"] = [c for c in conflicts if any(name == c["name"] for name in p.provides.get(c["kind"] + "s", []))]
        records.append(record)
    if fmt == "json":
        print(json.dumps(records, indent=2))
        return
    from rich.table import Table

    table = Table(title="plugins (entry-point group robustbench_x)")
    for col in ("name", "distribution", "status", "provides / error"):
        table.add_column(col)
    for p in registry.plugins:
        style = {"ok": "green", "failed": "red", "disabled": "yellow"}[p.status]
        detail = p.error if p.status == "failed" else "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items()) or (f"warning: {p.warning}" if p.warning else "")
        table.add_row(p.name, p.origin, f"[{style}]{p.status}[/{style}]", detail or "")
    out.print(table)
    for c in conflicts:
        out.print(f"conflict: {c['kind']} '{c['name']}' is registered by {' and '.join(c['providers'])}; name one of these in `rbx run`", markup=False, style="red")


@app.command()
def leaderboard(
    results_dir: Path = typer.Argument(..., help="The --out directory of `rbx run`."),
    out_dir: Path = typer.Option(Path("leaderboards"), "--out", help="Where to write the pages."),
    check: bool = typer.Option(False, "--check", help="Do not write: compare the values behind the cells with the committed <suite>.cells.json files and the pages' text (numbers within the tolerance) and linked PNGs with the rendering; list what moved or differs (exit 1 if any)."),
    tolerance: float = typer.Option(0.5, "--tolerance", help="--check tolerance in units of the last displayed digit (0.5: a cell moved when it changed by more than half a displayed digit)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for 95% intervals and the paired significance marks: 20 to 100000, or 0 for none."),
) -> None:
    """Render one Markdown page per suite (plus its PNGs and <suite>.cells.json) from a result store."""
    from robustbench_x.leaderboard import check_pages, render_pages, stale_pages, write_pages

    if not tolerance >= 0:
        raise UsageError(f"--tolerance must be a number >= 0, got {tolerance}")
    if bootstrap != 0 and not MIN_BOOTSTRAP <= bootstrap <= MAX_BOOTSTRAP:
        raise UsageError(
            f"--bootstrap must be 0 (no intervals) or between {MIN_BOOTSTRAP} and {MAX_BOOTSTRAP}, got {bootstrap}; "
            f"fix: the default 1000, or 0"
        )
    if not (results_dir / "results").is_dir():
        raise UsageError(f"{results_dir} holds no results (expected {results_dir / 'results'}).\n  fix: pass the --out directory of `rbx run`")
    pages = render_pages(results_dir, n_boot=bootstrap, warn=lambda message: err.print(f"warning: {message}", markup=False, highlight=False))
    if not pages:
        raise UsageError(f"no results under {results_dir} to render (no readable results file of an installed suite).\n"
                         f"  fix: run `rbx run --suite <suite> --out {results_dir}` first")
    if check:
        problems = check_pages(pages, out_dir, tolerance)
        if problems:
            out.print("\n".join(problems), markup=False, highlight=False)
            out.print(f"{len(problems)} difference(s) between the rendered pages and {out_dir} (tolerance {tolerance:g} displayed digit)", markup=False, highlight=False)
            raise typer.Exit(1)
        out.print(f"{sum(n.endswith('.md') for n in pages)} page(s) match {out_dir} (every cell within {tolerance:g} displayed digit)", markup=False, highlight=False)
        return
    write_pages(pages, out_dir)
    out.print(f"wrote {', '.join(sorted(pages))} to {out_dir}", markup=False, highlight=False)
    for name, files in stale_pages(pages, out_dir).items():
        err.print(f"note: kept {out_dir / name}: {results_dir} has no results of suite '{name[:-3]}' (delete it with `rm {' '.join(shlex.quote(str(out_dir / f)) for f in files)}` if the suite is gone)", markup=False, highlight=False)


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="Distribution name, e.g. demo-score."),
    kind: str = typer.Option("method", "--kind", help="method | dataset | metric | model"),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create the package folder."),
) -> None:
    """Write a ready plugin package: pyproject with the entry point, a documented
    skeleton, a README and a test file that runs the conformance kit."""
    from robustbench_x.scaffold import create_plugin, validate_kind

    try:
        path = create_plugin(name, kind, directory)
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    out.print(f"created {path}\n  next: pip install -e {path} && pytest {path}/tests && rbx list {validate_kind(kind)}s", markup=False)


@datasets_app.command("build")
def datasets_build(
    name: str = typer.Argument(..., help="What to build: hgldv2"),
    gldv2_root: Path = typer.Option(..., "--gldv2-root", help="GLDv2 root holding the CSV files."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write the hierarchy Parquet files and manifest.json."),
    hierarchy_csv_dir: Optional[Path] = typer.Option(None, "--hierarchy-csv-dir", help="Use the public *_label_to_hierarchical.csv files instead of building afresh."),
    offline: bool = typer.Option(False, "--offline", help="No network: read only the on-disk cache (and --dump)."),
    dump: Optional[Path] = typer.Option(None, "--dump", help="A JSON dump of Wikimedia answers to read instead of the network."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="A YAML/CSV mapping that overrides the super-category clustering."),
) -> None:
    """Build a dataset's derived files (H-GLDv2's hierarchy from the GLDv2 release)."""
    from robustbench_x.api import load_factory
    from robustbench_x.errors import JobError

    if name != "hgldv2":
        from robustbench_x.errors import UnknownComponent

        raise UsageError(str(UnknownComponent("build target", name, ["hgldv2"], fix="`rbx datasets build --help`")))
    build = load_factory("rbx_retrieval.hgldv2:build_hgldv2_cli")
    try:
        manifest = build(gldv2_root, out_dir, hierarchy_csv_dir=hierarchy_csv_dir, offline=offline, dump=dump, mapping=mapping,
                         log=(lambda m: None) if STATE["quiet"] else err.log)
    except JobError as exc:  # the network gave up after its retries: what was fetched is cached
        err.print(f"error: {exc}", markup=False, style="red")
        raise typer.Exit(1) from None
    out.print(f"wrote {out_dir} ({manifest['mode']}, {len(manifest['supercategories'])} super-categories)", markup=False)


@datasets_app.command("build-c")
def datasets_build_c(
    source: str = typer.Option(..., "--from", help="An ImageFolder (<root>/<class>/<image>) or a dataset name from datasets.yaml (its test split)."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write <corruption>/<severity>/<class>/<image> (cifar preset: <corruption>.npy + labels.npy)."),
    corruptions: Optional[str] = typer.Option(None, "--corruptions", help="Comma-separated (default: all 19)."),
    severities: Optional[str] = typer.Option(None, "--severities", help="Comma-separated 1-5 (default: all)."),
    preset: str = typer.Option("imagenet", "--preset", help="Published parameters: imagenet (224 px), tiny (64 px) or cifar (32 px; writes CIFAR-C .npy files)."),
    resize: Optional[int] = typer.Option(None, "--resize", help="Resize the shorter side first (default: the images' own size; ImageNet-C used 256)."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Centre-crop after resizing (ImageNet-C used 224)."),
    config: Optional[Path] = typer.Option(None, "--config"),
) -> None:
    """Write a corrupted tree (ImageNet-C, Tiny-ImageNet-C or CIFAR-C layout) from any image dataset (resumable)."""
    from robustbench_x.api import load_factory

    build = load_factory("rbx_robustness.commands:build_c_command")
    result = build(source, out_dir, corruptions=corruptions, severities=severities, config=config, preset=preset, resize=resize, crop=crop,
                   log=(lambda m: None) if STATE["quiet"] else err.log)
    out.print(f"wrote {result['written']} images ({result['skipped']} already there) to {out_dir}", markup=False)


@datasets_app.command("build-p")
def datasets_build_p(
    source: str = typer.Option(..., "--from", help="An ImageFolder or a dataset name from datasets.yaml (its test split)."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write <perturbation>/<class>/<image>.mp4."),
    perturbations: Optional[str] = typer.Option(None, "--perturbations", help="Comma-separated (default: all 14)."),
    config: Optional[Path] = typer.Option(None, "--config"),
) -> None:
    """Write an ImageNet-P-layout tree of perturbation sequences (resumable)."""
    from robustbench_x.api import load_factory

    build = load_factory("rbx_robustness.commands:build_p_command")
    result = build(source, out_dir, perturbations=perturbations, config=config, log=(lambda m: None) if STATE["quiet"] else err.log)
    out.print(f"wrote {result['written']} sequences ({result['skipped']} already there) to {out_dir}", markup=False)


@datasets_app.command("verify")
def datasets_verify(
    names: Optional[list[str]] = typer.Argument(None, help="Datasets to check (default: all configured and built-in)."),
    config: Optional[Path] = typer.Option(None, "--config"),
) -> None:
    """Open every subset of each dataset, count samples and decode the first image.
    Every dataset is checked, a bad one does not stop the others; exit 1 if any
    subset could not be opened or read."""
    from robustbench_x.api import load_factory
    from robustbench_x.config import load_config
    from robustbench_x.errors import UnknownComponent
    from robustbench_x.registry import get_registry

    registry = get_registry()
    cfg = load_config(config, registry)
    builtin = [s.name for s in registry.specs("datasets") if s.builtin]
    wanted = names or builtin + list(cfg.datasets)
    for name in wanted:  # every name first: a typo is a usage error before anything is opened
        if name not in cfg.datasets and name not in builtin:
            if name in registry.names("datasets"):
                raise UsageError(f"'{name}' is a dataset type, not a dataset.\n  fix: name an entry of {cfg.file} (or add one with 'type: {name}')")
            raise UnknownComponent("dataset", name, builtin + list(cfg.datasets), fix="`rbx list datasets` and your datasets.yaml")
    problems = 0
    for name in wanted:
        try:
            if name in cfg.datasets:
                entry = cfg.datasets[name]
                spec = registry.get("datasets", entry.type)
                ds = load_factory(spec.factory)(name=name, options=entry.options, config_file=str(cfg.path))
            else:
                ds = load_factory(registry.get("datasets", name).factory)(name=name, options={}, config_file=None)
            subsets = ds.subsets()
        except (RbxError, ValueError, OSError, KeyError) as exc:  # the data's problem, said as such
            problems += 1
            err.print(f"{name}: cannot open: {exc}", markup=False, highlight=False, style="red")
            continue
        for subset in subsets:
            try:
                source = ds.samples(subset)
                if len(source) == 0:
                    raise ValueError("no samples")
                source[0]
                out.print(f"{name} {subset}: {len(source)} samples, fingerprint {ds.fingerprint(subset)}", markup=False)
            except (RbxError, ValueError, OSError, KeyError) as exc:
                problems += 1
                err.print(f"{name} {subset}: {exc}", markup=False, highlight=False, style="red")
    if problems:
        err.print(f"{problems} problem(s) found", markup=False)
        raise typer.Exit(1)


@cache_app.command("info")
def cache_info(fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """Where the cache is, its size, and its entries by kind."""
    from robustbench_x import cachedir

    _check_format(fmt)
    root = _cache_root_dir()
    kinds: dict[str, dict] = {}
    for entry in cachedir.entries(root):
        kind = kinds.setdefault(entry.category, {"entries": 0, "bytes": 0, "unverifiable": 0})
        kind["entries"] += 1
        kind["bytes"] += entry.size
        kind["unverifiable"] += not entry.verifiable
    info = {"root": str(root), "bytes": sum(k["bytes"] for k in kinds.values()), "kinds": kinds, "orphans": len(cachedir.orphans(root))}
    if fmt == "json":
        print(json.dumps(info, indent=2))
        return
    out.print(f"{root}: {cachedir.human(info['bytes'])} in {sum(k['entries'] for k in kinds.values())} entries", markup=False)
    for name, kind in kinds.items():
        note = f" ({kind['unverifiable']} without a manifest)" if kind["unverifiable"] else ""
        out.print(f"  {name}: {kind['entries']} entries, {cachedir.human(kind['bytes'])}{note}", markup=False)
    if info["orphans"]:
        out.print(f"  {info['orphans']} orphaned temporary entries (removed by `rbx cache verify` or the next run)", markup=False)


@cache_app.command("verify")
def cache_verify() -> None:
    """Check every entry against its manifest (full checksums); remove damaged
    entries and orphaned temporary ones. Exit 1 if anything was damaged."""
    from robustbench_x import cachedir

    root = _cache_root_dir()
    damaged = checked = unverifiable = 0
    for entry in cachedir.entries(root):
        if not entry.verifiable and entry.category in cachedir.SEALED:  # what a run would discard too
            damaged += 1
            out.print(f"damaged: {entry.path}: no manifest (a killed writer, or an older rbx's layout); removed (recomputed when next needed)",
                      markup=False, style="red")
            cachedir.remove(entry.path)
            continue
        if not entry.verifiable:
            unverifiable += 1
            continue
        checked += 1
        problem = cachedir.check(entry.path, full=True)
        if problem:
            damaged += 1
            out.print(f"damaged: {entry.path}: {problem}; removed (recomputed when next needed)", markup=False, style="red")
            cachedir.remove(entry.path)
    orphans = cachedir.clean_orphans(root)
    out.print(
        f"{checked} entries checked, {damaged} damaged and removed, {len(orphans)} orphaned temporary entries removed"
        + (f", {unverifiable} kept by plugins or self-checking memos (no manifest; not checked here)" if unverifiable else ""),
        markup=False,
    )
    raise typer.Exit(1 if damaged else 0)


@cache_app.command("clear")
def cache_clear(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete everything in the cache directory (recomputed when next needed)."""
    import shutil

    from robustbench_x import cachedir

    root = _cache_root_dir()
    if not root.is_dir():
        out.print(f"{root}: nothing to clear", markup=False)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"`rbx cache clear` deletes everything in {root}.\n  fix: pass --yes to confirm")
        typer.confirm(f"delete everything in {root}?", abort=True)
    freed = sum(entry.size for entry in cachedir.entries(root))
    failures: list[tuple[str, str]] = []
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            # onerror, not 3.12's onexc: Python 3.10 and 3.11 are supported
            shutil.rmtree(child, onerror=lambda _f, path, info: failures.append((path, getattr(info[1], "strerror", None) or str(info[1]))))
        else:
            try:
                child.unlink()
            except OSError as exc:
                failures.append((str(child), exc.strerror or str(exc)))
    if failures:  # what could be deleted was; say what could not, by full path
        shown = "\n  ".join(f"{path}: {why}" for path, why in failures[:5]) + (f"\n  … and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise UsageError(f"could not delete {len(failures)} cache path{'s' if len(failures) != 1 else ''}:\n  {shown}\n"
                         f"  fix: fix the permissions under {root} (or delete it by hand) and run `rbx cache clear` again")
    out.print(f"cleared {root} ({cachedir.human(freed)})", markup=False)


def _cache_root_dir() -> Path:
    from robustbench_x.cachedir import cache_root

    root = cache_root()
    if root.exists() and not root.is_dir():
        where = "$RBX_CACHE_DIR" if os.environ.get("RBX_CACHE_DIR") else "the cache directory"
        raise UsageError(f"{where} {root} is a file, not a directory.\n  fix: set RBX_CACHE_DIR to a folder")
    return root


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be 'table' or 'json', not '{fmt}'")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """Move ``--quiet`` / ``-q`` / ``--debug`` in front of the subcommand, where
    click expects them; everything after a ``--`` is left alone."""
    cut = args.index("--") if "--" in args else len(args)
    head, tail = args[:cut], args[cut:]
    flags = [a for a in head if a in GLOBAL_FLAGS]
    return flags + [a for a in head if a not in GLOBAL_FLAGS] + tail


def main() -> None:
    # Standalone mode: typer reports the usage errors of whichever click it
    # bundles itself (click's message, exit 2), so no isinstance check against an
    # installed click can miss them; only our own errors come out of app().
    try:
        app(args=_hoist_global_flags(sys.argv[1:]), prog_name="rbx")
    except SystemExit:
        raise
    except Exception as exc:
        if STATE["debug"]:
            import traceback

            traceback.print_exc()
        if isinstance(exc, RbxError):
            err.print(f"error: {exc}", markup=False, highlight=False, style="red")
            sys.exit(2)
        err.print(f"internal error: {type(exc).__name__}: {exc}\n  rerun with --debug for the traceback", markup=False, highlight=False, style="red")
        sys.exit(1)


if __name__ == "__main__":
    main()
