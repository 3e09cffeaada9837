"""The planner: suite × models × datasets × methods × seeds → jobs.

Compatibility is declared data, never code: a method qualifies for a suite
when it outputs the column the suite scores; a (model, dataset, method) job is
kept when ``method.requires ⊆ model.provides ∪ dataset.provides`` and the
model's label space matches the dataset's. Every other combination becomes a
*skipped* job with the reason, so the leaderboard can say why a cell is empty.

Planning imports no torch: it reads only specs and the configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_x import __version__
from robustbench_x.config import Config
from robustbench_x.errors import ConfigError, UnknownComponent, UsageError
from robustbench_x.registry import Registry


@dataclass(frozen=True)
class ModelRef:
    """A model as a job sees it: the spec name plus options from the config."""

    name: str
    spec: str
    arch: str | None
    options: dict[str, Any]
    provides: frozenset[str]
    label_space: str | None
    requires: frozenset[str] = frozenset()  # dataset capabilities needed to build it (ModelSpec.requires)
    #: ``options`` with every input file (``checkpoint``, ``members``, a ``path``
    #: under ``options:``) replaced by its content digest: what the job key hashes.
    keyed_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class DatasetRef:
    name: str
    spec: str
    options: dict[str, Any]
    provides: frozenset[str]
    label_space: str | None
    task: str
    pretrained_only: bool = False  # DatasetSpec.pretrained_only
    #: the datasets.yaml keys its type reads (DatasetSpec.option_keys); None when undeclared or built in
    accepts: frozenset[str] | None = None


@dataclass(frozen=True)
class Job:
    suite: str
    model: ModelRef
    dataset: DatasetRef
    method: str
    params: dict[str, Any]
    seed: int
    plugin: str
    config_hash: str
    skip_reason: str | None = None
    #: The name the registry resolves the method spec by: ``method`` itself, or
    #: ``<distribution>::<method>`` when several plugins register ``method``.
    method_ref: str = ""

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.suite, self.model.name, self.dataset.name, self.method, self.seed)


@dataclass
class Group:
    """Jobs sharing a (model, dataset, seed): the backbone runs once for all of them."""

    model: ModelRef
    dataset: DatasetRef
    seed: int
    jobs: list[Job] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model.name} × {self.dataset.name} (seed {self.seed})"


@dataclass
class Plan:
    suite: str
    jobs: list[Job]
    #: configured datasets that cannot serve the suite → why (printed, never silently dropped)
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def runnable(self) -> list[Job]:
        return [j for j in self.jobs if j.skip_reason is None]

    @property
    def skipped(self) -> list[Job]:
        return [j for j in self.jobs if j.skip_reason is not None]

    def groups(self, jobs: Sequence[Job] | None = None) -> list[Group]:
        groups: dict[tuple[str, str, int], Group] = {}
        for job in self.runnable if jobs is None else jobs:
            k = (job.model.name, job.dataset.name, job.seed)
            if k not in groups:
                groups[k] = Group(job.model, job.dataset, job.seed)
            groups[k].jobs.append(job)
        return list(groups.values())


def canonical_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_refs(registry: Registry, config: Config, names: Sequence[str] | None, suite=None) -> list[ModelRef]:
    if not names:
        extra = tuple(getattr(suite, "default_models", ()))
        names = list(dict.fromkeys([s.name for s in registry.specs("models") if s.default] + list(extra) + list(config.models)))
    refs = []
    for name in names:
        if name in config.models:
            entry = config.models[name]
            spec = registry.get("models", entry.type)
            options, keyed = _input_files(name, dict(entry.options), spec, config)
            arch = options.pop("arch", None)
            keyed.pop("arch", None)
            label_space = options.get("label_space", spec.label_space)
            provides = spec.provides | ({"ensemble"} if options.get("members") else set())
            refs.append(ModelRef(name, spec.name, arch, options, provides, label_space, spec.requires, keyed))
            continue
        spec = registry.get("models", name)
        arch = name.split(":", 1)[1] if spec.family and ":" in name else None
        if spec.family and arch is None:
            raise UsageError(f"model '{name}' is a family; name an architecture, e.g. '{name}:resnet18'")
        refs.append(ModelRef(name, spec.name, arch, {}, spec.provides, spec.label_space, spec.requires))
    return refs


def _input_files(name: str, options: dict[str, Any], spec, config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options, keyed)``: the entry's input files resolved against datasets.yaml
    (as its dataset roots are), and the same options with each file replaced by its
    content digest, so a checkpoint replaced at the same path re-runs its jobs and one
    moved unchanged does not. A missing file stops the run here, before any work."""
    from robustbench_x.config import resolve_path
    from robustbench_x.digests import file_digest

    def one(key: str, value: str) -> tuple[str, str]:
        path = Path(os.path.abspath(resolve_path(value, config)))  # absolute: workers and Ray tasks read it elsewhere
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise ConfigError(f"{key}: {path} {what}", file=config.file, key=f"models.{name}.{key}",
                              fix="give the path of the file (relative paths are relative to datasets.yaml)")
        try:
            return str(path), file_digest(path)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}", file=config.file, key=f"models.{name}.{key}", fix="check the file's permissions") from None

    keyed = dict(options)
    if isinstance(options.get("checkpoint"), str):
        options["checkpoint"], keyed["checkpoint"] = one("checkpoint", options["checkpoint"])
    if isinstance(options.get("members"), list):
        pairs = [one(f"members[{i}]", str(v)) for i, v in enumerate(options["members"])]
        options["members"], keyed["members"] = [p for p, _ in pairs], [d for _, d in pairs]
    inner = options.get("options")
    paths = [k for k, form in spec.option_types.items() if "path" in form.split("|")]
    if isinstance(inner, dict) and any(isinstance(inner.get(k), str) for k in paths):
        inner, keyed_inner = dict(inner), dict(inner)
        for k in paths:
            if isinstance(inner.get(k), str):
                inner[k], keyed_inner[k] = one(f"options.{k}", inner[k])
        options["options"], keyed["options"] = inner, keyed_inner
    return options, keyed


