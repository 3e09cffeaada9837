"""Helpers shared by the gradient-introspection methods (private)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["f64", "softmax", "score_dict", "eval_mode", "last_linear_weight"]


def f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    z = f64(z)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def score_dict(score: np.ndarray, **extra: np.ndarray) -> dict[str, np.ndarray]:
    """``score`` and ``confidence`` (same values, separate arrays) plus extras."""
    score = np.ascontiguousarray(score, dtype=np.float64).reshape(-1)
    out = {"score": score, "confidence": score.copy()}
    for key, value in extra.items():
        out[key] = np.asarray(value, dtype=np.int64).reshape(-1) if key == "prediction" else np.asarray(value, dtype=np.float64)
    return out


@contextmanager
def eval_mode(module) -> Iterator[Any]:
    """Put ``module`` (and every submodule) in eval mode; restore each module's flag afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in modes:
            m.train(flag)


def last_linear_weight(model) -> tuple[str, Any]:
    """Name and tensor of the module parameter that is the head weight ``W`` of ``model.linear_head()``.

    The last 2-D parameter of ``model.module`` with the shape and values of ``W``.
    """
    import torch

    w, _ = model.linear_head()
    w = torch.as_tensor(np.asarray(w))
    found = None
    for name, p in model.module.named_parameters():
        if p.ndim == 2 and tuple(p.shape) == tuple(w.shape) and torch.allclose(p.detach().cpu().to(w.dtype), w):
            found = (name, p)
    if found is None:
        raise ValueError("no parameter of model.module matches the weight returned by model.linear_head()")
    return found
