"""Opt-in pytest fixtures for plugin authors (not registered automatically).

Enable them in a test module or in your top-level ``conftest.py``::

    pytest_plugins = ["robustbench_x.testing.pytest_plugin"]

Fixtures
    ``rbx_cache_dir`` (session)
        An isolated ``RBX_CACHE_DIR`` for the session (a temporary directory;
        set ``RBX_CONFORMANCE_CACHE_DIR`` to reuse one between sessions, e.g.
        to train the built-in model once in CI).
    ``rbx_embedded`` (session)
        A :class:`~robustbench_x.testing.CheckEnv`: the embedded default
        dataset (``.dataset``) and the built-in CNN trained on it
        (``.model``), built once under ``rbx_cache_dir``. ``.context(seed)``
        is a method context over its outputs; pass it to a check:
        ``check(spec, rbx_embedded)``.
    ``rbx_registry``
        ``rbx_registry(*plugins, entry_points=False)`` builds a registry that
        holds only the given plugins (modules, module names or plugin
        objects), installs it as the process-wide registry for the test
        (what ``rbx run`` and the runner read) and returns it.
    ``rbx_run``
        ``rbx_run(suite="ood", methods=None, models=None, datasets=None,
        seeds=(0,))`` plans a suite (by default on the built-in model and the
        embedded default) and runs it in this process; returns the result
        rows as a pandas DataFrame (one row per metric value, with
        ``status`` and ``error``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from robustbench_x.testing.checks import CheckEnv


@pytest.fixture(scope="session")
def rbx_cache_dir(tmp_path_factory) -> Path:
    shared = os.environ.get("RBX_CONFORMANCE_CACHE_DIR")
    if shared:
        path = Path(shared)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("rbx-cache")


@pytest.fixture(scope="session")
def rbx_embedded(rbx_cache_dir) -> CheckEnv:
    env = CheckEnv(rbx_cache_dir)
    env.model  # train (or load) the built-in model once for the session
    return env


@pytest.fixture
def rbx_registry():
    from robustbench_x import registry as registry_module
    from robustbench_x.registry import Registry

    previous = registry_module._REGISTRY

    def make(*plugins: Any, entry_points: bool = False) -> Registry:
        registry = Registry()
        for plugin in plugins:
            obj = importlib.import_module(plugin) if isinstance(plugin, str) else plugin
            registry.register_object(obj, name=getattr(obj, "__name__", repr(obj)), distribution="(rbx_registry)")
        if entry_points:
            registry.load_entry_points()
        registry_module._REGISTRY = registry
        return registry

    yield make
    registry_module._REGISTRY = previous


@pytest.fixture
def rbx_run(rbx_embedded, tmp_path, monkeypatch):
    from robustbench_x.config import Config
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry
    from robustbench_x.results import read_results
    from robustbench_x.runner import RunOptions, run_group, write_skipped

    monkeypatch.setenv("RBX_CACHE_DIR", str(rbx_embedded.cache_dir))
    calls = {"n": 0}

    def run(
        suite: str = "ood",
        methods: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        datasets: Sequence[str] | None = None,
        seeds: Sequence[int] = (0,),
    ):
        calls["n"] += 1
        out = tmp_path / f"rbx-run-{calls['n']}"
        registry = get_registry()
        models = list(models) if models else [rbx_embedded.model_name]
        datasets = list(datasets) if datasets else None
        plan = make_plan(registry, Config(), suite, models=models, datasets=datasets, methods=methods, seeds=seeds)
        options = RunOptions(out=str(out))
        for job in plan.skipped:
            write_skipped(job, out)
        for group in plan.groups():
            run_group(group, options)
        return read_results(out)

    return run
