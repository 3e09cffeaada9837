"""The rank-loss heads (rbx_retrieval.heads) train: on a seeded hierarchical
Gaussian mixture whose raw features mix the classes, ROADMAP and HAPPIER
heads lower their objectives and raise mAP@R and H-AP on held-out queries
against the gallery, relative to the same head untrained (``epochs=0``); on
the suite's embedded hierarchy, at the default budget, each lowers its
objective and raises the metric it targets above the frozen embeddings;
samplers follow their papers' batch composition; the fit is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_x.testing import ArrayContext, make_outputs
from rbx_retrieval.definitions import h_ap, map_at_r
from rbx_retrieval.heads import RankLossHead
from rbx_retrieval.samplers import hierarchical, m_per_class

SUPERS, PER_SUPER, DIM = 3, 3, 16
HEADS = {"roadmap-head", "happier-head", "smoothap-head"}


class Mixture:
    """Super-class means, class means near them, samples around the class means,
    plus strong nuisance dimensions that a good head learns to ignore."""

    name = "mixture"

    def __init__(self, seed=0, per_class=24):
        rng = np.random.default_rng(seed)
        n_classes = SUPERS * PER_SUPER
        super_means = rng.normal(0, 1.0, (SUPERS, DIM))
        class_means = np.repeat(super_means, PER_SUPER, axis=0) + rng.normal(0, 0.5, (n_classes, DIM))
        class_means[:, DIM // 2 :] = 0.0  # only the first half carries the labels
        self._data = {}
        for subset, n in (("train", per_class), ("gallery", per_class // 2), ("query", per_class // 3)):
            labels = np.repeat(np.arange(n_classes), n)
            x = class_means[labels] + rng.normal(0, 0.35, (len(labels), DIM))
            x[:, DIM // 2 :] += rng.normal(0, 2.0, (len(labels), DIM // 2))  # nuisance
            self._data[subset] = (x.astype(np.float32), np.stack([labels, labels // PER_SUPER], 1))

    def subsets(self):
        return list(self._data)

    def hierarchy(self, subset):
        return self._data[subset][1]

    def context(self, seed=0):
        outputs = {s: make_outputs(x, features=x, labels=h[:, 0], prefix=s) for s, (x, h) in self._data.items()}
        return ArrayContext(outputs, dataset=self, seed=seed, num_classes=SUPERS * PER_SUPER)


def _retrieval(method, ctx, data):
    q = method.score(ctx, "query")["embedding"]
    g = method.score(ctx, "gallery")["embedding"]
    order = np.argsort(-(q @ g.T), axis=1, kind="stable")
    hq, hg = data.hierarchy("query"), data.hierarchy("gallery")
    shared = (hg[order] == hq[:, None, :]).sum(-1)
    return float(np.mean(map_at_r(shared == 2))), float(np.mean(h_ap(shared, n_levels=2)))


def _fit(loss, epochs, seed=0):
    data = Mixture()
    ctx = data.context(seed)
    head = RankLossHead(loss=loss, dim=8, epochs=epochs, lr=5e-3, batch_size=48, batches_per_pair=4)
    head.fit(ctx)
    return head, ctx, data


@pytest.mark.parametrize("loss", ["roadmap", "happier", "smoothap"])
def test_training_lowers_the_objective_and_raises_map_at_r_and_h_ap(loss):
    untrained, ctx0, data = _fit(loss, epochs=0)
    trained, ctx, _ = _fit(loss, epochs=15)
    before = _retrieval(untrained, ctx0, data)
    after = _retrieval(trained, ctx, data)
    total = ctx.diagnostics["loss/total"]
    start, end = (float(v) for v in total.split(" -> "))
    assert end < start, total
    assert after[0] > before[0] + 0.05, (before, after)
    assert after[1] > before[1] + 0.03, (before, after)


def test_the_fit_is_deterministic_and_depends_on_the_seed():
    a, _, _ = _fit("happier", epochs=2, seed=0)
    b, _, _ = _fit("happier", epochs=2, seed=0)
    c, _, _ = _fit("happier", epochs=2, seed=1)
    np.testing.assert_array_equal(a.state["weight"], b.state["weight"])
    assert not np.array_equal(a.state["weight"], c.state["weight"])


def test_hierarchical_epochs_give_every_pair_of_super_classes_its_batches():
    """pytorch-metric-learning's HierarchicalSampler: an epoch is every pair of
    super-classes ``batches_per_pair`` times (3 pairs of the mixture's 3), in a
    shuffled order; each batch is m per class, half from each super-class."""
    h = Mixture().hierarchy("train")
    batches = list(hierarchical(h, batch_size=24, m=4, batches_per_pair=4, epochs=2, rng=np.random.default_rng(0)))
    assert len(batches) == 2 * 3 * 4
    for epoch in (batches[:12], batches[12:]):
        pairs = [tuple(np.unique(h[idx, 1]).tolist()) for idx in epoch]
        assert sorted(set(pairs)) == [(0, 1), (0, 2), (1, 2)] and all(pairs.count(p) == 4 for p in set(pairs))
        for idx in epoch:
            _, counts = np.unique(h[idx, 0], return_counts=True)
            assert set(counts) == {4} and len(idx) == 24  # 24 / 2 supers / 4 = 3 classes each
    first = [tuple(np.unique(h[idx, 1]).tolist()) for idx in batches[:12]]
    assert first != sorted(first)  # shuffled, not pair by pair


def test_a_dataset_without_a_train_split_is_named():
    from robustbench_x.errors import JobError

    data = Mixture()
    ctx = data.context()
    data._data.pop("train")
    with pytest.raises(JobError, match="train"):
        RankLossHead(loss="roadmap").fit(ctx)


def test_the_specs_name_the_default_lr_so_that_it_enters_the_config_hash():
    import rbx_retrieval
    from rbx_retrieval.heads import HEAD_LR

    specs = {spec.name: spec for spec in rbx_retrieval.METHODS if spec.name in HEADS}
    assert len(specs) == 3 and all(spec.params["lr"] == HEAD_LR for spec in specs.values())
    for spec in specs.values():  # every default the factory fills in is named, so it enters the hash
        assert spec.params["norm_features"] == RankLossHead(loss=spec.params["loss"]).norm_features


def test_happier_standardises_the_features_like_its_sop_model():
    """HAPPIER's SOP model (resnet_ln) puts LayerNorm(elementwise_affine=False)
    before the fc; ROADMAP's (resnet) does not."""
    import torch

    from rbx_retrieval.heads import layer_norm

    x = np.random.default_rng(0).normal(3.0, 2.0, (5, 7)).astype(np.float32)
    want = torch.nn.LayerNorm(7, elementwise_affine=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer_norm(x), want, atol=1e-6)
    assert RankLossHead(loss="happier").norm_features and not RankLossHead(loss="roadmap").norm_features
    head, ctx, data = _fit("happier", epochs=1)
    w, b = head.state["weight"], head.state["bias"]
    projected = layer_norm(data._data["query"][0]) @ w.T + b
    np.testing.assert_allclose(
        head.score(ctx, "query")["embedding"], projected / np.linalg.norm(projected, axis=1, keepdims=True), atol=1e-5
    )


def test_scoring_a_block_at_a_time_changes_nothing(monkeypatch):
    """score() embeds SCORE_ROWS rows at a time (H-GLDv2's gallery features do not fit twice in memory)."""
    import rbx_retrieval.heads as heads

    head, ctx, _ = _fit("happier", epochs=1)
    whole = head.score(ctx, "gallery")["embedding"]
    monkeypatch.setattr(heads, "SCORE_ROWS", 7)
    np.testing.assert_allclose(head.score(ctx, "gallery")["embedding"], whole, atol=1e-6)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="roadmap"):
        RankLossHead(loss="triplet")
    with pytest.raises(ValueError, match="m-per-class"):
        RankLossHead(sampler="m_per_class")


