"""Exact k-nearest-neighbour ranking by dot product, in bounded memory, and the
label bookkeeping that turns a ranking into relevance data for
:mod:`rbx_retrieval.definitions`.

Conventions (docs: ``docs/metrics.md#ranking-and-shared-levels``,
``docs/datasets.md#hierarchical-labels``):

* **Similarity** is the dot product ``queries @ gallery.T`` (HAPPIER / SupRank
  ``get_knn_torch``). Normalise the embeddings first if cosine similarity is
  wanted; nothing here normalises.
* **Order.** Items are ranked by score descending; **ties are broken by the
  smaller gallery index**, so a ranking is a deterministic function of the
  embeddings. HAPPIER/SupRank use ``torch.topk`` whose order among tied scores
  is unspecified; with continuous embeddings ties are rare and both agree.
* **Self exclusion.** ``exclude_self=True`` means queries and gallery are the
  same set (query ``i`` is gallery item ``i``) and item ``i`` is removed from
  query ``i``'s ranking **by index** (its score is masked to ``-inf``).
  HAPPIER instead asks for ``k + 1`` neighbours and drops the first column,
  which removes the wrong item when a duplicate embedding ties with the query
  and wins the tie. Identical otherwise.
* **Full rankings.** ``k=None`` ranks the whole gallery (``G`` items, or
  ``G - 1`` with ``exclude_self``). SupRank's ``get_knn`` asks for
  ``G - 1`` neighbours also when queries and gallery are disjoint, so the
  last gallery item is never ranked (docs/metrics.md#ranking-and-shared-levels quirk); that quirk is
  **not** reproduced: pass ``k=G - 1`` to get it.
* **Shared level** ``l(q, j)`` = number of label columns on which query ``q``
  and item ``j`` agree (HAPPIER ``create_label_matrix``: a count over columns,
  not a prefix match). With ``hierarchy_level=h`` only column ``h`` is
  compared, giving a binary 0/1 relevance (HAPPIER's per-level binary
  metrics).

Memory (see :func:`rank_gallery_memory_bound`): the queries are processed in
chunks of ``chunk_size`` rows; only one ``(chunk_size, G)`` score block exists
at a time and only the top ``k`` per query are kept, so the peak extra memory is
``O(chunk_size * G + Q * k)`` instead of the ``O(Q * G)`` of a full score
matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

__all__ = [
    "rank_gallery",
    "rank_gallery_memory_bound",
    "relevance_lists",
    "level_counts",
    "count_relevant",
]

#: Elements per block when a computation over (queries x items x levels) is chunked.
_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- ranking


def _as_embeddings(x, name: str):
    import torch

    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one row is required")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be a real numeric array, got dtype {t.dtype}")
    return t


def _compute_dtype(q, g):
    import torch

    dtype = torch.promote_types(q.dtype, g.dtype)
    # float64 stays float64 (exact tests); everything else is computed in float32
    # (half precision matmuls on CPU are slow and lose ties).
    return torch.float64 if dtype == torch.float64 else torch.float32


def rank_gallery_memory_bound(
    n_queries: int,
    n_gallery: int,
    dim: int,
    k: int | None,
    chunk_size: int,
    *,
    dtype_bytes: int = 4,
    n_threads: int | None = None,
    copies_gallery: bool = False,
) -> int:
    """Upper estimate, in bytes, of the memory :func:`rank_gallery` allocates on
    top of its inputs (excluding the BLAS workspace, a few MiB)::

        C = min(chunk_size, Q),  k' = min(k + 1, G),  b = dtype_bytes
        bound = C*G*b                 # one block of scores (the only O(G) term per query)
              + T*G*(b + 8)*2         # torch CPU topk: one (value, index) scratch row per thread
              + 2*C*k'*(b + 8)        # top-k values/indices of the block and their re-ordering
              + Q*k*(b + 8)           # the results: int64 indices + scores
              + [G*D*b]               # only if the gallery must be copied (dtype/layout/device)

    ``T`` = ``torch.get_num_threads()`` unless given. The ``(value, index)``
    pair of the topk scratch is padded to 16 bytes, hence the factor 2 on
    ``b + 8`` for float32 (an over-estimate for float64).
    """
    if n_threads is None:
        import torch

        n_threads = torch.get_num_threads()
    kk = n_gallery if k is None else int(k)
    c = min(int(chunk_size), int(n_queries))
    k1 = min(kk + 1, n_gallery)
    b = int(dtype_bytes)
    bound = c * n_gallery * b
    bound += n_threads * n_gallery * (b + 8) * 2
    bound += 2 * c * k1 * (b + 8)
    bound += n_queries * kk * (b + 8)
    if copies_gallery:
        bound += n_gallery * dim * b
    return int(bound)


def rank_gallery(
    queries,
    gallery,
    k: int | None = None,
    chunk_size: int = 1024,
    exclude_self: bool = False,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery items of every query by dot-product similarity.

    Args:
        queries: ``(Q, D)`` array or tensor.
        gallery: ``(G, D)`` array or tensor (same ``D``).
        k: neighbours per query; ``None`` ranks the whole gallery. Must satisfy
            ``1 <= k <= G`` (``G - 1`` with ``exclude_self``).
        chunk_size: queries scored at once; peak memory grows as
            ``chunk_size * G`` (:func:`rank_gallery_memory_bound`).
        exclude_self: queries and gallery are the same set (``Q == G``, row ``i``
            of both is the same item); item ``i`` is never ranked for query ``i``.
        device: torch device for the matmul and top-k (``"cpu"``, ``"cuda"``...).

    Returns:
        ``(indices, scores)``: ``(Q, k)`` int64 gallery indices and their
        ``(Q, k)`` scores (float32, float64 when both inputs are float64), as
        numpy arrays, each row sorted by score descending, ties by index
        ascending.
    """
    import torch

    q = _as_embeddings(queries, "queries")
    g = _as_embeddings(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but gallery has {g.shape[1]}")
    n_q, n_g = int(q.shape[0]), int(g.shape[0])
    if exclude_self and n_q != n_g:
        raise ValueError(
            f"exclude_self=True needs the queries to be the gallery (Q == G), got Q={n_q}, G={n_g}"
        )
    available = n_g - int(bool(exclude_self))
    if k is None:
        k = available
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    k = int(k)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] for a gallery of {n_g} items, got {k}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = int(chunk_size)

    dtype = _compute_dtype(q, g)
    dev = torch.device(device)
    g = g.to(device=dev, dtype=dtype)
    if not torch.isfinite(g).all():
        raise ValueError("gallery contains NaN or inf")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    out_idx = np.empty((n_q, k), dtype=np.int64)
    out_val = np.empty((n_q, k), dtype=np_dtype)
    # Ask for one extra neighbour when possible: if the (k+1)-th score equals the
    # k-th, the cut falls inside a tie group and that row is resolved exactly.
    kk = min(k + 1, n_g)

    with torch.no_grad():
        for start in range(0, n_q, chunk_size):
            stop = min(start + chunk_size, n_q)
            qc = q[start:stop].to(device=dev, dtype=dtype)
            if not torch.isfinite(qc).all():
                raise ValueError(f"queries contain NaN or inf (rows {start}..{stop - 1})")
            scores = qc @ g.T  # (c, G): the only O(G) buffer per query
            rows = torch.arange(stop - start, device=dev)
            if exclude_self:
                scores[rows, rows + start] = -math.inf
            vals, idx = torch.topk(scores, kk, dim=1, largest=True, sorted=True)
            boundary: list[int] = []
            if kk > k:
                boundary = torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten().tolist()
                for r in boundary:
                    v = vals[r, k - 1]
                    row = scores[r]
                    above = torch.nonzero(row > v).flatten()
                    tied = torch.nonzero(row == v).flatten()[: k - above.numel()]
                    chosen = torch.cat([above, tied])
                    idx[r, :k] = chosen
                    vals[r, :k] = row[chosen]
            vals, idx = vals[:, :k], idx[:, :k]
            # Within the top k, order ties by index: sort by index, then a stable
            # sort by score descending. Only rows with a tie (adjacent equal values
            # in topk's sorted output) or a rebuilt boundary (index order) are touched.
            has_tie = torch.zeros(stop - start, dtype=torch.bool, device=dev)
            if k > 1:
                has_tie |= (vals[:, 1:] == vals[:, :-1]).any(dim=1)
            has_tie[boundary] = True
            tie_rows = torch.nonzero(has_tie).flatten()
            if tie_rows.numel():
                sub_i, sub_v = idx[tie_rows], vals[tie_rows]
                o = torch.argsort(sub_i, dim=1)
                sub_i, sub_v = sub_i.gather(1, o), sub_v.gather(1, o)
                o = torch.argsort(sub_v, dim=1, descending=True, stable=True)
                idx[tie_rows], vals[tie_rows] = sub_i.gather(1, o), sub_v.gather(1, o)
            out_idx[start:stop] = idx.cpu().numpy()
            out_val[start:stop] = vals.cpu().numpy()
            del scores, vals, idx
    return out_idx, out_val


