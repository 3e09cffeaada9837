"""Testing helpers for plugin authors: test doubles and the conformance kit.

* :class:`ArrayContext`, :class:`ModelContext`, :func:`make_outputs`: test
  doubles to fit and score a method without the runner;
* the conformance kit (:mod:`robustbench_x.testing.checks`):
  :func:`check_plugin`, :func:`parametrize_with_checks` and the individual
  ``check_*`` functions, :class:`RestrictedContext` (enforces ``requires``);
* :mod:`robustbench_x.testing.pytest_plugin`: opt-in fixtures
  (``pytest_plugins = ["robustbench_x.testing.pytest_plugin"]``).
"""

from robustbench_x.testing.checks import (
    ACCESS_RULES,
    CHECKS,
    CappedDataset,
    CheckContext,
    CheckEnv,
    CheckResult,
    CheckSkipped,
    RestrictedContext,
    UndeclaredCapability,
    check_plugin,
    default_env,
    kind_of,
    parametrize_with_checks,
    specs_of_distribution,
    write_imagefolder,
    yield_checks,
)
from robustbench_x.testing.doubles import ArrayContext, ModelContext, make_outputs

__all__ = [
    "ACCESS_RULES",
    "ArrayContext",
    "CHECKS",
    "CappedDataset",
    "CheckContext",
    "CheckEnv",
    "CheckResult",
    "CheckSkipped",
    "ModelContext",
    "RestrictedContext",
    "UndeclaredCapability",
    "check_plugin",
    "default_env",
    "kind_of",
    "make_outputs",
    "parametrize_with_checks",
    "specs_of_distribution",
    "write_imagefolder",
    "yield_checks",
]
