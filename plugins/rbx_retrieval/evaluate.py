"""The evaluator of ``task="retrieval"`` suites: rank a gallery for every query.

A suite names it with ``evaluator="rbx_retrieval.evaluate:evaluate"``;
the runner calls it with one :class:`robustbench_x.evaluation.Evaluation`
instead of the per-subset classification evaluation.

What it does
------------
1. Asks the method for an embedding of every sample of the ``query`` and the
   ``gallery`` subsets (``method.score(ctx, subset)[suite.method_output]``,
   an ``(N, D)`` array) and validates it: a dict, the key present, 2-D with one
   row per sample of the subset, ``D >= 1`` and the same ``D`` on both
   subsets, real numbers, every value finite. A violation is a
   :class:`~robustbench_x.errors.PluginError` naming the method, the subset and
   the fix.
2. Reads the hierarchical labels ``dataset.hierarchy(subset)``: ``(N, L)``
   non-negative integers, column 0 the finest level and equal to the samples'
   labels (``docs/datasets.md#hierarchical-labels``), the same ``L`` on both subsets.
3. Ranks the **whole gallery** for each query by dot-product similarity
   (:func:`rbx_retrieval.ranking.rank_gallery`; ties broken by the smaller
   gallery index, so rankings are deterministic), a chunk of queries at a
   time, and turns each chunk's rankings into relevance lists (shared levels;
   level-0 binary relevance), from which every metric of the suite is
   computed **per query** (kind ``"retrieval"``, calling convention in
   :mod:`rbx_retrieval.metrics`).
4. Returns one metric tuple per metric, subset ``"query"``: value = the mean
   over queries of the per-query values, ``n`` = the number of queries it
   averages; and the per-sample columns of the **queries**: ``sample_id``,
   ``subset`` (``"query"``), ``label`` (finest label), ``prediction`` (the
   finest label of the top-ranked gallery item: 1-NN classification),
   ``n_relevant`` (gallery items with the query's finest label) and one float
   column per metric, named after it, holding each query's value, so every
   metric (and a bootstrap interval: resample queries, average the column) is
   recomputed without the model.

Conventions
-----------
* **Query and gallery are disjoint** subsets, so there is no self-match to
  exclude (``exclude_self=False``); a dataset whose queries are also gallery
  items would need its own subsets.
* **Neighbours ranked**: all ``G`` gallery items (``k = G``), for every metric:
  AP, H-AP, NDCG and ASI are over the complete ranking, and mAP@R / R@k /
  mAP@100 read its prefix. SupRank's ``G - 1`` quirk (the last gallery item
  never ranked, ``docs/metrics.md#ranking-and-shared-levels``) is not reproduced.
* **Level populations** ``|Omega^(l)|`` and ``R`` are counted over the whole
  gallery (``ranking.level_counts`` / ``count_relevant``), not including the
  query (HAPPIER's cached relevances count the query itself; not here).
* **Queries without a relevant item** (no gallery item with the finest label,
  resp. sharing any level): AP / mAP@R / mAP@100 (resp. H-AP / NDCG / ASI) are
  undefined for them and stored as NaN in the query's column; the metric's
  value is the mean over the other queries and its ``n`` says how many those
  are. R@k is 0 for such a query. If no query has a defined value, the metric
  gets a ``failed`` row ("metric undefined") and the others stand.
* **Similarity** is the raw dot product: the methods L2-normalise (cosine).

Memory
------
Only one chunk of ``C`` queries is ranked at a time. A chunk holds its
``(C, G)`` ranking (int64 indices, float32 scores), the shared-level and
relevance lists and the metrics' temporaries: about :data:`BYTES_PER_PAIR`
(64) bytes per (query, gallery item) pair, so the peak on top of the
embeddings (``(Q + G) * D`` floats) and labels is ≈ ``64 * C * G`` bytes. ``C``
is chosen so that this stays under the budget, :data:`DEFAULT_MEMORY_BUDGET`
(512 MiB; ``$RBX_RETRIEVAL_MEMORY_MB`` overrides it): the whole query set at
once for the embedded benchmark (366 × 535), about 11 queries per chunk for
H-GLDv2's 761,757-image index. Rankings do not depend on ``C``; metric
values only up to floating-point rounding (≈ 1e-16 relative).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustbench_x.api import load_factory
from robustbench_x.errors import JobError, PluginError, UsageError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED
from rbx_retrieval.ranking import count_relevant, level_counts, rank_gallery, relevance_lists

__all__ = [
    "evaluate",
    "score_rankings",
    "validate_embeddings",
    "hierarchy_labels",
    "query_chunk_size",
    "RetrievalScores",
    "QUERY",
    "GALLERY",
    "BYTES_PER_PAIR",
    "DEFAULT_MEMORY_BUDGET",
]

QUERY, GALLERY = "query", "gallery"
#: Working memory per (query, gallery item) pair of a chunk, in bytes (see the module docstring).
BYTES_PER_PAIR = 64
#: Default working-memory budget of one chunk, in bytes.
DEFAULT_MEMORY_BUDGET = 512 * 2**20
#: Upper bound on the queries of one chunk (beyond this nothing is gained).
MAX_CHUNK = 4096
MEMORY_ENV = "RBX_RETRIEVAL_MEMORY_MB"
#: Per-sample columns the evaluator writes besides the metric columns.
RESERVED_COLUMNS = ("sample_id", "subset", "label", "prediction", "n_relevant", "seed", "score", "confidence", "probs")


# --------------------------------------------------------------------------- validation


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def validate_embeddings(produced: Any, n: int, method: str, subset: str, key: str = "embedding") -> np.ndarray:
    """Check one subset's embeddings; return them as a float32 (or float64) ``(n, D)`` array."""
    if not isinstance(produced, dict):
        raise PluginError(
            f"method '{method}' returned {type(produced).__name__} for subset '{subset}'; "
            f"expected a dict with '{key}': an (N, D) array, one embedding per sample"
        )
    if key not in produced:
        raise PluginError(
            f"method '{method}' returned no '{key}' for subset '{subset}' (it returned {sorted(produced)}); "
            f"the retrieval suite ranks by '{key}', an (N, D) array"
        )
    try:
        array = _to_numpy(produced[key])
    except Exception as exc:  # ragged lists and other non-arrays
        raise PluginError(f"method '{method}' returned '{key}' for subset '{subset}' that is not an array: {exc}") from None
    if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 1:
        raise PluginError(
            f"method '{method}' returned '{key}' of shape {array.shape} for subset '{subset}'; "
            f"expected ({n}, D) with D >= 1: one D-dimensional embedding per sample of the subset"
        )
    if array.dtype.kind not in "fiu":
        raise PluginError(f"method '{method}' returned '{key}' of dtype {array.dtype} for subset '{subset}'; expected real numbers")
    array = array.astype(np.float64 if array.dtype == np.float64 else np.float32, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise PluginError(
            f"method '{method}' returned {int(bad.sum())} non-finite value(s) (NaN/inf) in '{key}' for subset '{subset}': "
            f"{rows.size} of {n} embeddings, the first at row {int(rows[0])}; fix the method so every embedding is finite "
            "(e.g. guard the normalisation against zero norms)"
        )
    return array


def hierarchy_labels(dataset, subset: str, labels: np.ndarray) -> np.ndarray:
    """``dataset.hierarchy(subset)`` checked against the samples' ``labels``: ``(N, L)`` int64."""
    name = getattr(dataset, "name", type(dataset).__name__)
    fn = getattr(dataset, "hierarchy", None)
    if fn is None:
        raise PluginError(
            f"dataset '{name}' has no hierarchy(subset) method; retrieval needs (N, L) integer labels per subset, "
            "column 0 the finest level (docs/datasets.md#hierarchical-labels)"
        )
    h = _to_numpy(fn(subset))
    if h.ndim == 1:
        h = h[:, None]
    n = len(labels)
    if h.ndim != 2 or h.shape[0] != n or h.shape[1] < 1:
        raise PluginError(f"dataset '{name}': hierarchy('{subset}') has shape {h.shape}; expected ({n}, L) with L >= 1, one row per sample")
    if h.dtype.kind == "f":
        if not np.isfinite(h).all() or not np.all(h == np.round(h)):
            raise PluginError(f"dataset '{name}': hierarchy('{subset}') must hold integer labels (NaN or fractions found)")
    elif h.dtype.kind not in "iu":
        raise PluginError(f"dataset '{name}': hierarchy('{subset}') must hold integer labels, got dtype {h.dtype}")
    h = h.astype(np.int64)
    if h.size and h.min() < 0:
        row = int(np.flatnonzero((h < 0).any(axis=1))[0])
        raise PluginError(
            f"dataset '{name}': hierarchy('{subset}') has a negative label at row {row} ({h[row].tolist()}); "
            "samples without a complete hierarchy must be left out of the subset"
        )
    mismatch = np.flatnonzero(h[:, 0] != np.asarray(labels, dtype=np.int64))
    if mismatch.size:
        r = int(mismatch[0])
        raise PluginError(
            f"dataset '{name}': column 0 of hierarchy('{subset}') must be the samples' labels (the finest level); "
            f"row {r} has {int(h[r, 0])} but the sample's label is {int(labels[r])} ({mismatch.size} of {n} rows differ)"
        )
    return h


def query_chunk_size(n_gallery: int, memory_budget_bytes: int | None = None) -> int:
    """Queries ranked at once so that ``BYTES_PER_PAIR * C * G`` stays within the budget."""
    budget = _memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
    return int(max(1, min(MAX_CHUNK, budget // (BYTES_PER_PAIR * max(1, int(n_gallery))))))


def _memory_budget() -> int:
    raw = os.environ.get(MEMORY_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MEMORY_BUDGET
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not np.isfinite(mb) or mb <= 0:
        raise UsageError(f"${MEMORY_ENV} must be a positive number of MiB, got {raw!r}\n  fix: e.g. export {MEMORY_ENV}=2048, or unset it (default 512)")
    return int(mb * 2**20)


# --------------------------------------------------------------------------- ranking + metrics


@dataclass
class RetrievalScores:
    """Per-query outputs of :func:`score_rankings`, in query order."""

    values: dict[str, np.ndarray]  # metric name -> (Q,) float64, NaN where undefined
    errors: dict[str, str] = field(default_factory=dict)  # metric name -> why it has no value at all
    prediction: np.ndarray | None = None  # (Q,) finest label of the top-1 gallery item
    n_relevant: np.ndarray | None = None  # (Q,) gallery items with the query's finest label
    chunk_size: int = 0


def score_rankings(
    query_embeddings,
    gallery_embeddings,
    query_labels,
    gallery_labels,
    metric_specs,
    *,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    device: str = "cpu",
) -> RetrievalScores:
    """Rank the whole gallery for every query, chunk by chunk, and compute every metric per query.

    ``query_labels`` ``(Q, L)`` / ``gallery_labels`` ``(G, L)`` (1-D means
    ``L = 1``); ``metric_specs``: :class:`~robustbench_x.api.MetricSpec` of
    kind ``"retrieval"`` (another kind is reported in ``errors``). A metric
    function raising ``ValueError`` is reported in ``errors`` (its values stay
    NaN); any other exception propagates.
    """
    q = np.asarray(query_embeddings)
    g = np.asarray(gallery_embeddings)
    ql = np.asarray(query_labels, dtype=np.int64)
    gl = np.asarray(gallery_labels, dtype=np.int64)
    ql = ql[:, None] if ql.ndim == 1 else ql
    gl = gl[:, None] if gl.ndim == 1 else gl
    n_q, n_g = q.shape[0], g.shape[0]
    if ql.shape[0] != n_q or gl.shape[0] != n_g:
        raise ValueError(f"labels ({ql.shape[0]}, {gl.shape[0]}) do not match embeddings ({n_q}, {n_g})")
    counts = level_counts(ql, gl)
    n_rel = count_relevant(ql, gl, 0)
    fns: dict[str, Any] = {}
    out = RetrievalScores(values={}, prediction=np.empty(n_q, dtype=np.int64), n_relevant=n_rel)
    for spec in metric_specs:
        out.values[spec.name] = np.full(n_q, np.nan)
        if spec.kind != "retrieval":
            out.errors[spec.name] = f"metric '{spec.name}' has kind '{spec.kind}'; the retrieval evaluator computes only kind 'retrieval' metrics"
        else:
            fns[spec.name] = load_factory(spec.fn)
    c = int(chunk_size) if chunk_size is not None else query_chunk_size(n_g, memory_budget_bytes)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out.chunk_size = c
    for start in range(0, n_q, c):
        sl = slice(start, min(start + c, n_q))
        idx, _scores = rank_gallery(q[sl], g, k=None, chunk_size=c, device=device)
        del _scores
        out.prediction[sl] = gl[idx[:, 0], 0]
        shared = relevance_lists(ql[sl], gl, idx)
        relevant = relevance_lists(ql[sl], gl, idx, hierarchy_level=0).astype(bool)
        del idx
        kwargs = {"shared": shared, "relevant": relevant, "level_counts": counts[sl], "n_relevant": n_rel[sl]}
        for name in list(fns):
            try:
                values = np.asarray(fns[name](**kwargs), dtype=np.float64)
            except ValueError as exc:
                out.errors[name] = UNDEFINED + str(exc)
                out.values[name][:] = np.nan
                del fns[name]
                continue
            if values.shape != (sl.stop - sl.start,):
                raise PluginError(
                    f"retrieval metric '{name}' returned shape {values.shape} for {sl.stop - sl.start} queries; "
                    "a kind 'retrieval' metric returns one value per query"
                )
            out.values[name][sl] = values
        del shared, relevant
    return out


# --------------------------------------------------------------------------- the evaluator


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The ``evaluator`` of retrieval suites (module docstring)."""
    method, ctx, suite, metric_specs, method_name = ev.method, ev.ctx, ev.suite, ev.metric_specs, ev.method_name
    dataset = ctx.dataset
    available = list(dataset.subsets())
    missing = [s for s in (QUERY, GALLERY) if s not in available]
    if missing:
        raise JobError(
            f"dataset '{dataset.name}' has no {' and no '.join(repr(s) for s in missing)} subset (it has {available}); "
            "retrieval needs disjoint 'query' and 'gallery' subsets"
        )
    key = suite.method_output
    embeddings, labels, cached = {}, {}, {}
    for subset in (QUERY, GALLERY):
        cached[subset] = ctx.outputs(subset)
        n = len(cached[subset])
        if n == 0:
            raise JobError(f"dataset '{dataset.name}': subset '{subset}' is empty")
        embeddings[subset] = validate_embeddings(method.score(ctx, subset), n, method_name, subset, key)
        labels[subset] = hierarchy_labels(dataset, subset, np.asarray(cached[subset].labels))
    dq, dg = embeddings[QUERY].shape[1], embeddings[GALLERY].shape[1]
    if dq != dg:
        raise PluginError(f"method '{method_name}' returned {dq}-dimensional query embeddings but {dg}-dimensional gallery embeddings; they must match")
    lq, lg = labels[QUERY].shape[1], labels[GALLERY].shape[1]
    if lq != lg:
        raise PluginError(f"dataset '{dataset.name}': hierarchy('query') has {lq} levels but hierarchy('gallery') has {lg}")
    for spec in metric_specs:
        if spec.name in RESERVED_COLUMNS:
            raise PluginError(f"retrieval metric '{spec.name}' clashes with the per-sample column of the same name; rename the metric")

    device = ev.device
    n_q, n_g = len(labels[QUERY]), len(labels[GALLERY])
    chunk = query_chunk_size(n_g)
    log = getattr(ctx, "log", None)
    if callable(log):
        log(
            f"{method_name}: ranking {n_g} gallery items for {n_q} queries ({lq} levels, D = {dq}), "
            f"{min(chunk, n_q)} queries per chunk (≈ {BYTES_PER_PAIR * min(chunk, n_q) * n_g / 2**20:.1f} MiB working memory)"
        )
    result = score_rankings(embeddings[QUERY], embeddings[GALLERY], labels[QUERY], labels[GALLERY], metric_specs, chunk_size=chunk, device=device)

    tuples = []
    for spec in metric_specs:
        values = result.values[spec.name]
        defined = np.isfinite(values)
        if spec.name in result.errors:
            tuples.append(MetricValue(QUERY, spec.name, float("nan"), spec.higher_is_better, n_q, result.errors[spec.name]))
        elif not defined.any():
            tuples.append(MetricValue(QUERY, spec.name, float("nan"), spec.higher_is_better, n_q, UNDEFINED + "no query has a relevant gallery item"))
        else:
            tuples.append(MetricValue(QUERY, spec.name, float(values[defined].mean()), spec.higher_is_better, int(defined.sum()), None))
    columns: dict[str, np.ndarray] = {
        "sample_id": np.asarray(cached[QUERY].sample_ids).astype(str).astype(object),
        "subset": np.full(n_q, QUERY, dtype=object),
        "label": labels[QUERY][:, 0].copy(),
        "prediction": result.prediction,
        "n_relevant": result.n_relevant.astype(np.int64),
    }
    for spec in metric_specs:
        columns[spec.name] = result.values[spec.name]
    return tuples, columns
