"""The retrieval evaluator (rbx_retrieval.evaluate) on hand-made cases:
hand-computed H-AP / AP / R@1 / mAP@R / ASI, chunking invariance and the memory
bound, queries without relevant items, and the validation messages."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_x.api import MetricSpec, Outputs
from robustbench_x.errors import JobError, PluginError, UsageError
from robustbench_x.evaluation import Evaluation
from robustbench_x.registry import get_registry
from rbx_retrieval.evaluate import (
    BYTES_PER_PAIR,
    DEFAULT_MEMORY_BUDGET,
    evaluate,
    query_chunk_size,
    score_rankings,
)

METRICS = ("h-ap", "ap", "r@1", "r@5", "map@r", "map@100", "ndcg", "asi")


def suite_and_metrics():
    registry = get_registry(refresh=True)
    suite = registry.get("suites", "retrieval")
    return suite, [registry.get("metrics", m) for m in suite.metrics]


class FakeDataset:
    name = "tiny"

    def __init__(self, hierarchy: dict[str, np.ndarray]) -> None:
        self._h = hierarchy

    def subsets(self):
        return list(self._h)

    def hierarchy(self, subset):
        return self._h[subset]


class FakeCtx:
    def __init__(self, hierarchy, labels=None):
        self.dataset = FakeDataset(hierarchy)
        self.messages: list[str] = []
        self._labels = labels or {s: np.asarray(h)[:, 0] for s, h in hierarchy.items()}

    def outputs(self, subset):
        n = len(self._labels[subset])
        return Outputs(
            logits=np.zeros((n, 2), np.float32), features=np.zeros((n, 2), np.float32),
            labels=np.asarray(self._labels[subset], np.int64), sample_ids=np.array([f"{subset}/{i}" for i in range(n)]),
        )

    def log(self, message):
        self.messages.append(message)


class FixedMethod:
    """Returns ``{"embedding": embeddings[subset]}``, or ``outputs[subset]`` verbatim (bad outputs)."""

    def __init__(self, embeddings=None, outputs=None):
        self.outputs = outputs or {s: {"embedding": e} for s, e in embeddings.items()}

    def score(self, ctx, subset):
        return self.outputs[subset]


# --------------------------------------------------------------------------- the hand-made case
#
# Gallery (2-D embeddings; labels [fine, coarse]; classes A = 0, B = 1, one coarse group X = 0):
#   g0 (1.0, 0.0) A X     g1 (0.8, 0.6) B X     g2 (0.6, 0.8) A X     g3 (0.0, 1.0) B X
# Queries:
#   q0 (1.0, 0.0) A X: scores g0 1.0, g1 0.8, g2 0.6, g3 0.0 -> ranking g0 g1 g2 g3
#       shared levels [2, 1, 2, 1]   (same class: 2 levels; other class, same group: 1)
#   q1 (0.6, 0.8) B X: scores g2 1.0, g1 0.96, g3 0.8, g0 0.6 -> ranking g2 g1 g3 g0
#       shared levels [1, 2, 2, 1]
#
# H-AP (pop relevance, alpha = 1): 2 items at level 2 -> rel(2) = 2/2 = 1; 2 at level 1 -> rel(1) = 1/2.
#   H-rank(k) = rel(k) + sum_{j before k} min(rel(k), rel(j)); H-AP = sum_k H-rank(k)/k / sum_k rel(k), sum rel = 3.
#   q0, rels [1, .5, 1, .5]: H-ranks 1, .5+.5 = 1, 1+1+.5 = 2.5, .5*4 = 2
#       -> (1/1 + 1/2 + 2.5/3 + 2/4) / 3 = (17/6) / 3 = 17/18
#   q1, rels [.5, 1, 1, .5]: H-ranks .5, 1+.5 = 1.5, 1+.5+1 = 2.5, .5*4 = 2
#       -> (.5/1 + 1.5/2 + 2.5/3 + 2/4) / 3 = (31/12) / 3 = 31/36
#   mean = (34/36 + 31/36) / 2 = 65/72
# AP (level 0): q0 relevant [1, 0, 1, 0], R = 2 -> (1/1 + 2/3) / 2 = 5/6
#               q1 relevant [0, 1, 1, 0], R = 2 -> (1/2 + 2/3) / 2 = 7/12;  mean = 17/24
# R@1: q0 top-1 g0 is A -> 1; q1 top-1 g2 is A, query B -> 0; mean 1/2 (prediction = [A, A])
# mAP@R (R = 2): q0 [1, 0] -> (1/1)/2 = 1/2; q1 [0, 1] -> (1/2)/2 = 1/4; mean 3/8
# ASI (R = 4 items share >= 1 level; ideal order [2, 2, 1, 1]):
#   q0 [2, 1, 2, 1]: SI(1..4) = 1, 1/2, 3/3, 4/4 -> 3.5/4 = 7/8
#   q1 [1, 2, 2, 1]: SI(1..4) = 0, 1/2, 3/3, 4/4 -> 2.5/4 = 5/8
GALLERY = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
QUERIES = np.array([[1.0, 0.0], [0.6, 0.8]])
GALLERY_LABELS = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])
QUERY_LABELS = np.array([[0, 0], [1, 0]])
EXPECTED = {
    "h-ap": ([17 / 18, 31 / 36], 65 / 72),
    "ap": ([5 / 6, 7 / 12], 17 / 24),
    "r@1": ([1.0, 0.0], 0.5),
    "r@5": ([1.0, 1.0], 1.0),
    "map@r": ([0.5, 0.25], 0.375),
    "map@100": ([5 / 6, 7 / 12], 17 / 24),  # min(R, 100) = R: equals AP on a 4-item gallery
    "asi": ([7 / 8, 5 / 8], 0.75),
}


def tiny_ctx():
    return FakeCtx({"query": QUERY_LABELS, "gallery": GALLERY_LABELS})


def test_hand_made_case_gives_the_hand_computed_values():
    suite, specs = suite_and_metrics()
    assert tuple(s.name for s in specs) == METRICS and suite.headline == ("h-ap", "map@r", "r@1")
    ctx = tiny_ctx()
    tuples, columns = evaluate(Evaluation(method=FixedMethod({"query": QUERIES, "gallery": GALLERY}), ctx=ctx, suite=suite, metric_specs=specs, method_name="fake-embedding"))
    rows = {m: (s, v, hib, n, err) for s, m, v, hib, n, err in tuples}
    assert set(rows) == set(METRICS)
    for name, (per_query, mean) in EXPECTED.items():
        subset, value, hib, n, err = rows[name]
        assert (subset, hib, n, err) == ("query", True, 2, None), name
        assert value == pytest.approx(mean, abs=1e-12), name
        np.testing.assert_allclose(columns[name], per_query, atol=1e-12, err_msg=name)
    # NDCG q0: gains [3, 1, 3, 1], ideal [3, 3, 1, 1], discount 1/log2(1 + rank)
    d = 1 / np.log2(np.arange(2, 6))
    assert columns["ndcg"][0] == pytest.approx((np.array([3, 1, 3, 1]) @ d) / (np.array([3, 3, 1, 1]) @ d))
    assert list(columns["sample_id"]) == ["query/0", "query/1"]
    assert list(columns["subset"]) == ["query", "query"]
    assert columns["label"].tolist() == [0, 1]
    assert columns["prediction"].tolist() == [0, 0]
    assert columns["n_relevant"].tolist() == [2, 2]
    assert {len(v) for v in columns.values()} == {2}
    assert any("4 gallery items for 2 queries" in m for m in ctx.messages)


def test_embeddings_may_be_torch_tensors_and_any_float_dtype():
    import torch

    suite, specs = suite_and_metrics()
    method = FixedMethod({"query": torch.tensor(QUERIES, dtype=torch.float16), "gallery": GALLERY.astype(np.float32)})
    tuples, _ = evaluate(Evaluation(method=method, ctx=tiny_ctx(), suite=suite, metric_specs=specs, method_name="fake-embedding"))
    assert {m: v for _, m, v, *_ in tuples}["ap"] == pytest.approx(17 / 24)


# --------------------------------------------------------------------------- chunking and memory


def random_case(seed=0, n_q=37, n_g=150, dim=8):
    rng = np.random.default_rng(seed)
    fine_g = rng.integers(0, 12, n_g)
    fine_q = rng.integers(0, 12, n_q)
    tree = lambda f: np.stack([f, f // 3, f // 6], axis=1)  # noqa: E731 - 3 levels, a tree
    return rng.normal(size=(n_q, dim)), rng.normal(size=(n_g, dim)), tree(fine_q), tree(fine_g)


def test_results_do_not_depend_on_the_chunk_size():
    _, specs = suite_and_metrics()
    q, g, ql, gl = random_case()
    reference = score_rankings(q, g, ql, gl, specs, chunk_size=len(q))
    for chunk in (1, 5, 16):
        other = score_rankings(q, g, ql, gl, specs, chunk_size=chunk)
        assert other.chunk_size == chunk
        for name in reference.values:
            # same rankings; sums over differently shaped blocks may differ in the last bit
            np.testing.assert_allclose(other.values[name], reference.values[name], rtol=1e-12, atol=0, err_msg=f"{name}, chunk {chunk}")
        np.testing.assert_array_equal(other.prediction, reference.prediction)
    # a tiny memory budget forces one query per chunk, with the same values
    small = score_rankings(q, g, ql, gl, specs, memory_budget_bytes=BYTES_PER_PAIR * g.shape[0])
    assert small.chunk_size == 1
    np.testing.assert_allclose(small.values["h-ap"], reference.values["h-ap"], rtol=1e-12, atol=0)


def test_chunk_size_follows_the_memory_budget(monkeypatch):
    # 512 MiB / (64 B * 761,757 index images) = 11 queries per chunk on H-GLDv2
    assert query_chunk_size(761_757, DEFAULT_MEMORY_BUDGET) == 11
    assert query_chunk_size(535, DEFAULT_MEMORY_BUDGET) == 4096  # capped; the embedded set runs in one chunk
    assert query_chunk_size(10**9, DEFAULT_MEMORY_BUDGET) == 1  # never zero
    monkeypatch.setenv("RBX_RETRIEVAL_MEMORY_MB", "64")
    assert query_chunk_size(761_757) == 1
    monkeypatch.setenv("RBX_RETRIEVAL_MEMORY_MB", "lots")
    with pytest.raises(UsageError, match="RBX_RETRIEVAL_MEMORY_MB must be a positive number"):
        query_chunk_size(100)


# --------------------------------------------------------------------------- undefined values


def test_query_without_relevant_items_is_nan_and_left_out_of_the_mean():
    suite, specs = suite_and_metrics()
    # q2 is class C (= 2) in a group Y (= 1) that no gallery item has: nothing is relevant to it.
    ql = np.array([[0, 0], [1, 0], [2, 1]])
    q = np.vstack([QUERIES, [[0.0, 1.0]]])
    tuples, columns = evaluate(Evaluation(method=FixedMethod({"query": q, "gallery": GALLERY}), ctx=FakeCtx({"query": ql, "gallery": GALLERY_LABELS}), suite=suite, metric_specs=specs, method_name="fake-embedding"))
    rows = {m: (v, n, err) for _, m, v, _, n, err in tuples}
    for name in ("h-ap", "ap", "map@r", "map@100", "ndcg", "asi"):
        assert np.isnan(columns[name][2]), name
        assert rows[name][1] == 2 and rows[name][2] is None, name
        assert rows[name][0] == pytest.approx(np.nanmean(columns[name]))
    assert rows["h-ap"][0] == pytest.approx(65 / 72)
    # R@k is 0 for such a query, and counts it
    assert columns["r@1"].tolist() == [1.0, 0.0, 0.0] and rows["r@1"][1] == 3
    assert columns["n_relevant"].tolist() == [2, 2, 0]


def test_metric_undefined_for_every_query_is_a_failed_row_and_others_stand():
    suite, specs = suite_and_metrics()
    ql = np.array([[5, 1], [6, 1]])  # no gallery item shares any level
    tuples, _ = evaluate(Evaluation(method=FixedMethod({"query": QUERIES, "gallery": GALLERY}), ctx=FakeCtx({"query": ql, "gallery": GALLERY_LABELS}), suite=suite, metric_specs=specs, method_name="fake-embedding"))
    rows = {m: (v, err) for _, m, v, _, _, err in tuples}
    assert rows["h-ap"][1] == "metric undefined: no query has a relevant gallery item"
    assert rows["r@1"] == (0.0, None)


def test_metric_of_another_kind_is_reported_not_fatal():
    suite, specs = suite_and_metrics()
    accuracy = MetricSpec("accuracy", "classification", "robustbench_x.metrics.classification:accuracy", True)
    result = score_rankings(QUERIES, GALLERY, QUERY_LABELS, GALLERY_LABELS, [specs[0], accuracy])
    assert "kind 'classification'" in result.errors["accuracy"] and np.isnan(result.values["accuracy"]).all()
    assert not np.isnan(result.values["h-ap"]).any()


def test_metric_adapters_refuse_per_sample_predictions():
    """The leaderboard's generic bootstrap calls fn(prediction=, labels=): a ValueError, so no CI, no crash."""
    from robustbench_x.api import load_factory

    _, specs = suite_and_metrics()
    for spec in specs:
        with pytest.raises(ValueError, match="retrieval metric"):
            load_factory(spec.fn)(prediction=np.zeros(3, int), labels=np.zeros(3, int))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "query, gallery, message",
    [
        ({"embedding": np.array([[np.nan, 0.0], [1.0, 0.0]])}, None, r"method 'fake-embedding' returned 1 non-finite value\(s\) \(NaN/inf\) in 'embedding' for subset 'query': 1 of 2 embeddings, the first at row 0"),
        ({"embedding": np.ones(2)}, None, r"'embedding' of shape \(2,\) for subset 'query'; expected \(2, D\)"),
        ({"embedding": np.ones((3, 2))}, None, r"of shape \(3, 2\) for subset 'query'; expected \(2, D\)"),
        ({"embedding": np.ones((2, 0))}, None, r"expected \(2, D\) with D >= 1"),
        ({"score": np.ones(2)}, None, r"returned no 'embedding' for subset 'query' \(it returned \['score'\]\)"),
        ([1, 2], None, r"returned list for subset 'query'; expected a dict"),
        ({"embedding": np.array([["a", "b"], ["c", "d"]])}, None, r"dtype <U1 for subset 'query'; expected real numbers"),
        (None, {"embedding": np.ones((4, 3))}, r"2-dimensional query embeddings but 3-dimensional gallery embeddings"),
        (None, {"embedding": np.full((4, 2), np.inf)}, r"8 non-finite value\(s\) .* for subset 'gallery'"),
    ],
)
def test_bad_embeddings_are_plugin_errors_that_say_what_and_where(query, gallery, message):
    suite, specs = suite_and_metrics()
    emb = {"query": query if query is not None else {"embedding": QUERIES}, "gallery": gallery if gallery is not None else {"embedding": GALLERY}}
    method = FixedMethod(outputs=emb)
    with pytest.raises(PluginError, match=message):
        evaluate(Evaluation(method=method, ctx=tiny_ctx(), suite=suite, metric_specs=specs, method_name="fake-embedding"))


