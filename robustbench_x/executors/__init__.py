"""Executors run job groups and report outcomes; results never depend on which.

An executor is built from its spec's factory with the CLI options and has one
method, ``run(groups, options, on_job) -> list[Outcome]`` (the narrow
extension point, as httpx's ``BaseTransport.handle_request``).
"""

from __future__ import annotations


def build_executor(registry, name: str, **options):
    """Instantiate the executor registered as ``name`` with the CLI options."""
    from robustbench_x.api import load_factory

    spec = registry.get("executors", name)
    return load_factory(spec.factory)(**options)
