"""Testing helpers for plugin authors: test doubles and the conformance kit."""

from robustbench_x.testing.doubles import ArrayContext, ModelContext, make_outputs

__all__ = ["ArrayContext", "ModelContext", "make_outputs"]
