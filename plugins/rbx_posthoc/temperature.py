"""Temperature scaling (``docs/methods.md#temperature_scaling``).

Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017, §4.2 (temperature scaling): one scalar ``T > 0`` divides every
logit, ``q = softmax(z/T)``; ``T`` minimises the negative log-likelihood of the
**validation** labels. Dividing by ``T`` does not change the argmax, so the
prediction (hence accuracy) is the model's.

Fitting follows the authors' repository, gpleiss/temperature_scaling
``temperature_scaling.py::ModelWithTemperature.set_temperature`` at
``ce1154ec7d52``:

* ``init_temperature = 1.5`` (``nn.Parameter(torch.ones(1) * 1.5)``);
* ``optim.LBFGS([T], lr=0.01, max_iter=200)`` and **one** ``optimizer.step``
  on a closure computing ``CrossEntropyLoss(z / T, y)`` (mean NLL) on all
  validation logits at once. ``max_iter`` was 50 until commit ``e888e9e``
  (2025, "Increase number of optimization iterations for convergence");
* ``line_search_fn = None`` (the repository passes none).

Known property of these defaults (reproduced on purpose, not a bug here):
without a line search torch's L-BFGS moves by ``lr`` times its quasi-Newton
step, so with ``lr = 0.01`` 200 iterations do not always reach the NLL
minimum; on a synthetic set whose NLL optimum is T ≈ 1.97 the reference
settings stop at T ≈ 1.87. ``line_search_fn="strong_wolfe"`` (and ``lr=1``)
converges to the optimum; it is a different configuration with its own config
hash, not the reference one.

Computation is float64 (the repository uses float32 on GPU); fits on fewer
than ``SINGLE_THREAD_BELOW`` logit entries run with one torch thread (200
sequential tiny iterations gain nothing from intra-op threads and lose a lot
to their synchronisation on a busy machine). Only labelled
validation rows (label ≥ 0) enter the NLL. ``fit`` logs ``temperature T``.
Outputs: ``probs = softmax(z/T)``, ``confidence = score = max probs``,
``prediction = argmax z``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rbx_posthoc._common import PosthocMethod, f64, labelled, scalar, score_dict, softmax
from robustbench_x.api import Context

__all__ = ["TemperatureScaling", "fit_temperature"]

#: Fits on fewer logit entries than this run single-threaded (see fit_temperature).
SINGLE_THREAD_BELOW = 1 << 22


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    init_temperature: float = 1.5,
    lr: float = 0.01,
    max_iter: int = 200,
    line_search_fn: str | None = None,
) -> float:
    """The temperature minimising mean NLL of ``softmax(logits / T)``, fitted
    as gpleiss/temperature_scaling does (one L-BFGS ``step``)."""
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


class TemperatureScaling(PosthocMethod):
    """softmax(z/T) with T fitted on the validation logits (see module docstring)."""

    name = "temperature_scaling"

    def __init__(
        self,
        init_temperature: float = 1.5,
        lr: float = 0.01,
        max_iter: int = 200,
        line_search_fn: str | None = None,
    ) -> None:
        if not init_temperature > 0:
            raise ValueError(f"temperature_scaling: init_temperature must be > 0, got {init_temperature!r}")
        super().__init__(init_temperature=init_temperature, lr=lr, max_iter=max_iter, line_search_fn=line_search_fn)
        self.init_temperature = float(init_temperature)
        self.lr = float(lr)
        self.max_iter = int(max_iter)
        self.line_search_fn = line_search_fn

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        val = ctx.outputs("val")
        index, labels = labelled(val, "val")
        logits = f64(val.logits)[index]
        t = fit_temperature(
            logits,
            labels,
            init_temperature=self.init_temperature,
            lr=self.lr,
            max_iter=self.max_iter,
            line_search_fn=self.line_search_fn,
        )
        return {"temperature": np.array([t], dtype=np.float64)}

    def fit(self, ctx: Context) -> None:
        state = self._fitted(
            ctx,
            T_init=self.init_temperature,
            lr=self.lr,
            max_iter=self.max_iter,
            line_search_fn=self.line_search_fn,
        )
        t = scalar(state, "temperature")
        if not (math.isfinite(t) and t > 0):
            raise ValueError(
                f"temperature_scaling: fitted temperature {t!r} is not a positive finite number; "
                "check the validation logits and labels"
            )
        ctx.log(f"temperature {t:.4f}")

    @property
    def temperature(self) -> float:
        if self.state is None:
            raise RuntimeError("temperature_scaling: call fit(ctx) first")
        return scalar(self.state, "temperature")

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        state = self._require_state(ctx)
        t = scalar(state, "temperature")
        z = f64(ctx.outputs(subset).logits)
        probs = softmax(z / t, axis=1)
        return score_dict(probs.max(axis=1), probs=probs, prediction=z.argmax(axis=1))
