"""A context that shows a method the model's outputs (and inputs) of attacked samples.

A method scores a subset from ``ctx.outputs(subset)`` (cached logits and
features) or, for input-gradient and stochastic methods, from the batches of
``ctx.loader(subset)``. :class:`SubstitutedContext` wraps the job's context and
answers both for the substituted subsets with the attacked samples' outputs and
inputs; everything else (fitted state, seed, log, record, the other subsets)
is the job's own. So the attacked score is the method's ``score``, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from robustbench_x.api import Context, Outputs

__all__ = ["SubstitutedContext"]


class SubstitutedContext(Context):
    """``inner`` with ``outputs`` / ``loader`` replaced for the subsets in ``outputs``.

    ``inputs[subset]`` is ``(x, y)``: model-ready (normalised) input tensors of
    the attacked samples, in the subset's order."""

    def __init__(self, inner: Context, outputs: Mapping[str, Outputs], inputs: Mapping[str, tuple[Any, Any]]) -> None:
        self._inner = inner
        self._outputs = dict(outputs)
        self._inputs = dict(inputs)
        self.seed = inner.seed
        self.wants = inner.wants
        self.num_classes = inner.num_classes
        self.model = inner.model
        self.dataset = inner.dataset

    def __getattr__(self, name: str) -> Any:
        # what the runner's context holds beyond the Context interface (the job, its options)
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def outputs(self, subset: str) -> Outputs:
        if subset in self._outputs:
            return self._outputs[subset]
        return self._inner.outputs(subset)

    def loader(self, subset: str, batch_size: int = 128) -> Iterator[tuple[Any, Any]]:
        if subset not in self._inputs:
            yield from self._inner.loader(subset, batch_size)
            return
        x, y = self._inputs[subset]
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def rng(self) -> np.random.Generator:
        return self._inner.rng()

    def fitted(self, build: Callable[[], dict[str, np.ndarray]], *, shared: bool = False, **key: Any) -> dict[str, np.ndarray]:
        return self._inner.fitted(build, shared=shared, **key)

    def log(self, message: str) -> None:
        self._inner.log(message)

    def record(self, key: str, value: float | int | str) -> None:
        self._inner.record(key, value)
