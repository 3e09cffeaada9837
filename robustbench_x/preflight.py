"""Checks a run makes before any work: a problem found here is exit 2 with the
file, the key and the fix, and nothing has been written to the store.

* every configured dataset the run considers is opened by its own factory (its
  root, splits and OOD folders must exist and be of the expected kind);
* the result store directory is a directory this process can write into.

Opening a dataset reads folder listings only (no image is decoded, no torch).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from robustbench_x.api import load_factory
from robustbench_x.config import Config
from robustbench_x.errors import ConfigError, UsageError


def open_datasets(registry, config: Config, names: Sequence[str] | None, opened: dict | None = None) -> list[str]:
    """Build every configured dataset among ``names`` (default: all configured).
    Returns what their factories warned (``UserWarning``), one line each, for the
    run to print once: the jobs build the datasets again and do not repeat them.
    ``opened`` (optional) receives each dataset by name, for :func:`check_methods`."""
    notes: list[str] = []
    for name in names or list(config.datasets):
        entry = config.datasets.get(name)
        if entry is None:  # a built-in dataset, or an unknown name the planner reports
            continue
        spec = registry.get("datasets", entry.type)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dataset = load_factory(spec.factory)(name=name, options=dict(entry.options), config_file=str(config.path) if config.path else None)
            if opened is not None:
                opened[name] = dataset
            for w in caught:
                if issubclass(w.category, UserWarning):
                    notes.append(f"dataset '{name}': {w.message}")
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        except ConfigError as exc:
            if exc.file:
                raise
            # a reader that knows only its own option name: say which file and entry
            key = f"datasets.{name}" + (f".{exc.key}" if exc.key and not exc.key.startswith("datasets.") else "")
            raise ConfigError(exc.message, file=config.file, key=key, fix=exc.fix) from None
        except Exception as exc:
            raise ConfigError(
                f"cannot open dataset '{name}': {type(exc).__name__}: {exc}", file=config.file, key=f"datasets.{name}",
                fix=f"correct the entry's paths and layout (`rbx datasets verify {name}` opens it and decodes a sample)",
            ) from None
        classes = getattr(dataset, "classes", None)
        if classes is not None and len(classes) == 1:
            # A model of one class gives every image the same softmax, so every score ties (AUROC 0.5) and
            # accuracy-based metrics are trivially perfect: numbers that look like answers and are none.
            raise ConfigError(
                f"dataset '{name}' has a single class ({classes[0]!r}): a model's outputs then carry no information "
                f"and every metric is trivial", file=config.file, key=f"datasets.{name}",
                fix="give its test split at least two classes (class folders), or drop the entry",
            )
    return list(dict.fromkeys(notes))


def check_out_dir(out: Path) -> None:
    """``--out`` must be a directory, or creatable, and writable; nothing is created here."""
    _check_writable_dir(out, "--out", "pass a directory (it is created if missing)")


def check_cache_dir() -> None:
    """The cache directory (``$RBX_CACHE_DIR``, else the user cache) must be a directory, or creatable,
    and writable: otherwise every job would fail on its first feature write."""
    from robustbench_x.cachedir import cache_root

    where = "$RBX_CACHE_DIR" if os.environ.get("RBX_CACHE_DIR") else "the cache directory"
    _check_writable_dir(cache_root(), where, "set RBX_CACHE_DIR to a folder you can write to (it is created if missing)")


def _check_writable_dir(path: Path, what: str, fix: str) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a directory.\n  fix: {fix}")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is a file, so the directory cannot be created.\n  fix: {fix}")
    try:  # os.access says yes to root on a read-only mount; a real write does not
        fd, probe = tempfile.mkstemp(prefix=".rbx-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot write into {existing} ({exc.strerror or exc}).\n  fix: {fix}") from None


def check_models(registry, config: Config, plans, *, pending, opened: dict | None = None) -> None:
    """Each configured model with a job to do passes its family's ``ModelSpec.check``
    (a checkpoint of another architecture or class count fails here, once, instead of
    in every job); the key it names is prefixed with the entry's ``models.<name>.``.
    A check that takes ``datasets`` gets the datasets of those jobs by name (the ones
    :func:`open_datasets` put in ``opened``; a built-in one is built here)."""
    import inspect

    from robustbench_x.api import load_factory

    jobs: dict[str, list] = {}
    for plan in plans:
        for job in plan.runnable:
            if job.model.name in config.models and pending(job):
                jobs.setdefault(job.model.name, []).append(job)
    opened = {} if opened is None else opened
    for group in jobs.values():
        ref = group[0].model
        spec = registry.get("models", ref.spec)
        if not spec.check:
            continue
        check = load_factory(spec.check)
        extra = {}
        if "datasets" in inspect.signature(check).parameters:
            for job in group:
                if job.dataset.name not in opened:
                    factory = load_factory(registry.get("datasets", job.dataset.spec).factory)
                    opened[job.dataset.name] = factory(name=job.dataset.name, options=dict(job.dataset.options), config_file=str(config.path) if config.path else None)
            extra["datasets"] = {job.dataset.name: opened[job.dataset.name] for job in group}
        try:
            check(arch=ref.arch, options=dict(ref.options), **extra)
        except ConfigError as exc:
            key = f"models.{ref.name}" + (f".{exc.key}" if exc.key else "")
            raise ConfigError(exc.message, file=exc.file or config.file, key=key, fix=exc.fix) from None


def check_methods(registry, plan, opened: dict):
    """``plan`` with the jobs whose method's ``MethodSpec.check`` finds the (opened)
    dataset unfit skipped, with its reason. A check that raises decides nothing:
    the job then meets the same problem and reports it."""
    from dataclasses import replace

    verdicts: dict[tuple[str, str], str | None] = {}
    jobs = []
    for job in plan.jobs:
        spec = registry.get("methods", job.method_ref or job.method)
        dataset = opened.get(job.dataset.name)
        if job.skip_reason is None and spec.check and dataset is not None:
            key = (job.method_ref or job.method, job.dataset.name)
            if key not in verdicts:
                try:
                    verdicts[key] = load_factory(spec.check)(params=dict(job.params), dataset=dataset)
                except Exception:  # noqa: BLE001 - the job reports it, with its context
                    verdicts[key] = None
            if verdicts[key]:
                job = replace(job, skip_reason=f"method '{job.method}' cannot run on dataset '{job.dataset.name}': {verdicts[key]}")
        jobs.append(job)
    return replace(plan, jobs=jobs)
