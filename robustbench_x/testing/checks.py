"""The conformance kit: plain checks that every plugin of a kind must pass.

Modelled on scikit-learn's ``check_estimator`` / ``parametrize_with_checks``:
each check is a small function named for the rule it enforces, takes
``(spec, env=None)`` and raises :class:`AssertionError` with a message that
names the plugin, the spec and what to fix. Use them from any test suite::

    from robustbench_x.testing import parametrize_with_checks, specs_of_distribution

    @parametrize_with_checks(specs_of_distribution("rbx-feature-norm"))
    def test_conformance(spec, check):
        check(spec)

or all at once: ``check_plugin("feature-norm", kind="method")``.

What is checked (``rbx``'s contract, see README "Writing a plugin"):

=====================================  ==================================================================
check                                  rule
=====================================  ==================================================================
every kind
``check_spec_well_formed``             the spec has the type of its kind and a name matching
                                       ``[a-z0-9][a-z0-9_.@+-]*`` without ``..``; every field has its form (as the registry checks)
``check_spec_factory_resolves``        ``factory`` (metrics: ``fn``; suites: ``evaluator``) is a
                                       ``"module:attr"`` that :func:`~robustbench_x.api.load_factory` imports
``check_plugin_discoverable``          an entry point of group ``robustbench_x`` provides the spec: it is
                                       listed by ``importlib.metadata``, ``Registry().load_entry_points()``
                                       records it ``ok`` and returns this very spec under its name
``check_plugin_import_is_light``       importing the plugin module and calling its hooks, in a fresh
                                       interpreter, imports no torch (and so initialises no CUDA)
methods
``check_method_requires_known``        ``requires`` are capability tokens: :data:`~robustbench_x.api.CAPABILITIES`
                                       or provided by some registered model or dataset
``check_method_outputs_known``         ``outputs`` ⊆ {score, confidence, probs, prediction, embedding}
``check_method_params_serialisable``   ``params`` is a JSON object (it enters the config hash)
``check_method_builds``                ``factory(**params)`` returns an object with ``fit`` and ``score``
``check_method_honours_requires``      fit + score through a :class:`RestrictedContext` touch only what
                                       ``requires`` declares (table :data:`ACCESS_RULES`)
``check_method_per_sample_outputs``    every declared output, one per sample, right dtype, finite;
                                       ``prediction`` integer class indices; ``probs`` rows sum to 1
``check_method_score_direction``       AUROC(score on ``id``, score on ``ood/photos``) > 0.5:
                                       higher = more in-distribution
``check_method_deterministic``         same ``ctx.seed``, different global RNG states → same outputs
``check_method_uses_its_seed``         (``stochastic=True``) ``ctx.seed`` 0 and 1 → different outputs
``check_method_end_to_end``            a tiny job through the real runner (plan, feature cache, metrics,
                                       result store) ends ``ok``
``check_method_rejects_bad_input``     an empty subset, or NaN features/logits/inputs, end in an exception
                                       with a message (or, for an empty subset, empty outputs), never in
                                       finite numbers that hide the problem
datasets
``check_dataset_provides_known``       ``provides`` are capability tokens; ``required_keys ⊆ option_keys``
``check_dataset_config_validation``    datasets.yaml rejects an unknown key and a missing required key for
                                       the type (a built-in dataset is rejected as a type)
``check_dataset_subsets``              the built dataset has subsets, each non-empty, ``id`` among them
``check_dataset_samples``              samples are (PIL.Image, int, str); labels in range, −1 on ``ood/*`` (allowed on ``shift/new-class*``); dense tasks: (H, W) int masks
``check_dataset_fingerprint_stable``   the same data gives the same fingerprint, build after build
``check_dataset_fingerprint_tracks_files``  (file-backed: options with a ``root``) changing a file
                                       changes a fingerprint
metrics
``check_metric_value_sane``            on small inputs of its kind: a finite float; in [0, 1] when
                                       ``scale`` is 100 or 1000 (values are stored as fractions)
``check_metric_direction``             a perfect case scores better than a random one per ``higher_is_better``
``check_metric_rejects_bad_input``     empty or mismatched inputs raise ``ValueError``
models
``check_model_provides_known``         ``provides`` are capability tokens
``check_model_builds``                 ``factory(arch=, options=, dataset=, seed=, log=)`` builds on the
                                       embedded dataset and the model provides what its spec promises
``check_model_forward_shapes``         (``logits``) ``forward`` returns 2-D finite (logits, features), same
                                       batch, ``num_classes`` logits
``check_model_linear_head_consistent`` (``linear_head``) ``features @ W.T + b ≈ logits``
``check_model_fingerprint_stable``     the fingerprint is a non-empty string, equal across builds
suites
``check_suite_metrics_registered``     every metric of the suite is registered
``check_suite_headline_in_metrics``    ``headline ⊆ metrics``
``check_suite_metric_kinds_supported`` without an ``evaluator``, every metric has a kind the default
                                       evaluator computes (ood, failure, calibration, classification)
=====================================  ==================================================================

The runtime checks run on the **conformance environment** (:class:`CheckEnv`):
the embedded default dataset and the built-in CNN, trained once per cache
directory; scored subsets are capped at ``max_samples`` evenly spaced samples
(the train / val splits a method fits on are kept whole). A runtime check
whose spec needs what the environment lacks (e.g. ``requires={"vlm"}``) is
*skipped* with the reason (:class:`CheckSkipped`, a ``unittest.SkipTest``).

``check_params``: reduced parameters for the checks only
    Some methods are slow at their paper defaults (50 MC Dropout passes, five
    ensemble members, 100 ConfidNet epochs). ``check_params`` maps a spec
    name to overrides used by the runtime checks, never by the spec checks:

    * a **method**: ``{"T": 3}`` is merged into ``MethodSpec.params`` (an
      unknown key is an error unless the factory takes ``**params``);
    * a **dataset type**: ``{"options": {...}}`` or a callable
      ``options(tmp_dir: Path) -> dict``, the datasets.yaml entry to build it
      with (e.g. :func:`write_imagefolder` writes a tiny ImageFolder tree);
    * a **model** (or family): ``{"arch": "...", "options": {...}}``.

    Without options, a dataset *type* or a model *family* gets its runtime
    checks skipped with that hint.

``expected_failed_checks``: ``{check_name: reason}`` (for every spec), or
``{spec_name: {check_name: reason}}``, or a callable ``spec -> {...}``; such
checks are marked ``xfail`` with the reason (``check_plugin`` reports them as
``xfailed``), as scikit-learn does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata as md
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import unittest
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_x.api import (
    CAPABILITIES,
    METHOD_OUTPUTS,
    Context,
    Dataset,
    DatasetSpec,
    ExecutorSpec,
    MethodSpec,
    MetricSpec,
    ModelSpec,
    Outputs,
    SampleSource,
    SuiteSpec,
    load_factory,
)
from robustbench_x.options import parse as parse_option_type
from robustbench_x.spec_rules import spec_problems

__all__ = [
    "ACCESS_RULES",
    "CHECKS",
    "CheckEnv",
    "CheckResult",
    "CheckSkipped",
    "KNOWN_OUTPUTS",
    "NAME_PATTERN",
    "RestrictedContext",
    "UndeclaredCapability",
    "check_plugin",
    "default_env",
    "kind_of",
    "parametrize_with_checks",
    "specs_of_distribution",
    "write_imagefolder",
    "yield_checks",
]

GROUP = "robustbench_x"

#: What a spec name may look like (names appear in paths, URLs and CLI lists).
#: The registry's rule (no ``:``, the model-family separator; no ``..``) in lower case.
NAME_PATTERN = r"[a-z0-9][a-z0-9_.@+-]*"
_NAME_RE = re.compile(rf"^{NAME_PATTERN}$")

#: What a method may declare in ``outputs``: the per-sample columns suites score.
KNOWN_OUTPUTS = frozenset(METHOD_OUTPUTS) | {"embedding"}

#: Which spec type each registry kind holds.
SPEC_TYPES: dict[str, type] = {
    "methods": MethodSpec,
    "datasets": DatasetSpec,
    "metrics": MetricSpec,
    "models": ModelSpec,
    "suites": SuiteSpec,
    "executors": ExecutorSpec,
}

_KIND_ALIASES = {k[:-1]: k for k in SPEC_TYPES} | {k: k for k in SPEC_TYPES}

#: Tokens that let a method reach the network itself (the torch module, input batches).
MODEL_ACCESS = frozenset({"input_grad", "grad", "dropout", "ensemble", "feature_maps", "vlm"})

#: How :class:`RestrictedContext` maps what a method touches to the tokens it
#: must have declared (any one of the set). Everything else on the context
#: (``seed``, ``rng()``, ``fitted``, ``log``, ``num_classes``, ``wants``,
#: ``outputs(s).labels`` / ``.sample_ids`` / ``len()``, ``model.name`` /
#: ``num_classes`` / ``input_std`` / ``provides`` / ``fingerprint()``) is free.
ACCESS_RULES: dict[str, frozenset[str]] = {
    "ctx.outputs(s).logits": frozenset({"logits"}),
    "ctx.outputs(s).features": frozenset({"features"}),
    'ctx.outputs("train"), ctx.loader("train"), ctx.dataset.samples("train")': frozenset({"train_split"}),
    'ctx.outputs("val"), ctx.loader("val"), ctx.dataset.samples("val")': frozenset({"val_split"}),
    "ctx.loader(s)": MODEL_ACCESS,
    "ctx.model.module / forward / feature_extractor / transform / any other model attribute": MODEL_ACCESS,
    "ctx.model.head": MODEL_ACCESS | {"linear_head"},
    "ctx.model.linear_head()": frozenset({"linear_head"}),
    "ctx.model.members(k)": frozenset({"ensemble"}),
    "ctx.model.feature_maps(x)": frozenset({"feature_maps"}),
}

_FREE_MODEL_ATTRS = frozenset({"name", "num_classes", "provides", "input_std", "fingerprint", "label_space", "classes", "device"})
_SPLIT_TOKENS = {"train": "train_split", "val": "val_split"}

#: Metric kinds the kit has inputs for (those the default evaluator computes); a metric
#: of another kind brings its own through ``MetricSpec.check_cases``.
METRIC_KINDS = ("ood", "failure", "calibration", "classification")
DEFAULT_EVALUATOR_KINDS = frozenset({"ood", "failure", "calibration", "classification"})

#: Suites tried, in this order, for a method's end-to-end job (then any other suite).
SUITE_PREFERENCE = ("ood", "failure", "calibration")


class CheckSkipped(unittest.SkipTest):
    """A check that cannot run in this environment (pytest reports it as skipped)."""


class UndeclaredCapability(AssertionError):
    """A method touched something its ``requires`` does not declare (strict :class:`RestrictedContext`)."""


# =============================================================================
# Kinds, specs, environment
# =============================================================================


def kind_of(spec: Any) -> str:
    """The registry kind (``"methods"``...) of a spec object."""
    for kind, cls in SPEC_TYPES.items():
        if isinstance(spec, cls):
            return kind
    raise TypeError(f"{spec!r} is not a robustbench_x spec (one of {', '.join(c.__name__ for c in SPEC_TYPES.values())})")


def _kind(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_KIND_ALIASES)}") from None


def _singular(kind: str) -> str:
    return kind[:-1]


class _SpecPlugin:
    """A plugin object holding given specs (for specs that no entry point registers)."""

    def __init__(self, specs: Iterable[Any]) -> None:
        from robustbench_x import hookimpl

        self.__name__ = "robustbench_x.testing (specs under test)"
        by_kind: dict[str, list] = {}
        for spec in specs:
            by_kind.setdefault(kind_of(spec), []).append(spec)
        from robustbench_x.registry import KINDS

        for kind, (hook, _cls) in KINDS.items():
            if kind in by_kind:
                setattr(self, hook, hookimpl(specname=hook)(functools.partial(list, by_kind[kind])))


@contextlib.contextmanager
def _env_var(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def _installed_registry(registry) -> Iterator[None]:
    """Make ``registry`` the process-wide one (what the runner reads) for a while."""
    from robustbench_x import registry as registry_module

    old = registry_module._REGISTRY
    registry_module._REGISTRY = registry
    try:
        yield
    finally:
        registry_module._REGISTRY = old


class _Resources:
    """What every view of one environment shares: data, model, computed outputs."""

    def __init__(self) -> None:
        self.dataset: Dataset | None = None
        self.model = None
        self.store: dict[str, tuple[Outputs, Any, Any]] = {}
        self.memo: dict[tuple, Any] = {}


class CheckEnv:
    """Where runtime checks run: a dataset, a trained model, a cache directory.

    Defaults: ``embedded-digits`` + ``builtin-cnn`` (seed 0), both resolved
    through the registry; scored subsets capped at ``max_samples``;
    ``direction_subsets`` are the (ID, OOD) pair of the direction check.
    Heavy objects are built lazily, once, under ``cache_dir`` (which
    becomes ``RBX_CACHE_DIR`` while the environment builds or runs jobs).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike | None = None,
        *,
        dataset: str = "embedded-digits",
        model: str = "builtin-cnn",
        max_samples: int | None = 64,
        e2e_max_samples: int | None = 32,
        check_subsets: tuple[str, ...] = ("id", "ood/photos"),
        direction_subsets: tuple[str, str] = ("id", "ood/photos"),
        check_params: Mapping[str, Any] | None = None,
    ) -> None:
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self.dataset_name, self.model_name = dataset, model
        self.max_samples = max_samples
        self.e2e_max_samples = e2e_max_samples
        self.check_subsets = tuple(check_subsets)
        self.direction_subsets = tuple(direction_subsets)
        self.check_params: dict[str, Any] = dict(check_params or {})
        self._res = _Resources()

    @property
    def cache_dir(self) -> Path:
        """The cache directory (``None`` at construction: ``$RBX_CACHE_DIR`` or the user cache, fixed on first use)."""
        if self._cache_dir is None:
            from robustbench_x.cachedir import cache_root

            self._cache_dir = Path(cache_root())
        return self._cache_dir

    # ------------------------------------------------------------ views
    def with_params(self, check_params: Mapping[str, Any] | None) -> "CheckEnv":
        """A view sharing this environment's data and model, with other ``check_params``."""
        if not check_params:
            return self
        self.cache_dir  # resolve once, so that every view shares it
        view = object.__new__(CheckEnv)
        view.__dict__.update(self.__dict__)
        view.check_params = {**self.check_params, **dict(check_params)}
        return view

    def using_cache(self):
        return _env_var("RBX_CACHE_DIR", str(self.cache_dir))

    # ------------------------------------------------------------ registry
    @property
    def registry(self):
        """Entry points + ``RBX_PLUGINS`` as they are now (re-read when those change)."""
        from robustbench_x.registry import Registry

        key = ("registry", os.environ.get("RBX_PLUGINS", ""), os.environ.get("RBX_DISABLE_PLUGINS", ""), tuple(sys.path))
        registry = _REGISTRIES.get(key)
        if registry is None:
            registry = Registry()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                registry.load_entry_points(strict=False)
            _REGISTRIES.clear()
            _REGISTRIES[key] = registry
        return registry

    def registry_with(self, *specs: Any, extra: Iterable[Any] = ()):
        """A registry in which ``specs`` win over same-named entry-point specs."""
        from robustbench_x.registry import Registry

        mine = [s for s in specs if not self._registered(s)]
        if not mine and not extra:
            return self.registry
        registry = Registry()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            registry.register_object(_SpecPlugin([*mine, *extra]), name="rbx-conformance", distribution="(under test)")
            registry.load_entry_points(strict=False)
        return registry

    def _registered(self, spec: Any) -> bool:
        try:
            return self.registry.get(kind_of(spec), spec.name) == spec
        except Exception:
            return False

    def plugin_record(self, kind: str, name: str):
        """The :class:`~robustbench_x.registry.PluginRecord` that provided ``name``, or None."""
        for record in self.registry.plugins:
            if name in record.provides.get(kind, []):
                return record
        return None

    def who(self, spec: Any) -> str:
        """``method 'x' (plugin 'p' from dist 1.0)``: how messages name a spec."""
        kind = kind_of(spec)
        record = self.plugin_record(kind, spec.name)
        where = f" (plugin '{record.name}' from {record.origin})" if record is not None else ""
        return f"{_singular(kind)} '{spec.name}'{where}"

    # ------------------------------------------------------------ data and model
    @property
    def dataset(self) -> Dataset:
        if self._res.dataset is None:
            spec = self.registry.get("datasets", self.dataset_name)
            with self.using_cache():
                self._res.dataset = load_factory(spec.factory)(name=spec.name, options={}, config_file=None)
        return self._res.dataset

    @property
    def model(self):
        if self._res.model is None:
            spec = self.registry.get("models", self.model_name)
            with self.using_cache():
                self._res.model = load_factory(spec.factory)(arch=None, options={}, dataset=self.dataset, seed=0, log=lambda _m: None)
        return self._res.model

    @property
    def provides(self) -> frozenset[str]:
        """What the environment offers a method: the model's and the dataset's tokens."""
        try:
            model_spec = self.registry.get("models", self.model_name)
            data_spec = self.registry.get("datasets", self.dataset_name)
        except Exception:
            return frozenset()
        return frozenset(model_spec.provides) | frozenset(data_spec.provides)

    def describe(self) -> str:
        return f"model '{self.model_name}' on dataset '{self.dataset_name}'"

    def subset_data(self, subset: str) -> tuple[Outputs, Any, Any]:
        """(outputs, inputs x, labels y) of a subset, computed once (scored subsets capped)."""
        if subset not in self._res.store:
            import torch

            model, dataset = self.model, self.dataset
            source = dataset.samples(subset)
            n = len(source)
            index = np.arange(n)
            if subset not in _SPLIT_TOKENS and self.max_samples is not None and n > self.max_samples:
                index = np.unique(np.linspace(0, n - 1, self.max_samples).round().astype(int))
            tf = model.transform()
            xs, ys, ids = [], [], []
            for i in index:
                image, label, sid = source[int(i)]
                xs.append(tf(image))
                ys.append(int(label))
                ids.append(str(sid))
            x = torch.stack(xs)
            y = torch.tensor(ys, dtype=torch.long)
            logits, feats = [], []
            with torch.no_grad():
                for start in range(0, len(x), 256):
                    lg, ft = model.forward(x[start : start + 256])
                    logits.append(lg.detach().cpu())
                    feats.append(ft.detach().cpu())
            outputs = Outputs(
                logits=_readonly(torch.cat(logits).numpy().astype(np.float32)),
                features=_readonly(torch.cat(feats).numpy().astype(np.float32)),
                labels=_readonly(y.numpy().astype(np.int64)),
                sample_ids=_readonly(np.array(ids)),
            )
            self._res.store[subset] = (outputs, x, y)
        return self._res.store[subset]

    def context(self, seed: int = 0, overrides: Mapping[str, tuple[Outputs, Any, Any]] | None = None) -> "CheckContext":
        return CheckContext(self, seed=seed, overrides=overrides)

    # ------------------------------------------------------------ params
    def params_for(self, spec: MethodSpec) -> dict[str, Any]:
        """The method's parameters for runtime checks: its defaults plus ``check_params``."""
        overrides = dict(self.check_params.get(spec.name) or {})
        unknown = set(overrides) - set(spec.params)
        if unknown and not _takes_var_kwargs(spec.factory):
            raise ValueError(
                f"check_params for method '{spec.name}' name unknown parameter(s) {sorted(unknown)}; "
                f"its params are {sorted(spec.params)}"
            )
        return {**spec.params, **overrides}

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self._res.memo:
            self._res.memo[key] = compute()
        return self._res.memo[key]


