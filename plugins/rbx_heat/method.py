"""HEAT: hybrid energy-based model in feature space (``docs/methods.md#heat``).

Lafon, Ramzi, Rambour & Thome, "Hybrid Energy Based Model in the Feature Space
for Out-of-Distribution Detection", ICML 2023 (arXiv 2305.16966), method
section: prior energies (GMM, energy of the logits), hybrid energy
``E_θ(z) = E_res,θ(z)/T + E_prior(z)/T_prior`` trained by contrastive
divergence with SGLD, and composition of several energies (the paper's
section and equation numbers were not re-checked for this module). Every
detail below was read in the official code, MarcLafon/heatood at
``2b68ccdbd514`` (``heat/ebm/*``, ``heat/scorers/*``, ``heat/lib/features.py``,
``heat/eval_scorers.py``, ``scripts/cifar10.sh``), which the README says to
run (the scripts override the yaml files).

Features (``heat/lib/features.py``: forward hook on the last stage):
``avg`` = spatial mean of ``ctx.model.feature_maps(x)`` (= the penultimate
features) and ``std`` = per-channel spatial standard deviation,
``torch.std(dim=(2, 3))`` (unbiased), computed over ``ctx.loader(subset)``
without augmentation (the CIFAR transform of the code has none).

Energies (higher = more OOD), :mod:`rbx_heat.priors` and :mod:`rbx_heat.ebm`:

* ``gmm``: GMM prior on L2-normalised ``avg``;
* ``gmm_std``: the same GMM on L2-normalised ``std``;
* ``el``: ``−logsumexp(head(z))`` on unnormalised ``avg``;

each corrected by a residual MLP: ``E = E_res(z) + E_prior(z)/T_prior``
(``EBMScorer`` returns this total; T = 1).

Composition (``CombineScorer``): each energy is standardised,
``Ē_i = (E_i − m_i)/s_i``, with the mean and (unbiased) std of **one batch of
training features**, the first batch (256 samples) of a shuffled loader; here
the batch is the first 256 indices of a permutation seeded from ``ctx.seed``
(same batch for every energy, as in the code). Then ``β = 0`` → ``Σ_i Ē_i``
(default, the paper's product of experts), ``β = +inf`` → ``max``,
``β = −inf`` → ``min``, otherwise ``logsumexp(β·Ē)/β``. A single energy is
returned raw (the code scores a lone ``EBMScorer`` without standardisation;
ranking is the same either way).

Outputs: ``score = confidence = −E`` (higher = more in-distribution).

Registered methods: ``heat`` (GMM + EL + GMM-std, β = 0, the README's
composition), ``heat-gmm``, ``heat-el``, ``heat-gmm-std``.

Defaults (``preset="cifar10"``: ``scripts/cifar10.sh``, ``docs/methods.md#heat``)

======== ====== ===== ===== ====== ====== ============= ===== ===== ========
energy   epochs batch steps η₀     σ₀     proposal      λ     lr    T_prior
======== ====== ===== ===== ====== ====== ============= ===== ===== ========
GMM      20     1024  40    1e-4   5e-3   base_dist     10    1e-5  1e3
GMM-std  20     1024  1     1e-4   5e-3   base_dist     10    1e-5  1e3
EL       20     256   50    1e-1   1e-1   random_normal 0.1   1e-5  1
======== ====== ===== ===== ====== ====== ============= ===== ===== ========

Shared by all three (yaml files): MLP width 1024, ``n_hidden = 4`` (one shared
hidden Linear), T = 1, ``η_K = 0.1·η₀``, ``σ_K = 0.1·σ₀``, ε_data = 1e-4,
Adam betas (0, 0.999), MultiStepLR milestones [10], γ = 0.1, SGLD projection
ReLU (+ L2 normalisation for GMM/GMM-std). ``preset="cifar100"`` takes the
``scripts/cifar100.sh`` rows instead (GMM/GMM-std: 20 steps, η₀ 2e-4,
σ₀ 1e-3, λ 20; EL: 8 epochs, batch 1024, 200 steps, η₀ 1e-1, σ₀ 1e-2, λ 1).

``budget``:

* ``"paper"``: the preset exactly (epochs, batch, width 1024);
* ``"cpu"`` (default) keeps the script's **number of optimiser steps**, not
  its number of epochs: CIFAR-10's 50,000 training features in batches of
  1024 (GMM, GMM-std) or 256 (EL) with ``drop_last`` make 20 × 48 = 960 and
  20 × 195 = 3,900 Adam steps (:func:`official_steps`); on a smaller split
  the epoch count is raised until ``epochs × ⌊N / batch⌋`` reaches that
  number (on the embedded default's 540 training samples, batch 64: 120
  epochs for GMM and GMM-std, 488 for EL), never below the script's epochs
  (:func:`for_data`), with the MultiStepLR decay kept half-way. It also
  changes the MLP width (1024 → 128) and the batch size (→ min(preset, 64)),
  and, because of the width, the learning rate: with Adam every weight moves
  by about ``lr`` per step, so a narrower MLP changes its output less per
  step; ``lr`` is multiplied by ``1024 / width`` (8 at width 128). Measured
  on the EL energy, 40 steps at width 128 and lr 8e-5 move ``E_res`` on the
  data by −0.386 ± 0.041 against −0.396 ± 0.031 at width 1024 and the
  script's 1e-5, while width 128 at 1e-5 moves it by −0.012 ± 0.003: at the
  script's lr a 128-wide residual stays untrained and HEAT equals its prior.
  SGLD steps, step sizes, noise, λ, T_prior and proposals stay the script's.
  The fit runs single-threaded (small matrices on a shared CPU are slower
  with several threads). SGLD takes its gradients in closed form rather than
  through autograd (:class:`rbx_heat.ebm.ResidualGrad`), which halves the
  cost; what is left is mostly the MLP's matrix products. Cost: about 27 ms
  of CPU per EL or GMM step at batch 64 (50 or 40 SGLD steps each), so the
  three energies take about two minutes of CPU on the embedded default, EL
  most of it.

Every fit records, per energy, the optimiser steps it ran (diagnostic
``steps/<energy>``) and, when the ID test split is scored,
``residual_share/<energy>`` = ``std(E_res) / std(E_prior / T_prior)`` over
the ID test samples (:func:`residual_share`): how much the trained residual
moves the energy compared with the prior's own spread.

``width``, ``epochs``, ``batch_size`` and ``lr`` override the budget for every
energy (``None`` = budget value).

Deviations: float64 priors (the code uses float32); Cholesky jitter raised
×10 on failure (logged); whole split as one batch when it is smaller than the
batch size; ``std`` features from ``Model.feature_maps`` (whatever the model
declares its last stage to be) rather than a hook on ``layer4``; the
standardisation batch is a seeded permutation instead of the global RNG.
Only the ``reduce_width=False`` (CIFAR) MLP exists; the ImageNet variants
(``reduce_width=True``, ``base_dist_temp`` proposals, class-conditional SGLD
prior) are not implemented.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rbx_heat.ebm import EnergySettings, ResidualMLP, train_residual
from rbx_heat.priors import ELPrior, GMMPrior, fit_gmm
from robustbench_x.api import Context, Method
from robustbench_x.errors import JobError

__all__ = ["HEAT", "PRESETS", "ENERGIES", "settings_for", "official_steps", "for_data", "residual_share", "compose", "standardisation_stats"]

ENERGIES = ("gmm", "gmm_std", "el")

_C10_GMM = dict(epochs=20, batch_size=1024, steps=40, step_size=1e-4, noise=5e-3, proposal="base_dist", l2_coef=10.0, lr=1e-5, temperature_prior=1e3)
_C100_GMM = dict(epochs=20, batch_size=1024, steps=20, step_size=2e-4, noise=1e-3, proposal="base_dist", l2_coef=20.0, lr=1e-5, temperature_prior=1e3)

#: Per-energy hyperparameters of the official scripts (``docs/methods.md#heat``).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cifar10": {
        "gmm": _C10_GMM,
        "gmm_std": {**_C10_GMM, "steps": 1},
        "el": dict(epochs=20, batch_size=256, steps=50, step_size=1e-1, noise=1e-1, proposal="random_normal", l2_coef=0.1, lr=1e-5, temperature_prior=1.0),
    },
    "cifar100": {
        "gmm": _C100_GMM,
        "gmm_std": dict(_C100_GMM),
        "el": dict(epochs=8, batch_size=1024, steps=200, step_size=1e-1, noise=1e-2, proposal="random_normal", l2_coef=1.0, lr=1e-5, temperature_prior=1.0),
    },
}

#: Training-set size behind each preset (CIFAR-10 / CIFAR-100 train splits): with the script's
#: batch size and ``drop_last=True`` it gives the official number of optimiser steps.
OFFICIAL_TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000}
#: MLP width of the official scripts; the cpu budget's learning rate is scaled by it over its own width.
REFERENCE_WIDTH = 1024
#: What ``budget="cpu"`` changes, and nothing else (see the module docstring).
CPU_BUDGET = {"width": 128, "max_batch_size": 64}

#: Size of the training batch whose energies standardise the composition (``CombineScorer``).
STANDARDISE_BATCH = 256


def settings_for(
    energy: str,
    preset: str = "cifar10",
    budget: str = "cpu",
    *,
    width: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
) -> EnergySettings:
    """The resolved hyperparameters of one energy."""
    if energy not in ENERGIES:
        raise ValueError(f"heat: unknown energy {energy!r}; expected one of {ENERGIES}")
    if preset not in PRESETS:
        raise ValueError(f"heat: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    s = EnergySettings(energy=energy, **PRESETS[preset][energy])
    if budget == "cpu":
        s = replace(
            s,
            width=CPU_BUDGET["width"],
            batch_size=min(s.batch_size, CPU_BUDGET["max_batch_size"]),
            min_steps=official_steps(energy, preset),
        )
    elif budget != "paper":
        raise ValueError(f"heat: budget must be 'cpu' or 'paper', got {budget!r}")
    if width is not None:
        s = replace(s, width=int(width))
    if budget == "cpu":
        # A narrower MLP moves less per Adam step: scale lr so one step changes E_res as the official width does.
        s = replace(s, lr=s.lr * REFERENCE_WIDTH / s.width)
    if epochs is not None:  # an explicit epoch count is taken as is
        s = replace(s, epochs=int(epochs), min_steps=0, milestones=(max(1, int(epochs) // 2),) if budget == "cpu" else s.milestones)
    if batch_size is not None:
        s = replace(s, batch_size=int(batch_size))
    if lr is not None:
        s = replace(s, lr=float(lr))
    return s


def official_steps(energy: str, preset: str = "cifar10") -> int:
    """Optimiser steps of the official script: epochs × ⌊train size / batch⌋ (its loader drops the last batch)."""
    row = PRESETS[preset][energy]
    return int(row["epochs"]) * (OFFICIAL_TRAIN_SIZE[preset] // int(row["batch_size"]))


def for_data(settings: EnergySettings, n: int) -> EnergySettings:
    """Raise the epoch count so that ``epochs × ⌊n / batch⌋ ≥ min_steps``; the lr decay stays half-way."""
    if settings.min_steps <= 0:
        return settings
    per_epoch = max(1, n // max(1, min(settings.batch_size, n)))
    epochs = max(settings.epochs, -(-settings.min_steps // per_epoch))
    return replace(settings, epochs=epochs, milestones=(max(1, epochs // 2),))


def _beta(beta: Any) -> float:
    if isinstance(beta, str):
        table = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "neginf": -math.inf}
        if beta.lower() not in table:
            raise ValueError(f"heat: beta must be a number, 'inf' or '-inf', got {beta!r}")
        return table[beta.lower()]
    beta = float(beta)
    if math.isnan(beta):
        raise ValueError("heat: beta is NaN")
    return beta


def standardisation_stats(energies: np.ndarray) -> tuple[float, float]:
    """Mean and unbiased std (``torch.Tensor.std``) of one batch of energies."""
    e = np.asarray(energies, dtype=np.float64)
    if e.size < 2:
        raise ValueError("heat: need at least 2 training samples to standardise an energy")
    return float(e.mean()), float(e.std(ddof=1))


def compose(energies: np.ndarray, means: Sequence[float], stds: Sequence[float], beta: float | str = 0.0) -> np.ndarray:
    """``CombineScorer``: standardise each column, then sum / max / min / ``logsumexp(β·)/β``.

    ``energies`` is (N, k), higher = more OOD; returns the composed energy (N,).
    """
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"compose: energies must be (N, k), got shape {e.shape}")
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(stds, dtype=np.float64)
    if m.shape != (e.shape[1],) or s.shape != (e.shape[1],):
        raise ValueError("compose: one mean and one std per energy are required")
    if not np.all(s > 0):
        raise ValueError(f"compose: standardisation stds must be > 0, got {s}")
    z = (e - m) / s
    b = _beta(beta)
    if b == 0:
        return z.sum(axis=1)
    if b == math.inf:
        return z.max(axis=1)
    if b == -math.inf:
        return z.min(axis=1)
    bz = b * z
    top = bz.max(axis=1, keepdims=True)
    return (top[:, 0] + np.log(np.exp(bz - top).sum(axis=1))) / b


@contextmanager
def _threads(n: int | None):
    """:func:`robustbench_x.api.torch_threads` when ``n`` is set, else leave torch's setting alone."""
    if n is None:
        yield
        return
    from robustbench_x.api import torch_threads

    with torch_threads(n):
        yield