def dataset_refs(registry: Registry, config: Config, names: Sequence[str] | None, suite, excluded: dict[str, str] | None = None) -> list[DatasetRef]:
    """The datasets that serve ``suite``; a configured one that cannot is entered
    in ``excluded`` with the reason (an explicitly named one is a usage error)."""
    explicit = bool(names)
    if not names:
        names = [s.name for s in registry.specs("datasets") if s.builtin] + list(config.datasets)
    refs = []
    for name in names:
        if name in config.datasets:
            entry = config.datasets[name]
            spec = registry.get("datasets", entry.type)
            options = dict(entry.options)
            provides = spec.provides | _declared_provides(options)
            label_space = options.get("label_space", spec.label_space or name)
        else:
            try:
                spec = registry.get("datasets", name)
            except UnknownComponent as exc:
                known = [s.name for s in registry.specs("datasets") if s.builtin] + list(config.datasets)
                raise UnknownComponent("dataset", name, known) from exc
            if not spec.builtin:
                raise UsageError(
                    f"'{name}' is a dataset type, not a dataset.\n  fix: add an entry with 'type: {name}' to datasets.yaml and name that entry"
                )
            options, provides, label_space = {}, spec.provides, spec.label_space or name
        missing = set(suite.dataset_requires) - set(provides)
        if spec.task != suite.task or missing:
            if spec.task != suite.task:
                why = f"its task is '{spec.task}', the suite's is '{suite.task}'"
                fix = f"name a dataset of task '{suite.task}' (`rbx list datasets`)"
            else:
                hints = _hints(missing, spec.option_keys if name in config.datasets and spec.option_keys else None) or [suite.dataset_hint] * bool(suite.dataset_hint)
                why = f"it provides no {', '.join(sorted(missing))}"
                fix = "; ".join(hints) or f"name a dataset that provides {', '.join(sorted(missing))} (`rbx list datasets`)"
                if hints and not explicit:
                    why += f"; to include it, {'; '.join(hints)}"
            if explicit:
                raise UsageError(f"dataset '{name}' cannot serve suite '{suite.name}': {why}\n  fix: {fix}")
            if name in config.datasets and excluded is not None:
                excluded[name] = why
            continue
        accepts = frozenset(spec.option_keys) if name in config.datasets and spec.option_keys else None
        refs.append(DatasetRef(name, spec.name, options, frozenset(provides), label_space, spec.task, spec.pretrained_only, accepts))
    return refs


def _declared_provides(options: dict[str, Any]) -> frozenset[str]:
    """What a configured dataset provides follows from which roles it has."""
    out = set()
    if options.get("train"):
        out.add("train_split")
    if options.get("val"):
        out.add("val_split")
    if options.get("ood"):
        out.add("ood_subsets")
    if options.get("dg"):
        out.add("domain_shifts")
    return frozenset(out)