_REGISTRIES: dict[tuple, Any] = {}
_DEFAULT_ENVS: dict[str, CheckEnv] = {}


def default_env() -> CheckEnv:
    """The process-wide environment for the current ``RBX_CACHE_DIR`` (created on first use)."""
    from robustbench_x.cachedir import cache_root

    key = str(cache_root())
    if key not in _DEFAULT_ENVS:
        _DEFAULT_ENVS[key] = CheckEnv(key)
    return _DEFAULT_ENVS[key]


def _takes_var_kwargs(factory: str) -> bool:
    import inspect

    try:
        target = load_factory(factory)
        sig = inspect.signature(target)
    except Exception:
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # the runner hands methods read-only memory maps
    return array


# =============================================================================
# Contexts: the check context and the restricted (requires-enforcing) context
# =============================================================================


class CheckContext(Context):
    """A method context over the environment's precomputed outputs (like the runner's,
    without the disk cache). ``fitted`` builds every time; ``overrides`` replace
    a subset's (outputs, x, y), e.g. to feed bad input."""

    def __init__(self, env: CheckEnv, seed: int = 0, overrides: Mapping[str, tuple[Outputs, Any, Any]] | None = None) -> None:
        self.env = env
        self.seed = int(seed)
        self.num_classes = int(env.model.num_classes)
        self.model = env.model
        self.dataset = env.dataset
        self.wants = frozenset(METHOD_OUTPUTS)
        self._overrides = dict(overrides or {})
        self.messages: list[str] = []
        self.diagnostics: dict[str, Any] = {}

    def _data(self, subset: str):
        if subset in self._overrides:
            return self._overrides[subset]
        return self.env.subset_data(subset)

    def outputs(self, subset: str) -> Outputs:
        return self._data(subset)[0]

    def loader(self, subset: str, batch_size: int = 128):
        _, x, y = self._data(subset)
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def fitted(self, build, **key):
        return build()

    def log(self, message: str) -> None:
        self.messages.append(message)

    def record(self, key: str, value: float | int | str) -> None:
        from robustbench_x.runner import diagnostic_value

        self.diagnostics[key] = diagnostic_value("method", key, value)


class _Violation(tuple):
    __slots__ = ()

    def __new__(cls, what: str, tokens: frozenset[str]):
        return super().__new__(cls, (what, tuple(sorted(tokens))))

    @property
    def what(self) -> str:
        return self[0]

    @property
    def tokens(self) -> tuple[str, ...]:
        return self[1]


