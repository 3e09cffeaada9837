"""rank_gallery against a brute-force full sort; relevance_lists / level_counts /
count_relevant against loops."""

import numpy as np
import pytest
import torch

from rbx_retrieval.ranking import (
    count_relevant,
    level_counts,
    rank_gallery,
    rank_gallery_memory_bound,
    relevance_lists,
)


def brute_force(queries, gallery, k, exclude_self=False):
    """Full score matrix, full sort by (score desc, index asc), first k."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(gallery, dtype=np.float64).T
    idx, val = [], []
    for i, row in enumerate(scores):
        order = np.lexsort((np.arange(row.size), -row))
        if exclude_self:
            order = order[order != i]
        idx.append(order[:k])
        val.append(row[order[:k]])
    return np.array(idx), np.array(val)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_matches_full_sort(chunk_size, k):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(17, 6)), rng.normal(size=(40, 6))
    idx, val = rank_gallery(q, g, k, chunk_size)
    ref_idx, ref_val = brute_force(q, g, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, rtol=1e-12)
    assert idx.dtype == np.int64 and val.dtype == np.float64 and idx.shape == (17, k)


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
@pytest.mark.parametrize("k", [1, 2, 3, 9, 29])
def test_ties_are_broken_by_index(chunk_size, k):
    # Small integer embeddings: many exactly tied scores, including at the cut.
    rng = np.random.default_rng(1)
    g = rng.integers(-1, 2, size=(30, 3)).astype(np.float64)
    q = rng.integers(-1, 2, size=(11, 3)).astype(np.float64)
    idx, val = rank_gallery(q, g, k, chunk_size)
    ref_idx, ref_val = brute_force(q, g, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


def test_tie_at_the_cut_keeps_score_order():
    # scores 5, 9, 3, 3 with k = 3: the cut splits the tie {2, 3}; item 2 (smaller
    # index) is kept and the kept items stay sorted by score: [1, 0, 2].
    idx, val = rank_gallery(np.ones((1, 1)), np.array([[5.0], [9.0], [3.0], [3.0]]), 3)
    assert idx.tolist() == [[1, 0, 2]] and val.tolist() == [[9.0, 5.0, 3.0]]


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
def test_exclude_self_by_index_even_with_duplicates(chunk_size):
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, size=(25, 4)).astype(np.float64)
    x[7] = x[3]  # a duplicate ties with the query itself
    idx, val = rank_gallery(x, x, None, chunk_size, exclude_self=True)
    assert idx.shape == (25, 24)
    assert not (idx == np.arange(25)[:, None]).any()
    ref_idx, ref_val = brute_force(x, x, 24, exclude_self=True)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    assert 7 in idx[3] and 3 in idx[7]


def test_float32_and_torch_inputs():
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(9, 5)).astype(np.float32), rng.normal(size=(50, 5)).astype(np.float32)
    idx, val = rank_gallery(torch.from_numpy(q), torch.from_numpy(g), 10, 4)
    assert val.dtype == np.float32
    ref_idx, ref_val = brute_force(q, g, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(queries=np.zeros((2, 3)), gallery=np.zeros((4, 2)), k=1),
        dict(queries=np.zeros((2, 3)), gallery=np.zeros((4, 3)), k=5),
        dict(queries=np.zeros((2, 3)), gallery=np.zeros((4, 3)), k=0),
        dict(queries=np.zeros((4, 3)), gallery=np.zeros((4, 3)), k=4, exclude_self=True),
        dict(queries=np.zeros((2, 3)), gallery=np.zeros((4, 3)), k=1, exclude_self=True),
        dict(queries=np.zeros((2, 3)), gallery=np.zeros((4, 3)), k=1, chunk_size=0),
        dict(queries=np.zeros(3), gallery=np.zeros((4, 3)), k=1),
        dict(queries=np.full((2, 3), np.nan), gallery=np.zeros((4, 3)), k=1),
        dict(queries=np.zeros((0, 3)), gallery=np.zeros((4, 3)), k=1),
    ],
)
def test_bad_input(kwargs):
    with pytest.raises(ValueError):
        rank_gallery(**kwargs)


def test_memory_bound_formula():
    b = rank_gallery_memory_bound(1000, 100_000, 128, 100, 256, dtype_bytes=4, n_threads=2)
    expected = 256 * 100_000 * 4 + 2 * 100_000 * 12 * 2 + 2 * 256 * 101 * 12 + 1000 * 100 * 12
    assert b == expected
    assert rank_gallery_memory_bound(1000, 100_000, 128, 100, 256, n_threads=2, copies_gallery=True) == (
        expected + 100_000 * 128 * 4
    )


# --------------------------------------------------------------------------- labels


def brute_shared(ql, gl, idx, level=None):
    out = np.zeros(idx.shape, dtype=int)
    for i in range(idx.shape[0]):
        for r in range(idx.shape[1]):
            a, b = ql[i], gl[idx[i, r]]
            if level is None:
                out[i, r] = sum(int(a[c] == b[c]) for c in range(len(a)))
            else:
                out[i, r] = int(a[level] == b[level])
    return out


def tree_labels(rng, n):
    fine = rng.integers(0, 12, size=n)
    return np.stack([fine, fine // 4, fine // 8], axis=1)


def test_relevance_lists_counts_agreeing_columns():
    rng = np.random.default_rng(4)
    ql, gl = tree_labels(rng, 10), tree_labels(rng, 30)
    gl[0] = [99, 1, 7]  # an inconsistent row: counts, not prefixes
    idx, _ = rank_gallery(rng.normal(size=(10, 4)), rng.normal(size=(30, 4)), 12)
    np.testing.assert_array_equal(relevance_lists(ql, gl, idx), brute_shared(ql, gl, idx))
    for h in range(3):
        np.testing.assert_array_equal(relevance_lists(ql, gl, idx, hierarchy_level=h), brute_shared(ql, gl, idx, h))
    np.testing.assert_array_equal(relevance_lists(ql[:, 0], gl[:, 0], idx), brute_shared(ql[:, :1], gl[:, :1], idx))


@pytest.mark.parametrize("tree", [True, False])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_level_counts_fast_path_and_pairwise(tree, exclude_self):
    rng = np.random.default_rng(5)
    gl = tree_labels(rng, 40)
    if not tree:
        gl[:, 1] = rng.integers(0, 3, size=40)  # breaks the tree
    ql = gl if exclude_self else tree_labels(rng, 9)
    counts = level_counts(ql, gl, exclude_self=exclude_self)
    expected = np.zeros((len(ql), 4), dtype=int)
    for i, a in enumerate(ql):
        for j, b in enumerate(gl):
            if exclude_self and i == j:
                continue
            expected[i, int((a == b).sum())] += 1
    np.testing.assert_array_equal(counts, expected)
    r = count_relevant(ql, gl, 1, exclude_self=exclude_self)
    np.testing.assert_array_equal(
        r, [(gl[:, 1] == a[1]).sum() - (1 if exclude_self else 0) for a in ql]
    )


def test_label_validation():
    with pytest.raises(ValueError, match="levels"):
        relevance_lists(np.zeros((2, 2), int), np.zeros((3, 3), int), np.zeros((2, 1), int))
    with pytest.raises(ValueError, match="out of range"):
        relevance_lists(np.zeros((2, 2), int), np.zeros((3, 2), int), np.full((2, 1), 3))
    with pytest.raises(ValueError, match="hierarchy_level"):
        relevance_lists(np.zeros((2, 2), int), np.zeros((3, 2), int), np.zeros((2, 1), int), hierarchy_level=2)
    with pytest.raises(ValueError, match="integer labels"):
        level_counts(np.array([[np.nan]]), np.zeros((3, 1)))
