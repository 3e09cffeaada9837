"""Temperature scaling (``docs/methods.md#temperature_scaling``).

Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017, §4.2 (temperature scaling): one scalar ``T > 0`` divides every
logit, ``q = softmax(z/T)``; ``T`` minimises the negative log-likelihood of the
**validation** labels. Dividing by ``T`` does not change the argmax, so the
prediction (hence accuracy) is the model's.

Two methods:

* ``temperature_scaling`` (:class:`TemperatureScaling`, :func:`fit_temperature`)
  minimises the validation NLL, as the paper defines ``T``. The mean NLL is a
  convex function of ``1/T`` (a log-sum-exp of functions linear in ``1/T``
  minus a linear term), hence unimodal in ``log T``, so a bounded scalar
  search on ``log T`` (``scipy.optimize.minimize_scalar(method="bounded")``,
  Brent's method, tolerance ``1e-10`` in ``log T``) finds the minimiser. The
  search interval is ``T ∈ [1e-2, 1e2]`` (:data:`T_BOUNDS`); the result is
  then checked against a log-spaced grid over that interval, and a minimiser
  on an end of it (a validation split the model classifies without error
  wants ``T → 0``) is logged and recorded (``temperature_at_bound``) instead
  of passed off as an interior optimum. The fitted ``T`` is recorded as the
  job diagnostic ``temperature``.
* ``temperature_scaling-lbfgs`` (:class:`TemperatureScalingLBFGS`,
  :func:`fit_temperature_lbfgs`) reproduces the authors' repository,
  gpleiss/temperature_scaling ``temperature_scaling.py::ModelWithTemperature.set_temperature``
  at ``ce1154ec7d52``: ``init_temperature = 1.5``,
  ``optim.LBFGS([T], lr=0.01, max_iter=200)`` with no line search and **one**
  ``optimizer.step`` on a closure computing ``CrossEntropyLoss(z / T, y)``
  (``max_iter`` was 50 until commit ``e888e9e``). Without a line search torch's
  L-BFGS moves by ``lr`` times its quasi-Newton step, so 200 iterations often
  stop short of the minimum: on the embedded default it stops at T ≈ 0.45
  while the NLL minimiser is T ≈ 0.10; on a synthetic set whose optimum is
  T ≈ 1.97 it stops at T ≈ 1.87. Kept under its own name, with that deviation
  declared, for comparison with numbers produced by the reference script.

Computation is float64 (the repository uses float32 on GPU). Only labelled
validation rows (label ≥ 0) enter the NLL. ``fit`` logs ``temperature T``.
Outputs: ``probs = softmax(z/T)`` (what calibration metrics read),
``confidence = score = max probs − 1``, computed as minus the sum of the
non-maximal probabilities (:func:`robustbench_x.api.max_probability_minus_one`,
as MSP in :mod:`rbx_posthoc.logit`): a fitted ``T`` well below 1 pushes most
``max probs`` to exactly 1.0, which would tie samples that the exact value
orders; ``prediction = argmax z``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from rbx_posthoc._common import PosthocMethod, f64, labelled, scalar, score_dict, softmax
from robustbench_x.api import Context, max_probability_minus_one

__all__ = ["TemperatureScaling", "TemperatureScalingLBFGS", "fit_temperature", "fit_temperature_lbfgs", "validation_nll", "T_BOUNDS"]

#: Fits on fewer logit entries than this run single-threaded (see fit_temperature_lbfgs).
SINGLE_THREAD_BELOW = 1 << 22
#: Interval of the bounded search on T (searched in log T).
T_BOUNDS = (1e-2, 1e2)
#: Points of the log-spaced grid that checks the bounded search.
CHECK_GRID = 401


def validation_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / T)`` at the labels (natural log, float64)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(labels, dtype=np.int64)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = T_BOUNDS) -> tuple[float, bool]:
    """The temperature minimising the mean validation NLL on ``bounds``, and whether it sits on an end of them."""
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi:
        raise ValueError(f"temperature_scaling: bounds must satisfy 0 < T_min < T_max, got {bounds!r}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    found = minimize_scalar(
        lambda log_t: validation_nll(z, y, math.exp(log_t)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    t = math.exp(float(found.x))
    # Check: no point of a grid over the interval does better (the NLL is unimodal in log T, so
    # this fails only if the search itself went wrong).
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), CHECK_GRID))
    values = np.array([validation_nll(z, y, g) for g in grid])
    best = float(values.min())
    if validation_nll(z, y, t) > best + 1e-9 * max(1.0, abs(best)):
        t = float(grid[int(values.argmin())])
    at_bound = math.isclose(t, lo, rel_tol=1e-6) or math.isclose(t, hi, rel_tol=1e-6)
    return t, at_bound


def fit_temperature_lbfgs(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    init_temperature: float = 1.5,
    lr: float = 0.01,
    max_iter: int = 200,
    line_search_fn: str | None = None,
) -> float:
    """The temperature as gpleiss/temperature_scaling fits it (one L-BFGS ``step``; may not reach the minimum)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    temperature = torch.nn.Parameter(torch.full((1,), float(init_temperature), dtype=torch.float64))
    optimizer = torch.optim.LBFGS([temperature], lr=lr, max_iter=max_iter, line_search_fn=line_search_fn)

    def step() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / temperature, y)
        loss.backward()
        return loss

    # 200 sequential iterations on a small problem: intra-op threads only add
    # synchronisation, which on a loaded machine (busy-waiting OpenMP workers)
    # made a 60-sample fit take seconds instead of milliseconds.
    threads = torch.get_num_threads()
    if z.numel() < SINGLE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            optimizer.step(step)
    finally:
        torch.set_num_threads(threads)
    return float(temperature.detach().item())