class RestrictedContext(Context):
    """A context that exposes only what a method declared in ``requires``.

    Wraps any context; every access listed in :data:`ACCESS_RULES` is checked
    against ``declared``. With ``strict=True`` an undeclared access raises
    :class:`UndeclaredCapability` on the spot; with ``strict=False`` it is
    recorded in ``violations`` (and served), so one run lists every missing
    token. :meth:`assert_honoured` raises the summary.
    """

    def __init__(self, inner: Context, declared: Iterable[str], method: str = "method", strict: bool = True) -> None:
        self._inner = inner
        self.declared = frozenset(declared)
        self.method = method
        self.strict = strict
        self.violations: list[_Violation] = []
        self.seed = inner.seed
        self.num_classes = inner.num_classes
        self.wants = getattr(inner, "wants", Context.wants)
        self._model_guard = None
        self._dataset_guard = None

    # ---------------------------------------------------------------- rules
    def _use(self, what: str, any_of: Iterable[str]) -> None:
        any_of = frozenset(any_of)
        if self.declared & any_of:
            return
        violation = _Violation(what, any_of)
        if violation not in self.violations:
            self.violations.append(violation)
        if self.strict:
            raise UndeclaredCapability(self.message())

    def _split(self, call: str, subset: str) -> None:
        token = _SPLIT_TOKENS.get(subset)
        if token:
            self._use(call, {token})

    def missing(self) -> list[str]:
        """Tokens to add to ``requires`` (for accesses any one of several tokens allows, the first)."""
        out: list[str] = []
        for v in self.violations:
            if len(v.tokens) == 1 and v.tokens[0] not in out:
                out.append(v.tokens[0])
        return out

    def message(self) -> str:
        used = "; ".join(
            f"{v.what} (needs {v.tokens[0]})" if len(v.tokens) == 1 else f"{v.what} (needs one of {', '.join(v.tokens)})" for v in self.violations
        )
        declared = ", ".join(sorted(self.declared)) or "nothing"
        single = self.missing()
        fix = f"add {', '.join(repr(t) for t in single)} to MethodSpec.requires" if single else "declare one of the listed tokens in MethodSpec.requires"
        return (
            f"method '{self.method}' used {used} but did not declare {'it' if len(self.violations) == 1 else 'them'} in requires (declared: {declared}). "
            f"fix: {fix}, or stop using it; the planner only runs a method where every required token is provided, "
            "so an undeclared need breaks on models or datasets that lack it"
        )

    def assert_honoured(self) -> None:
        if self.violations:
            raise UndeclaredCapability(self.message())

    # ---------------------------------------------------------------- context API
    def outputs(self, subset: str) -> Outputs:
        self._split(f"ctx.outputs({subset!r})", subset)
        return _GuardedOutputs(self, self._inner.outputs(subset), subset)

    def loader(self, subset: str, batch_size: int = 128):
        self._split(f"ctx.loader({subset!r})", subset)
        self._use(f"ctx.loader({subset!r})", MODEL_ACCESS)
        return self._inner.loader(subset, batch_size=batch_size)

    @property
    def model(self):
        if self._model_guard is None:
            self._model_guard = _GuardedModel(self, self._inner.model)
        return self._model_guard

    @property
    def dataset(self):
        if self._dataset_guard is None:
            self._dataset_guard = _GuardedDataset(self, self._inner.dataset)
        return self._dataset_guard

    def rng(self) -> np.random.Generator:
        return self._inner.rng()

    def fitted(self, build, **key):
        return self._inner.fitted(build, **key)

    def log(self, message: str) -> None:
        self._inner.log(message)

    def record(self, key: str, value: float | int | str) -> None:
        self._inner.record(key, value)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class _GuardedOutputs:
    """An :class:`~robustbench_x.api.Outputs` whose ``logits`` / ``features`` are guarded."""

    def __init__(self, ctx: RestrictedContext, inner: Outputs, subset: str) -> None:
        self._ctx, self._inner, self._subset = ctx, inner, subset

    @property
    def logits(self):
        self._ctx._use(f"ctx.outputs({self._subset!r}).logits", {"logits"})
        return self._inner.logits

    @property
    def features(self):
        self._ctx._use(f"ctx.outputs({self._subset!r}).features", {"features"})
        return self._inner.features

    @property
    def labels(self):
        return self._inner.labels

    @property
    def sample_ids(self):
        return self._inner.sample_ids

    def __len__(self) -> int:
        return len(self._inner.labels)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class _GuardedModel:
    def __init__(self, ctx: RestrictedContext, inner) -> None:
        self._ctx, self._inner = ctx, inner

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in _FREE_MODEL_ATTRS:
            pass
        elif name == "linear_head":
            self._ctx._use("ctx.model.linear_head()", {"linear_head"})
        elif name == "members":
            self._ctx._use("ctx.model.members(k)", {"ensemble"})
        elif name == "feature_maps":
            self._ctx._use("ctx.model.feature_maps(x)", {"feature_maps"})
        elif name == "head":
            self._ctx._use("ctx.model.head(features)", MODEL_ACCESS | {"linear_head"})
        else:
            self._ctx._use(f"ctx.model.{name}", MODEL_ACCESS)
        return getattr(self._inner, name)


class _GuardedDataset:
    def __init__(self, ctx: RestrictedContext, inner) -> None:
        self._ctx, self._inner = ctx, inner

    def samples(self, subset: str):
        self._ctx._split(f"ctx.dataset.samples({subset!r})", subset)
        return self._inner.samples(subset)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._inner, name)


# =============================================================================
# Helpers for method checks
# =============================================================================


def _fail(message: str) -> None:
    raise AssertionError(message)


def _require_runnable(spec: MethodSpec, env: CheckEnv) -> None:
    missing = set(spec.requires) - set(env.provides)
    if missing:
        raise CheckSkipped(
            f"method '{spec.name}' requires {', '.join(sorted(missing))}, which the conformance environment "
            f"({env.describe()}) does not provide; its runtime checks need a model that does"
            + (" (a vision-language model)" if "vlm" in missing else "")
        )


def _build(spec: MethodSpec, env: CheckEnv):
    return load_factory(spec.factory)(**env.params_for(spec))


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@contextlib.contextmanager
def _global_rng_state(seed: int | None) -> Iterator[None]:
    """Seed (or leave) the global RNGs for a run, and restore them afterwards."""
    py, npy = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    th = torch.get_rng_state() if torch is not None else None
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        if torch is not None:
            torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        if torch is not None and th is not None:
            torch.set_rng_state(th)


def _fit_score(spec: MethodSpec, env: CheckEnv, ctx: Context, subsets: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
    method = _build(spec, env)
    with env.using_cache():
        method.fit(ctx)
        out = {}
        for subset in subsets:
            produced = method.score(ctx, subset)
            if not isinstance(produced, Mapping):
                _fail(
                    f"{env.who(spec)}: score(ctx, {subset!r}) returned {type(produced).__name__}; "
                    "fix: return a dict of per-sample arrays keyed by score / confidence / probs / prediction"
                )
            out[subset] = {k: _as_numpy(v) for k, v in produced.items()}
    return out


def _run(spec: MethodSpec, env: CheckEnv, seed: int = 0, global_seed: int | None = 12345, subsets: Iterable[str] | None = None):
    subsets = tuple(subsets or env.check_subsets)
    with _global_rng_state(global_seed):
        return _fit_score(spec, env, env.context(seed), subsets)


class _Observed:
    """One seed-0 fit + score on the check subsets through a recording :class:`RestrictedContext`."""

    def __init__(self, outputs: dict | None, violations: RestrictedContext, error: BaseException | None) -> None:
        self.outputs, self.restricted, self.error = outputs, violations, error


def _key(spec: MethodSpec, env: CheckEnv, *extra: Any) -> tuple:
    return (spec.name, spec.factory, json.dumps(env.params_for(spec), sort_keys=True, default=repr), env.max_samples, *extra)


def _observe(spec: MethodSpec, env: CheckEnv) -> _Observed:
    """Seed 0, global RNGs seeded 12345, every access recorded; computed once per (spec, params).

    The recording context serves everything (it only notes undeclared
    accesses), so its outputs are those of a plain run: the requires,
    per-sample, direction and determinism checks share this one run.
    """
    subsets = tuple(dict.fromkeys(env.check_subsets + env.direction_subsets))

    def compute() -> _Observed:
        ctx = RestrictedContext(env.context(0), spec.requires, method=spec.name, strict=False)
        try:
            with _global_rng_state(12345):
                outputs = _fit_score(spec, env, ctx, subsets)
        except AssertionError:
            raise
        except Exception as exc:
            return _Observed(None, ctx, exc)
        return _Observed(outputs, ctx, None)

    return env.memo(("observe", *_key(spec, env, subsets)), compute)


def _scores(spec: MethodSpec, env: CheckEnv) -> dict[str, dict[str, np.ndarray]]:
    """Seed-0 outputs on the check subsets (fails if the run raised)."""
    seen = _observe(spec, env)
    if seen.error is not None:
        _fail(f"{env.who(spec)}: fit/score raised {type(seen.error).__name__}: {seen.error} on the conformance case ({env.describe()})")
    return seen.outputs


def _differences(a: dict, b: dict, rtol: float = 1e-9, atol: float = 1e-12) -> list[str]:
    out = []
    for subset in a:
        for key in sorted(set(a[subset]) | set(b.get(subset, {}))):
            x, y = a[subset].get(key), b.get(subset, {}).get(key)
            if x is None or y is None:
                out.append(f"'{key}' on {subset!r} present in one run only")
                continue
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape:
                out.append(f"'{key}' on {subset!r} has shapes {x.shape} and {y.shape}")
            elif x.dtype.kind in "fc":
                if not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
                    diff = np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64))) if x.size else 0.0
                    out.append(f"'{key}' on {subset!r} (max abs difference {diff:.3g})")
            elif not np.array_equal(x, y):
                out.append(f"'{key}' on {subset!r}")
    return out


# =============================================================================
# Checks: every kind
# =============================================================================


def check_spec_well_formed(spec: Any, env: CheckEnv | None = None) -> None:
    """The spec is an instance of its kind's spec class; its name matches :data:`NAME_PATTERN`; every
    field has its annotated form (:func:`robustbench_x.spec_rules.spec_problems`, as the registry checks)."""
    kind = kind_of(spec)
    name = getattr(spec, "name", None)
    label = f"{_singular(kind)} {name!r}"
    if not isinstance(name, str) or not name:
        _fail(f"{label}: the spec name must be a non-empty string; fix: give {type(spec).__name__} a name")
    if not _NAME_RE.match(name) or ".." in name:
        _fail(
            f"{label}: name {name!r} is malformed; names must match {NAME_PATTERN} "
            "(lower case; start with a letter or digit; then letters, digits, '_', '.', '@', '+' or '-'; no '..'); "
            f"fix: rename it, e.g. {re.sub(r'[^a-z0-9_.@+-]+|[.]{2,}', '-', name.lower()).strip('-_.@+') or 'my-plugin'!r}"
        )
    problems = spec_problems(spec)  # the registry refuses the plugin for the same ones
    if problems:
        _fail(f"{label}: " + "; ".join(problems))


def _factory_ref(spec: Any) -> tuple[str, str | None]:
    if isinstance(spec, MetricSpec):
        return "fn", spec.fn
    if isinstance(spec, SuiteSpec):
        return "evaluator", spec.evaluator
    return "factory", spec.factory


def check_spec_factory_resolves(spec: Any, env: CheckEnv | None = None) -> None:
    """``factory`` (``fn`` for metrics, ``evaluator`` for suites) imports to a callable."""
    kind = kind_of(spec)
    field, ref = _factory_ref(spec)
    label = f"{_singular(kind)} '{spec.name}'"
    if ref is None:
        return
    if not isinstance(ref, str) or ":" not in ref:
        _fail(f"{label}: {field} {ref!r} must be a 'package.module:attribute' string; fix: e.g. {field}='my_plugin.impl:MyClass'")
    try:
        target = load_factory(ref)
    except Exception as exc:
        _fail(f"{label}: {field} {ref!r} does not resolve: {type(exc).__name__}: {exc}; fix: point it at an importable module and an existing attribute")
    if not callable(target):
        _fail(f"{label}: {field} {ref!r} resolves to a non-callable {type(target).__name__}")