# --------------------------------------------------------------------------- labels


def _as_label_matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (N, L) integer array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must contain integer labels (NaN / non-integers found)")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must contain integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _labels_pair(query_labels, gallery_labels) -> tuple[np.ndarray, np.ndarray]:
    ql = _as_label_matrix(query_labels, "query_labels")
    gl = _as_label_matrix(gallery_labels, "gallery_labels")
    if ql.shape[1] != gl.shape[1]:
        raise ValueError(
            f"query_labels have {ql.shape[1]} levels but gallery_labels have {gl.shape[1]}"
        )
    return ql, gl


def _check_level(hierarchy_level, n_levels: int) -> int | None:
    if hierarchy_level is None:
        return None
    if isinstance(hierarchy_level, bool) or not isinstance(hierarchy_level, (int, np.integer)):
        raise ValueError(f"hierarchy_level must be an integer or None, got {hierarchy_level!r}")
    if not 0 <= hierarchy_level < n_levels:
        raise ValueError(f"hierarchy_level must be in [0, {n_levels - 1}], got {hierarchy_level}")
    return int(hierarchy_level)


def _row_blocks(n_rows: int, per_row: int) -> Iterator[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(1, per_row))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def relevance_lists(query_labels, gallery_labels, indices, hierarchy_level: int | None = None) -> np.ndarray:
    """Shared level of every ranked item: ``out[q, r] = l(q, indices[q, r])``.

    ``query_labels`` ``(Q, L)``, ``gallery_labels`` ``(G, L)`` (1-D means
    ``L = 1``), ``indices`` ``(Q, k)`` from :func:`rank_gallery`. Returns an
    ``int32`` array ``(Q, k)`` with values in ``0..L``: the number of label
    columns on which the query and the item agree (docs/metrics.md#ranking-and-shared-levels). With
    ``hierarchy_level=h`` only column ``h`` is compared (values 0/1), which is
    the binary relevance of HAPPIER's ``*_level{h}`` metrics.
    """
    ql, gl = _labels_pair(query_labels, gallery_labels)
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != ql.shape[0]:
        raise ValueError(f"indices must have shape (Q={ql.shape[0]}, k), got {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= gl.shape[0]):
        raise ValueError(f"indices out of range for a gallery of {gl.shape[0]} items")
    level = _check_level(hierarchy_level, ql.shape[1])
    if level is not None:
        ql, gl = ql[:, level : level + 1], gl[:, level : level + 1]
    out = np.empty(idx.shape, dtype=np.int32)
    n_cols = ql.shape[1]
    for sl in _row_blocks(idx.shape[0], idx.shape[1] * n_cols):
        out[sl] = (gl[idx[sl]] == ql[sl, None, :]).sum(axis=2)
    return out


def _is_tree(labels: np.ndarray) -> bool:
    """True if every value of column c determines the value of column c + 1."""
    for c in range(labels.shape[1] - 1):
        pairs = np.unique(labels[:, c : c + 2], axis=0)
        if np.unique(pairs[:, 0]).size != pairs.shape[0]:
            return False
    return True


def _freq_of(values: np.ndarray, population: np.ndarray) -> np.ndarray:
    """For each value, how many times it occurs in ``population``."""
    uniq, counts = np.unique(population, return_counts=True)
    pos = np.searchsorted(uniq, values)
    pos_c = np.minimum(pos, uniq.size - 1)
    found = uniq[pos_c] == values
    return np.where(found, counts[pos_c], 0)


def level_counts(query_labels, gallery_labels, *, exclude_self: bool = False) -> np.ndarray:
    """``out[q, l]`` = number of gallery items sharing exactly ``l`` levels with query ``q``.

    Shape ``(Q, L + 1)``, int64. These are the ``|Omega_q^(l)|`` of HAPPIER's
    relevance (docs/metrics.md#retrieval) over the **whole** gallery, needed when the
    metrics are computed on a truncated ranking (top-``k``). With
    ``exclude_self`` the query (gallery item ``q``) is not counted; HAPPIER's
    cached dataset relevances do count it (see ``h_ap(count_query_itself=)``).

    When the joint labels form a tree (each value of column ``c`` has one
    parent in column ``c + 1``) the counts come from per-column frequencies in
    ``O((Q + G) L log G)``; otherwise from a chunked pairwise comparison in
    ``O(Q G L)``.
    """
    ql, gl = _labels_pair(query_labels, gallery_labels)
    n_q, n_levels = ql.shape
    n_g = gl.shape[0]
    if exclude_self and n_q != n_g:
        raise ValueError(f"exclude_self=True needs Q == G, got Q={n_q}, G={n_g}")
    out = np.zeros((n_q, n_levels + 1), dtype=np.int64)
    if _is_tree(np.concatenate([ql, gl])):
        # In a tree, agreeing on column c implies agreeing on every coarser
        # column, so "shares >= l levels" == "agrees on column L - l".
        ge = np.zeros((n_q, n_levels + 2), dtype=np.int64)
        for lv in range(1, n_levels + 1):
            col = n_levels - lv
            ge[:, lv] = _freq_of(ql[:, col], gl[:, col])
        ge[:, 0] = n_g
        out[:] = ge[:, : n_levels + 1] - ge[:, 1 : n_levels + 2]
    else:
        for sl in _row_blocks(n_q, n_g * n_levels):
            shared = (ql[sl, None, :] == gl[None, :, :]).sum(axis=2)
            for lv in range(n_levels + 1):
                out[sl, lv] = (shared == lv).sum(axis=1)
    if exclude_self:
        out[:, n_levels] -= 1
    return out


def count_relevant(query_labels, gallery_labels, hierarchy_level: int = 0, *, exclude_self: bool = False) -> np.ndarray:
    """Number of gallery items with the same label as the query in column
    ``hierarchy_level`` (the ``R`` of AP, mAP@R, mAP@k for binary relevance at
    that level), ``(Q,)`` int64. With ``exclude_self`` the query is not counted."""
    ql, gl = _labels_pair(query_labels, gallery_labels)
    level = _check_level(hierarchy_level, ql.shape[1])
    if exclude_self and ql.shape[0] != gl.shape[0]:
        raise ValueError(f"exclude_self=True needs Q == G, got Q={ql.shape[0]}, G={gl.shape[0]}")
    counts = _freq_of(ql[:, level], gl[:, level]).astype(np.int64)
    return counts - 1 if exclude_self else counts
