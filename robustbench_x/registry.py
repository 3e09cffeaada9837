"""Plugin discovery and the registry of specs.

Discovery walks the ``robustbench_x`` entry points one at a time instead of
calling pluggy's ``load_setuptools_entrypoints``, which stops at the first
plugin that fails to import (pluggy issue #154): a broken plugin is recorded
with its error and distribution, and every other plugin keeps working. Asking
for a component that a broken plugin may have provided then names that plugin
and its error instead of saying "unknown".

Environment:

* ``RBX_PLUGINS``: comma-separated extra modules to register (local development);
* ``RBX_DISABLE_PLUGINS``: comma-separated entry-point names not to load;
* ``RBX_STRICT_PLUGINS=1``: any load error raises (CI, plugin development).

Every spec's fields are checked when its plugin registers it
(:func:`robustbench_x.spec_rules.spec_problems`: a str where a collection of
str is expected, a non-bool flag, a non-numeric scale, a reference not of the
form ``module:attr``, ``params`` that are not JSON values), as are the hook
names (``rbx_method`` is not a hook) and a name registered twice by one
plugin: any of these fails the plugin, as an import error does, with a message
naming the distribution, the spec, the field, the value and the fix. A plugin
that provides nothing loads with a warning.

Names are checked when a plugin registers them (:data:`NAME_PATTERN`): a name
becomes a directory and a file name in the result store and the cache, so it
may never carry a path separator, a ``..`` or a leading dot.

Two plugins registering the same name is a *conflict*, never a silent winner:
``rbx plugins`` and ``rbx list`` show every provider, and asking for the bare
name raises :class:`~robustbench_x.errors.AmbiguousComponent`, which names the
providers and how to pick one: ``<distribution>::<name>`` (or
``<entry-point>::<name>``), e.g. ``robustbench_x::msp``. The separator is
``::`` because a single ``:`` already means "architecture of a model family"
(``timm:resnet18``) and ``@`` appears in metric names (``fpr@95tpr``).

Two exceptions, both because the name is resolved without a user to ask:

* a **suite** name is unique: results are stored under it (``suite=<name>/``)
  and its page is ``<name>.md``, so two suites of one name would share a store
  partition and a page. A plugin registering a suite name another plugin has
  already registered fails to load; the harness's own plugins load first, so a
  third party can never take a first-party suite's name;
* a **metric** name a suite lists resolves to the metric of the suite's own
  plugin when several plugins register that name (:meth:`Registry.suite_metric`);
  the other providers stay usable by their qualified names.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata as md
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from robustbench_x import hookspecs
from robustbench_x.api import DatasetSpec, ExecutorSpec, MethodSpec, MetricSpec, ModelSpec, SuiteSpec
from robustbench_x.errors import AmbiguousComponent, PluginError, PluginUnavailable, UnknownComponent
from robustbench_x.spec_rules import spec_kind, spec_problems

GROUP = hookspecs.PROJECT

#: A registered name: letters, digits and ``. _ + - @`` (``fpr@95tpr``,
#: ``heat-gmm``, ``r@1``), starting with a letter or digit, without ``..``.
#: No ``/``, ``\\`` or ``:`` (``:`` is the model-family separator,
#: ``timm:resnet18``, and ``::`` qualifies a name by its distribution).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*")
QUALIFIER = "::"
#: The distribution of the built-in plugins: they load first (see the suite rule above).
CORE_DISTRIBUTION = "robustbench_x"

KINDS: dict[str, tuple[str, type]] = {
    "methods": ("rbx_methods", MethodSpec),
    "datasets": ("rbx_datasets", DatasetSpec),
    "metrics": ("rbx_metrics", MetricSpec),
    "models": ("rbx_models", ModelSpec),
    "suites": ("rbx_suites", SuiteSpec),
    "executors": ("rbx_executors", ExecutorSpec),
}


@dataclass
class PluginRecord:
    """One entry point (or explicit module) and what became of it."""

    name: str
    module: str
    distribution: str
    version: str
    status: str = "ok"  # ok | failed | disabled
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)
    warning: str | None = None  # loaded, but something looks wrong (it provides nothing)

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip()

    @property
    def label(self) -> str:
        return f"{self.distribution}=={self.version}" if self.version else self.distribution

    def answers_to(self, qualifier: str) -> bool:
        """Whether ``qualifier::name`` means this plugin (its distribution or entry-point name)."""
        return _normalise(qualifier) in {_normalise(self.distribution), _normalise(self.name)}


class Registry:
    """Specs by kind and name, with the plugin each came from."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._origin: dict[tuple[str, str], PluginRecord] = {}
        # Every (plugin, spec) registered under a name, in load order; more than one is a conflict.
        self._providers: dict[tuple[str, str], list[tuple[PluginRecord, Any]]] = {}

    # ---------------------------------------------------------------- loading
    def load_entry_points(self, strict: bool | None = None) -> None:
        strict = _env_flag("RBX_STRICT_PLUGINS") if strict is None else strict
        disabled = _env_list("RBX_DISABLE_PLUGINS")
        for ep in sorted(md.entry_points(group=GROUP), key=_load_order):
            dist = getattr(ep, "dist", None)
            record = PluginRecord(
                name=ep.name,
                module=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "",
            )
            if ep.name in disabled:
                record.status = "disabled"
                self.plugins.append(record)
                continue
            self._load(record, ep.load, strict)
        for module in _env_list("RBX_PLUGINS"):
            record = PluginRecord(name=module, module=module, distribution="RBX_PLUGINS", version="")
            self._load(record, lambda m=module: importlib.import_module(m), strict)

    def register_object(self, obj: Any, name: str, distribution: str = "(in-process)", version: str = "") -> PluginRecord:
        """Register an already-imported plugin object (tests, notebooks)."""
        record = PluginRecord(name=name, module=getattr(obj, "__name__", repr(obj)), distribution=distribution, version=version)
        self._load(record, lambda: obj, strict=True)
        return record

    def _load(self, record: PluginRecord, load, strict: bool) -> None:
        self.plugins.append(record)
        try:
            obj = load()
            self.pm.register(obj, name=record.name)
            _check_hook_names(self.pm, obj, record)
            self._collect(obj, record)
        except Exception as exc:  # a broken plugin must not take the others down
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            try:
                if self.pm.is_registered(obj):  # type: ignore[possibly-undefined]
                    self.pm.unregister(obj)
            except Exception:
                pass
            if strict:
                raise PluginError(f"plugin '{record.name}' ({record.origin}) failed to load: {record.error}") from exc

    def _collect(self, obj: Any, record: PluginRecord) -> None:
        # Call this plugin's own hook implementations only, so that a spec is
        # attributed to the plugin that returned it.
        pending: list[tuple[str, Any]] = []
        for kind, (hook_name, spec_type) in KINDS.items():
            impl = getattr(obj, hook_name, None)
            if impl is None:
                continue
            specs = impl() or []
            if isinstance(specs, spec_type):
                raise PluginError(f"hook {hook_name} of plugin '{record.name}' ({record.origin}) returned one {spec_type.__name__}; fix: return a list of them")
            for spec in specs:
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"hook {hook_name} of plugin '{record.name}' returned {spec!r}; "
                        f"expected {spec_type.__name__} instances"
                    )
                pending.append((kind, spec))
        for kind, spec in pending:
            _check_name(kind, spec.name, record)
        _check_specs(pending, record)
        for kind, spec in pending:
            if kind == "suites" and (kind, spec.name) in self._providers:
                other = self._providers[(kind, spec.name)][0][0]
                raise PluginError(
                    f"plugin '{record.name}' ({record.origin}) registers suite '{spec.name}', which plugin '{other.name}' "
                    f"({other.origin}) already provides: a suite's name must be unique, as its results are stored under "
                    f"suite={spec.name}/ and its page is {spec.name}.md; fix: rename the suite, e.g. "
                    f"'{_normalise(record.distribution)}-{spec.name}'"
                )
        if not pending:
            record.warning = "provides nothing: its hooks returned no spec"
        for kind, spec in pending:
            providers = self._providers.setdefault((kind, spec.name), [])
            providers.append((record, spec))
            if len(providers) == 1:
                self._specs[kind][spec.name] = spec
                self._origin[(kind, spec.name)] = record
            record.provides.setdefault(kind, []).append(spec.name)

    # ---------------------------------------------------------------- lookup
    def names(self, kind: str, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._specs[kind] if fnmatch.fnmatch(n, pattern))

    def specs(self, kind: str) -> list[Any]:
        return [self._specs[kind][n] for n in self.names(kind)]

    def providers(self, kind: str, name: str) -> list[tuple[PluginRecord, Any]]:
        """Every (plugin, spec) that registered ``name``, in load order."""
        return list(self._providers.get((kind, name), []))

    def conflicts(self, kind: str | None = None) -> dict[tuple[str, str], list[PluginRecord]]:
        """Names registered by more than one plugin, with their providers."""
        return {
            key: [record for record, _ in providers]
            for key, providers in sorted(self._providers.items())
            if len(providers) > 1 and (kind is None or key[0] == kind)
        }

    def get(self, kind: str, name: str) -> Any:
        return self._resolve(kind, name)[1]

    def _resolve(self, kind: str, name: str) -> tuple[PluginRecord, Any]:
        qualifier, _, bare = name.rpartition(QUALIFIER) if QUALIFIER in name else ("", "", name)
        if kind == "models" and (kind, bare) not in self._providers and ":" in bare:
            family = bare.split(":", 1)[0]
            providers = self._providers.get((kind, family), [])
            if providers and all(spec.family for _, spec in providers):
                bare = family
        providers = self._providers.get((kind, bare), [])
        if qualifier:
            chosen = [(record, spec) for record, spec in providers if record.answers_to(qualifier)]
            if len(chosen) == 1:
                return chosen[0]
            if providers:
                raise UnknownComponent(kind[:-1], name, [_qualified(record, bare, providers) for record, _ in providers])
        elif len(providers) == 1:
            return providers[0]
        elif len(providers) > 1:
            raise AmbiguousComponent(kind[:-1], bare, [(_qualified(record, bare, providers), record.origin) for record, _ in providers])
        specs = self._specs[kind]
        failures = [(p.name, p.origin, p.error or "") for p in self.plugins if p.status == "failed"]
        if failures and not UnknownComponent(kind[:-1], bare, list(specs)).suggestions:
            raise PluginUnavailable(kind[:-1], name, failures)
        raise UnknownComponent(kind[:-1], name, list(specs))

    def stored_name(self, kind: str, ref: str) -> str:
        """The name a component's results are stored and shown under: its own name,
        or its qualified one when another installed plugin registers the same name,
        so a lab's ``msp`` never overwrites the built-in ``msp`` row. The built-in
        components keep their bare names (their rows and committed pages stay
        theirs whatever a user installs)."""
        record, spec = self._resolve(kind, ref)
        providers = self._providers.get((kind, spec.name), [])
        if len(providers) < 2 or record.distribution == CORE_DISTRIBUTION:
            return spec.name
        return _qualified(record, spec.name, providers)

    def suite_metric(self, suite: SuiteSpec, name: str) -> MetricSpec:
        """The metric ``name`` as ``suite`` lists it: when several plugins register
        that name, the one from the suite's own plugin (a third party's ``auroc``
        must not block the first-party suites); otherwise as :meth:`get`."""
        providers = self._providers.get(("metrics", name), [])
        if len(providers) > 1:
            owner = next((record for record, spec in self._providers.get(("suites", suite.name), []) if spec == suite), None)
            own = [spec for record, spec in providers if record is owner]
            if len(own) == 1:
                return own[0]
        return self.get("metrics", name)

    def origin(self, kind: str, name: str) -> PluginRecord:
        return self._resolve(kind, name)[0]

    def plugin_label(self, kind: str, name: str) -> str:
        return self.origin(kind, name).label


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _qualified(record: PluginRecord, name: str, providers: list[tuple[PluginRecord, Any]]) -> str:
    """``<distribution>::<name>``, or ``<entry point>::<name>`` when the distribution holds
    several of the providers (the modules named in RBX_PLUGINS share one)."""
    shared = sum(other.distribution == record.distribution for other, _ in providers) > 1
    return f"{record.name if shared else record.distribution}{QUALIFIER}{name}"