def check_plugin_discoverable(spec: Any, env: CheckEnv | None = None) -> None:
    """An entry point of group ``robustbench_x`` provides this spec, and it loads ``ok``."""
    env = env or default_env()
    kind = kind_of(spec)
    label = f"{_singular(kind)} '{spec.name}'"
    record = env.plugin_record(kind, spec.name)
    how = (
        "fix: declare the plugin module in pyproject.toml under [project.entry-points.robustbench_x] "
        "(e.g. my-plugin = \"my_plugin\") and reinstall the distribution (pip install -e .)"
    )
    if record is None:
        failed = [f"'{p.name}' ({p.origin}): {p.error}" for p in env.registry.plugins if p.status == "failed"]
        extra = f"; plugins that failed to load: {'; '.join(failed)}" if failed else ""
        _fail(f"{label}: no plugin of entry-point group '{GROUP}' provides it{extra}; {how}")
    if record.distribution in ("RBX_PLUGINS", "(in-process)", "(under test)"):
        _fail(f"{label} comes from module '{record.module}' named in RBX_PLUGINS, not from an entry point; {how}")
    eps = [ep for ep in md.entry_points(group=GROUP) if ep.name == record.name]
    if not eps:
        _fail(f"{label}: importlib.metadata lists no entry point '{record.name}' in group '{GROUP}'; {how}")
    if record.status != "ok":
        _fail(f"{label}: plugin '{record.name}' ({record.origin}) did not load: {record.status} {record.error or ''}")
    registered = env.registry.get(kind, spec.name)
    if registered != spec:
        _fail(
            f"{label}: the registry holds a different {_singular(kind)} under this name (from plugin '{record.name}', "
            f"{record.origin}); the first plugin to register a name wins. fix: rename one of them"
        )


_PROBE = r"""
import importlib, json, sys, traceback

class _Spy:
    seen = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and _Spy.seen is None:
            frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename and "<frozen" not in f.filename]
            _Spy.seen = [f"{f.filename}:{f.lineno}" for f in frames[-4:]]
        return None

sys.meta_path.insert(0, _Spy())
target = sys.argv[1]
module, _, attr = target.partition(":")
obj = importlib.import_module(module)
for part in [p for p in attr.split(".") if p]:
    obj = getattr(obj, part)
for hook in ("rbx_methods", "rbx_datasets", "rbx_metrics", "rbx_models", "rbx_suites", "rbx_executors"):
    fn = getattr(obj, hook, None)
    if callable(fn):
        fn()
cuda = False
if "torch" in sys.modules:
    try:
        cuda = bool(sys.modules["torch"].cuda.is_initialized())
    except Exception:
        pass
heavy = [m for m in ("torch", "torchvision", "timm", "open_clip", "tensorflow", "jax") if m in sys.modules]
print("RBX-PROBE " + json.dumps({"heavy": heavy, "cuda": cuda, "by": _Spy.seen}))
"""

_PROBES: dict[tuple, dict] = {}


def probe_import(target: str) -> dict:
    """Import ``target`` (``module`` or ``module:attr``) and call its hooks in a fresh
    interpreter; returns ``{"heavy": [...], "cuda": bool, "by": [frames]}``."""
    key = (target, tuple(sys.path))
    if key not in _PROBES:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        proc = subprocess.run([sys.executable, "-c", _PROBE, target], capture_output=True, text=True, env=env, timeout=300)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RBX-PROBE ")]
        if proc.returncode != 0 or not lines:
            raise AssertionError(f"importing plugin module '{target}' in a fresh interpreter failed:\n{proc.stderr.strip()[-2000:]}")
        _PROBES[key] = json.loads(lines[-1][len("RBX-PROBE ") :])
    return _PROBES[key]


def check_plugin_import_is_light(spec: Any, env: CheckEnv | None = None) -> None:
    """Importing the plugin module and calling its hooks imports no torch and initialises no CUDA."""
    env = env or default_env()
    kind = kind_of(spec)
    record = env.plugin_record(kind, spec.name)
    if record is None:
        raise CheckSkipped(f"{_singular(kind)} '{spec.name}': no registered plugin provides it, so there is no module to import (see check_plugin_discoverable)")
    result = probe_import(record.module)
    who = env.who(spec)
    if result["cuda"]:
        _fail(f"{who}: importing '{record.module}' initialised CUDA; fix: touch torch.cuda only inside the factory-built objects")
    if "torch" in result["heavy"]:
        by = f" (import chain ends at {' <- '.join(reversed(result['by']))})" if result.get("by") else ""
        _fail(
            f"{who}: importing plugin module '{record.module}' (and calling its hooks) imports torch{by}. "
            "Listing plugins (rbx list, rbx plugins) must stay cheap: fix: keep the hook module to specs only "
            "(robustbench_x.api + hookimpl) and move `import torch` into the implementation module named by the "
            "spec's lazy 'module:attr' factory"
        )


# =============================================================================
# Checks: methods (spec)
# =============================================================================


def _known_tokens(env: CheckEnv) -> set[str]:
    tokens = set(CAPABILITIES)
    for kind in ("models", "datasets"):
        for s in env.registry.specs(kind):
            tokens |= set(s.provides)
    return tokens


