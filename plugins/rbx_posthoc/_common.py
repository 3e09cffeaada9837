"""Helpers shared by the post-hoc methods (private: not part of the plugin's API).

Everything here is numpy only. Cached outputs may be float32 memory maps; the
helpers cast to float64 chunk by chunk so that fitted statistics (means,
second moments) are accumulated in double precision without materialising a
float64 copy of a large training split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax

from robustbench_x.api import Context, Method
from robustbench_x.errors import JobError

#: Rows per chunk when streaming a (possibly memory-mapped) feature matrix.
CHUNK = 8192


class PosthocMethod(Method):
    """Base of the methods in this plugin.

    Subclasses set ``name`` (the spec name, used in the ``ctx.fitted`` key so
    that two methods with the same hyperparameters never share fitted state)
    and implement ``score``; fitted methods implement ``_build(ctx)`` and call
    :meth:`_fitted` from ``fit``.
    """

    name = ""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.state: dict[str, np.ndarray] | None = None

    def fit(self, ctx: Context) -> None:  # default: nothing to fit
        return None

    def _fitted(self, ctx: Context, **key: Any) -> dict[str, np.ndarray]:
        self.state = ctx.fitted(lambda: self._build(ctx), method=self.name, **key)
        return self.state

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def _require_state(self, ctx: Context) -> dict[str, np.ndarray]:
        """The fitted state, fitting first if ``score`` is called before ``fit``."""
        if self.state is None:
            self.fit(ctx)
        assert self.state is not None
        return self.state


def f64(a: Any) -> np.ndarray:
    """``a`` as a float64 array (copies memory maps and float32 arrays)."""
    return np.asarray(a, dtype=np.float64)


def scalar(state: dict[str, np.ndarray], key: str) -> float:
    """A scalar stored as a 1-element array in fitted state."""
    return float(np.asarray(state[key]).reshape(-1)[0])


def chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def score_dict(score: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
    """``score`` and ``confidence`` (same ranking, separate arrays) plus extras."""
    score = np.ascontiguousarray(score, dtype=np.float64).reshape(-1)
    out = {"score": score, "confidence": score.copy()}
    for key, value in extra.items():
        if key == "prediction":
            out[key] = np.asarray(value, dtype=np.int64).reshape(-1)
        else:
            out[key] = np.asarray(value, dtype=np.float64)
    return out


def degenerate_fit(ctx: Context, method: str, problem: str, fix: str) -> JobError:
    """The job error for a training split ``method`` cannot be fitted on, naming the dataset and the fix."""
    name = getattr(getattr(ctx, "dataset", None), "name", "") or "?"
    return JobError(f"{method}: dataset '{name}': {problem}; the scores would be meaningless, so nothing is reported; fix: {fix}")


def labelled(outputs, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the labelled rows (label >= 0) of ``outputs``."""
    labels = np.asarray(outputs.labels, dtype=np.int64)
    index = np.flatnonzero(labels >= 0)
    if index.size == 0:
        raise ValueError(f"subset {subset!r} has no labelled samples (all labels are -1)")
    return index, labels[index]


def second_moment(
    x: np.ndarray,
    shift: np.ndarray | None = None,
    *,
    means: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """``(x − s)ᵀ(x − s) / n`` in float64, streamed over row chunks.

    This is ``sklearn.covariance.EmpiricalCovariance(assume_centered=True)
    .fit(x − s).covariance_`` (the maximum-likelihood second moment, divisor n).
    ``shift`` is one vector subtracted from every row; with ``means`` and
    ``index`` row ``i`` is centred on ``means[index[i]]`` (its class mean).
    """
    n, d = x.shape
    if n == 0:
        raise ValueError("cannot estimate a covariance from 0 samples")
    acc = np.zeros((d, d), dtype=np.float64)
    for sl in chunks(n):
        xb = f64(x[sl])
        if shift is not None:
            xb = xb - shift
        if means is not None:
            xb = xb - means[index[sl]]
        acc += xb.T @ xb
    return acc / n


__all__ = [
    "CHUNK",
    "PosthocMethod",
    "chunks",
    "degenerate_fit",
    "f64",
    "labelled",
    "logsumexp",
    "scalar",
    "score_dict",
    "second_moment",
    "softmax",
]
