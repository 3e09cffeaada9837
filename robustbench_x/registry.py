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
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from robustbench_x import hookspecs
from robustbench_x.api import DatasetSpec, ExecutorSpec, MethodSpec, MetricSpec, ModelSpec, SuiteSpec
from robustbench_x.errors import PluginError, PluginUnavailable, UnknownComponent

GROUP = hookspecs.PROJECT

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

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip()


class Registry:
    """Specs by kind and name, with the plugin each came from."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._origin: dict[tuple[str, str], PluginRecord] = {}

    # ---------------------------------------------------------------- loading
    def load_entry_points(self, strict: bool | None = None) -> None:
        strict = _env_flag("RBX_STRICT_PLUGINS") if strict is None else strict
        disabled = _env_list("RBX_DISABLE_PLUGINS")
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
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
            for spec in specs:
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"hook {hook_name} of plugin '{record.name}' returned {spec!r}; "
                        f"expected {spec_type.__name__} instances"
                    )
                pending.append((kind, spec))
        for kind, spec in pending:
            existing = self._origin.get((kind, spec.name))
            if existing is not None:
                warnings.warn(
                    f"{kind[:-1]} '{spec.name}' from plugin '{record.name}' ({record.origin}) ignored: "
                    f"already registered by '{existing.name}' ({existing.origin})",
                    stacklevel=2,
                )
                continue
            self._specs[kind][spec.name] = spec
            self._origin[(kind, spec.name)] = record
            record.provides.setdefault(kind, []).append(spec.name)

    # ---------------------------------------------------------------- lookup
    def names(self, kind: str, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._specs[kind] if fnmatch.fnmatch(n, pattern))

    def specs(self, kind: str) -> list[Any]:
        return [self._specs[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Any:
        specs = self._specs[kind]
        if name in specs:
            return specs[name]
        if kind == "models" and ":" in name:
            family = name.split(":", 1)[0]
            spec = specs.get(family)
            if spec is not None and spec.family:
                return spec
        failures = [(p.name, p.origin, p.error or "") for p in self.plugins if p.status == "failed"]
        if failures and not UnknownComponent(kind[:-1], name, list(specs)).suggestions:
            raise PluginUnavailable(kind[:-1], name, failures)
        raise UnknownComponent(kind[:-1], name, list(specs))

    def origin(self, kind: str, name: str) -> PluginRecord:
        if kind == "models" and (kind, name) not in self._origin and ":" in name:
            name = name.split(":", 1)[0]
        return self._origin[(kind, name)]

    def plugin_label(self, kind: str, name: str) -> str:
        record = self.origin(kind, name)
        return f"{record.distribution}=={record.version}" if record.version else record.distribution


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