def _load_order(ep: md.EntryPoint) -> tuple[bool, str]:
    dist = getattr(ep, "dist", None)
    own = dist is not None and _normalise(dist.metadata["Name"]) == _normalise(CORE_DISTRIBUTION)
    return (not own, ep.name)


def _check_hook_names(pm: pluggy.PluginManager, obj: Any, record: PluginRecord) -> None:
    """A hook implementation of no hook would be silently ignored (``rbx_method``)."""
    hooks = [hook for hook, _ in KINDS.values()]
    for attr in dir(obj):
        if attr in hooks or pm.parse_hookimpl_opts(obj, attr) is None:
            continue
        if getattr(getattr(obj, attr), "__name__", None) in hooks:  # `_orig = rbx_methods`: an alias, never called
            continue
        close = difflib.get_close_matches(attr, hooks, n=1, cutoff=0.6)
        raise PluginError(
            f"plugin '{record.name}' ({record.origin}) implements '{attr}', which is not a robustbench_x hook"
            f"{f'; did you mean {close[0]}?' if close else ''} (hooks: {', '.join(hooks)}); fix: rename the function"
        )


def _check_specs(pending: list[tuple[str, Any]], record: PluginRecord) -> None:
    problems = [f"{spec_kind(spec)} '{spec.name}': {p}" for _, spec in pending for p in spec_problems(spec)]
    seen: set[tuple[str, str]] = set()
    for kind, spec in pending:
        if (kind, spec.name) in seen:
            problems.append(f"{kind[:-1]} '{spec.name}' is registered twice by this plugin; fix: rename or drop one")
        seen.add((kind, spec.name))
    if problems:
        raise PluginError(f"plugin '{record.name}' ({record.origin}) registers malformed specs:\n  " + "\n  ".join(problems))


def _check_name(kind: str, name: Any, record: PluginRecord) -> None:
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name) and ".." not in name:
        return
    raise PluginError(
        f"plugin '{record.name}' ({record.origin}) registers {kind[:-1]} name {name!r}, which is not allowed: "
        "a name is letters, digits and '. _ + - @', starting with a letter or digit, without '..' "
        "(it becomes a directory name in the result store and the cache)"
    )


def _env_list(var: str) -> list[str]:
    return [item.strip() for item in os.environ.get(var, "").split(",") if item.strip()]


def _env_flag(var: str) -> bool:
    return os.environ.get(var, "").lower() in {"1", "true", "yes", "on"}


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        registry = Registry()
        registry.load_entry_points()
        _REGISTRY = registry
    return _REGISTRY


def iter_kinds() -> Iterable[str]:
    return KINDS.keys()