class _InOrder:
    """An rng that shuffles nothing, so the batches follow the classes' order."""

    def permutation(self, x):
        return np.arange(x) if isinstance(x, int) else np.asarray(x)

    def shuffle(self, x):
        pass


def test_m_per_class_batches_follow_roadmaps_passes_over_the_classes():
    """ROADMAP's MPerClassSampler, worked by hand: classes A (8 images), B (4),
    C (2), D (1), m = 2, 2 classes a batch. Pass 1 takes A and B, pass 2 A and B
    again (each pass restarts from the first class), pass 3 A and C (B is used
    up), pass 4 finds only A: the epoch ends with 3 batches. D, with fewer than
    m images, never enters."""
    labels = np.array([0] * 8 + [1] * 4 + [2] * 2 + [3])
    h = np.stack([labels, np.zeros_like(labels)], 1)
    batches = list(m_per_class(h, batch_size=4, m=2, batches_per_pair=99, epochs=1, rng=_InOrder()))
    assert [b.tolist() for b in batches] == [[0, 1, 8, 9], [2, 3, 10, 11], [4, 5, 12, 13]]


def test_m_per_class_epochs_use_each_image_at_most_once():
    h = Mixture().hierarchy("train")  # 9 classes of 24
    rng = np.random.default_rng(0)
    one_call = list(m_per_class(h, batch_size=16, m=4, batches_per_pair=1, epochs=2, rng=rng))
    rng = np.random.default_rng(0)
    by_epoch = [list(m_per_class(h, batch_size=16, m=4, batches_per_pair=1, epochs=1, rng=rng)) for _ in range(2)]
    assert [b.tolist() for b in one_call] == [b.tolist() for e in by_epoch for b in e]  # the trainings draw an epoch at a time
    for epoch in by_epoch:
        # 9 x 24 / 4 = 54 chunks, 4 to a batch; the classes early in the order run out first
        assert 9 <= len(epoch) <= 54 // 4
        flat = np.concatenate(epoch)
        assert len(flat) == len(np.unique(flat))
        for idx in epoch:
            _, counts = np.unique(h[idx, 0], return_counts=True)
            assert counts.tolist() == [4] * 4
    assert by_epoch[0][0].tolist() != sorted(by_epoch[0][0].tolist())  # images shuffled within a batch