@pytest.mark.parametrize(
    "gallery_h, labels, message",
    [
        (np.array([[0, 0], [1, 0], [0, 0], [1, -1]]), None, r"hierarchy\('gallery'\) has a negative label at row 3"),
        (np.array([[0, 0], [1, 0], [0, 0]]), [0, 1, 0, 1], r"hierarchy\('gallery'\) has shape \(3, 2\); expected \(4, L\)"),
        (GALLERY_LABELS, [0, 1, 1, 1], r"column 0 of hierarchy\('gallery'\) must be the samples' labels .* row 2 has 0 but the sample's label is 1 \(1 of 4 rows differ\)"),
        (GALLERY_LABELS[:, :1], None, r"hierarchy\('query'\) has 2 levels but hierarchy\('gallery'\) has 1"),
        (GALLERY_LABELS + 0.5, [0, 1, 0, 1], r"must hold integer labels"),
    ],
)
def test_bad_hierarchies_are_plugin_errors(gallery_h, labels, message):
    suite, specs = suite_and_metrics()
    ctx = FakeCtx({"query": QUERY_LABELS, "gallery": gallery_h})
    ctx._labels["gallery"] = np.asarray(labels if labels is not None else gallery_h[:, 0].astype(int))
    with pytest.raises(PluginError, match=message):
        evaluate(Evaluation(method=FixedMethod({"query": QUERIES, "gallery": GALLERY}), ctx=ctx, suite=suite, metric_specs=specs, method_name="fake-embedding"))


def test_dataset_without_query_or_gallery_or_hierarchy():
    suite, specs = suite_and_metrics()
    ctx = FakeCtx({"query": QUERY_LABELS})
    with pytest.raises(JobError, match=r"has no 'gallery' subset \(it has \['query'\]\)"):
        evaluate(Evaluation(method=FixedMethod({"query": QUERIES}), ctx=ctx, suite=suite, metric_specs=specs, method_name="fake-embedding"))
    ctx = tiny_ctx()
    ctx.dataset.hierarchy = None
    with pytest.raises(PluginError, match=r"dataset 'tiny' has no hierarchy\(subset\) method"):
        evaluate(Evaluation(method=FixedMethod({"query": QUERIES, "gallery": GALLERY}), ctx=ctx, suite=suite, metric_specs=specs, method_name="fake-embedding"))