@contextmanager
def _eval(model):
    """Eval mode for the model's module (if it exposes one) while extracting features; flags restored."""
    try:
        module = model.module
    except (NotImplementedError, AttributeError):
        yield
        return
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in modes:
            m.train(flag)


def extract_features(ctx: Context, subset: str, batch_size: int = 256) -> dict[str, np.ndarray]:
    """``avg`` (spatial mean) and ``std`` (unbiased spatial std) of ``feature_maps``, plus labels."""
    model = ctx.model
    avg, std, labels = [], [], []
    with torch.no_grad(), _eval(model):
        for x, y in ctx.loader(subset, batch_size=batch_size):
            maps = model.feature_maps(x)
            if maps.ndim != 4:
                raise ValueError(f"heat: feature_maps must be (B, C, H, W), got shape {tuple(maps.shape)}")
            avg.append(maps.mean(dim=(2, 3)).to(torch.float64).cpu())
            std.append(maps.std(dim=(2, 3)).to(torch.float64).cpu())
            labels.append(torch.as_tensor(y).reshape(-1).cpu())
    return {"avg": torch.cat(avg).numpy(), "std": torch.cat(std).numpy(), "labels": torch.cat(labels).numpy().astype(np.int64)}


def energy_input(energy: str, feats: dict[str, np.ndarray]) -> torch.Tensor:
    """The feature each energy reads: normalised ``avg`` (gmm), normalised ``std`` (gmm_std), raw ``avg`` (el)."""
    if energy == "gmm":
        return F.normalize(torch.as_tensor(feats["avg"]), dim=1)
    if energy == "gmm_std":
        return F.normalize(torch.as_tensor(feats["std"]), dim=1)
    return torch.as_tensor(feats["avg"])