def make_plan(
    registry: Registry,
    config: Config,
    suite_name: str,
    *,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
) -> Plan:
    suite = registry.get("suites", suite_name)
    model_list = _serving(registry, config, model_refs(registry, config, models, suite), suite, explicit=bool(models))
    excluded: dict[str, str] = {}
    dataset_list = dataset_refs(registry, config, datasets, suite, excluded)
    if methods:
        # One job per method, however it was named (`msp`, `robustbench_x::msp`, `posthoc::msp`).
        resolved: dict[tuple[str, str], tuple[str, Any]] = {}
        for ref in dict.fromkeys(methods):
            spec = registry.get("methods", ref)
            resolved.setdefault((registry.origin("methods", ref).distribution, spec.name), (ref, spec))
        refs = [ref for ref, _ in resolved.values()]
        method_specs = [spec for _, spec in resolved.values()]
        for spec in method_specs:
            if suite.method_output not in spec.outputs:
                raise UsageError(
                    f"method '{spec.name}' does not output '{suite.method_output}', which suite '{suite.name}' scores "
                    f"(it outputs {', '.join(sorted(spec.outputs))})"
                )
    else:
        # registry.get: a name two plugins registered is refused here, never resolved by load order.
        refs = [s.name for s in registry.specs("methods") if suite.method_output in s.outputs]
        if suite.default_methods:  # the suite's own default selection (SuiteSpec.default_methods)
            refs = [r for r in refs if r in suite.default_methods]
        method_specs = [registry.get("methods", m) for m in refs]
    metric_specs = {m: registry.suite_metric(suite, m) for m in suite.metrics}
    if not suite.evaluator:
        from robustbench_x.evaluation import DEFAULT_KINDS

        odd = {m: s.kind for m, s in metric_specs.items() if s.kind not in DEFAULT_KINDS}
        if odd:  # the default evaluator would skip them: a run "ok" with no row for them
            raise UsageError(
                f"suite '{suite.name}' lists metric(s) of a kind the default evaluator does not call: "
                + ", ".join(f"{m} (kind '{k}')" for m, k in sorted(odd.items()))
                + f"\n  fix: give the suite an evaluator (SuiteSpec.evaluator, docs/tasks.md), or use a kind among {', '.join(sorted(DEFAULT_KINDS))}"
            )
    jobs: list[Job] = []
    for model in model_list:
        # Whether the model fits the task is a matter of capabilities, not of which optional packages are installed.
        serves = {d.name for d in dataset_list if any(_unsuited(model, d, s) is None for s in method_specs)}
        if not models and not serves:
            # A default model that no method of the suite can use on any dataset belongs to another
            # task (the built-in CNN on a detection suite): left out, not a page of skipped rows.
            continue
        for dataset in dataset_list:
            if dataset.name in serves:  # otherwise its jobs are skipped and the model is never built
                _check_model_needs(model, dataset, config)
            for ref, spec in zip(refs, method_specs):
                plugin = registry.plugin_label("methods", ref)
                reason = _incompatibility(model, dataset, spec)
                for seed in seeds:
                    payload = {
                        "suite": suite.name,
                        "metrics": sorted(metric_specs),
                        "subsets": list(suite.subsets),
                        "model": [model.spec, model.arch, model.options if model.keyed_options is None else model.keyed_options],
                        "dataset": [dataset.spec, dataset.name, dataset.options],
                        "method": [spec.name, spec.params],
                        "plugin": plugin,
                        "seed": seed,
                        "schema": 1,
                    }
                    jobs.append(
                        Job(
                            suite=suite.name,
                            model=model,
                            dataset=dataset,
                            method=registry.stored_name("methods", ref),
                            params=dict(spec.params),
                            seed=int(seed),
                            plugin=plugin,
                            config_hash=canonical_hash(payload),
                            skip_reason=reason,
                            method_ref=ref,
                        )
                    )
    return Plan(suite=suite.name, jobs=jobs, excluded=excluded)


def _serving(registry: Registry, config: Config, refs: list[ModelRef], suite, *, explicit: bool) -> list[ModelRef]:
    """The models whose spec serves the suite's task (``ModelSpec.tasks``, empty = any);
    a model named with --models that does not is a usage error."""
    out = []
    for ref in refs:
        tasks = getattr(registry.get("models", ref.spec), "tasks", frozenset())
        if not tasks or suite.task in tasks:
            out.append(ref)
        elif explicit:
            raise UsageError(f"model '{ref.name}' serves {', '.join(sorted(tasks))} suites, not suite '{suite.name}' (task '{suite.task}')")
    return out


