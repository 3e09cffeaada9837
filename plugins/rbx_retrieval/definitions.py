"""Retrieval and hierarchical-retrieval metrics (pure numpy).

Docs: ``docs/metrics.md#retrieval``. Sources: elias-ramzi/HAPPIER
``happier/engine/metrics.py``, ``compute_relevance_on_the_fly.py``,
``lib/create_label_matrix.py``; elias-ramzi/SupRank ``suprank/engine/metrics.py``,
``hap_LM.py``; tensorflow/models
``research/delf/delf/python/datasets/google_landmarks_dataset/metrics.py``
(GLDv2). Papers: Ramzi et al., "Hierarchical Average Precision Training for
Pertinent Image Retrieval" (HAPPIER, ECCV 2022); Musgrave et al., "A Metric
Learning Reality Check" (ECCV 2020) for mAP@R.

Input: ranked relevance data
-----------------------------
Every per-query function takes the relevance of the ranked items **in rank
order** (rank 1 first), built by :func:`rbx_retrieval.ranking.rank_gallery` +
:func:`rbx_retrieval.ranking.relevance_lists`:

* binary metrics (AP, R@k, P@1, mAP@R, mAP@k) take ``relevant``: ``(Q, n)``
  (or ``(n,)`` for one query) of 0/1 or bool, e.g. ``relevance_lists(...,
  hierarchy_level=h)`` for HAPPIER's ``*_level{h}`` metrics;
* multi-level metrics (H-AP, NDCG, ASI) take ``shared``: ``(Q, n)`` integers in
  ``0..L``, the number of label levels each item shares with the query
  (docs/metrics.md#ranking-and-shared-levels).

A 2-D input returns a ``(Q,)`` float64 array of per-query values, a 1-D input a
``float``; ``reduce=True`` returns the dataset-level mean over queries as a
``float``. Bad input (wrong shape or dtype, values out of range, a
``n_relevant`` smaller than the relevant items listed...) raises
``ValueError``. Everything is a fraction (display x100); higher is better.

Complete vs truncated rankings
------------------------------
By default the ranked list is taken to be the **whole gallery** (what HAPPIER
and SupRank evaluate: ``topk(N - 1)``), so the number of relevant items ``R``
and the per-level populations ``|Omega^(l)|`` are counted in the list. When
only the top ``k`` items are kept, pass the gallery-wide counts:
``n_relevant=`` (:func:`rbx_retrieval.ranking.count_relevant`) for binary
metrics and ``level_counts=`` (:func:`rbx_retrieval.ranking.level_counts`) for
H-AP / NDCG / ASI. A metric that needs ranks beyond the list (AP over the full
ranking with relevant items past the cut, mAP@R with ``R > n``, ASI with
``R > n``) is then only defined if the list is long enough; AP counts the
unseen relevant items as never retrieved (precision 0), which is what a
truncated submission gets in GLDv2-style scoring, and mAP@R / ASI raise.

Queries without any relevant item
---------------------------------
AP, mAP@R, mAP@k, H-AP, NDCG and ASI are 0/0 for a query with no relevant item
(no item sharing a level, for the multi-level ones). ``no_relevant="nan"``
(default) returns NaN for it (HAPPIER: its torch division gives NaN), and
``reduce=True`` then raises rather than average a NaN or silently skip the
query; ``no_relevant="zero"`` returns 0 (SupRank ``ap``: ``ap[normalizing_factor
== 0] = 0``). R@k and P@1 are simply 0 for such a query (HAPPIER, SupRank).

Conventions per metric, and the reference-code quirks followed or not
----------------------------------------------------------------------
* :func:`average_precision` -- ``AP = (1/R) sum_k P@k rel_k`` over the full
  ranking (HAPPIER ``ap``); equals sklearn ``average_precision_score`` with the
  rank as score.
* :func:`recall_at_k` -- metric-learning "Recall@k" = 1 if any relevant item is
  in the top k (HAPPIER ``recall_rate_at_k``), **not** hits / R (that is
  SupRank's ``true_recall_at_k``).
* :func:`precision_at_1` -- relevance of the first neighbour (= R@1).
* :func:`map_at_r` -- Musgrave et al.: ``(1/R) sum_{k <= R} P@k rel_k``
  (HAPPIER ``map_at_R``).
* :func:`map_at_k` -- SupRank ``ap(at_k=k)``: positions > k masked, normaliser
  ``min(R, k)``; ``k = 100`` is the GLDv2-style mAP@100 that SupRank reports as
  ``mAP@100_level0`` (relevance = same landmark over the gallery).
* :func:`gldv2_map_at_100` -- the official GLDv2 retrieval metric on id lists:
  relevance = membership in the query's solution list, ``min(|solution|,
  100)`` normaliser, a duplicated prediction is skipped **but still occupies
  its position** (the official ``ap += num_correct / (i + 1)`` uses the raw
  position ``i``), mean over **all** solution queries (missing prediction =
  AP 0), ignored queries excluded by the caller.
* :func:`h_ap` -- HAPPIER's H-AP with the ``pop`` relevance,
  ``rel(l) = l^alpha / |Omega^(l)|`` for ``l >= 1``, ``rel(0) = 0``. HAPPIER
  writes the weight ``(l / (L - 1))^alpha``; the constant cancels in H-AP, but
  it divides by zero for ``L = 1`` (here H-AP then equals AP) and gives
  ``0**0 = 1`` to level 0 when ``alpha = 0`` (here ``rel(0) = 0`` always).
  Default ``alpha = 1.0``: the ``alpha`` of every HAPPIER dataset config
  (``happier/config/dataset/*.yaml``: ``alpha: 1.0, relevance_type: pop``) and
  of SupRank ``hap_LM``. ``|Omega^(l)|`` counts gallery items only; HAPPIER's
  cached dataset relevances (``BaseDataset.get_all_relevance``) also count the
  query itself at the top level -- reproduce with ``count_query_itself=True``.
  HAPPIER's ``hap`` groups earlier items by *relevance value*, so two levels
  with equal relevance values are counted twice; here they are grouped by
  *level* (the paper's formula) -- identical whenever the values differ.
* :func:`ndcg` -- gain ``2^l - 1``, discount ``log2(1 + rank)``, IDCG = DCG of
  the ideal (level-sorted) ranking, over the full list unless ``at_k``. With
  ``at_k`` the ideal ranking is the ideal of the **whole gallery** cut at k
  (standard NDCG@k); HAPPIER/SupRank cut the retrieved list first and re-sort
  only those k items (``ideal="retrieved"`` reproduces it).
* :func:`asi` -- HAPPIER ``asi(at_R=True)``: ``R`` = number of items sharing at
  least one level; ``ASI = (1/R) sum_{n=1..R} (1/n) sum_l min(#top-n at level
  l, #ideal top-n at level l)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

__all__ = [
    "average_precision",
    "recall_at_k",
    "precision_at_1",
    "map_at_r",
    "map_at_k",
    "gldv2_map_at_100",
    "pop_relevance",
    "h_ap",
    "ndcg",
    "asi",
]

NoRelevant = Literal["nan", "zero"]

#: Elements per block when a (queries x positions x levels) computation is chunked.
_BLOCK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------- validation


def _as_2d(x, name: str) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (Q, n) array (or (n,) for one query), got shape {np.shape(x)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty, got shape {np.shape(x)}; at least one query and one ranked item are required")
    return arr, single


def _as_binary(x, name: str = "relevant") -> tuple[np.ndarray, bool]:
    arr, single = _as_2d(x, name)
    if arr.dtype == bool:
        return arr, single
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a 0/1 or bool array, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must contain only 0/1 (binary relevance); use relevance_lists(..., hierarchy_level=h)")
    return arr.astype(bool), single


def _as_levels(x, name: str = "shared") -> tuple[np.ndarray, bool]:
    arr, single = _as_2d(x, name)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must contain integer shared levels")
    elif arr.dtype.kind not in "biu":
        raise ValueError(f"{name} must contain integer shared levels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} must be >= 0 (number of shared levels), got {arr.min()}")
    return arr, single


def _as_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _check_policy(no_relevant) -> None:
    if no_relevant not in ("nan", "zero"):
        raise ValueError(f"no_relevant must be 'nan' or 'zero', got {no_relevant!r}")


def _n_relevant(rel: np.ndarray, n_relevant, name: str = "n_relevant") -> np.ndarray:
    listed = rel.sum(axis=1).astype(np.int64)
    if n_relevant is None:
        return listed
    r = np.asarray(n_relevant)
    if r.ndim == 0:
        r = np.full(rel.shape[0], r)
    if r.shape != (rel.shape[0],):
        raise ValueError(f"{name} must be a scalar or have shape ({rel.shape[0]},), got {r.shape}")
    if r.dtype.kind == "f":
        if not np.all(np.isfinite(r)) or not np.all(r == np.round(r)):
            raise ValueError(f"{name} must contain integers")
    elif r.dtype.kind not in "iu":
        raise ValueError(f"{name} must contain integers, got dtype {r.dtype}")
    r = r.astype(np.int64)
    bad = np.flatnonzero(r < listed)
    if bad.size:
        q = int(bad[0])
        raise ValueError(
            f"{name}[{q}] = {r[q]} is smaller than the {listed[q]} relevant items in query {q}'s ranked list"
        )
    return r


def _finish(values: np.ndarray, undefined: np.ndarray, single: bool, reduce: bool, no_relevant: str, what: str):
    values = values.astype(np.float64, copy=True)
    values[undefined] = np.nan if no_relevant == "nan" else 0.0
    if reduce:
        if np.isnan(values).any():
            n = int(np.isnan(values).sum())
            raise ValueError(
                f"{what} is undefined for {n} of {values.size} queries (no relevant item); "
                "remove those queries or pass no_relevant='zero' (SupRank's convention)"
            )
        return float(values.mean())
    return float(values[0]) if single else values


def _row_blocks(n_rows: int, per_row: int):
    step = max(1, _BLOCK_ELEMENTS // max(1, per_row))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


# --------------------------------------------------------------------------- binary metrics


def _precision_sum(rel: np.ndarray, upto: np.ndarray | None = None) -> np.ndarray:
    """``sum_k P@k rel_k`` per row, optionally over positions ``k <= upto[q]`` only."""
    n = rel.shape[1]
    ranks = np.arange(1, n + 1, dtype=np.float64)
    out = np.empty(rel.shape[0], dtype=np.float64)
    for sl in _row_blocks(rel.shape[0], n):
        r = rel[sl]
        contrib = np.cumsum(r, axis=1) / ranks * r
        if upto is not None:
            contrib = contrib * (ranks[None, :] <= upto[sl, None])
        out[sl] = contrib.sum(axis=1)
    return out


def average_precision(relevant, *, n_relevant=None, no_relevant: NoRelevant = "nan", reduce: bool = False):
    """Binary average precision over the full ranking: ``(1/R) sum_k P@k rel_k``.

    ``R`` = ``n_relevant`` (gallery-wide) if given, else the relevant items in
    the list; relevant items beyond a truncated list contribute precision 0.
    HAPPIER ``ap``; equals sklearn ``average_precision_score(rel, -rank)``.
    """
    _check_policy(no_relevant)
    rel, single = _as_binary(relevant)
    r = _n_relevant(rel, n_relevant)
    total = _precision_sum(rel)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = total / r
    return _finish(ap, r == 0, single, reduce, no_relevant, "AP")


def recall_at_k(relevant, k: int, *, reduce: bool = False):
    """Metric-learning Recall@k: 1 if any relevant item is in the top ``k``
    (HAPPIER/SupRank ``recall_rate_at_k``). A list shorter than ``k`` is used whole."""
    rel, single = _as_binary(relevant)
    k = _as_k(k)
    hit = rel[:, :k].any(axis=1).astype(np.float64)
    return _finish(hit, np.zeros(hit.shape, bool), single, reduce, "nan", "R@k")


def precision_at_1(relevant, *, reduce: bool = False):
    """P@1: 1 if the first neighbour is relevant (= R@1)."""
    rel, single = _as_binary(relevant)
    p = rel[:, 0].astype(np.float64)
    return _finish(p, np.zeros(p.shape, bool), single, reduce, "nan", "P@1")


def map_at_r(relevant, *, n_relevant=None, no_relevant: NoRelevant = "nan", reduce: bool = False):
    """mAP@R (Musgrave et al. 2020): ``(1/R) sum_{k <= R} P@k rel_k``, ``R`` = number
    of relevant items (HAPPIER ``map_at_R``). The list must hold at least ``R`` items."""
    _check_policy(no_relevant)
    rel, single = _as_binary(relevant)
    r = _n_relevant(rel, n_relevant)
    short = np.flatnonzero(r > rel.shape[1])
    if short.size:
        q = int(short[0])
        raise ValueError(
            f"mAP@R needs the top R items but query {q} has R = {r[q]} > {rel.shape[1]} ranked items; rank more neighbours"
        )
    total = _precision_sum(rel, upto=r)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = total / r
    return _finish(m, r == 0, single, reduce, no_relevant, "mAP@R")


def map_at_k(relevant, k: int, *, n_relevant=None, no_relevant: NoRelevant = "nan", reduce: bool = False):
    """mAP@k (SupRank ``ap(at_k=k)``): ``(1/min(R, k)) sum_{i <= k} P@i rel_i``.

    ``k = 100`` is the GLDv2-style mAP@100 on gallery relevance (SupRank's
    ``mAP@100_level0``); for the official GLDv2 metric on solution id lists use
    :func:`gldv2_map_at_100`.
    """
    _check_policy(no_relevant)
    rel, single = _as_binary(relevant)
    k = _as_k(k)
    r = _n_relevant(rel, n_relevant)
    total = _precision_sum(rel[:, :k])
    norm = np.minimum(r, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = total / norm
    return _finish(m, norm == 0, single, reduce, no_relevant, f"mAP@{k}")


def gldv2_map_at_100(
    predictions: Mapping[str, Sequence[str]],
    solution: Mapping[str, Sequence[str]],
    max_predictions: int = 100,
) -> float:
    """Official GLDv2 retrieval mAP@100 (``MeanAveragePrecision`` of tensorflow/models delf).

    Args:
        predictions: test image id -> ranked list of index image ids. A key
            that is not in ``solution`` raises ``ValueError`` (as upstream).
        solution: test image id -> ground-truth index image ids, for one
            subset (Public or Private) with ignored queries already removed
            (``docs/datasets.md#hgldv2``).
        max_predictions: cut-off, 100 for the challenge.

    Per query: ``AP = sum_{i < max, pred_i relevant, not seen before} (hits so far /
    (i + 1)) / min(|solution|, max)``; a duplicate is skipped but keeps its
    position ``i``. The mean is over **all** ``solution`` queries; a query with
    no prediction scores 0.
    """
    m = _as_k(max_predictions, "max_predictions")
    if not isinstance(solution, Mapping) or not isinstance(predictions, Mapping):
        raise ValueError("predictions and solution must be mappings from test image id to a list of index ids")
    if len(solution) == 0:
        raise ValueError("solution is empty; at least one query is required")
    for key, truth in solution.items():
        if isinstance(truth, str) or len(truth) == 0:
            raise ValueError(
                f"solution for {key!r} must be a non-empty list of index ids; ignored queries must be removed"
            )
    total = 0.0
    for key, pred in predictions.items():
        if key not in solution:
            raise ValueError(f"test image {key!r} is not part of the retrieval solution")
        if isinstance(pred, str):
            raise ValueError(f"prediction for {key!r} must be a list of index ids, got a string")
        truth = solution[key]
        truth_set = set(truth)
        seen: set = set()
        hits = 0
        ap = 0.0
        for i, item in enumerate(list(pred)[:m]):
            if item in seen:
                continue
            seen.add(item)
            if item in truth_set:
                hits += 1
                ap += hits / (i + 1)
        total += ap / min(len(truth), m)
    return total / len(solution)


# --------------------------------------------------------------------------- multi-level metrics


def _counts_table(shared: np.ndarray, level_counts, n_levels: int | None) -> tuple[np.ndarray, int]:
    """Per-query population of every level ``(Q, L + 1)`` and ``L``."""
    listed_max = int(shared.max())
    if level_counts is None:
        n_lv = listed_max if n_levels is None else int(n_levels)
        if n_lv < listed_max:
            raise ValueError(f"shared contains level {listed_max} > n_levels = {n_lv}")
        n_lv = max(n_lv, 1)
        counts = np.zeros((shared.shape[0], n_lv + 1), dtype=np.int64)
        for lv in range(n_lv + 1):
            counts[:, lv] = (shared == lv).sum(axis=1)
        return counts, n_lv
    counts = np.asarray(level_counts)
    if counts.ndim != 2 or counts.shape[0] != shared.shape[0] or counts.shape[1] < 2:
        raise ValueError(f"level_counts must have shape (Q={shared.shape[0]}, L + 1), got {counts.shape}")
    if counts.dtype.kind not in "iu":
        raise ValueError(f"level_counts must contain integers, got dtype {counts.dtype}")
    counts = counts.astype(np.int64)
    n_lv = counts.shape[1] - 1
    if n_levels is not None and int(n_levels) != n_lv:
        raise ValueError(f"level_counts has {n_lv} levels but n_levels = {n_levels}")
    if listed_max > n_lv:
        raise ValueError(f"shared contains level {listed_max} but level_counts only covers 0..{n_lv}")
    for lv in range(n_lv + 1):
        listed = (shared == lv).sum(axis=1)
        bad = np.flatnonzero(listed > counts[:, lv])
        if bad.size:
            q = int(bad[0])
            raise ValueError(
                f"level_counts[{q}, {lv}] = {counts[q, lv]} but query {q}'s list holds {listed[q]} items at level {lv}"
            )
    return counts, n_lv


def pop_relevance(counts, alpha: float = 1.0, *, count_query_itself: bool = False) -> np.ndarray:
    """HAPPIER's ``pop`` relevance table ``(Q, L + 1)`` from level populations.

    ``rel[q, l] = l^alpha / |Omega_q^(l)|`` for ``l >= 1`` with at least one
    item, else 0; ``rel[q, 0] = 0``. ``count_query_itself`` adds the query to
    the top-level population (HAPPIER cached-relevance quirk).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[1] < 2:
        raise ValueError(f"counts must have shape (Q, L + 1) with L >= 1, got {counts.shape}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    n_lv = counts.shape[1] - 1
    denom = counts.astype(np.float64)
    if count_query_itself:
        denom[:, n_lv] += 1.0
    weights = np.arange(n_lv + 1, dtype=np.float64) ** alpha
    weights[0] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(denom > 0, weights[None, :] / denom, 0.0)
    rel[:, 0] = 0.0
    return rel


def h_ap(
    shared,
    *,
    alpha: float = 1.0,
    level_counts=None,
    n_levels: int | None = None,
    count_query_itself: bool = False,
    no_relevant: NoRelevant = "nan",
    reduce: bool = False,
):
    """Hierarchical average precision (HAPPIER, docs/metrics.md#retrieval).

    ``rel(k) = rel_pop(l(k))`` (:func:`pop_relevance`);
    ``H-rank(k) = rel(k) + sum_{j ranked before k, rel(j) > 0} min(rel(k), rel(j))``;
    ``H-AP = (1 / sum_{k in Omega+} rel(k)) sum_{k: rel(k) > 0} H-rank(k) / rank(k)``.

    ``level_counts`` ``(Q, L + 1)``: gallery-wide level populations, for a
    truncated list (items past the cut are never retrieved and only enter the
    normaliser); by default counted in the list. ``n_levels`` fixes ``L`` when
    counting in the list (required with ``count_query_itself``; otherwise it
    never changes the value). With ``L = 1`` H-AP equals
    :func:`average_precision`.
    """
    _check_policy(no_relevant)
    sh, single = _as_levels(shared)
    if count_query_itself and level_counts is None and n_levels is None:
        raise ValueError("count_query_itself=True needs n_levels (or level_counts): the query is counted at level L")
    counts, n_lv = _counts_table(sh, level_counts, n_levels)
    rel_table = pop_relevance(counts, alpha, count_query_itself=count_query_itself)
    norm = (rel_table * counts).sum(axis=1)  # sum of rel over every positive gallery item
    n = sh.shape[1]
    ranks = np.arange(1, n + 1, dtype=np.float64)
    total = np.empty(sh.shape[0], dtype=np.float64)
    for sl in _row_blocks(sh.shape[0], n * 2):
        s = sh[sl]
        table = rel_table[sl]
        rel = np.take_along_axis(table, s, axis=1)
        hrank = np.zeros(s.shape, dtype=np.float64)
        for lv in range(1, n_lv + 1):
            # items at level lv ranked at or before each position (including itself)
            cnt = np.cumsum(s == lv, axis=1)
            hrank += np.minimum(rel, table[:, lv : lv + 1]) * cnt
        total[sl] = (hrank / ranks).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = total / norm
    return _finish(value, norm <= 0, single, reduce, no_relevant, "H-AP")


def _discount_prefix(length: int) -> np.ndarray:
    """``P[m] = sum_{i=1..m} 1 / log2(1 + i)``, ``P[0] = 0``."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64)))])


def ndcg(
    shared,
    *,
    at_k: int | None = None,
    level_counts=None,
    ideal: Literal["gallery", "retrieved"] = "gallery",
    no_relevant: NoRelevant = "nan",
    reduce: bool = False,
):
    """NDCG with gain ``2^l - 1`` and discount ``log2(1 + rank)`` (docs/metrics.md#retrieval).

    ``DCG = sum_{k <= K} (2^{l(k)} - 1) / log2(1 + k)`` with ``K`` = the list
    length, or ``at_k``. IDCG is the DCG of the ideal ranking (levels sorted
    descending) cut at the same ``K``: built from ``level_counts`` if given,
    else from the list itself (``ideal="gallery"``, standard NDCG@k); with
    ``ideal="retrieved"`` the top ``K`` retrieved items are re-sorted instead
    (HAPPIER/SupRank ``ndcg(at_k=...)``). Without ``at_k`` both agree. A
    truncated list of ``n`` items with ``level_counts`` and no ``at_k`` gives
    NDCG@n (the DCG of the unseen tail is unknown).
    """
    _check_policy(no_relevant)
    if ideal not in ("gallery", "retrieved"):
        raise ValueError(f"ideal must be 'gallery' or 'retrieved', got {ideal!r}")
    sh, single = _as_levels(shared)
    counts, n_lv = _counts_table(sh, level_counts, None)
    n = sh.shape[1]
    cut = n if at_k is None else min(_as_k(at_k, "at_k"), n)
    gains_of = 2.0 ** np.arange(n_lv + 1, dtype=np.float64) - 1.0
    disc = 1.0 / np.log2(np.arange(2, cut + 2, dtype=np.float64))
    dcg = (gains_of[sh[:, :cut]] * disc).sum(axis=1)
    if ideal == "retrieved" and at_k is not None:
        counts, _ = _counts_table(sh[:, :cut], None, n_lv)
    prefix = _discount_prefix(cut)
    idcg = np.zeros(sh.shape[0], dtype=np.float64)
    start = np.zeros(sh.shape[0], dtype=np.int64)
    limit = cut
    for lv in range(n_lv, 0, -1):  # ideal order: deepest shared level first
        stop = start + counts[:, lv]
        a, b = np.minimum(start, limit), np.minimum(stop, limit)
        idcg += gains_of[lv] * (prefix[b] - prefix[a])
        start = stop
    with np.errstate(invalid="ignore", divide="ignore"):
        value = dcg / idcg
    return _finish(value, idcg <= 0, single, reduce, no_relevant, "NDCG")


def asi(shared, *, level_counts=None, no_relevant: NoRelevant = "nan", reduce: bool = False):
    """Average set intersection (HAPPIER ``asi``, ``at_R=True``; docs/metrics.md#retrieval).

    ``R`` = number of gallery items sharing at least one level with the query;
    ``SI(n) = (1/n) sum_{l >= 1} min(#{top-n at level l}, #{ideal top-n at level l})``
    (level 0 never lies in the ideal top R); ``ASI = (1/R) sum_{n=1..R} SI(n)``.
    The ideal ranking comes from ``level_counts`` if given, else from the list.
    The list must hold at least ``R`` items.
    """
    _check_policy(no_relevant)
    sh, single = _as_levels(shared)
    counts, n_lv = _counts_table(sh, level_counts, None)
    big_r = counts[:, 1:].sum(axis=1)
    short = np.flatnonzero(big_r > sh.shape[1])
    if short.size:
        q = int(short[0])
        raise ValueError(
            f"ASI needs the top R items but query {q} has R = {big_r[q]} > {sh.shape[1]} ranked items; rank more neighbours"
        )
    width = int(big_r.max()) if big_r.size else 0
    value = np.zeros(sh.shape[0], dtype=np.float64)
    if width > 0:
        positions = np.arange(1, width + 1, dtype=np.int64)
        for sl in _row_blocks(sh.shape[0], width * 3):
            s = sh[sl, :width]
            c = counts[sl]
            inter = np.zeros(s.shape, dtype=np.float64)
            start = np.zeros(s.shape[0], dtype=np.int64)
            for lv in range(n_lv, 0, -1):
                actual = np.cumsum(s == lv, axis=1)
                ideal_cnt = np.clip(positions[None, :] - start[:, None], 0, c[:, lv : lv + 1])
                inter += np.minimum(actual, ideal_cnt)
                start = start + c[:, lv]
            mask = positions[None, :] <= big_r[sl, None]
            value[sl] = ((inter / positions) * mask).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = value / big_r
    return _finish(value, big_r == 0, single, reduce, no_relevant, "ASI")