def make_prior(energy: str, state: dict[str, np.ndarray]):
    return ELPrior.from_state(state, "el/") if energy == "el" else GMMPrior.from_state(state, "gmm/")


def energy_values(energy: str, state: dict[str, np.ndarray], settings: EnergySettings, z: torch.Tensor, chunk: int = 4096) -> dict[str, np.ndarray]:
    """``E_res(z)``, ``E_prior(z)`` and the total ``E_res + E_prior/T_prior`` (float64)."""
    prior = make_prior(energy, state)
    net = ResidualMLP(z.shape[1], settings.width, settings.n_hidden, settings.temperature).load(state, "mlp/").eval()
    res, pri = [], []
    with torch.no_grad():
        for start in range(0, len(z), chunk):
            zb = z[start : start + chunk]
            res.append(net(zb.to(torch.float32)).to(torch.float64))
            pri.append(prior.energy(zb))
    e_res = torch.cat(res).numpy() if res else np.zeros(0)
    e_prior = torch.cat(pri).numpy() if pri else np.zeros(0)
    return {"res": e_res, "prior": e_prior, "total": e_res + e_prior / settings.temperature_prior}


def _check_gmm_scatter(ctx: Context) -> None:
    """Refuse a train split whose GMM prior would have no within-class scatter (one image per class)."""
    labels = np.asarray(ctx.outputs("train").labels)
    labels = labels[labels >= 0]
    n, c = len(labels), len(np.unique(labels))
    if n <= c:
        name = getattr(getattr(ctx, "dataset", None), "name", "") or "?"
        raise JobError(
            f"heat: dataset '{name}': {n} labelled train images in {c} classes: the GMM prior's shared covariance is the "
            "within-class scatter, which is 0 with one image per class (only the 1e-12 jitter would remain); "
            "fix: give every class at least 2 distinct train images"
        )