def _check_model_needs(model: ModelRef, dataset: DatasetRef, config: Config) -> None:
    """A model that cannot even be built on a dataset (the built-in CNN trains on
    its train split, and not on a ``pretrained_only`` dataset's) stops the run
    before any work, naming the entry to fix."""
    if model.label_space not in (None, dataset.label_space):
        return
    if dataset.pretrained_only and "train_split" in model.requires:
        what = (
            f"model '{model.name}' trains on the dataset it evaluates, and dataset '{dataset.name}' is evaluated with "
            "pretrained models only (its train split, when it has one, is for fitting methods on a backbone's features: too large to train a model on)"
        )
        fix = ("evaluate a pretrained model with --models, e.g. `--models timm:resnet50` with `label_space: imagenet-1k` "
               "in the entry (see `rbx list models`), or leave the dataset out by naming the ones to run with --datasets")
        if dataset.name in config.datasets:
            raise ConfigError(what, file=config.file, key=f"datasets.{dataset.name}", fix=fix)
        raise UsageError(f"{what}.\n  fix: {fix}")
    need = sorted(model.requires - dataset.provides)
    if not need:
        return
    what = f"model '{model.name}' needs {', '.join(need)} from the dataset it runs on, which dataset '{dataset.name}' does not provide"
    hints = "; ".join(_hints(need, dataset.accepts))
    other = "evaluate another model with --models (see `rbx list models`)"
    if dataset.name in config.datasets:
        role = ROLE_KEYS.get(need[0], need[0])
        key = f"datasets.{dataset.name}" + (f".{role}" if dataset.accepts is None or role in dataset.accepts else "")
        raise ConfigError(what, file=config.file, key=key, fix=f"{hints + ', or ' if hints else ''}{other}")
    raise UsageError(f"{what}.\n  fix: {other}")


#: How to obtain a missing capability, appended to a skip reason.
HINTS = {
    "vlm": "point the harness at a vision-language model, e.g. `--models openclip:ViT-B-16/openai` "
    "(hub weights) or a models entry with `type: openclip` and `checkpoint: <file>` in datasets.yaml",
    "train_split": "give the dataset a `train:` split in datasets.yaml",
    "val_split": "give the dataset a `val:` split in datasets.yaml",
    "linear_head": "use a model whose classifier is a single linear layer",
    "dropout": "use a model with dropout layers (e.g. builtin-cnn)",
    "ensemble": "use a model that can provide members (builtin-cnn trains seeds; timm models take `members:` checkpoints)",
    "embeddings": "use a model that returns embeddings",
    "ood_subsets": "give the dataset an `ood:` entry (name: folder of images) in datasets.yaml",
    "domain_shifts": "give the dataset a `dg:` entry in datasets.yaml",
}


#: The datasets.yaml key that gives a dataset a capability.
ROLE_KEYS = {"train_split": "train", "val_split": "val", "ood_subsets": "ood", "domain_shifts": "dg"}


def _hints(missing, accepts: frozenset[str] | None) -> list[str]:
    """The HINTS for ``missing``, leaving out "give the dataset a `train:` split" and the
    like for a type without that key (``accepts``): the hint would name an unknown key."""
    return [HINTS[m] for m in sorted(missing) if m in HINTS and (accepts is None or ROLE_KEYS.get(m, "") in accepts | {""})]


def missing_packages(spec) -> str | None:
    """Why a method whose optional packages (``MethodSpec.packages``) are not
    installed cannot run, with its install hint; None when all are importable."""
    import importlib.util

    missing = [p for p in getattr(spec, "packages", ()) if importlib.util.find_spec(p) is None]
    if not missing:
        return None
    hint = f"; to run it, {spec.install}" if spec.install else ""
    return f"needs the optional package{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not installed{hint}"


def _incompatibility(model: ModelRef, dataset: DatasetRef, spec) -> str | None:
    return missing_packages(spec) or _unsuited(model, dataset, spec)


def _unsuited(model: ModelRef, dataset: DatasetRef, spec) -> str | None:
    """Why the method cannot run on this model and dataset by their label spaces and capabilities."""
    if model.label_space is not None and model.label_space != dataset.label_space:
        return f"model label space '{model.label_space}' differs from dataset label space '{dataset.label_space}'"
    missing = set(spec.requires) - set(model.provides) - set(dataset.provides)
    if missing:
        hints = _hints(missing, dataset.accepts)
        fix = f"; to run it, {'; '.join(hints)}" if hints else ""
        return f"requires {', '.join(sorted(missing))}, which neither model '{model.name}' nor dataset '{dataset.name}' provides{fix}"
    return None


__all__ = ["Plan", "Job", "Group", "ModelRef", "DatasetRef", "make_plan", "canonical_hash", "__version__"]
