"""robustbench_x: evaluate vision models out of distribution.

Plugin authors need ``hookimpl`` and the specs and base classes of
:mod:`robustbench_x.api`; the modules a plugin may import are listed in
``robustbench_x.api.PUBLIC_MODULES`` (``docs/tasks.md``), everything else is
the harness's own business.
"""

from robustbench_x.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
