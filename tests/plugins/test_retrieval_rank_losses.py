"""The rank losses (rbx_retrieval.rank_losses) against their definitions:
exact rank AP equals scikit-learn per query under both self conventions,
SupAP <= AP per query with ROADMAP's defaults and tends to AP as its step
tends to the Heaviside, SmoothAP likewise, H-AP with one level equals AP and
matches the evaluation metric with two, HAPPIER's "less relevant" compares
shared levels, and the calibration and cluster losses on hand-worked cases
(the calibration loss also against pytorch-metric-learning, which ROADMAP uses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from rbx_retrieval import rank_losses as rl
from rbx_retrieval.definitions import h_ap as h_ap_metric


def _batch(n=24, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, classes, (n,), generator=g)
    return e @ e.T, y


def _sklearn_ap(scores, labels, include_self):
    out = []
    for q in range(len(labels)):
        keep = np.ones(len(labels), bool) if include_self else np.arange(len(labels)) != q
        out.append(average_precision_score((labels[keep] == labels[q]).numpy(), scores[q, keep].numpy()))
    return np.array(out)


@pytest.mark.parametrize("include_self", [False, True])
def test_exact_rank_ap_equals_sklearn_per_query(include_self):
    scores, labels = _batch()
    ours = rl.exact_ap(scores, labels, include_self=include_self).numpy()
    np.testing.assert_allclose(ours, _sklearn_ap(scores, labels, include_self), atol=1e-12)


def test_the_training_convention_counts_the_query_and_differs_from_the_evaluation_one():
    scores, labels = _batch()
    assert rl.exact_ap(scores, labels).mean() > rl.exact_ap(scores, labels, include_self=False).mean() + 0.05


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supap_is_a_lower_bound_of_ap_per_query_with_the_sop_defaults(include_self, seed):
    scores, labels = _batch(seed=seed)
    sup = rl.sup_ap(scores, labels, include_self=include_self)
    ap = rl.exact_ap(scores, labels, include_self=include_self)
    assert (sup <= ap + 1e-12).all()
    assert (sup < ap - 1e-6).any()  # the bound is not an identity


def test_supap_step_pieces_follow_roadmap():
    d = rl.SUPAP_DEFAULTS
    t = torch.tensor([-0.02, 0.0, 0.03, 0.05, 0.07], dtype=torch.float64)
    got = rl.supap_step(t, **d)
    sig = lambda v: 1 / (1 + math.exp(-v / 0.01))  # noqa: E731
    want = [sig(-0.02), sig(0.0), 0.5 + sig(0.03), 0.5 + sig(0.05), 100 * (0.07 - 0.05) + 1.44]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    # offset None: continuous at delta
    cont = rl.supap_step(torch.tensor([0.05, 0.05 + 1e-9], dtype=torch.float64), **{**d, "offset": None})
    assert abs(float(cont[1] - cont[0])) < 1e-6


def test_supap_and_smoothap_tend_to_ap_when_their_step_tends_to_the_heaviside():
    scores, labels = _batch()
    ap = rl.exact_ap(scores, labels, include_self=False)
    hard = rl.sup_ap(scores, labels, include_self=False, tau=1e-7, rho=0.0, offset=1.0, delta=0.0, start=0.0)
    np.testing.assert_allclose(hard.numpy(), ap.numpy(), atol=1e-9)
    smooth = rl.smooth_ap(scores, labels, tau=1e-7, include_self=False)
    np.testing.assert_allclose(smooth.numpy(), ap.numpy(), atol=1e-9)


def test_h_ap_with_one_level_is_ap():
    scores, labels = _batch()
    for include_self in (False, True):
        exact = rl.h_ap(scores, labels[:, None], include_self=include_self, smooth=False)
        np.testing.assert_allclose(exact.numpy(), rl.exact_ap(scores, labels, include_self=include_self).numpy(), atol=1e-12)
        smooth = rl.h_ap(scores, labels[:, None], include_self=include_self)
        np.testing.assert_allclose(smooth.numpy(), rl.sup_ap(scores, labels, include_self=include_self).numpy(), atol=1e-12)


def test_exact_h_ap_equals_the_evaluation_metric_per_query():
    scores, labels = _batch(n=30, classes=6, seed=3)
    hierarchy = torch.stack([labels, labels // 2], dim=1)
    ours = rl.h_ap(scores, hierarchy, include_self=False, smooth=False).numpy()
    for q in range(len(labels)):
        others = np.arange(len(labels)) != q
        order = np.argsort(-scores[q, others].numpy(), kind="stable")
        shared = (hierarchy[others][order] == hierarchy[q]).sum(1).numpy()
        assert ours[q] == pytest.approx(h_ap_metric(shared[None, :], n_levels=2)[0], abs=1e-12)


def test_pop_relevance_weights_and_counts_follow_happier():
    # query 0 shares 2 levels with itself and item 1, 1 level with item 2, none with item 3
    h = torch.tensor([[0, 0], [0, 0], [1, 0], [2, 1]])
    rel = rl.pop_relevances(rl.shared_levels(h), n_levels=2)
    np.testing.assert_allclose(rel[0].numpy(), [2 / 2, 2 / 2, 1 / 1, 0.0])


def test_happier_smooths_items_of_fewer_shared_levels_not_of_lower_pop_relevance():
    # Query 0: one item shares 1 level (pop relevance 1/1 = 1), three share 2 levels
    # (the query included; relevance 2/3 each). HAPPIER's step_rank smooths an item j
    # against k when j shares fewer levels than k, so the lone level-1 item is smoothed
    # against the level-2 items though its pop relevance is higher; ordering by
    # relevance would smooth the other pairs instead and give another value.
    h = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 0]])
    scores = torch.tensor([[1.0, 0.2, 0.9, 0.5]] * 4, dtype=torch.float64)
    levels = rl.shared_levels(h)
    rel = rl.pop_relevances(levels, 2)
    assert rel[0, 3] > rel[0, 1]
    step = lambda t: rl.supap_step(t, **rl.SUPAP_DEFAULTS)  # noqa: E731
    by_levels = rl.rank_ap(scores, rel, step=step, grade=levels)[0]
    by_relevance = rl.rank_ap(scores, rel, step=step)[0]
    assert float(rl.h_ap(scores, h)[0]) == pytest.approx(float(by_levels))
    assert abs(float(by_levels) - float(by_relevance)) > 1e-3


def test_calibration_loss_averages_each_kind_over_its_nonzero_terms():
    labels = torch.tensor([0, 0, 1])
    s = torch.tensor([[1.0, 0.5, 0.7], [0.5, 1.0, 0.2], [0.7, 0.2, 1.0]])
    # positive pairs (0,1),(1,0): [0.9 - 0.5]+ = 0.4 each; negatives: 0.7 -> 0.1 (twice), 0.2 -> 0 (twice)
    assert float(rl.calibration_loss(s, labels)) == pytest.approx(0.4 + 0.1)


def test_calibration_loss_equals_pytorch_metric_learning_and_its_gradient():
    """ROADMAP's CalibrationLoss is pytorch-metric-learning's ContrastiveLoss on
    dot products with its default reducer; ours must equal it in value and in
    gradient (the reducer's averaging over active pairs drives training)."""
    from pytorch_metric_learning.distances import DotProductSimilarity
    from pytorch_metric_learning.losses import ContrastiveLoss

    reference = ContrastiveLoss(pos_margin=0.9, neg_margin=0.6, distance=DotProductSimilarity())
    g = torch.Generator().manual_seed(3)
    for n, classes in ((24, 6), (28, 7), (9, 2)):
        raw = torch.randn(n, 8, generator=g, dtype=torch.float64)
        labels = torch.randint(0, classes, (n,), generator=g)
        # Gradients w.r.t. the head's raw output, as in training: the library
        # normalises again, which changes nothing at unit norm.
        ours_raw, ref_raw = raw.clone().requires_grad_(), raw.clone().requires_grad_()
        e = torch.nn.functional.normalize(ours_raw, dim=1)
        ours = rl.calibration_loss(e @ e.T, labels)
        ref = reference(torch.nn.functional.normalize(ref_raw, dim=1), labels)
        ours.backward()
        ref.backward()
        assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
        assert torch.allclose(ours_raw.grad, ref_raw.grad, rtol=1e-9, atol=1e-12)


def test_cluster_loss_is_a_normalised_softmax_cross_entropy():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
    proxies = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1])
    cos = np.array([[1.0, 0.0], [0.6, 0.8]]) / 0.05
    want = np.mean([-cos[i, labels[i]] + np.log(np.exp(cos[i]).sum()) for i in range(2)])
    assert float(rl.cluster_loss(e, proxies, labels)) == pytest.approx(want, rel=1e-5)


def test_supap_pushes_a_negative_ranked_above_a_positive_down():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.9, 0.1]]), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1])
    (1 - rl.sup_ap(e @ e.T, labels).mean()).backward()
    assert e.grad is not None and e.grad.abs().sum() > 0
