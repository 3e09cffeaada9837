"""Bootstrap replicates of a metric over the stored per-sample outputs, cached
by content.

A *replicate* is the metric recomputed on one resample of the samples. The
resample indices depend only on the sizes of the resampled groups (ID and OOD
separately for an ``ood`` metric; the subset's samples otherwise) and on a
fixed seed, and the samples are put in ``sample_id`` order first. Two methods
scored on the same samples therefore get the *same* indices in replicate
``b``: their replicate vectors are paired, so ``best[b] - other[b]`` is a
paired bootstrap of the difference (what the leaderboard's "not significantly
worse" mark uses), and each vector's 2.5 / 97.5 percentiles are the cell's
percentile interval.

When the evaluator stored the metric's own per-sample values (a column named
like the metric: per-query values of a retrieval metric, say), the replicate
is their resampled mean; otherwise how the metric's kind is resampled is
looked up in :data:`RESAMPLERS` (kind → function), so the core knows no task. A resample on which the metric is undefined
(one class only) gives NaN; the statistics use the defined ones only when they are at least :data:`MIN_DEFINED` of all,
and a group of fewer than :data:`MIN_SAMPLES` samples gives none.

Cache: ``$RBX_CACHE_DIR/bootstrap/<sha256>.npy``, keyed by the bytes of the
arrays the metric reads, the metric's name, kind and function, the number of
replicates and :data:`VERSION`. Unchanged results therefore re-render without
recomputing a single replicate; changed outputs get a new key. Entries are
written to a temporary name and renamed, and an unreadable entry is
recomputed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_x.api import MetricSpec, load_factory
from robustbench_x.cachedir import cache_root, cached_bytes

__all__ = ["Resample", "RESAMPLERS", "replicates", "interval", "not_worse"]

#: Bump when the resampling scheme changes: old cache entries stop matching.
VERSION = "1"
#: Seed of the resample indices (fixed: pages are reproducible).
SEED = 0

#: ``(arrays by name, sizes of the resampled groups, metric on resampled arrays)``:
#: the metric receives one index array per group.
Resample = tuple[dict[str, np.ndarray], tuple[int, ...], Callable[[tuple[np.ndarray, ...]], float]]


class _fn:
    """The metric function, imported on the first replicate that needs it (a
    cached page never imports it)."""

    def __init__(self, ref: str) -> None:
        self.ref, self.loaded = ref, None

    def __call__(self, **kwargs):
        if self.loaded is None:
            self.loaded = load_factory(self.ref)
        return self.loaded(**kwargs)


def _subset(scores: pd.DataFrame, subset: str) -> pd.DataFrame:
    """The subset's rows in ``sample_id`` order (what pairs two methods' samples)."""
    pos = np.flatnonzero(scores["subset"].to_numpy() == subset)
    if "sample_id" in scores:
        pos = pos[np.argsort(scores["sample_id"].to_numpy()[pos].astype(str), kind="stable")]
    return scores.iloc[pos]


def _ood(scores: pd.DataFrame, spec: MetricSpec, subset: str) -> Resample | None:
    if "score" not in scores:
        return None
    s_id = _subset(scores, "id")["score"].to_numpy(dtype=float)
    s_ood = _subset(scores, subset)["score"].to_numpy(dtype=float)
    if not len(s_id) or not len(s_ood):
        return None
    fn = _fn(spec.fn)
    return {"id": s_id, "ood": s_ood}, (len(s_id), len(s_ood)), lambda ix: fn(score_id=s_id[ix[0]], score_ood=s_ood[ix[1]])


def _failure(scores: pd.DataFrame, spec: MetricSpec, subset: str) -> Resample | None:
    part = _subset(scores, subset)
    if part.empty or "confidence" not in part:
        return None
    conf = part["confidence"].to_numpy(dtype=float)
    correct = part["prediction"].to_numpy() == part["label"].to_numpy()
    fn = _fn(spec.fn)
    return {"confidence": conf, "correct": correct}, (len(part),), lambda ix: fn(confidence=conf[ix[0]], correct=correct[ix[0]])


def _calibration(scores: pd.DataFrame, spec: MetricSpec, subset: str) -> Resample | None:
    part = _subset(scores, subset)
    if part.empty or "probs" not in part:
        return None
    probs = np.stack(part["probs"].to_numpy()).astype(np.float64)
    labels = part["label"].to_numpy()
    fn = _fn(spec.fn)
    return {"probs": probs, "labels": labels}, (len(part),), lambda ix: fn(probs=probs[ix[0]], labels=labels[ix[0]])


def _classification(scores: pd.DataFrame, spec: MetricSpec, subset: str) -> Resample | None:
    part = _subset(scores, subset)
    if part.empty or "prediction" not in part:
        return None
    pred, labels = part["prediction"].to_numpy(), part["label"].to_numpy()
    fn = _fn(spec.fn)
    return {"prediction": pred, "labels": labels}, (len(part),), lambda ix: fn(prediction=pred[ix[0]], labels=labels[ix[0]])


def _per_sample_column(scores: pd.DataFrame, spec: MetricSpec, subset: str) -> Resample | None:
    """A metric that is the mean of a stored per-sample (per-query) column of its name."""
    if spec.name not in scores:
        return None
    column = _subset(scores, subset)[spec.name].dropna().to_numpy(dtype=float)
    if not len(column):
        return None
    return {spec.name: column}, (len(column),), lambda ix: float(column[ix[0]].mean())


#: Metric kind → how its per-sample outputs are resampled (used when the scores
#: have no column of the metric's name). A kind without an entry has no interval.
RESAMPLERS: dict[str, Callable[[pd.DataFrame, MetricSpec, str], Resample | None]] = {
    "ood": _ood,
    "failure": _failure,
    "calibration": _calibration,
    "classification": _classification,
}


def _key(arrays: dict[str, np.ndarray], spec: MetricSpec, n_boot: int) -> str:
    h = hashlib.sha256(f"{VERSION}|{spec.name}|{spec.kind}|{spec.fn}|{n_boot}|{SEED}".encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def _cache_path(key: str) -> Path:
    return cache_root() / "bootstrap" / f"{key}.npy"


def _npy(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    return buf.getvalue()


def replicates(scores: pd.DataFrame, spec: MetricSpec, subset: str, n_boot: int) -> np.ndarray | None:
    """``n_boot`` bootstrap values of ``spec`` on ``subset`` of one job's per-sample
    outputs (NaN where undefined), or None when the outputs cannot give them."""
    if n_boot <= 0:
        return None
    prepared = _per_sample_column(scores, spec, subset) or RESAMPLERS.get(spec.kind, lambda *_: None)(scores, spec, subset)
    if prepared is None:
        return None
    arrays, sizes, metric = prepared
    if min(sizes) < MIN_SAMPLES:
        return None

    def draw() -> bytes:
        # One replicate's indices at a time (memory stays O(n) on large test sets);
        # the draw order depends only on the sizes, which is what pairs two methods.
        rng = np.random.default_rng(SEED)
        values = np.full(n_boot, np.nan)
        for b in range(n_boot):
            index = tuple(rng.integers(0, n, n) for n in sizes)
            try:
                values[b] = metric(index)
            except ValueError:
                pass  # a resample with a single class: the metric is undefined there
        return _npy(values)

    # Sealed with a manifest (sizes, SHA-256): a damaged entry is redrawn, never read as intervals.
    return np.load(io.BytesIO(cached_bytes(_cache_path(_key(arrays, spec, n_boot)), draw)), allow_pickle=False)


#: A resampled group smaller than this gives no replicates: one image resampled is
#: that image every time, a zero-width interval that would mark every other
#: method as significantly different.
MIN_SAMPLES = 10
#: The share of replicates that must be defined. Where the metric is undefined on
#: a resample (no error drawn, for an error-detection metric), the defined ones
#: are conditional on an event the data does not guarantee: beyond 5 %, their
#: percentiles are not a 95 % interval of anything, so none is shown.
MIN_DEFINED = 0.95


def _enough(values: np.ndarray) -> np.ndarray | None:
    finite = values[np.isfinite(values)]
    return finite if len(finite) >= max(10, MIN_DEFINED * len(values)) else None


def interval(values: np.ndarray | None) -> tuple[float, float] | None:
    """Percentile 95 % interval of replicate values (None if too few are defined)."""
    finite = None if values is None else _enough(values)
    if finite is None:
        return None
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def not_worse(best: np.ndarray, other: np.ndarray) -> bool | None:
    """Paired bootstrap: True when the 95 % percentile interval of ``best - other``
    (replicate by replicate, same resamples) contains 0; None when undefined."""
    if best.shape != other.shape:
        return None
    diff = _enough(best - other)
    if diff is None:
        return None
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return bool(lo <= 0.0 <= hi)
