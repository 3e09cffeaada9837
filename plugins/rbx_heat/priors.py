"""HEAT's prior energies (``docs/methods.md#heat``), differentiable, in float64.

Lafon, Ramzi, Rambour & Thome, "Hybrid Energy Based Model in the Feature Space
for Out-of-Distribution Detection", ICML 2023 (the "prior" energies of the
hybrid model; section numbers not re-checked) and MarcLafon/heatood ``heat/scorers/ssd_scorer.py``,
``heat/scorers/energy_logits_scorer.py``, ``heat/lib/distributions.py``
(commit ``2b68ccdbd514``).

* :class:`GMMPrior` (the code's ``SSDScorer`` with ``normalize: True``): class
  means and **one shared covariance** estimated as ``np.cov(Z.T, bias=True)``
  on class-centred features (divisor N) plus ``1e-12·I``; component weights
  ``π_c = N_c / N`` (the code's ``Categorical(class_count)``);
  ``E(z) = −log Σ_c π_c N(z; μ_c, Σ)`` with every normalising constant
  (``MixtureSameFamily.log_prob``). Features are L2-normalised by the caller
  (``avg`` for GMM, ``std`` for GMM-std).
* :class:`ELPrior` (``EnergyLogitsScorer``): ``E(z) = −logsumexp(W z + b)`` on
  the **unnormalised** penultimate features, with the classifier's own head.

Deviations from the code, none of which changes a value beyond float rounding:

* the code runs the Cholesky factorisation and the densities in float32 on
  GPU; here they are float64 (the jitter ``1e-12`` is below float32
  resolution, so float32 adds nothing but rounding);
* if the Cholesky factorisation of ``Σ + 1e-12·I`` fails, the jitter is
  multiplied by 10 until it succeeds and the final value is logged (the code
  would raise);
* classes without a training sample are left out of the mixture (the code
  would produce NaN means).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["GMMPrior", "ELPrior", "fit_gmm", "gmm_energy_numpy"]

JITTER = 1e-12


def fit_gmm(z: np.ndarray, labels: np.ndarray, log: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Fit the shared-covariance class-conditional GMM of HEAT.

    Returns ``means`` (K, d), ``scale_tril`` (d, d, lower Cholesky factor of
    Σ), ``log_weights`` (K,) = ``log(N_c/N)``, ``classes`` (K,) and ``jitter``
    (the value added to the diagonal).
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(labels):
        raise ValueError(f"fit_gmm: need (N, d) features and N labels, got {z.shape} and {labels.shape}")
    classes, counts = np.unique(labels[labels >= 0], return_counts=True)
    if classes.size == 0:
        raise ValueError("fit_gmm: no labelled sample")
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    centred = np.concatenate([z[labels == c] - means[k] for k, c in enumerate(classes)])
    cov = np.atleast_2d(np.cov(centred.T, bias=True))
    if not np.trace(cov) > 0:  # the jitter alone would make a Gaussian of variance 1e-12: densities, not data
        raise ValueError(f"fit_gmm: the within-class scatter of the {len(z)} training features is 0 (one distinct feature per class); give every class at least 2 distinct training images")
    d = cov.shape[0]
    jitter = JITTER
    while True:
        try:
            scale_tril = np.linalg.cholesky(cov + jitter * np.eye(d))
            break
        except np.linalg.LinAlgError:
            jitter *= 10.0
            if jitter > 1.0:
                raise ValueError("fit_gmm: covariance is not positive definite even with jitter 1") from None
    if jitter != JITTER and log is not None:
        log(f"heat: Cholesky of the shared covariance failed with jitter {JITTER:g}; used {jitter:g}")
    weights = counts / counts.sum()
    return {
        "means": means,
        "scale_tril": scale_tril,
        "log_weights": np.log(weights),
        "classes": classes.astype(np.int64),
        "jitter": np.array([jitter]),
    }


class GMMPrior:
    """``E(z) = −log Σ_c π_c N(z; μ_c, LLᵀ)``, differentiable in ``z``."""

    normalize = True
    has_sample = True

    def __init__(self, means: np.ndarray, scale_tril: np.ndarray, log_weights: np.ndarray) -> None:
        self.means = torch.as_tensor(np.asarray(means, dtype=np.float64))
        self.scale_tril = torch.as_tensor(np.asarray(scale_tril, dtype=np.float64))
        self.log_weights = torch.as_tensor(np.asarray(log_weights, dtype=np.float64))
        d = self.means.shape[1]
        eye = torch.eye(d, dtype=torch.float64)
        # L⁻¹ once: Mahalanobis terms become one matmul per batch.
        self.inv_tril = torch.linalg.solve_triangular(self.scale_tril, eye, upper=False)
        self.half_log_det = torch.log(torch.diagonal(self.scale_tril)).sum()
        self.log_norm = -0.5 * d * math.log(2 * math.pi) - self.half_log_det
        # Whitened means: (z − μ_c) L⁻ᵀ = z L⁻ᵀ − μ_c L⁻ᵀ.
        self.white_means = self.means @ self.inv_tril.T

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str) -> GMMPrior:
        return cls(state[f"{prefix}means"], state[f"{prefix}scale_tril"], state[f"{prefix}log_weights"])

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; μ_c, Σ)`` for every component, shape (B, K), float64."""
        w = z.to(torch.float64) @ self.inv_tril.T  # (B, d)
        maha = (w * w).sum(1, keepdim=True) - 2.0 * w @ self.white_means.T + (self.white_means**2).sum(1)[None, :]
        maha = maha.clamp_min(0.0)
        return self.log_norm - 0.5 * maha

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.component_log_prob(z) + self.log_weights[None, :], dim=1)

    def energy_grad(self, z: torch.Tensor) -> torch.Tensor:
        """``∇_z E`` per row, float64: ``Σ_c r_c Σ⁻¹(z − μ_c)`` with ``r`` the component responsibilities.

        In whitened coordinates ``w = L⁻¹z`` this is ``(w − Σ_c r_c L⁻¹μ_c) L⁻¹``; the
        ``clamp_min(0)`` of :meth:`component_log_prob` only guards rounding and is ignored.
        """
        w = z.to(torch.float64) @ self.inv_tril.T
        resp = torch.softmax(self.component_log_prob(z) + self.log_weights[None, :], dim=1)
        return (w - resp @ self.white_means) @ self.inv_tril

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws: component ``c ~ π`` then ``μ_c + L ε`` (the code's ``base_dist`` proposal)."""
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[comp] + eps @ self.scale_tril.T


class ELPrior:
    """Energy of the logits ``E(z) = −logsumexp(W z + b)`` (unnormalised features)."""

    normalize = False
    has_sample = False

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = torch.as_tensor(np.asarray(weight, dtype=np.float64))
        self.bias = torch.as_tensor(np.asarray(bias, dtype=np.float64))

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str) -> ELPrior:
        return cls(state[f"{prefix}weight"], state[f"{prefix}bias"])

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(z.to(torch.float64) @ self.weight.T + self.bias, dim=1)

    def energy_grad(self, z: torch.Tensor) -> torch.Tensor:
        """``∇_z E = −softmax(W z + b) W`` per row, float64."""
        return -torch.softmax(z.to(torch.float64) @ self.weight.T + self.bias, dim=1) @ self.weight


def gmm_energy_numpy(z: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """GMM energy of rows of ``z`` (no gradient), float64."""
    prior = GMMPrior(state["means"], state["scale_tril"], state["log_weights"])
    with torch.no_grad():
        return prior.energy(torch.as_tensor(np.asarray(z, dtype=np.float64))).numpy()
