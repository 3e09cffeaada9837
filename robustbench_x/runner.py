"""The runner: executes one job group (model × dataset × seed) end to end.

The backbone runs once per subset through the :class:`FeatureCache`; each
method then fits and scores from the cached outputs (or, when it asked for
them, the model and a loader). A job's failure is caught and written as a
``failed`` row with its cause; the other jobs of the group carry on.

Executors call :func:`run_group` only; it takes and returns plain data, so the
same function runs in this process, in a spawned worker or in a Ray task.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_x import __version__
from robustbench_x.api import Context, Dataset, Model, Outputs, load_factory
from robustbench_x.cache import FeatureCache, compute_outputs
from robustbench_x.cachedir import DiskFull, cache_root, clean_orphans, is_disk_full
from robustbench_x.errors import JobError, PluginError
from robustbench_x.evaluation import ArrayStore, Evaluation, evaluate_classification
from robustbench_x.plan import Group, Job
from robustbench_x.registry import QUALIFIER, get_registry
from robustbench_x.results import ResultStore, scores_table


@dataclass(frozen=True)
class RunOptions:
    out: str
    force: bool = False
    #: With ``--force``, the run's start: fitted method state sealed before it is
    #: refitted (its cache key covers parameters, weights and data, not the code).
    refit_before: float | None = None
    config_file: str | None = None
    device: str = "cpu"
    batch_size: int = 256
    num_workers: int = 0


@dataclass
class Outcome:
    """What a group reports back to the executor: small and picklable."""

    key: tuple
    status: str  # ok | failed | cached
    error: str | None = None
    duration_s: float = 0.0


class RunContext(Context):
    def __init__(self, job: Job, model: Model, dataset: Dataset, cache: FeatureCache, options: RunOptions, log: Callable[[str], None]) -> None:
        self.job, self.model, self.dataset, self.cache, self.options = job, model, dataset, cache, options
        self.seed = job.seed
        self.num_classes = model.num_classes
        self._log = log
        self.diagnostics: dict[str, float | int | str] = {}
        self._captures: list[dict[str, float | int | str]] = []

    def outputs(self, subset: str) -> Outputs:
        outputs = self.cache.get(
            self.model,
            self.dataset,
            subset,
            lambda directory: compute_outputs(
                self.model, self.dataset, subset, directory, batch_size=self.options.batch_size, device=self.options.device, num_workers=self.options.num_workers
            ),
        )
        mask = self.dataset.class_mask(subset) if hasattr(self.dataset, "class_mask") else None
        if mask is not None:
            # Evaluated over a subset of the classes (ImageNet-A/-R): the others cannot be predicted.
            logits = np.where(np.asarray(mask, dtype=bool)[None, :], np.asarray(outputs.logits), -np.inf).astype(np.float32)
            outputs = Outputs(logits=logits, features=outputs.features, labels=outputs.labels, sample_ids=outputs.sample_ids)
        # a partial ImageNet-A/-R tree is scored over the official classes: say so in the results
        note = self.dataset.incomplete(subset) if hasattr(self.dataset, "incomplete") else None
        if note and type(self).record is not Context.record:
            self.record(f"incomplete:{subset}", note)
        return outputs

    def loader(self, subset: str, batch_size: int = 128) -> Iterator[tuple[Any, Any]]:
        import torch
        from torch.utils.data import DataLoader

        from robustbench_x.cache import _Transformed

        data = DataLoader(_Transformed(self.dataset.samples(subset), self.model.transform()), batch_size=batch_size, shuffle=False, num_workers=self.options.num_workers)
        for x, y, _ in data:
            yield x.to(self.options.device), torch.as_tensor(y).to(self.options.device)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def fitted(self, build: Callable[[], dict[str, np.ndarray]], *, shared: bool = False, **key: Any) -> dict[str, np.ndarray]:
        from safetensors.numpy import save_file

        from robustbench_x.cachedir import cached_file

        subsets = [s for s in ("train", "val") if s in self.dataset.subsets()]
        if shared and "method" not in key:
            raise TypeError("ctx.fitted(shared=True) needs method=<a name for the shared state> in its key")
        owner = str(key["method"]) if shared else self.job.method
        payload = {
            "method": owner,
            # The plugin and its version: two labs' `fitm`, or one lab's before and after a fix, never share a state.
            "plugin": self.job.plugin,
            "params": None if shared else self.job.params,
            "seed": self.seed,
            "model": self.model.fingerprint(),
            "data": {s: self.dataset.fingerprint(s) for s in subsets},
            "key": key,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
        fitted: dict[str, np.ndarray] = {}
        # Diagnostics recorded while building belong to the state: saved with it, replayed on reuse.
        captured: dict[str, float | int | str] = {}

        def write(tmp: Path) -> None:
            self._captures.append(captured)
            try:
                state = build()
            finally:
                self._captures.remove(captured)
            fitted.update({k: np.ascontiguousarray(np.asarray(v)) for k, v in state.items()})
            save_file(fitted, str(tmp), metadata={_DIAGNOSTICS_KEY: json.dumps(captured, sort_keys=True)})

        file = f"{owner.replace(QUALIFIER, '--')}-{digest}.safetensors"
        path, built = cached_file(cache_root() / "fitted" / file, write, stale_before=self.options.refit_before)
        if built:
            self.log(f"{self.job.method}: fitted state saved {path.name}")
            return fitted
        self.log(f"{self.job.method}: reused fitted state {path.name}")
        arrays, recorded = _load_fitted(path)
        for name, value in recorded.items():  # what the build recorded, as if it had run again
            self.record(name, value)
        return arrays

    def log(self, message: str) -> None:
        self._log(message)

    def record(self, key: str, value: float | int | str) -> None:
        value = diagnostic_value(self.job.method, key, value)
        self.diagnostics[key] = value
        for captured in self._captures:
            captured[key] = value


_DIAGNOSTICS_KEY = "rbx_diagnostics"


def diagnostic_value(method: str, key: Any, value: Any) -> float | int | str:
    """A diagnostic as a JSON scalar; numpy scalars are unwrapped, non-finite floats kept as text."""
    if not isinstance(key, str) or not key:
        raise PluginError(f"method '{method}' recorded a diagnostic under {key!r}; the key must be a non-empty string")
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise PluginError(f"method '{method}' recorded diagnostic '{key}' = {value!r} ({type(value).__name__}); record a number or a string")
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    return value


def _load_fitted(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
        metadata = fh.metadata() or {}
    return arrays, json.loads(metadata.get(_DIAGNOSTICS_KEY, "{}"))


# ------------------------------------------------------------------ building


def build_dataset(job_or_group, options: RunOptions) -> Dataset:
    ref = job_or_group.dataset
    spec = get_registry().get("datasets", ref.spec)
    with warnings.catch_warnings():
        # the run printed the factory's warnings once, before any work (preflight.open_datasets); every group would repeat them raw
        warnings.simplefilter("ignore", UserWarning)
        return load_factory(spec.factory)(name=ref.name, options=dict(ref.options), config_file=options.config_file)


def build_model(group: Group, dataset: Dataset, log: Callable[[str], None]) -> Model:
    ref = group.model
    spec = get_registry().get("models", ref.spec)
    return load_factory(spec.factory)(arch=ref.arch, options=dict(ref.options), dataset=dataset, seed=group.seed, log=log)


# ------------------------------------------------------------------ a group


def run_group(
    group: Group,
    options: RunOptions,
    on_job: Callable[[Job, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_start: Callable[[Job], None] | None = None,
) -> list[Outcome]:
    """Run every pending job of ``group``; write one result file per job.

    ``on_start(job)`` is called before a job runs (a supervising executor uses
    it to know which job a dead or hung worker was running), ``on_job(job,
    status)`` after it is written.
    """
    registry = get_registry()
    store = ResultStore(options.out)
    say = log or (lambda message: None)
    outcomes: list[Outcome] = []
    pending = []
    for job in group.jobs:
        if not options.force and store.done(job):
            outcomes.append(Outcome(job.key, "cached"))
            if on_job:
                on_job(job, "cached")
        else:
            pending.append(job)
    if not pending:
        return outcomes
    _clean_cache_once()
    _seed_everything(group.seed)
    try:
        dataset = build_dataset(group, options)
        model = build_model(group, dataset, say)
        try:
            model.module.to(options.device)
        except NotImplementedError:  # a model without a torch module (precomputed outputs, say)
            pass
    except BaseException as exc:  # a plugin's SystemExit must not end the run: only Ctrl-C does
        if isinstance(exc, KeyboardInterrupt):
            raise
        cause = _describe(exc)
        for job in pending:
            error = _write_failed(store, job, f"could not build model or dataset: {cause}")
            outcomes.append(Outcome(job.key, "failed", error))
            if on_job:
                on_job(job, "failed")
        return outcomes
    cache = FeatureCache()
    suite = registry.get("suites", group.jobs[0].suite)
    metric_specs = [registry.suite_metric(suite, m) for m in suite.metrics]
    for job in pending:
        started = time.perf_counter()
        if on_start:
            on_start(job)
        try:
            rows, scores = _run_job(job, model, dataset, cache, options, suite, metric_specs, say)
            duration = time.perf_counter() - started
            for row in rows:
                row["duration_s"] = duration
            store.write(job, rows, scores)
        except BaseException as exc:  # SystemExit(0) from a method is a failed job, not a finished run
            if isinstance(exc, KeyboardInterrupt):
                raise
            if is_disk_full(exc) and not isinstance(exc, DiskFull):  # e.g. the result store's disk
                exc = DiskFull(Path(getattr(exc, "filename", None) or options.out))
            error = _describe(exc)
            if not isinstance(exc, (PluginError, JobError, ValueError)):  # unexpected: keep where it happened
                error += "\n" + "".join(traceback.format_exception(exc)[-3:]).strip()
            error = _write_failed(store, job, error, duration_s=time.perf_counter() - started)
            outcomes.append(Outcome(job.key, "failed", error))
            if on_job:
                on_job(job, "failed")
            continue
        # Reported outside the try: a report that fails (a supervisor gone, its pipe broken) must not
        # turn a job whose results are written into a failed one.
        outcomes.append(Outcome(job.key, "ok", duration_s=duration))
        if on_job:
            on_job(job, "ok")
    return outcomes


def _write_failed(store: ResultStore, job: Job, error: str, duration_s: float = 0.0) -> str:
    """Store a failed row; when even that fails (the store's disk is full too),
    the failure is still reported to the executor, with both causes."""
    try:
        store.write(job, [_row(job, status="failed", error=error, duration_s=duration_s)], None)
    except Exception as exc:
        if is_disk_full(exc):
            exc = DiskFull(store.path("results", job))
        error += f"\n(the failed row could not be stored: {_describe(exc)})"
    return error


_CACHE_CLEANED: set[str] = set()


def _clean_cache_once() -> None:
    """Remove temporary cache entries of killed writers, once per process and cache root."""
    root = cache_root()
    if str(root) not in _CACHE_CLEANED:
        _CACHE_CLEANED.add(str(root))
        clean_orphans(root)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)  # below 2**32: `rbx run --seeds` refuses larger ones rather than alias them
    torch.manual_seed(seed)


def _run_job(job: Job, model: Model, dataset: Dataset, cache: FeatureCache, options: RunOptions, suite, metric_specs, log) -> tuple[list[dict], Any]:
    registry = get_registry()
    spec = registry.get("methods", job.method_ref or job.method)
    _seed_everything(job.seed)
    method = load_factory(spec.factory)(**job.params)
    ctx = RunContext(job, model, dataset, cache, options, log)
    ctx.wants = frozenset({suite.method_output, "prediction"} | ({"probs"} if any(m.kind == "calibration" for m in metric_specs) else set()))
    method.fit(ctx)
    evaluate = load_factory(suite.evaluator) if suite.evaluator else evaluate_classification
    arrays = ArrayStore(ResultStore(options.out).job_dir("arrays", job.suite, job.model.name, job.dataset.name, job.method) / job.config_hash)
    metrics, columns = evaluate(Evaluation(method=method, ctx=ctx, suite=suite, metric_specs=metric_specs, method_name=job.method, arrays=arrays, device=options.device, dataset_type=job.dataset.spec))
    rows = [
        _row(job, subset=s, metric=m, value=v, higher_is_better=hib, n=n, status="ok" if err is None else "failed", error=err, model_fp=model.fingerprint(), data_fp=_fingerprint(dataset, s))
        for s, m, v, hib, n, err in metrics
    ]
    diagnostics = json.dumps(ctx.diagnostics, sort_keys=True) if ctx.diagnostics else None
    for row in rows:
        row["diagnostics"] = diagnostics
    n = len(next(iter(columns.values())))
    columns["seed"] = np.full(n, job.seed, dtype=np.int64)
    order = ["sample_id", "subset", "label", "prediction", "score", "confidence", "probs"]
    ordered = {k: columns[k] for k in order if k in columns} | {k: v for k, v in columns.items() if k not in order}
    return rows, scores_table(ordered)


def _fingerprint(dataset: Dataset, subset: str) -> str | None:
    return dataset.fingerprint(subset) if subset in dataset.subsets() else None


def _row(job: Job, *, subset: str | None = None, metric: str | None = None, value: float = float("nan"), higher_is_better: bool | None = None, n: int = 0, status: str = "ok", error: str | None = None, duration_s: float = 0.0, model_fp: str | None = None, data_fp: str | None = None) -> dict[str, Any]:
    return {
        "suite": job.suite,
        "model": job.model.name,
        "dataset": job.dataset.name,
        "subset": subset,
        "method": job.method,
        "metric": metric,
        "value": value,
        "higher_is_better": higher_is_better,
        "n": n,
        "seed": job.seed,
        "status": status,
        "error": error,
        "config_hash": job.config_hash,
        "duration_s": duration_s,
        "created_at": datetime.now(timezone.utc),
        "rbx_version": __version__,
        "plugin": job.plugin,
        "model_fingerprint": model_fp,
        "dataset_fingerprint": data_fp,
        "params": json.dumps(job.params, sort_keys=True, default=str),
    }


def skipped_rows(job: Job) -> list[dict[str, Any]]:
    return [_row(job, status="skipped", error=job.skip_reason)]


def write_skipped(job: Job, out: str | Path) -> None:
    store = ResultStore(out)
    if not store.path("results", job).exists():
        store.write(job, skipped_rows(job), None)
