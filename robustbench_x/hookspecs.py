"""The whole extension contract of robustbench_x.

A plugin is a module (or object) registered under the entry-point group
``robustbench_x``; it implements any of the hooks below with
``@robustbench_x.hookimpl``. Each hook takes no argument and returns a list of
specs (see :mod:`robustbench_x.api`). Specs are cheap records with a lazy
``"module:attr"`` factory: implementing a hook must not import torch.

The first-party plugins under ``plugins/`` use exactly this contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_x.api import DatasetSpec, ExecutorSpec, MethodSpec, MetricSpec, ModelSpec, SuiteSpec

PROJECT = "robustbench_x"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rbx_methods() -> list["MethodSpec"]:
    """Called once when the registry loads. Return the scoring methods this
    plugin provides (OOD scores, confidences, calibrated probabilities)."""


@hookspec
def rbx_datasets() -> list["DatasetSpec"]:
    """Called once when the registry loads. Return dataset types (named by
    ``type:`` in datasets.yaml) and built-in datasets (``builtin=True``)."""


@hookspec
def rbx_metrics() -> list["MetricSpec"]:
    """Called once when the registry loads. Return metrics: pure functions of
    per-sample columns, with their direction and display scale."""


@hookspec
def rbx_models() -> list["ModelSpec"]:
    """Called once when the registry loads. Return models or model families
    (``family=True``: ``<name>:<arch>``)."""


@hookspec
def rbx_suites() -> list["SuiteSpec"]:
    """Called once when the registry loads. Return suites: which subsets are
    evaluated, which metrics, which method output they consume."""


@hookspec
def rbx_executors() -> list["ExecutorSpec"]:
    """Called once when the registry loads. Return executors (``--executor``)."""
