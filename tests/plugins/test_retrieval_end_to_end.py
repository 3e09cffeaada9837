"""`rbx run --suite retrieval` on the embedded hierarchical benchmark, end to end,
plus the benchmark's split / hierarchy and the retrieval methods' outputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from robustbench_x.results import read_results

METRICS = ["h-ap", "ap", "r@1", "r@5", "map@r", "map@100", "ndcg", "asi"]
METHODS = {"embedding", "logit-embedding"}
#: Trained by the suite too; their training is tested in test_retrieval_heads.py, so the end-to-end run leaves them out.
HEADS = {"roadmap-head", "happier-head", "smoothap-head"}
ONLY = ["--methods", ",".join(sorted(METHODS))]


def test_retrieval_suite_runs_end_to_end_and_renders_a_page(cli, tmp_path):
    from rbx_retrieval.embedded_hier import EmbeddedDigitsHier

    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "retrieval", *ONLY, "--out", str(out), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["failed"] == 0 and summary["skipped"] == 0 and summary["ok"] == len(METHODS)

    frame = read_results(out)
    assert set(frame["dataset"]) == {"embedded-digits-hier"} and set(frame["model"]) == {"builtin-cnn"}
    assert set(frame["method"]) == METHODS
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "metric", "error"]]
    queries = EmbeddedDigitsHier().samples("query")
    for method in METHODS:
        rows = frame[frame["method"] == method].set_index("metric")
        assert sorted(rows.index) == sorted(METRICS)
        assert (rows["subset"] == "query").all()
        assert rows["value"].between(0, 1).all()
        assert (rows["n"] == len(queries)).all()
        assert rows["higher_is_better"].all()
        # the small CNN separates digits well: sanity, not a benchmark
        assert rows.loc["r@1", "value"] > 0.8 and rows.loc["h-ap", "value"] > 0.5

        # per-sample scores: one row per query, a column per metric whose mean is the result value
        files = list(out.glob(f"scores/suite=retrieval/model=builtin-cnn/dataset=embedded-digits-hier/method={method}/part-*.parquet"))
        assert len(files) == 1
        scores = pq.read_table(files[0]).to_pandas()
        assert len(scores) == len(queries)
        assert list(scores["sample_id"]) == queries.ids
        assert set(scores["subset"]) == {"query"}
        assert scores["label"].tolist() == queries.labels.tolist()
        assert {"prediction", "n_relevant", "seed", *METRICS} <= set(scores.columns)
        for metric in METRICS:
            assert scores[metric].dtype == np.float64
            assert scores[metric].mean() == pytest.approx(rows.loc[metric, "value"], rel=1e-12, abs=1e-15), metric
        # R@1 is 1-NN accuracy: the top-1 gallery item's digit is the stored prediction
        assert scores["r@1"].tolist() == (scores["prediction"] == scores["label"]).astype(float).tolist()

    pages = cli("leaderboard", str(out), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "retrieval.md").read_text()
    for metric in ("h-ap", "map@r", "r@1"):
        assert f"## {metric} ↑ (×100)" in page
    assert "embedded-digits-hier / query" in page and "logit-embedding" in page and "**" in page
    assert "## Provenance" in page

    again = cli("--quiet", "run", "--suite", "retrieval", *ONLY, "--out", str(out), "--format", "json")
    assert again.code == 0 and json.loads(again.out)["cached"] == len(METHODS)


def test_embedded_hierarchical_benchmark_split_and_hierarchy():
    from rbx_retrieval.embedded_hier import DIGIT_GROUP, GROUP_NAMES, EmbeddedDigitsHier, build

    ds = build()
    assert ds.task == "retrieval" and ds.classes == [str(d) for d in range(10)]
    assert {"train_split", "hierarchy"} <= ds.provides
    assert ds.subsets() == ["train", "gallery", "query"]
    ids = {s: set(ds.samples(s).ids) for s in ds.subsets()}
    assert not (ids["train"] & ids["gallery"]) and not (ids["gallery"] & ids["query"]) and not (ids["train"] & ids["query"])
    assert sum(len(v) for v in ids.values()) == 1797
    assert {s: len(ids[s]) for s in ids} == {"train": 896, "gallery": 535, "query": 366}
    for subset in ds.subsets():
        h = ds.hierarchy(subset)
        assert h.dtype == np.int64 and h.shape == (len(ids[subset]), 2)
        assert h[:, 0].tolist() == ds.samples(subset).labels.tolist()
        assert set(h[:, 0]) == set(range(10))
        assert all(h[i, 1] == DIGIT_GROUP[h[i, 0]] for i in range(len(h)))
    assert {GROUP_NAMES[g]: sorted(d for d, x in DIGIT_GROUP.items() if x == g) for g in range(3)} == {
        "loops": [0, 6, 8, 9], "strokes": [1, 4, 7], "curves": [2, 3, 5],
    }
    # fixed split: another instance gives the same data and fingerprints
    other = EmbeddedDigitsHier()
    assert all(ds.fingerprint(s) == other.fingerprint(s) for s in ds.subsets())
    image, label, sid = ds.samples("query")[0]
    assert image.size == (8, 8) and isinstance(label, int) and sid.startswith("digits/")


def test_retrieval_dataset_is_not_planned_for_classification_suites():
    from robustbench_x.config import Config
    from robustbench_x.errors import UsageError
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry(refresh=True)
    ood = make_plan(registry, Config(), "ood")
    assert "embedded-digits-hier" not in {j.dataset.name for j in ood.jobs}
    retrieval = make_plan(registry, Config(), "retrieval")
    assert {j.dataset.name for j in retrieval.jobs} == {"embedded-digits-hier"}
    assert {j.method for j in retrieval.jobs} == METHODS | HEADS
    with pytest.raises(UsageError, match="cannot serve suite 'retrieval'"):
        make_plan(registry, Config(), "retrieval", datasets=["embedded-digits"])


def test_embedding_methods_return_normalised_embeddings():
    from robustbench_x.api import Outputs
    from rbx_retrieval.methods import FeatureEmbedding, LogitEmbedding

    class Ctx:
        def outputs(self, subset):
            return Outputs(
                logits=np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32),
                features=np.array([[3.0, 4.0], [0.0, 0.0]], np.float32),
                labels=np.zeros(2, np.int64), sample_ids=np.array(["a", "b"]),
            )

    emb = FeatureEmbedding().score(Ctx(), "query")["embedding"]
    assert emb.dtype == np.float32 and emb.shape == (2, 2)
    np.testing.assert_allclose(emb, [[0.6, 0.8], [0.0, 0.0]])  # a zero vector stays zero, no NaN
    np.testing.assert_allclose(FeatureEmbedding(normalize=False).score(Ctx(), "q")["embedding"], [[3, 4], [0, 0]])
    logits = LogitEmbedding().score(Ctx(), "q")["embedding"]
    np.testing.assert_allclose(logits[0], np.array([2.0, 0.0, -1.0]) / np.sqrt(5), rtol=1e-6)
    probs = LogitEmbedding(softmax=True, normalize=False).score(Ctx(), "q")["embedding"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(LogitEmbedding(softmax=True).score(Ctx(), "q")["embedding"], axis=1), 1.0, rtol=1e-6)