def test_roadmap_with_m_per_class_batches_trains_on_one_level():
    """ROADMAP's CUB / iNaturalist batches need no super-class: the head trains on
    a one-level hierarchy, lowering its objective and raising mAP@R; HAPPIER, whose
    H-AP needs the levels, and the hierarchical sampler refuse one level."""
    from robustbench_x.errors import JobError

    data = Mixture()
    flat = {s: (x, h[:, :1]) for s, (x, h) in data._data.items()}
    data._data = flat
    ctx = data.context(0)
    untrained = RankLossHead(loss="roadmap", dim=8, epochs=0, lr=5e-3, batch_size=16, sampler="m-per-class")
    untrained.fit(ctx)
    head = RankLossHead(loss="roadmap", dim=8, epochs=10, lr=5e-3, batch_size=16, sampler="m-per-class")
    head.fit(ctx)
    start, end = (float(v) for v in ctx.diagnostics["loss/total"].split(" -> "))
    assert end < start
    assert ctx.diagnostics["steps"] == 10 * len(list(m_per_class(flat["train"][1], batch_size=16, m=4, epochs=1, rng=np.random.default_rng(0))))

    def map_r(method):
        q, g = method.score(ctx, "query")["embedding"], method.score(ctx, "gallery")["embedding"]
        order = np.argsort(-(q @ g.T), axis=1, kind="stable")
        return float(np.mean(map_at_r(flat["gallery"][1][order, 0] == flat["query"][1][:, None, 0])))

    assert map_r(head) > map_r(untrained) + 0.05
    for loss, sampler, match in (("happier", "m-per-class", "its H-AP"), ("roadmap", "hierarchical", "sampler: m-per-class")):
        with pytest.raises(JobError, match=match):
            RankLossHead(loss=loss, dim=8, epochs=1, sampler=sampler).fit(data.context(0))


def test_diagnostics_are_json_ready():
    _, ctx, _ = _fit("roadmap", epochs=1)
    assert {"loss/supap", "loss/calibration", "loss/total", "train_map", "steps"} <= set(ctx.diagnostics)
    json.dumps(ctx.diagnostics)


