"""Grad-CAM, contrastive Grad-CAM and VOICE maps (rbx_explain.gradcam / .voice)
against closed forms and autograd on a hand-built two-layer network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rbx_explain.gradcam import cam, explain_batch, minmax
from rbx_explain.voice import check_contrast, contrast_classes, voice_batch

K, C = 3, 5  # channels of the explanation layer, classes


class TwoLayer(nn.Module):
    """conv 3×3 (1 → K, stride 2) + ReLU: the explanation layer (4 × 4 maps of an 8 × 8 input);
    then global average pooling and a linear head (K → C)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.layer = nn.Sequential(nn.Conv2d(1, K, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(K, C)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def net_and_input():
    torch.manual_seed(0)
    return TwoLayer().eval(), torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _closed_form(net: TwoLayer, x: torch.Tensor, direction: np.ndarray) -> np.ndarray:
    """Grad-CAM by hand: with z = W mean_uv(A) + b, dy/dA^k_uv = (Wᵀ dy/dz)_k / (u v) everywhere,
    so alpha_k = (Wᵀ dy/dz)_k / (u v); map = minmax(upsample(ReLU(sum_k alpha_k A^k)))."""
    with torch.no_grad():
        a = net.layer(x).double().numpy()  # (B, K, 4, 4)
    w = net.fc.weight.detach().double().numpy()
    alpha = direction @ w / (a.shape[2] * a.shape[3])  # (B, K)
    raw = np.maximum((alpha[:, :, None, None] * a).sum(axis=1), 0.0)
    up = F.interpolate(torch.from_numpy(raw)[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0].numpy()
    lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    return np.where(hi > lo, (up - lo) / np.where(hi > lo, hi - lo, 1), 0.0)


def test_explanation_is_grad_cam_of_the_predicted_logit(net_and_input):
    net, x = net_and_input
    logits, explanation, _ = explain_batch(net, net.layer, x, lambda z: contrast_classes(z, "all"))
    onehot = np.eye(C)[logits.argmax(1).numpy()]  # dz_P / dz
    np.testing.assert_allclose(explanation.numpy(), _closed_form(net, x, onehot), atol=1e-5)


def test_contrast_map_is_grad_cam_of_the_cross_entropy_toward_q(net_and_input):
    net, x = net_and_input
    q = torch.tensor([[0, 3], [1, 4], [2, 0], [3, 1], [4, 2], [0, 4]])
    logits, _, maps = explain_batch(net, net.layer, x, lambda z: q)
    p = torch.softmax(logits.double(), 1).numpy()
    for r in range(q.shape[1]):
        d_ce = p - np.eye(C)[q[:, r].numpy()]  # dCE(z, Q)/dz = softmax(z) - e_Q
        np.testing.assert_allclose(maps[:, r].numpy(), _closed_form(net, x, d_ce), atol=1e-5)
    # and against autograd on a graph built without hooks: dCE/dA through the head alone
    a = net.layer(x).detach().requires_grad_(True)
    loss = F.cross_entropy(net.fc(a.mean(dim=(2, 3))), q[:, 1], reduction="sum")
    (grad,) = torch.autograd.grad(loss, a)
    np.testing.assert_allclose(maps[:, 1].numpy(), cam(a.detach(), grad, (8, 8)).numpy(), atol=1e-6)


def test_a_frozen_network_is_explained_too(net_and_input):
    net, x = net_and_input
    frozen = TwoLayer().eval().requires_grad_(False)
    _, e, maps = explain_batch(frozen, frozen.layer, x, lambda z: contrast_classes(z, 2))
    _, e2, maps2 = explain_batch(net, net.layer, x, lambda z: contrast_classes(z, 2))
    assert torch.equal(e, e2) and torch.equal(maps, maps2)
    assert all(p.grad is None for p in net.parameters())  # nothing accumulated in the parameters


def test_the_contrast_map_differs_from_the_explanation_of_q(net_and_input):
    # "why P rather than Q" is not "why Q": CE(z, Q) weighs every class by its probability
    net, x = net_and_input
    q = torch.full((len(x), 1), 2)
    logits, _, maps = explain_batch(net, net.layer, x, lambda z: q)
    why_q = _closed_form(net, x, np.eye(C)[np.full(len(x), 2)])
    assert np.abs(maps[:, 0].numpy() - why_q).max() > 0.05


def test_contrast_sets():
    z = torch.tensor([[0.1, 3.0, 0.5, 2.0, 0.5], [5.0, 1.0, 2.0, 3.0, 4.0]])
    every = contrast_classes(z, "all")
    assert every.tolist() == [[2, 3, 4, 0], [1, 2, 3, 4]]  # all but P = argmax
    assert contrast_classes(z, 2).tolist() == [[3, 2], [4, 3]]  # most probable after P; ties by class index


def test_voice_map_is_the_normalised_variance_and_non_negative(net_and_input):
    net, x = net_and_input
    _, explanation, stack = explain_batch(net, net.layer, x, lambda z: contrast_classes(z, "all"))
    _, explanation2, voice, constant = voice_batch(net, net.layer, x, "all")
    expected = minmax(torch.var(stack.double(), dim=1))  # torch.var: unbiased, as demo.py
    np.testing.assert_allclose(voice.numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(explanation.numpy(), explanation2.numpy())
    v = voice.numpy()
    assert (v >= 0).all() and (v <= 1).all()
    assert np.allclose(v.max(axis=(1, 2)), 1.0) and np.allclose(v.min(axis=(1, 2)), 0.0)
    assert constant.tolist() == [0] * len(x)


def test_two_classes_are_too_few_for_a_variance():
    with pytest.raises(ValueError, match="contrast set is too small"):
        check_contrast("all", 2)
    with pytest.raises(ValueError, match="at least two contrast classes"):
        check_contrast(1, 10)
    with pytest.raises(ValueError, match="more contrast classes"):
        check_contrast(5, 5)
    assert check_contrast("all", 3) == 2 and check_contrast(4, 10) == 4


def test_two_class_model_fails_before_any_work():
    from rbx_explain.method import Voice

    class Ctx:
        class model:  # noqa: N801
            name, num_classes = "two-class", 2

    with pytest.raises(ValueError, match="two-class model has a single contrast class"):
        Voice().fit(Ctx())


def test_constant_maps_are_zeros_and_nan_stays_nan():
    maps = torch.stack([torch.full((4, 4), 0.3), torch.zeros(4, 4), torch.arange(16.0).reshape(4, 4)])
    out = minmax(maps)
    assert torch.equal(out[0], torch.zeros(4, 4)) and torch.equal(out[1], torch.zeros(4, 4))
    assert out[2].min() == 0 and out[2].max() == 1
    bad = maps.clone()
    bad[2, 0, 0] = float("nan")
    assert torch.isnan(minmax(bad)[2]).all()

def test_identical_contrast_maps_give_an_all_zero_voice_map():
    from rbx_explain.voice import RunningVariance

    same = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    running = RunningVariance()
    for _ in range(5):
        running.add(same)
    assert torch.equal(running.voice_map(), torch.zeros(2, 8, 8, dtype=torch.float64))
    running.add(torch.zeros(2, 8, 8))  # one different map: a real variance again, normalised
    assert running.voice_map().amax(dim=(1, 2)).tolist() == [1.0, 1.0]


def test_a_constant_contrast_map_is_counted_and_enters_the_variance_as_zeros():
    """One channel A >= 0 and logits w * mean(A), w = (3, 2, -5), A small so the
    softmax is nearly uniform: the contrast map toward Q has weight E_p[w] - w_Q,
    negative for Q = 1 (all zero after the ReLU: constant), positive for Q = 2."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    head = nn.Linear(1, 3, bias=False)
    with torch.no_grad():
        conv.weight.fill_(0.01)
        head.weight.copy_(torch.tensor([[3.0], [2.0], [-5.0]]))
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) + 0.1
    _, explanation, stack = explain_batch(net, net[1], x, lambda z: contrast_classes(z, "all"))
    assert torch.equal(stack[:, 0], torch.zeros(2, 6, 6)) and (stack[:, 1].flatten(1).amax(1) == 1).all()
    _, _, voice, constant = voice_batch(net, net[1], x, "all")
    assert constant.tolist() == [1, 1]
    np.testing.assert_allclose(voice.numpy(), minmax(torch.var(stack.double(), dim=1)).numpy(), atol=1e-6)


def test_a_layer_without_spatial_maps_is_a_clear_error():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"needs \(B, K, H, W\) maps"):
        explain_batch(net, net[2], torch.randn(2, 1, 8, 8), lambda z: contrast_classes(z, "all"))
