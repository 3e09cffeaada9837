"""Per-query retrieval metrics with the calling convention of ``kind="retrieval"``.

:mod:`rbx_retrieval.evaluate` ranks the **whole gallery** for a chunk of
queries and calls every metric of the suite by keyword with the same
arguments::

    fn(shared=..., relevant=..., level_counts=..., n_relevant=...)  ->  (Q,) float64

* ``shared``: ``(Q, G)`` int, the number of hierarchy levels the query and
  the item at each rank share (``rbx_retrieval.ranking.relevance_lists``);
* ``relevant``: ``(Q, G)`` bool, same finest label (level 0), rank order;
* ``level_counts``: ``(Q, L + 1)`` gallery-wide population of each shared
  level (``ranking.level_counts``);
* ``n_relevant``: ``(Q,)`` gallery items with the query's finest label
  (``ranking.count_relevant``).

Each function returns one value per query (a fraction in [0, 1]; NaN when the
metric is undefined for that query: no relevant item), so the per-query
values can be stored with the per-sample outputs and the dataset value is
their mean. The definitions are :mod:`rbx_retrieval.definitions`'s
(HAPPIER / SupRank conventions, ``docs/metrics.md#retrieval``); these are thin adapters.

Called with anything else (e.g. ``prediction=, labels=`` by a caller that
treats every metric as a classification metric) they raise ``ValueError``,
which callers treat as "metric undefined on this input".
"""

from __future__ import annotations

import numpy as np

from rbx_retrieval import definitions as R

__all__ = ["h_ap", "ap", "recall_at_1", "recall_at_5", "map_at_r", "map_at_100", "ndcg", "asi", "check_cases"]


def _need(value, name: str, metric: str):
    if value is None:
        raise ValueError(
            f"{metric} is a retrieval metric: it takes ranked relevance lists ({name}=...), as computed by "
            "rbx_retrieval.evaluate, not per-sample predictions"
        )
    return value


def h_ap(*, shared=None, level_counts=None, **_) -> np.ndarray:
    """Hierarchical AP (HAPPIER, ``pop`` relevance, alpha = 1) over the whole gallery."""
    return R.h_ap(_need(shared, "shared", "H-AP"), level_counts=level_counts)


def ap(*, relevant=None, n_relevant=None, **_) -> np.ndarray:
    """Average precision at level 0 (same finest label) over the whole gallery."""
    return R.average_precision(_need(relevant, "relevant", "AP"), n_relevant=n_relevant)


def recall_at_1(*, relevant=None, **_) -> np.ndarray:
    """R@1 = P@1: the first neighbour has the query's finest label."""
    return R.recall_at_k(_need(relevant, "relevant", "R@1"), 1)


def recall_at_5(*, relevant=None, **_) -> np.ndarray:
    """Metric-learning R@5: at least one of the top 5 has the query's finest label."""
    return R.recall_at_k(_need(relevant, "relevant", "R@5"), 5)


def map_at_r(*, relevant=None, n_relevant=None, **_) -> np.ndarray:
    """mAP@R at level 0 (Musgrave et al. 2020)."""
    return R.map_at_r(_need(relevant, "relevant", "mAP@R"), n_relevant=n_relevant)


def map_at_100(*, relevant=None, n_relevant=None, **_) -> np.ndarray:
    """mAP@100 at level 0, normaliser min(R, 100) (SupRank ``mAP@100_level0``)."""
    return R.map_at_k(_need(relevant, "relevant", "mAP@100"), 100, n_relevant=n_relevant)


def ndcg(*, shared=None, level_counts=None, **_) -> np.ndarray:
    """NDCG over the whole ranked gallery, gain 2^l - 1."""
    return R.ndcg(_need(shared, "shared", "NDCG"), level_counts=level_counts)


def asi(*, shared=None, level_counts=None, **_) -> np.ndarray:
    """Average set intersection up to R = items sharing at least one level."""
    return R.asi(_need(shared, "shared", "ASI"), level_counts=level_counts)


def check_cases() -> tuple[dict, dict, list[tuple[str, dict]]]:
    """Inputs for the conformance kit (``MetricSpec.check_cases``): a perfect
    ranking (each query's embedding is its class's), a random one, and input
    every metric must reject. 20 queries, 48 gallery items, 6 classes in 3 groups."""
    from rbx_retrieval.ranking import count_relevant, level_counts, rank_gallery, relevance_lists

    rng = np.random.default_rng(0)

    def case(q_emb, g_emb, ql, gl):
        idx, _ = rank_gallery(q_emb, g_emb, k=None)
        return {
            "shared": relevance_lists(ql, gl, idx),
            "relevant": relevance_lists(ql, gl, idx, hierarchy_level=0).astype(bool),
            "level_counts": level_counts(ql, gl),
            "n_relevant": count_relevant(ql, gl, 0),
        }

    fine_q, fine_g = rng.integers(0, 6, 20), np.repeat(np.arange(6), 8)
    ql = np.stack([fine_q, fine_q // 2], axis=1)
    gl = np.stack([fine_g, fine_g // 2], axis=1)
    eye = np.eye(6, dtype=np.float32)
    perfect = case(eye[fine_q] + 0.01 * rng.normal(size=(20, 6)).astype(np.float32), eye[fine_g], ql, gl)
    rand = case(rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(48, 6)).astype(np.float32), ql, gl)
    bad = [("no ranked lists", {"shared": None, "relevant": None, "level_counts": None, "n_relevant": None})]
    return perfect, rand, bad