def _check_temperature(method: str, t: float) -> float:
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{method}: fitted temperature {t!r} is not a positive finite number; check the validation logits and labels")
    return t


def _validation(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    val = ctx.outputs("val")
    index, labels = labelled(val, "val")
    return f64(val.logits)[index], labels


class _Tempered(PosthocMethod):
    """softmax(z/T) with a fitted T; subclasses fit it."""

    @property
    def temperature(self) -> float:
        if self.state is None:
            raise RuntimeError(f"{self.name}: call fit(ctx) first")
        return scalar(self.state, "temperature")

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        t = scalar(self._require_state(ctx), "temperature")
        z = f64(ctx.outputs(subset).logits)
        probs = softmax(z / t, axis=1)
        return score_dict(max_probability_minus_one(probs, axis=1), probs=probs, prediction=z.argmax(axis=1))


class TemperatureScaling(_Tempered):
    """softmax(z/T) with T the validation-NLL minimiser (bounded search on log T)."""

    name = "temperature_scaling"

    def __init__(self, t_min: float = T_BOUNDS[0], t_max: float = T_BOUNDS[1]) -> None:
        if not 0 < float(t_min) < float(t_max):
            raise ValueError(f"temperature_scaling: need 0 < t_min < t_max, got t_min={t_min!r}, t_max={t_max!r}")
        super().__init__(t_min=t_min, t_max=t_max)
        self.bounds = (float(t_min), float(t_max))

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        t, at_bound = fit_temperature(*_validation(ctx), bounds=self.bounds)
        return {"temperature": np.array([t], dtype=np.float64), "at_bound": np.array([at_bound])}

    def fit(self, ctx: Context) -> None:
        state = self._fitted(ctx, bounds=list(self.bounds))
        t = _check_temperature(self.name, scalar(state, "temperature"))
        ctx.log(f"temperature {t:.4f}")
        ctx.record("temperature", t)
        if bool(np.asarray(state["at_bound"]).reshape(-1)[0]):
            ctx.log(f"temperature_scaling: the validation NLL is lowest at the end of the search interval {list(self.bounds)}")
            ctx.record("temperature_at_bound", 1)


class TemperatureScalingLBFGS(_Tempered):
    """softmax(z/T) with T from the reference script's single L-BFGS step (see module docstring)."""

    name = "temperature_scaling-lbfgs"

    def __init__(self, init_temperature: float = 1.5, lr: float = 0.01, max_iter: int = 200, line_search_fn: str | None = None) -> None:
        if not init_temperature > 0:
            raise ValueError(f"temperature_scaling-lbfgs: init_temperature must be > 0, got {init_temperature!r}")
        super().__init__(init_temperature=init_temperature, lr=lr, max_iter=max_iter, line_search_fn=line_search_fn)
        self.init_temperature = float(init_temperature)
        self.lr = float(lr)
        self.max_iter = int(max_iter)
        self.line_search_fn = line_search_fn

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        t = fit_temperature_lbfgs(
            *_validation(ctx), init_temperature=self.init_temperature, lr=self.lr, max_iter=self.max_iter, line_search_fn=self.line_search_fn
        )
        return {"temperature": np.array([t], dtype=np.float64)}

    def fit(self, ctx: Context) -> None:
        state = self._fitted(ctx, T_init=self.init_temperature, lr=self.lr, max_iter=self.max_iter, line_search_fn=self.line_search_fn)
        t = _check_temperature(self.name, scalar(state, "temperature"))
        ctx.log(f"temperature {t:.4f}")
        ctx.record("temperature", t)