def _naive_hierarchical(hierarchy, *, batch_size, m, batches_per_pair, epochs, rng):
    """The sampler's definition, scanning every row per class (what it did before grouping once)."""
    fine, coarse = hierarchy[:, 0], hierarchy[:, 1]
    supers, per_super = np.unique(coarse).tolist(), max(batch_size // 2 // m, 1)
    plan = [(a, b) for i, a in enumerate(supers) for b in supers[i + 1 :] for _ in range(batches_per_pair)]
    for _ in range(epochs):
        for i in rng.permutation(len(plan)):
            parts = []
            for s in plan[i]:
                classes = np.unique(fine[coarse == s])
                for c in rng.choice(classes, size=min(per_super, len(classes)), replace=False):
                    members = np.flatnonzero(fine == c)
                    parts.append(rng.choice(members, size=m, replace=len(members) < m))
            yield np.concatenate(parts)


def test_grouped_sampler_draws_exactly_the_batches_of_the_definition():
    rng = np.random.default_rng(5)
    # unsorted rows, sparse ids and classes smaller than m (drawn with replacement)
    h = np.stack([rng.integers(0, 40, 500) * 1000 + 7, rng.integers(0, 5, 500)], 1)
    h[:, 1] = (h[:, 0] // 1000) % 5  # a tree: each class in one super-class
    got = list(hierarchical(h, batch_size=32, m=4, batches_per_pair=2, epochs=2, rng=np.random.default_rng(1)))
    want = list(_naive_hierarchical(h, batch_size=32, m=4, batches_per_pair=2, epochs=2, rng=np.random.default_rng(1)))
    assert len(got) == len(want) == 2 * 10 * 2
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_sparse_class_ids_get_one_proxy_each_and_a_large_split_a_sampled_train_map(monkeypatch):
    """GLDv2 landmark ids reach ~200 k: HAPPIER's proxies are one per class
    present; past MAP_SAMPLES items the train mAP is taken on a fixed sample
    and says so in its name; the fit is the one of the renumbered labels."""
    import rbx_retrieval.heads as heads

    dense = Mixture()
    sparse = Mixture()
    for subset, (x, h) in sparse._data.items():
        sparse._data[subset] = (x, np.stack([h[:, 0] * 10_007 + 3, h[:, 1]], 1))
    a = RankLossHead(loss="happier", dim=8, epochs=2, lr=5e-3, batch_size=48, batches_per_pair=4)
    b = RankLossHead(loss="happier", dim=8, epochs=2, lr=5e-3, batch_size=48, batches_per_pair=4)
    a.fit(dense.context())
    monkeypatch.setattr(heads, "MAP_SAMPLES", 100)
    ctx = sparse.context()
    b.fit(ctx)
    np.testing.assert_array_equal(a.state["weight"], b.state["weight"])
    assert "train_map (100 sampled items)" in ctx.diagnostics and "train_map" not in ctx.diagnostics


@pytest.mark.parametrize("loss", ["sup_ap", "smooth_ap", "exact_ap", "h_ap"])
@pytest.mark.parametrize("include_self", [True, False])
def test_the_rank_losses_create_every_tensor_on_the_scores_device(loss, include_self):
    """A CUDA run trains the head on the GPU; no helper tensor may be made on
    the CPU (checked on the meta device, where mixing devices raises)."""
    import torch

    from rbx_retrieval import rank_losses as rl

    s = torch.empty(6, 6, device="meta")
    labels = torch.empty(6, 2, dtype=torch.long, device="meta") if loss == "h_ap" else torch.empty(6, dtype=torch.long, device="meta")
    assert getattr(rl, loss)(s, labels, include_self=include_self).device.type == "meta"


def test_the_heads_on_the_embedded_hierarchy(cli, tmp_path):
    """The suite's own default (built-in CNN features of embedded-digits-hier)
    with the heads' default budget: every head lowers its objective on its
    probe batches and raises the metric its loss targets above the frozen
    embeddings (ROADMAP and SmoothAP mAP@R, HAPPIER H-AP; HAPPIER's mAP@R too on
    this seed, on three seeds of five). A flat-label loss has no signal for the
    shape level, so ROADMAP's and SmoothAP's H-AP is only held near the frozen
    one (docs/methods.md#the-heads-implementation-budget-and-results has seeds 0-4)."""
    from robustbench_x.results import read_results

    out = tmp_path / "store"
    methods = ["embedding", *sorted(HEADS)]
    result = cli("--quiet", "run", "--suite", "retrieval", "--methods", ",".join(methods), "--out", str(out), "--format", "json")
    assert result.code == 0, result
    frame = read_results(out)
    assert (frame["status"] == "ok").all()
    value = frame.set_index(["method", "metric"])["value"]
    frozen = {m: value["embedding", m] for m in ("map@r", "h-ap")}
    for method in HEADS:
        diagnostics = json.loads(frame[frame["method"] == method]["diagnostics"].iloc[0])
        start, end = (float(v) for v in diagnostics["loss/total"].split(" -> "))
        assert end < 0.6 * start, (method, diagnostics)
        assert "calibration/why it rose" not in diagnostics
    assert value["roadmap-head", "map@r"] > frozen["map@r"] + 0.02
    assert value["smoothap-head", "map@r"] > frozen["map@r"] + 0.02
    assert value["happier-head", "h-ap"] > frozen["h-ap"] + 0.05
    assert value["happier-head", "map@r"] > frozen["map@r"]
    for method in ("roadmap-head", "smoothap-head"):
        assert abs(value[method, "h-ap"] - frozen["h-ap"]) < 0.03, method