def fit_energy(
    energy: str,
    feats: dict[str, np.ndarray],
    settings: EnergySettings,
    head: tuple[np.ndarray, np.ndarray],
    seed: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Fit one HEAT energy: prior, residual MLP, standardisation stats (numpy state)."""
    z = energy_input(energy, feats)
    state: dict[str, np.ndarray] = {}
    if energy == "el":
        w, b = head
        state["el/weight"], state["el/bias"] = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
    else:
        gmm = fit_gmm(z.numpy(), feats["labels"], log=log)
        state.update({f"gmm/{k}": v for k, v in gmm.items()})
    prior = make_prior(energy, state)
    net, history = train_residual(z, prior, settings, seed=_energy_seed(seed, energy), log=log)
    state.update(net.export("mlp/"))
    state["train/steps"] = np.array([len(history)], dtype=np.int64)
    # Standardisation batch: first STANDARDISE_BATCH rows of a seeded shuffle (the same for every energy).
    order = np.random.default_rng(seed).permutation(len(z))[:STANDARDISE_BATCH]
    total = energy_values(energy, state, settings, z[torch.as_tensor(order)])["total"]
    mean, std = standardisation_stats(total)
    if std == 0:
        if log is not None:
            log(f"heat[{energy}]: energy is constant on the standardisation batch; std set to 1")
        std = 1.0
    state["standardise/mean"] = np.array([mean])
    state["standardise/std"] = np.array([std])
    return state


def residual_share(values: dict[str, np.ndarray], settings: EnergySettings) -> float:
    """``std(E_res) / std(E_prior / T_prior)``: how much the trained residual moves the hybrid energy
    compared with the prior's own spread (near 0: the energy is its prior)."""
    spread = float(np.std(values["prior"] / settings.temperature_prior))
    return float(np.std(values["res"])) / spread if spread > 0 else float("nan")


def _scalar(a: np.ndarray) -> float:
    return float(np.asarray(a).reshape(-1)[0])


def _energy_seed(seed: int, energy: str) -> int:
    return int(seed) * 1000 + ENERGIES.index(energy) + 1


class HEAT(Method):
    """HEAT energies and their composition; ``score = confidence = −E``."""

    name = "heat"

    def __init__(
        self,
        energies: Sequence[str] = ("gmm", "el", "gmm_std"),
        beta: float | str = 0.0,
        budget: str = "cpu",
        preset: str = "cifar10",
        width: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
    ) -> None:
        energies = tuple(energies)
        if not energies:
            raise ValueError("heat: at least one energy is required")
        for e in energies:
            if e not in ENERGIES:
                raise ValueError(f"heat: unknown energy {e!r}; expected some of {ENERGIES}")
        if len(set(energies)) != len(energies):
            raise ValueError(f"heat: energies must be distinct, got {energies}")
        super().__init__(energies=list(energies), beta=beta, budget=budget, preset=preset, width=width, epochs=epochs, batch_size=batch_size, lr=lr)
        self.energies = energies
        self.beta = _beta(beta)
        self.settings = {
            e: settings_for(e, preset, budget, width=width, epochs=epochs, batch_size=batch_size, lr=lr) for e in energies
        }
        self.threads = 1 if budget == "cpu" else None
        self.states: dict[str, dict[str, np.ndarray]] | None = None
        self._train_feats: dict[str, np.ndarray] | None = None

    def _train_features(self, ctx: Context) -> dict[str, np.ndarray]:
        if self._train_feats is None:
            self._train_feats = extract_features(ctx, "train")
        return self._train_feats

    def fit(self, ctx: Context) -> None:
        states = {}
        n_train = len(ctx.outputs("train"))
        if any(e != "el" for e in self.energies):
            _check_gmm_scatter(ctx)
        self.settings = {e: for_data(s, n_train) for e, s in self.settings.items()}
        with _threads(self.threads):
            for e in self.energies:
                s = self.settings[e]

                def build(e=e, s=s) -> dict[str, np.ndarray]:
                    head = ctx.model.linear_head() if e == "el" else (None, None)
                    return fit_energy(e, self._train_features(ctx), s, head, ctx.seed, log=ctx.log)

                # shared: heat, heat-gmm, heat-el and heat-gmm-std train each energy once between them.
                states[e] = ctx.fitted(build, shared=True, method="heat-energy", energy=e, settings=s.key(), seed=int(ctx.seed), standardise_batch=STANDARDISE_BATCH)
                ctx.record(f"steps/{e}", int(_scalar(states[e]["train/steps"])))
        self.states = states
        self._train_feats = None

    def energy_matrix(self, ctx: Context, subset: str) -> np.ndarray:
        """(N, k) HEAT energies of ``subset``, one column per energy in ``self.energies``."""
        if self.states is None:
            self.fit(ctx)
        assert self.states is not None
        feats = extract_features(ctx, subset)
        cols = []
        with _threads(self.threads):
            for e in self.energies:
                values = energy_values(e, self.states[e], self.settings[e], energy_input(e, feats))
                cols.append(values["total"])
                if subset == "id":
                    ctx.record(f"residual_share/{e}", residual_share(values, self.settings[e]))
        return np.stack(cols, axis=1)

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        energies = self.energy_matrix(ctx, subset)
        if len(self.energies) == 1:
            composed = energies[:, 0]
        else:
            assert self.states is not None
            means = [_scalar(self.states[e]["standardise/mean"]) for e in self.energies]
            stds = [_scalar(self.states[e]["standardise/std"]) for e in self.energies]
            composed = compose(energies, means, stds, self.beta)
        score = np.ascontiguousarray(-composed, dtype=np.float64)
        return {"score": score, "confidence": score.copy()}
