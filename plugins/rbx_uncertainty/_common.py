"""Helpers shared by the sampling methods (private: not part of the plugin's API).

Numpy only: the uncertainty decomposition of a stack of predictive
distributions (``docs/methods.md#mc_dropout``), used by MC Dropout (T stochastic passes)
and Deep Ensembles (K members) alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustbench_x.api import max_probability_minus_one

__all__ = ["SCORES", "check_choice", "concat", "device_of", "entropy", "outputs", "sampling_scores", "select", "stream_seed"]

#: Choices of the ``score`` / ``confidence`` parameters of the sampling methods.
SCORES = ("entropy", "mutual_information", "variation_ratio", "msp")


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, with ``0 log 0 = 0`` (a one-hot has entropy 0, not NaN)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -plogp.sum(axis=axis)


def sampling_scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive distribution and uncertainties from a ``(T, N, C)`` stack of softmaxes.

    With ``p_t`` the t-th distribution and ``p̄ = mean_t p_t``:

    * ``probs`` = ``p̄`` (N, C); ``prediction`` = ``argmax p̄``; ``msp`` = ``max p̄ − 1``
      (minus the sum of the other entries, :func:`robustbench_x.api.max_probability_minus_one`:
      the maximum's ranking where ``max p̄`` itself rounds to 1.0);
    * ``entropy`` = ``H[p̄]`` (predictive entropy);
    * ``mutual_information`` = ``H[p̄] − mean_t H[p_t]`` (BALD; ≥ 0 by Jensen,
      rounding negatives of order 1e-16 are clipped to 0);
    * ``variation_ratio`` = ``1 − (count of the modal argmax among the T draws) / T``
      (ties inside one draw go to the lowest class index, as ``argmax``).

    All uncertainties are in nats and *higher = more uncertain*.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError(f"expected a (T, N, C) array of probabilities, got shape {probs.shape}")
    t, n, c = probs.shape
    if t == 0:
        raise ValueError("need at least one draw (T >= 1)")
    if not np.isfinite(probs).all():  # entropy of NaN would be reported as 0, the most confident value
        raise ValueError("non-finite probabilities: the model produced NaN or inf for some input")
    mean = probs.mean(axis=0)
    h_mean = entropy(mean)
    mi = np.maximum(h_mean - entropy(probs).mean(axis=0), 0.0)
    votes = probs.argmax(axis=2)  # (T, N)
    counts = np.zeros((n, c), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), (t, n)), votes), 1)
    vr = 1.0 - counts.max(axis=1) / t
    return {
        "probs": mean,
        "prediction": mean.argmax(axis=1).astype(np.int64),
        "msp": max_probability_minus_one(mean, axis=1),
        "entropy": h_mean,
        "mutual_information": mi,
        "variation_ratio": vr.astype(np.float64),
    }


def select(stats: dict[str, np.ndarray], which: str) -> np.ndarray:
    """The column ``which`` as a higher-is-more-confident ranking: ``max p̄`` or minus an uncertainty."""
    if which == "msp":
        return np.array(stats["msp"], dtype=np.float64)
    if which in SCORES:
        return -np.asarray(stats[which], dtype=np.float64)
    raise ValueError(f"unknown score {which!r}; choose one of {SCORES}")


def check_choice(name: str, value: Any) -> str:
    if value not in SCORES:
        raise ValueError(f"{name}={value!r} is not one of {SCORES}")
    return value


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        raise ValueError("the subset is empty")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def outputs(stats: dict[str, np.ndarray], score: str, confidence: str) -> dict[str, np.ndarray]:
    """The method's output dict: ``score``/``confidence`` as chosen, plus every column of ``stats``."""
    return {
        "score": select(stats, score),
        "confidence": select(stats, confidence),
        "probs": np.ascontiguousarray(stats["probs"], dtype=np.float64),
        "prediction": np.asarray(stats["prediction"], dtype=np.int64),
        "entropy": np.asarray(stats["entropy"], dtype=np.float64),
        "mutual_information": np.asarray(stats["mutual_information"], dtype=np.float64),
        "variation_ratio": np.asarray(stats["variation_ratio"], dtype=np.float64),
    }


def stream_seed(seed: int, subset: str) -> int:
    """A 32-bit seed from (run seed, subset name), stable across processes.

    Each subset gets its own random stream, so scoring ``id`` does not depend on
    whether ``ood/x`` was scored first, and two subsets never share masks.
    """
    import zlib

    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(subset.encode())]).generate_state(1)[0])


def device_of(module: Any):
    import torch

    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