def check_method_requires_known(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """Every ``requires`` token is a capability (``api.CAPABILITIES`` or provided by a registered model/dataset)."""
    env = env or default_env()
    if not all(isinstance(t, str) for t in spec.requires):
        _fail(f"{env.who(spec)}: requires must be strings, got {sorted(map(repr, spec.requires))}")
    unknown = sorted(set(spec.requires) - _known_tokens(env))
    if unknown:
        suggestions = {t: __import__("difflib").get_close_matches(t, sorted(_known_tokens(env)), n=1) for t in unknown}
        hint = "; ".join(f"'{t}' (did you mean '{s[0]}'?)" if s else f"'{t}'" for t, s in suggestions.items())
        _fail(
            f"{env.who(spec)}: requires unknown capability token(s) {hint}: no model or dataset provides them, "
            f"so the method would never be planned. known tokens: {', '.join(sorted(_known_tokens(env)))}"
        )


def check_method_outputs_known(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """``outputs`` is non-empty and ⊆ :data:`KNOWN_OUTPUTS` or what a registered suite scores
    (a new task's suite may score a new output, e.g. an attack's ``adversarial_prediction``)."""
    env = env or default_env()
    if not spec.outputs:
        _fail(f"{env.who(spec)}: outputs is empty; fix: declare what score() returns, e.g. outputs={{'score', 'confidence'}}")
    known = KNOWN_OUTPUTS | {s.method_output for s in env.registry.specs("suites")}
    unknown = sorted(set(spec.outputs) - known)
    if unknown:
        _fail(
            f"{env.who(spec)}: outputs {unknown} are not columns a suite scores ({', '.join(sorted(known))}); "
            "fix: remove them from outputs (extra per-sample columns may still be returned by score())"
        )


def check_method_params_serialisable(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """``params`` is a JSON object with string keys (it enters the job's config hash)."""
    env = env or default_env()
    try:
        json.dumps(dict(spec.params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(f"{env.who(spec)}: params {dict(spec.params)!r} are not JSON-serialisable ({exc}); fix: use numbers, strings, booleans, None, lists and dicts")


# =============================================================================
# Checks: methods (runtime)
# =============================================================================


def check_method_builds(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """``factory(**params)`` builds an object with callable ``fit`` and ``score``."""
    env = env or default_env()
    try:
        params = env.params_for(spec)
        method = load_factory(spec.factory)(**params)
    except Exception as exc:
        _fail(f"{env.who(spec)}: factory {spec.factory}(**{params!r}) raised {type(exc).__name__}: {exc}; fix: accept every key of MethodSpec.params")
    for attr in ("fit", "score"):
        if not callable(getattr(method, attr, None)):
            _fail(f"{env.who(spec)}: the factory returned {type(method).__name__} without a callable {attr}(); fix: subclass robustbench_x.api.Method")


def check_method_honours_requires(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """fit + score touch only what ``requires`` declares (see :data:`ACCESS_RULES`)."""
    env = env or default_env()
    _require_runnable(spec, env)
    seen = _observe(spec, env)
    if seen.restricted.violations:
        error = seen.error
        raise UndeclaredCapability(seen.restricted.message() + (f" [the run then raised {type(error).__name__}: {error}]" if error else ""))
    _scores(spec, env)


def _check_column(who: str, subset: str, key: str, value: np.ndarray, n: int, num_classes: int) -> None:
    where = f"{who} returned '{key}' for subset {subset!r}"
    fix_len = "fix: return one value per sample, in the order of ctx.outputs(subset)"
    if key in ("score", "confidence"):
        if value.shape != (n,):
            _fail(f"{where} with shape {value.shape}; expected ({n},) for {n} samples; {fix_len}")
        if value.dtype.kind != "f":
            _fail(f"{where} of dtype {value.dtype}; expected floats; fix: return np.float64 values")
    elif key == "prediction":
        if value.shape != (n,):
            _fail(f"{where} with shape {value.shape}; expected ({n},); {fix_len}")
        if value.dtype.kind not in "iu":
            _fail(f"{where} of dtype {value.dtype}; expected integer class indices; fix: return np.int64 (e.g. argmax)")
        if n and (value.min() < 0 or (num_classes and value.max() >= num_classes)):
            _fail(f"{where} with class indices outside [0, {num_classes}): min {value.min()}, max {value.max()}")
        return
    elif key == "probs":
        if value.shape != (n, num_classes):
            _fail(f"{where} with shape {value.shape}; expected ({n}, {num_classes}): one probability row per sample")
        if value.dtype.kind != "f":
            _fail(f"{where} of dtype {value.dtype}; expected floats")
    elif key == "embedding":
        if value.ndim != 2 or value.shape[0] != n:
            _fail(f"{where} with shape {value.shape}; expected ({n}, D): one embedding row per sample")
        if value.dtype.kind != "f":
            _fail(f"{where} of dtype {value.dtype}; expected floats")
    else:  # extra per-sample column
        if value.ndim < 1 or value.shape[0] != n:
            _fail(f"{where} (an extra column) with shape {value.shape}; every returned array must have one row per sample ({n})")
        if value.dtype.kind not in "fiub":
            return
    bad = ~np.isfinite(value.astype(np.float64))
    if bad.any():
        _fail(f"{where} with {int(bad.sum())} non-finite value(s) (NaN/inf) on clean input; fix: clamp logarithms, guard divisions")
    if key == "probs" and n:
        if value.min() < -1e-6 or value.max() > 1 + 1e-6:
            _fail(f"{where} with values outside [0, 1] (min {value.min():.3g}, max {value.max():.3g}); probs must be probabilities")
        sums = value.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            _fail(f"{where} whose rows do not sum to 1 (e.g. {sums[np.argmax(np.abs(sums - 1))]:.6f}); fix: normalise (softmax)")


def check_method_per_sample_outputs(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """Every declared output, one per sample, of the right dtype, finite; probs rows sum to 1."""
    env = env or default_env()
    _require_runnable(spec, env)
    scores = _scores(spec, env)
    who = env.who(spec)
    for subset in env.check_subsets:
        produced = scores[subset]
        n = len(env.subset_data(subset)[0])
        missing = sorted(set(spec.outputs) - set(produced))
        if missing:
            _fail(f"{who}: score(ctx, {subset!r}) returned {sorted(produced)} but not the declared output(s) {missing}; fix: return them or remove them from MethodSpec.outputs")
        for key, value in produced.items():
            _check_column(who, subset, key, value, n, env.model.num_classes)


def check_method_score_direction(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """On a clear case, ``score`` is higher for ID than for OOD (AUROC > 0.5)."""
    from robustbench_x.metrics.ood import auroc

    env = env or default_env()
    _require_runnable(spec, env)
    scores = _scores(spec, env)
    id_subset, ood_subset = env.direction_subsets
    s_id = np.asarray(scores[id_subset].get("score"), dtype=np.float64)
    s_ood = np.asarray(scores[ood_subset].get("score"), dtype=np.float64)
    value = auroc(s_id, s_ood)
    if not value > 0.5:
        _fail(
            f"{env.who(spec)}: AUROC of 'score' for ID ({id_subset!r}) vs OOD ({ood_subset!r}) is {value:.3f} <= 0.5 on the "
            f"conformance case ({env.describe()}, where {ood_subset} is clearly out of distribution). Scores must be higher "
            "for in-distribution samples: fix: if your quantity grows with OOD-ness (a distance, an energy, an uncertainty), "
            "return its negative"
        )


def check_method_deterministic(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """Two fits + scores with the same ``ctx.seed`` give the same outputs, whatever the global RNG state."""
    env = env or default_env()
    _require_runnable(spec, env)
    first = _scores(spec, env)  # global RNGs seeded 12345
    second = _run(spec, env, seed=0, global_seed=2, subsets=first)
    diff = _differences(first, second)
    if diff:
        _fail(
            f"{env.who(spec)}: two runs with the same ctx.seed=0 (global RNGs in different states) differ: {'; '.join(diff[:4])}. "
            "The method ignores its seed: fix: draw all randomness from ctx.seed (ctx.rng(), "
            "torch.Generator().manual_seed(ctx.seed)); never the global np.random / random / torch RNGs or an unseeded generator"
        )


def check_method_uses_its_seed(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """(``stochastic=True``) ``ctx.seed`` 0 and 1 give different outputs."""
    env = env or default_env()
    _require_runnable(spec, env)
    if not spec.stochastic:
        return
    a = _scores(spec, env)  # ctx.seed 0, global RNGs seeded 12345
    b = _run(spec, env, seed=1, global_seed=12345, subsets=a)
    if not _differences(a, b):
        _fail(
            f"{env.who(spec)} declares stochastic=True but ctx.seed=0 and ctx.seed=1 give identical outputs: it ignores ctx.seed. "
            "fix: seed its generators from ctx.seed, or declare stochastic=False"
        )


def check_method_end_to_end(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """A tiny job through the real runner (plan, feature cache, metrics, result store) ends ``ok``."""
    from robustbench_x.config import Config, Entry
    from robustbench_x.plan import make_plan
    from robustbench_x.results import read_results
    from robustbench_x.runner import RunOptions, run_group

    env = env or default_env()
    _require_runnable(spec, env)
    registry = env.registry_with(spec, extra=[_TINY_TYPE])
    suites = [s for s in registry.specs("suites") if s.method_output in spec.outputs]
    suites.sort(key=lambda s: (SUITE_PREFERENCE.index(s.name) if s.name in SUITE_PREFERENCE else len(SUITE_PREFERENCE), s.name))
    if not suites:
        raise CheckSkipped(f"method '{spec.name}': no registered suite scores any of its outputs {sorted(spec.outputs)}")
    params = env.params_for(spec)
    base = registry.get("datasets", env.dataset_name)
    tiny = Config(datasets={"conformance-tiny": Entry("conformance-tiny", _TINY_TYPE.name, {"base": env.dataset_name, "max_samples": env.e2e_max_samples})})
    reasons = []
    with env.using_cache(), _installed_registry(registry):
        for suite in suites:
            config = tiny if suite.task == base.task else Config()
            datasets = ["conformance-tiny"] if suite.task == base.task else None
            try:
                plan = make_plan(registry, config, suite.name, models=[env.model_name], datasets=datasets, methods=[spec.name])
            except Exception as exc:
                reasons.append(f"suite '{suite.name}': {exc}")
                continue
            jobs = [dataclasses.replace(j, params=params) for j in plan.runnable]
            if not jobs:
                reasons.append(f"suite '{suite.name}': " + "; ".join(sorted({j.skip_reason or '' for j in plan.skipped})) or "no job")
                continue
            with tempfile.TemporaryDirectory(prefix="rbx-conformance-") as out:
                outcomes = []
                for group in plan.groups(jobs):
                    outcomes += run_group(group, RunOptions(out=out))
                rows = read_results(out)
            failed = [o for o in outcomes if o.status != "ok"]
            if failed:
                _fail(f"{env.who(spec)}: the end-to-end job (suite '{suite.name}', {env.describe()}) failed: {failed[0].error}")
            bad = rows[(rows["status"] != "ok") & ~rows["error"].fillna("").str.startswith("metric undefined")]
            if len(bad):
                _fail(f"{env.who(spec)}: the end-to-end job (suite '{suite.name}') wrote failed rows: {bad['error'].iloc[0]}")
            ok = rows[rows["status"] == "ok"]
            if not len(ok) or not np.isfinite(ok["value"].astype(float)).all():
                _fail(f"{env.who(spec)}: the end-to-end job (suite '{suite.name}') produced no finite metric value")
            return
    raise CheckSkipped(f"method '{spec.name}': no runnable end-to-end job in this environment ({'; '.join(reasons)})")


def _bad_inputs(env: CheckEnv, subset: str) -> dict[str, tuple[str, tuple[Outputs, Any, Any]]]:
    """Bad versions of ``subset``, under subset names of their own: what → (name, data)."""
    outputs, x, y = env.subset_data(subset)
    empty = (
        Outputs(
            logits=_readonly(np.zeros((0, outputs.logits.shape[1]), np.float32)),
            features=_readonly(np.zeros((0, outputs.features.shape[1]), np.float32)),
            labels=_readonly(np.zeros(0, np.int64)),
            sample_ids=_readonly(np.array([], dtype=str)),
        ),
        x[:0],
        y[:0],
    )
    logits, features = np.array(outputs.logits), np.array(outputs.features)
    logits[0] = np.nan
    features[0] = np.nan
    xn = x.clone()
    xn[0] = float("nan")
    nan = (Outputs(logits=_readonly(logits), features=_readonly(features), labels=outputs.labels, sample_ids=outputs.sample_ids), xn, y)
    return {
        "an empty subset": ("ood/conformance-empty", empty),
        "NaN in the first sample's features, logits and input": ("ood/conformance-nan", nan),
    }


def check_method_rejects_bad_input(spec: MethodSpec, env: CheckEnv | None = None) -> None:
    """Bad input (an empty subset; NaN features/logits/inputs) ends in an exception with a
    message, or (empty subset) in empty outputs; never in finite numbers that hide it.

    A NaN output for the NaN sample is accepted: the runner rejects non-finite
    outputs with an error naming the method and subset. A *finite* output for
    it is not: the bad input would be ranked like any other sample.
    """
    env = env or default_env()
    _require_runnable(spec, env)
    who = env.who(spec)
    cases = _bad_inputs(env, env.direction_subsets[0])
    ctx = env.context(0, overrides=dict(cases.values()))
    method = _build(spec, env)
    with env.using_cache(), _global_rng_state(12345):
        try:
            method.fit(ctx)
        except Exception as exc:
            _fail(f"{who}: fit raised {type(exc).__name__}: {exc} on clean train/val data")
    for what, (subset, data) in cases.items():
        try:
            with env.using_cache(), _global_rng_state(12345), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                produced = method.score(ctx, subset)
        except Exception as exc:
            if not str(exc).strip():
                _fail(f"{who}: on {what} it raised {type(exc).__name__} without a message; fix: raise ValueError('<what is wrong and how to fix it>')")
            continue
        n = len(data[0])
        if not isinstance(produced, Mapping):
            _fail(f"{who}: on {what}, score() returned {type(produced).__name__}, not a dict")
        arrays = {k: _as_numpy(v) for k, v in produced.items()}
        for key, value in arrays.items():
            if value.ndim == 0 or value.shape[0] != n:
                _fail(f"{who}: on {what} (a subset of {n} samples) it returned '{key}' of shape {value.shape}; fix: return one row per sample or raise ValueError")
        if n == 0:
            continue
        hidden = [k for k, v in arrays.items() if k in KNOWN_OUTPUTS and v.dtype.kind == "f" and np.isfinite(v[0]).all()]
        if hidden:
            _fail(
                f"{who}: on {what} it returned a finite '{hidden[0]}' ({float(np.ravel(arrays[hidden[0]][0])[0]):.4g}) for the NaN sample, "
                "hiding the bad input; fix: let NaN propagate (the runner then fails the job naming the method) "
                "or raise ValueError naming the problem"
            )


# =============================================================================
# Checks: datasets
# =============================================================================


def _check_tokens(spec: Any, env: CheckEnv, field: str = "provides") -> None:
    tokens = set(getattr(spec, field))
    if not all(isinstance(t, str) and t for t in tokens):
        _fail(f"{env.who(spec)}: {field} must be non-empty strings, got {sorted(map(repr, tokens))}")
    unknown = sorted(tokens - set(CAPABILITIES))
    # a plugin may introduce a token (e.g. 'hierarchy') as long as something consumes it
    consumed = set()
    for s in env.registry.specs("methods"):
        consumed |= set(s.requires)
    for s in env.registry.specs("suites"):
        consumed |= set(s.dataset_requires)
    orphan = [t for t in unknown if t not in consumed]
    if orphan:
        _fail(
            f"{env.who(spec)}: {field} token(s) {orphan} are neither in robustbench_x.api.CAPABILITIES nor required by any "
            f"registered method or suite; fix: use a known token ({', '.join(sorted(CAPABILITIES))}) or check the spelling"
        )


def check_dataset_provides_known(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """``provides`` are capability tokens; ``required_keys ⊆ option_keys``; a type declares its option keys;
    ``option_types`` name known keys with forms of :mod:`robustbench_x.options`."""
    env = env or default_env()
    _check_tokens(spec, env)
    extra = sorted(set(spec.required_keys) - set(spec.option_keys))
    if extra:
        _fail(f"{env.who(spec)}: required_keys {extra} are not in option_keys {sorted(spec.option_keys)}, so no datasets.yaml entry can be valid; fix: add them to option_keys")
    if not spec.builtin and not spec.option_keys:
        _fail(f"{env.who(spec)}: a dataset type (builtin=False) must list the datasets.yaml keys it accepts in option_keys (at least 'root')")
    stray = sorted(set(spec.option_types) - set(spec.option_keys))
    if stray:
        _fail(f"{env.who(spec)}: option_types names keys {stray} that are not in option_keys; fix: add them to option_keys or drop them")
    for key, declared in spec.option_types.items():
        try:
            parse_option_type(declared)
        except ValueError as exc:
            _fail(f"{env.who(spec)}: option_types[{key!r}]: {exc}")


def check_dataset_config_validation(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """datasets.yaml entries of this type reject unknown keys and missing required keys."""
    import yaml

    from robustbench_x.config import load_config
    from robustbench_x.errors import ConfigError

    env = env or default_env()
    registry = env.registry_with(spec)
    who = env.who(spec)

    def load(entry: dict) -> Exception | None:
        with tempfile.TemporaryDirectory(prefix="rbx-conformance-") as tmp:
            path = Path(tmp) / "datasets.yaml"
            path.write_text(yaml.safe_dump({"datasets": {"probe": {"type": spec.name, **entry}}}))
            try:
                load_config(path, registry=registry)
            except ConfigError as exc:
                return exc
        return None

    if spec.builtin:
        if load({}) is None:
            _fail(f"{who}: datasets.yaml accepted 'type: {spec.name}' although it is a built-in dataset, not a type")
        return
    required = {k: "x" for k in sorted(spec.required_keys)}
    error = load({**required, "not_a_real_key": 1})
    if error is None or "not_a_real_key" not in str(error):
        _fail(f"{who}: datasets.yaml accepted an unknown key 'not_a_real_key' (got {error!r}); unknown keys must be errors naming the key")
    for key in sorted(spec.required_keys):
        error = load({k: v for k, v in required.items() if k != key})
        if error is None or key not in str(error):
            _fail(f"{who}: datasets.yaml accepted an entry without the required key '{key}' (got {error!r})")
    error = load(required)
    if error is not None:
        _fail(f"{who}: datasets.yaml rejected an entry with exactly the required keys {sorted(required)}: {error}")


def _dataset_options(spec: DatasetSpec, env: CheckEnv, tmp: Path) -> dict | None:
    if spec.builtin:
        return {}
    given = env.check_params.get(spec.name)
    if given is None:
        return None
    if callable(given):
        return dict(given(tmp))
    options = given.get("options", given) if isinstance(given, Mapping) else None
    if callable(options):
        return dict(options(tmp))
    return dict(options or {})


@contextlib.contextmanager
def _built_dataset(spec: DatasetSpec, env: CheckEnv) -> Iterator[tuple[Any, dict, Path]]:
    with tempfile.TemporaryDirectory(prefix="rbx-conformance-") as tmp:
        options = _dataset_options(spec, env, Path(tmp))
        if options is None:
            raise CheckSkipped(
                f"dataset type '{spec.name}' needs data to build; pass check_params={{'{spec.name}': "
                "lambda tmp: {...datasets.yaml options...}} (robustbench_x.testing.write_imagefolder writes an ImageFolder tree)"
            )

        def build():
            with env.using_cache():
                try:
                    return load_factory(spec.factory)(name=spec.name if spec.builtin else "probe", options=dict(options), config_file=None)
                except Exception as exc:
                    _fail(f"{env.who(spec)}: factory {spec.factory}(name=, options={options!r}, config_file=None) raised {type(exc).__name__}: {exc}")

        # a built-in dataset is built once per environment; a type afresh in its temporary tree
        dataset = env.memo(("dataset", spec.name, spec.factory), build) if spec.builtin else build()
        with env.using_cache():
            yield dataset, options, Path(tmp)


def check_dataset_subsets(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """The built dataset lists subsets, ``id`` (or its task's query set) among them, each non-empty."""
    env = env or default_env()
    with _built_dataset(spec, env) as (dataset, _options, _tmp):
        subsets = list(dataset.subsets())
        if not subsets:
            _fail(f"{env.who(spec)}: subsets() is empty")
        if spec.task == "classification" and "id" not in subsets:
            _fail(f"{env.who(spec)}: subsets() {subsets} has no 'id' (the in-distribution test set)")
        for s in subsets:
            if not isinstance(s, str):
                _fail(f"{env.who(spec)}: subset names must be strings, got {s!r}")
            n = len(dataset.samples(s))
            if n == 0:
                _fail(f"{env.who(spec)}: subset {s!r} is empty; fix: drop empty subsets or raise a ConfigError naming the folder")


def check_dataset_samples(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """Samples are ``(PIL.Image, int, str)``; labels in ``[0, len(classes))``, ``-1`` on ``ood/*`` (and allowed on ``shift/new-class*``);
    a dense task's label may be an ``(H, W)`` integer mask of the image's size."""
    from PIL import Image

    env = env or default_env()
    with _built_dataset(spec, env) as (dataset, _options, _tmp):
        n_classes = len(getattr(dataset, "classes", []) or [])
        for s in dataset.subsets():
            source = dataset.samples(s)
            for i in sorted({0, len(source) // 2, len(source) - 1}):
                item = source[i]
                if not (isinstance(item, tuple) and len(item) == 3):
                    _fail(f"{env.who(spec)}: samples({s!r})[{i}] is {type(item).__name__}; expected a (PIL.Image, int label, str sample_id) tuple")
                image, label, sid = item
                if not isinstance(image, Image.Image):
                    _fail(f"{env.who(spec)}: samples({s!r})[{i}][0] is {type(image).__name__}; expected a PIL.Image (decoded, not a path)")
                if spec.task != "classification" and isinstance(label, np.ndarray):
                    # a dense task's label is a mask (docs/tasks.md): integer, at most the image's size per axis
                    if not np.issubdtype(label.dtype, np.integer) or label.ndim != 2:
                        _fail(f"{env.who(spec)}: samples({s!r})[{i}] label is a {label.ndim}-D {label.dtype} array; a dense task's label is an (H, W) integer mask")
                    if label.shape != image.size[::-1]:
                        _fail(f"{env.who(spec)}: samples({s!r})[{i}] mask shape {label.shape} differs from the image's (H, W) {image.size[::-1]}")
                elif isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                    _fail(f"{env.who(spec)}: samples({s!r})[{i}] label {label!r} is {type(label).__name__}; expected int")
                if not isinstance(sid, str) or not sid:
                    _fail(f"{env.who(spec)}: samples({s!r})[{i}] sample id {sid!r} must be a non-empty str")
                if isinstance(label, np.ndarray):
                    continue
                if s.startswith("ood/") and label != -1:
                    _fail(f"{env.who(spec)}: OOD subset {s!r} has label {label}; OOD samples must be labelled -1")
                new_class = s.startswith("shift/new-class") and label == -1  # a class the model does not know (FD-Shifts)
                if spec.task == "classification" and not s.startswith("ood/") and not new_class and n_classes and not 0 <= label < n_classes:
                    _fail(f"{env.who(spec)}: samples({s!r})[{i}] label {label} is outside [0, {n_classes}) (len(classes))")


def check_dataset_fingerprint_stable(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """Each subset's fingerprint is a non-empty string, equal on repeated calls and rebuilds."""
    env = env or default_env()
    with _built_dataset(spec, env) as (dataset, options, _tmp):
        first = {s: dataset.fingerprint(s) for s in dataset.subsets()}
        again = {s: dataset.fingerprint(s) for s in dataset.subsets()}
        with env.using_cache():
            rebuilt = load_factory(spec.factory)(name=spec.name if spec.builtin else "probe", options=dict(options), config_file=None)
        third = {s: rebuilt.fingerprint(s) for s in rebuilt.subsets()}
    for s, fp in first.items():
        if not isinstance(fp, str) or not fp:
            _fail(f"{env.who(spec)}: fingerprint({s!r}) is {fp!r}; expected a non-empty string (a hash of the data)")
    if first != again or first != third:
        changed = sorted(s for s in first if first[s] != again.get(s) or first[s] != third.get(s))
        _fail(f"{env.who(spec)}: fingerprints of {changed} change without the data changing; fix: hash the data only (no time, random or object ids)")


def check_dataset_fingerprint_tracks_files(spec: DatasetSpec, env: CheckEnv | None = None) -> None:
    """(File-backed: options with a ``root``) changing a file changes a subset's fingerprint."""
    env = env or default_env()
    with _built_dataset(spec, env) as (dataset, options, _tmp):
        root = options.get("root")
        if not root:
            raise CheckSkipped(f"dataset '{spec.name}' is not file-backed here (no 'root' option)")
        before = {s: dataset.fingerprint(s) for s in dataset.subsets()}
        files = sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CheckSkipped(f"dataset '{spec.name}': no file under root {root}")
        target = files[0]
        stat = target.stat()
        with open(target, "ab") as handle:
            handle.write(b"\0rbx-conformance")
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        with env.using_cache():
            rebuilt = load_factory(spec.factory)(name=spec.name if spec.builtin else "probe", options=dict(options), config_file=None)
        after = {s: rebuilt.fingerprint(s) for s in rebuilt.subsets()}
    if before == after:
        _fail(
            f"{env.who(spec)}: modifying {target.name} (size and mtime) left every fingerprint unchanged; "
            "fix: hash what identifies each file's content (path, size, mtime or bytes), so the feature cache is invalidated"
        )


def write_imagefolder(root: str | os.PathLike, *, classes: tuple[str, ...] = ("a", "b"), per_class: int = 3, ood: tuple[str, ...] = ("noise",), size: int = 8) -> dict:
    """Write a tiny ``<root>/<split>/<class>/<image>.png`` tree (train / val / test and
    OOD folders) and return the datasets.yaml options of an ``imagefolder`` entry."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.clip(rng.normal(60 + 120 * c, 20, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(arr, mode="L").save(folder / f"{cls}{i}.png")
    ood_dirs = {}
    for name in ood:
        folder = root / f"ood-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(folder / f"{name}{i}.png")
        ood_dirs[name] = str(folder)
    return {"root": str(root), "train": "train", "val": "val", "test": "test", "ood": ood_dirs}


# --------------------------------------------------------------------- the tiny dataset used by end-to-end jobs


class _Capped(SampleSource):
    def __init__(self, inner: SampleSource, index: np.ndarray) -> None:
        self.inner, self.index = inner, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.inner[int(self.index[i])]


class CappedDataset(Dataset):
    """A dataset with its scored subsets capped at ``max_samples`` evenly spaced samples
    (train and val kept whole, so a model trained on it is the base dataset's model)."""

    def __init__(self, base: Dataset, max_samples: int | None) -> None:
        self.base, self.max_samples = base, max_samples
        self.name = base.name
        self.task = base.task
        self.classes = list(base.classes)
        self.provides = frozenset(base.provides)
        for attr in ("label_space",):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def subsets(self) -> list[str]:
        return list(self.base.subsets())

    def _index(self, subset: str, n: int) -> np.ndarray | None:
        if subset in _SPLIT_TOKENS or self.max_samples is None or n <= self.max_samples:
            return None
        return np.unique(np.linspace(0, n - 1, self.max_samples).round().astype(int))

    def samples(self, subset: str):
        source = self.base.samples(subset)
        index = self._index(subset, len(source))
        return source if index is None else _Capped(source, index)

    def fingerprint(self, subset: str) -> str:
        fp = self.base.fingerprint(subset)
        index = self._index(subset, len(self.base.samples(subset)))
        if index is None:
            return fp
        return hashlib.sha256(f"{fp}|capped|{self.max_samples}".encode()).hexdigest()[:16]


def build_capped(name: str, options: dict, config_file: str | None = None) -> CappedDataset:
    """Factory of the kit's ``rbx-conformance-capped`` dataset type (options: base, max_samples)."""
    from robustbench_x.registry import get_registry

    spec = get_registry().get("datasets", options["base"])
    base = load_factory(spec.factory)(name=spec.name, options={}, config_file=config_file)
    cap = options.get("max_samples")
    return CappedDataset(base, None if cap is None else int(cap))


_TINY_TYPE = DatasetSpec(
    "rbx-conformance-capped",
    factory="robustbench_x.testing.checks:build_capped",
    provides={"train_split", "val_split", "ood_subsets"},
    option_keys={"base", "max_samples"},
    required_keys={"base"},
    summary="conformance kit: a built-in dataset with its scored subsets capped (end-to-end checks)",
)


# =============================================================================
# Checks: metrics
# =============================================================================


def _metric_cases(spec: MetricSpec) -> tuple[dict, dict, list[tuple[str, dict]]]:
    """(perfect kwargs, random kwargs, [(what, bad kwargs)]) for a metric: the kit's own
    for the default evaluator's kinds, else the spec's ``check_cases``."""
    kind = spec.kind
    if kind not in METRIC_KINDS and spec.check_cases:
        return load_factory(spec.check_cases)()
    rng = np.random.default_rng(0)
    if kind == "ood":
        perfect = {"score_id": rng.uniform(1, 2, 200), "score_ood": rng.uniform(-2, -1, 200)}
        rand = {"score_id": rng.normal(size=200), "score_ood": rng.normal(size=200)}
        bad = [("an empty OOD set", {"score_id": rng.normal(size=10), "score_ood": np.zeros(0)}),
               ("NaN scores", {"score_id": np.array([0.1, np.nan, 0.3]), "score_ood": np.array([0.0, 0.2])})]
        return perfect, rand, bad
    if kind == "failure":
        correct = rng.random(300) < 0.7
        perfect = {"confidence": np.where(correct, rng.uniform(0.6, 1.0, 300), rng.uniform(0.0, 0.4, 300)), "correct": correct}
        rand = {"confidence": rng.random(300), "correct": correct}
        bad = [("mismatched lengths", {"confidence": rng.random(10), "correct": np.ones(9, bool)}),
               ("empty inputs", {"confidence": np.zeros(0), "correct": np.zeros(0, bool)})]
        return perfect, rand, bad
    if kind == "calibration":
        labels = rng.integers(0, 5, 300)
        onehot = np.eye(5)[labels] * (1 - 1e-6) + 1e-6 / 5
        noisy = rng.dirichlet(np.ones(5), 300)
        bad = [("mismatched lengths", {"probs": noisy[:10], "labels": labels[:9]}),
               ("empty inputs", {"probs": np.zeros((0, 5)), "labels": np.zeros(0, int)})]
        return {"probs": onehot, "labels": labels}, {"probs": noisy, "labels": labels}, bad
    if kind == "classification":
        labels = rng.integers(0, 5, 300)
        bad = [("mismatched lengths", {"prediction": labels[:10], "labels": labels[:9]}),
               ("empty inputs", {"prediction": np.zeros(0, int), "labels": np.zeros(0, int)})]
        return {"prediction": labels.copy(), "labels": labels}, {"prediction": rng.integers(0, 5, 300), "labels": labels}, bad
    raise CheckSkipped(
        f"the kit has no inputs for metric kind '{kind}' (knows {', '.join(METRIC_KINDS)}); "
        "give the MetricSpec check_cases='module:attr' returning (perfect, random, bad) keyword arguments"
    )


def _metric_value(spec: MetricSpec, kwargs: dict) -> float:
    """The metric's value; per-sample values (a 1-D array) count as their mean."""
    value = load_factory(spec.fn)(**kwargs)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return float(np.nanmean(value)) if value.size and not np.isnan(value).all() else float("nan")
    return value


def check_metric_value_sane(spec: MetricSpec, env: CheckEnv | None = None) -> None:
    """On small inputs of its kind: a finite float; in [0, 1] when scale is 100 or 1000."""
    env = env or default_env()
    perfect, rand, _ = _metric_cases(spec)
    for what, kwargs in (("a perfect case", perfect), ("a random case", rand)):
        try:
            value = _metric_value(spec, kwargs)
        except Exception as exc:
            _fail(f"{env.who(spec)}: fn({', '.join(f'{k}=' for k in kwargs)}) on {what} of kind '{spec.kind}' raised {type(exc).__name__}: {exc}")
        if isinstance(value, np.ndarray) and value.ndim > 1:
            _fail(f"{env.who(spec)}: returned an array of shape {value.shape} on {what}; expected a number or one value per sample (1-D)")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            _fail(f"{env.who(spec)}: returned {type(value).__name__} {value!r} on {what}; expected a float")
        if not math.isfinite(float(value)):
            _fail(f"{env.who(spec)}: returned {value} on {what}; expected a finite value")
        if spec.scale in (100, 1000) and not -1e-5 <= float(value) <= 1 + 1e-5:  # float noise (e-aurc of a perfect ranking)
            _fail(f"{env.who(spec)}: returned {value} on {what}, outside [0, 1]; values are stored as fractions and shown ×{spec.scale:g}: fix the scale or the function")


def check_metric_direction(spec: MetricSpec, env: CheckEnv | None = None) -> None:
    """A perfect case is better than a random one according to ``higher_is_better``."""
    env = env or default_env()
    perfect, rand, _ = _metric_cases(spec)
    p, r = float(_metric_value(spec, perfect)), float(_metric_value(spec, rand))
    better = p > r if spec.higher_is_better else p < r
    if not better:
        _fail(
            f"{env.who(spec)}: higher_is_better={spec.higher_is_better} but the perfect case scores {p:.4g} and a random case {r:.4g}; "
            "fix: flip higher_is_better (or the sign of the function)"
        )


def check_metric_rejects_bad_input(spec: MetricSpec, env: CheckEnv | None = None) -> None:
    """Empty, NaN or mismatched inputs raise ``ValueError`` (the runner records 'metric undefined')."""
    env = env or default_env()
    _, _, bad = _metric_cases(spec)
    for what, kwargs in bad:
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = load_factory(spec.fn)(**kwargs)
        except ValueError:
            continue
        except Exception as exc:
            _fail(f"{env.who(spec)}: on {what} it raised {type(exc).__name__}: {exc}; expected ValueError (the runner turns only ValueError into 'metric undefined')")
        _fail(f"{env.who(spec)}: on {what} it returned {value!r} instead of raising ValueError; fix: validate the inputs and raise ValueError naming the problem")


# =============================================================================
# Checks: models
# =============================================================================


def check_model_provides_known(spec: ModelSpec, env: CheckEnv | None = None) -> None:
    """``provides`` are capability tokens."""
    _check_tokens(spec, env or default_env())


def _model_options(spec: ModelSpec, env: CheckEnv) -> tuple[str | None, dict]:
    given = env.check_params.get(spec.name)
    if given is None:
        if spec.family:
            raise CheckSkipped(
                f"model family '{spec.name}' needs an architecture to build; pass "
                f"check_params={{'{spec.name}': {{'arch': '<arch>', 'options': {{...}}}}}}"
            )
        return None, {}
    return given.get("arch"), dict(given.get("options") or {})


def _build_model(spec: ModelSpec, env: CheckEnv, seed: int = 0, fresh: bool = False):
    """The model built on the environment's dataset (once per environment unless ``fresh``)."""
    arch, options = _model_options(spec, env)
    if not fresh:
        key = ("model", spec.name, spec.factory, arch, json.dumps(options, sort_keys=True, default=repr), seed)
        return env.memo(key, lambda: _build_model(spec, env, seed, fresh=True))
    tasks = set(getattr(spec, "tasks", ()) or ())
    if tasks and "classification" not in tasks:
        raise CheckSkipped(f"model '{spec.name}' serves {', '.join(sorted(tasks))} suites only (ModelSpec.tasks); the kit's runtime checks build models on a classification dataset")
    missing = {"vlm"} & set(spec.provides)
    if missing and spec.name not in env.check_params:
        raise CheckSkipped(f"model '{spec.name}' is a vision-language model; pass check_params={{'{spec.name}': {{'arch': ..., 'options': ...}}}} to build it")
    with env.using_cache(), _global_rng_state(seed):  # a randomly initialised model builds the same twice
        try:
            return load_factory(spec.factory)(arch=arch, options=options, dataset=env.dataset, seed=seed, log=lambda _m: None)
        except CheckSkipped:
            raise
        except Exception as exc:
            _fail(f"{env.who(spec)}: factory {spec.factory}(arch={arch!r}, options={options!r}, dataset=<{env.dataset_name}>, seed={seed}) raised {type(exc).__name__}: {exc}")


def _forward(model, env: CheckEnv, n: int = 4):
    import torch

    source = env.dataset.samples("id")
    tf = model.transform()
    x = torch.stack([tf(source[i][0]) for i in range(min(n, len(source)))])
    with torch.no_grad():
        return x, model.forward(x)


def check_model_builds(spec: ModelSpec, env: CheckEnv | None = None) -> None:
    """The factory builds on the embedded dataset; the model provides what its spec promises."""
    env = env or default_env()
    model = _build_model(spec, env)
    runtime = set(getattr(model, "provides", ()) or ())
    missing = sorted(set(spec.provides) - runtime)
    if missing:
        _fail(f"{env.who(spec)}: the spec promises {missing} but the built model's provides is {sorted(runtime)}; the planner would schedule methods it cannot serve")
    if "logits" in spec.provides and int(getattr(model, "num_classes", 0) or 0) <= 0:
        _fail(f"{env.who(spec)}: the built model has num_classes={getattr(model, 'num_classes', None)!r}; expected the number of logits")


def check_model_forward_shapes(spec: ModelSpec, env: CheckEnv | None = None) -> None:
    """``forward(x)`` returns 2-D finite ``(logits, features)`` with the batch size; ``num_classes`` logits."""
    env = env or default_env()
    model = _build_model(spec, env)
    x, out = _forward(model, env)
    if not (isinstance(out, tuple) and len(out) == 2):
        _fail(f"{env.who(spec)}: forward(x) returned {type(out).__name__}; expected a (logits, features) tuple")
    logits, feats = (_as_numpy(t) for t in out)
    b = len(x)
    for what, arr in (("logits", logits), ("features", feats)):
        if arr.ndim != 2 or arr.shape[0] != b:
            _fail(f"{env.who(spec)}: forward(x) {what} have shape {arr.shape} for a batch of {b}; expected ({b}, K)")
        if not np.isfinite(arr).all():
            _fail(f"{env.who(spec)}: forward(x) {what} contain NaN/inf")
    if logits.shape[1] != model.num_classes:
        _fail(f"{env.who(spec)}: forward(x) returns {logits.shape[1]} logits but num_classes is {model.num_classes}")


def check_model_linear_head_consistent(spec: ModelSpec, env: CheckEnv | None = None) -> None:
    """(``linear_head``) ``features @ W.T + b`` reproduces the logits of ``forward``."""
    env = env or default_env()
    model = _build_model(spec, env)
    if "linear_head" not in set(getattr(model, "provides", spec.provides)):
        return
    _, (logits, feats) = _forward(model, env)
    w, b = (np.asarray(a, dtype=np.float64) for a in model.linear_head())
    logits, feats = _as_numpy(logits).astype(np.float64), _as_numpy(feats).astype(np.float64)
    if w.shape != (logits.shape[1], feats.shape[1]) or b.shape != (logits.shape[1],):
        _fail(f"{env.who(spec)}: linear_head() returned W {w.shape}, b {b.shape}; expected W ({logits.shape[1]}, {feats.shape[1]}) and b ({logits.shape[1]},)")
    recon = feats @ w.T + b
    if not np.allclose(recon, logits, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(logits).max()))):
        _fail(
            f"{env.who(spec)}: features @ W.T + b differs from forward()'s logits by up to {np.abs(recon - logits).max():.3g}; "
            "linear_head() must be the last layer applied to exactly the features forward() returns (no dropout, no other layer)"
        )


def check_model_fingerprint_stable(spec: ModelSpec, env: CheckEnv | None = None) -> None:
    """The fingerprint is a non-empty string, equal on repeated calls and across builds with one seed."""
    env = env or default_env()
    a = _build_model(spec, env)
    b = _build_model(spec, env, fresh=True)
    fa, fa2, fb = a.fingerprint(), a.fingerprint(), b.fingerprint()
    if not isinstance(fa, str) or not fa:
        _fail(f"{env.who(spec)}: fingerprint() is {fa!r}; expected a non-empty string (a hash of the weights and transform)")
    if not (fa == fa2 == fb):
        _fail(f"{env.who(spec)}: fingerprint() changes between calls or builds ({fa!r}, {fa2!r}, {fb!r}); it keys the feature cache, so it must hash weights and transform only")


# =============================================================================
# Checks: suites
# =============================================================================


def check_suite_metrics_registered(spec: SuiteSpec, env: CheckEnv | None = None) -> None:
    """Every metric the suite computes is registered."""
    env = env or default_env()
    known = set(env.registry.names("metrics"))
    missing = [m for m in spec.metrics if m not in known]
    if not spec.metrics:
        _fail(f"{env.who(spec)}: metrics is empty")
    if missing:
        _fail(f"{env.who(spec)}: metrics {missing} are not registered by any plugin; fix: register them (rbx_metrics hook) or fix the names (rbx list metrics)")


def check_suite_headline_in_metrics(spec: SuiteSpec, env: CheckEnv | None = None) -> None:
    """``headline ⊆ metrics`` and non-empty."""
    env = env or default_env()
    extra = [m for m in spec.headline if m not in spec.metrics]
    if not spec.headline:
        _fail(f"{env.who(spec)}: headline is empty; the leaderboard page shows only headline metrics")
    if extra:
        _fail(f"{env.who(spec)}: headline metrics {extra} are not in metrics {list(spec.metrics)}; fix: add them to metrics")


def check_suite_metric_kinds_supported(spec: SuiteSpec, env: CheckEnv | None = None) -> None:
    """Without an ``evaluator``, every metric's kind is one the default evaluator computes."""
    env = env or default_env()
    if spec.evaluator:
        return
    known = set(env.registry.names("metrics"))
    kinds = [(m, env.registry.suite_metric(spec, m).kind) for m in spec.metrics if m in known]
    odd = [(m, kind) for m, kind in kinds if kind not in DEFAULT_EVALUATOR_KINDS]
    if odd:
        _fail(f"{env.who(spec)}: metrics {odd} have kinds the default evaluator never computes ({', '.join(sorted(DEFAULT_EVALUATOR_KINDS))}); fix: give the suite an evaluator")
    if spec.method_output not in KNOWN_OUTPUTS:
        _fail(f"{env.who(spec)}: method_output {spec.method_output!r} is not a per-sample output methods declare ({', '.join(sorted(KNOWN_OUTPUTS))})")


# =============================================================================
# Which checks apply, check_plugin, parametrize_with_checks
# =============================================================================

_COMMON = (check_spec_well_formed, check_spec_factory_resolves, check_plugin_discoverable, check_plugin_import_is_light)

#: Every check, by kind (the order they run in).
CHECKS: dict[str, tuple[Callable, ...]] = {
    "methods": _COMMON
    + (
        check_method_requires_known,
        check_method_outputs_known,
        check_method_params_serialisable,
        check_method_builds,
        check_method_honours_requires,
        check_method_per_sample_outputs,
        check_method_score_direction,
        check_method_deterministic,
        check_method_uses_its_seed,
        check_method_end_to_end,
        check_method_rejects_bad_input,
    ),
    "datasets": _COMMON
    + (
        check_dataset_provides_known,
        check_dataset_config_validation,
        check_dataset_subsets,
        check_dataset_samples,
        check_dataset_fingerprint_stable,
        check_dataset_fingerprint_tracks_files,
    ),
    "metrics": _COMMON + (check_metric_value_sane, check_metric_direction, check_metric_rejects_bad_input),
    "models": _COMMON + (check_model_provides_known, check_model_builds, check_model_forward_shapes, check_model_linear_head_consistent, check_model_fingerprint_stable),
    "suites": (check_spec_well_formed, check_spec_factory_resolves, check_plugin_discoverable, check_plugin_import_is_light, check_suite_metrics_registered, check_suite_headline_in_metrics, check_suite_metric_kinds_supported),
    "executors": _COMMON,
}

_ALL_CHECK_NAMES = {fn.__name__ for fns in CHECKS.values() for fn in fns}


def _applies(check: Callable, spec: Any) -> bool:
    if check is check_method_score_direction:
        return "score" in spec.outputs
    if check is check_method_uses_its_seed:
        return bool(spec.stochastic)
    if check is check_spec_factory_resolves and isinstance(spec, SuiteSpec):
        return spec.evaluator is not None
    if check is check_model_linear_head_consistent:
        return "linear_head" in spec.provides
    if check is check_model_forward_shapes:  # a detector's output is not (logits, features)
        return "logits" in spec.provides
    if check is check_dataset_fingerprint_tracks_files:
        return not spec.builtin
    return True


def yield_checks(spec: Any) -> Iterator[Callable]:
    """The checks that apply to ``spec`` (those of its kind, minus the inapplicable ones)."""
    for check in CHECKS[kind_of(spec)]:
        if _applies(check, spec):
            yield check


class BoundCheck:
    """A check bound to ``check_params`` (and an environment): ``check(spec)`` runs it."""

    def __init__(self, fn: Callable, check_params: Mapping[str, Any] | None = None, env: CheckEnv | None = None) -> None:
        self.fn, self.check_params, self.env = fn, dict(check_params or {}), env
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        functools.update_wrapper(self, fn)

    def __call__(self, spec: Any, env: CheckEnv | None = None) -> None:
        base = env or self.env or default_env()
        try:
            return self.fn(spec, base.with_params(self.check_params))
        except CheckSkipped as exc:
            pytest = sys.modules.get("pytest")
            if pytest is None:
                raise
            pytest.skip(str(exc))  # reported at the test, not inside unittest's machinery

    def __repr__(self) -> str:
        return self.fn.__name__


def _expected_for(spec: Any, expected: Any) -> dict[str, str]:
    if not expected:
        return {}
    if callable(expected):
        found = dict(expected(spec) or {})
    elif all(isinstance(v, str) for v in expected.values()):
        found = dict(expected)
    else:
        found = dict(expected.get(spec.name) or {})
    unknown = sorted(set(found) - _ALL_CHECK_NAMES)
    if unknown:
        raise ValueError(f"expected_failed_checks names unknown check(s) {unknown}; checks are: {', '.join(sorted(_ALL_CHECK_NAMES))}")
    return found


def _resolve(spec_or_name: Any, kind: str | None, env: CheckEnv) -> Any:
    if not isinstance(spec_or_name, str):
        return spec_or_name
    registry = env.registry
    kinds = [_kind(kind)] if kind else [k for k in SPEC_TYPES if spec_or_name in registry.names(k)]
    if not kinds:
        raise ValueError(f"no registered component is named {spec_or_name!r}; pass a spec object or check `rbx list`")
    if len(kinds) > 1:
        raise ValueError(f"{spec_or_name!r} names a {' and a '.join(_singular(k) for k in kinds)}; pass kind=...")
    return registry.get(kinds[0], spec_or_name)


@dataclasses.dataclass
class CheckResult:
    check: str
    status: str  # passed | failed | skipped | xfailed | xpassed
    message: str = ""


def check_plugin(
    spec_or_name: Any,
    kind: str | None = None,
    *,
    env: CheckEnv | None = None,
    check_params: Mapping[str, Any] | None = None,
    expected_failed_checks: Any = None,
    raise_on_failure: bool = True,
) -> list[CheckResult]:
    """Run every applicable check on one spec (or a registered name).

    Returns one :class:`CheckResult` per check; with ``raise_on_failure``
    (default) raises one :class:`AssertionError` listing every unexpected failure.
    """
    env = (env or default_env()).with_params(check_params)
    spec = _resolve(spec_or_name, kind, env)
    expected = _expected_for(spec, expected_failed_checks)
    results = []
    for check in yield_checks(spec):
        name = check.__name__
        try:
            check(spec, env)
        except unittest.SkipTest as exc:
            results.append(CheckResult(name, "skipped", str(exc)))
        except AssertionError as exc:
            results.append(CheckResult(name, "xfailed" if name in expected else "failed", str(exc)))
        except Exception as exc:
            results.append(CheckResult(name, "xfailed" if name in expected else "failed", f"{type(exc).__name__}: {exc}"))
        else:
            results.append(CheckResult(name, "xpassed" if name in expected else "passed"))
    failures = [r for r in results if r.status == "failed"]
    if failures and raise_on_failure:
        lines = "\n".join(f"  {r.check}: {r.message}" for r in failures)
        raise AssertionError(f"{_singular(kind_of(spec))} '{spec.name}' failed {len(failures)} conformance check(s):\n{lines}")
    return results


def parametrize_with_checks(
    specs: Iterable[Any],
    *,
    check_params: Mapping[str, Any] | None = None,
    expected_failed_checks: Any = None,
    env: CheckEnv | None = None,
):
    """A ``pytest.mark.parametrize("spec, check", ...)`` with one test per (spec, check).

    Ids read ``<kind>-<name>-<check>`` (select with ``-k``); checks listed in
    ``expected_failed_checks`` are marked ``xfail`` with their reason::

        @parametrize_with_checks(specs_of_distribution("rbx-feature-norm"))
        def test_conformance(spec, check):
            check(spec)
    """
    import pytest

    params = []
    for spec in specs:
        expected = _expected_for(spec, expected_failed_checks)
        for fn in yield_checks(spec):
            marks = [pytest.mark.xfail(reason=expected[fn.__name__])] if fn.__name__ in expected else []
            params.append(
                pytest.param(spec, BoundCheck(fn, check_params, env), id=f"{_singular(kind_of(spec))}-{spec.name}-{fn.__name__}", marks=marks)
            )
    return pytest.mark.parametrize("spec, check", params)


def specs_of_distribution(distribution: str, kinds: Iterable[str] | None = None) -> list[Any]:
    """Every spec registered by the entry points of one installed distribution (e.g. ``"robustbench_x"``)."""
    from robustbench_x.registry import Registry

    wanted = {_kind(k) for k in kinds} if kinds else set(SPEC_TYPES)
    registry = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry.load_entry_points(strict=False)
    specs = []
    seen = set()
    for record in registry.plugins:
        if record.distribution.lower().replace("-", "_") != distribution.lower().replace("-", "_"):
            continue
        if record.status != "ok":
            raise AssertionError(f"plugin '{record.name}' of {record.origin} failed to load: {record.error}")
        for kind in SPEC_TYPES:
            if kind not in wanted:
                continue
            for name in record.provides.get(kind, []):
                if (kind, name) not in seen:
                    seen.add((kind, name))
                    specs.append(registry.get(kind, name))
    if not specs:
        found = sorted({r.distribution for r in registry.plugins})
        raise ValueError(
            f"no entry point of distribution {distribution!r} registers a spec (is it installed? `pip install -e .`); "
            f"distributions with plugins: {found}"
        )
    return specs

