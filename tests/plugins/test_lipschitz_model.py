"""The 1-Lipschitz layers and the built-in lipschitz-cnn: the declared constant bounds
the measured one, the plain layers match deel-torchlip's, and no sample certified at ε
is broken by an ℓ2 attack at ε (APGD-CE, pyautoattack)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rbx_lipschitz.layers import GroupSort2, conv_operator_norm, lipschitz_upper_bound
from rbx_lipschitz.nets import classifier_arch, plain


def _power_iteration(fn, x0: torch.Tensor, iters: int = 300) -> float:
    """Largest singular value of the linear map ``fn`` (J^T J by autograd), from below."""
    v = torch.randn_like(x0, dtype=torch.float64)
    for _ in range(iters):
        v = (v / v.norm()).requires_grad_(True)
        out = fn(v)
        (g,) = torch.autograd.grad(out, v, out)
        v = g.detach()
    v = v / v.norm()
    with torch.no_grad():
        return float(fn(v).norm())


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_conv_bound_is_exact_for_circular_and_an_upper_bound_for_zero_padding(padding_mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False).double()
    measured = _power_iteration(lambda v: nn.functional.conv2d(
        nn.functional.pad(v, (1, 1, 1, 1), mode="circular") if padding_mode == "circular" else v,
        conv.weight, padding=0 if padding_mode == "circular" else 1), torch.zeros(1, 3, 6, 6))
    if padding_mode == "zeros":
        assert measured <= conv_operator_norm(conv, (6, 6)) + 1e-9
    else:
        # the DFT bound on the (n + k - 1) grid is the circular operator's norm on that grid
        measured_big = _power_iteration(lambda v: nn.functional.conv2d(nn.functional.pad(v, (1, 1, 1, 1), mode="circular"), conv.weight),
                                        torch.zeros(1, 3, 8, 8))
        assert measured_big - 1e-9 <= conv_operator_norm(conv, (6, 6)) <= measured_big * (1 + 1e-4)  # power iteration rises to it


def test_groupsort_matches_deel_torchlip():
    tl = pytest.importorskip("deel.torchlip")
    x = torch.randn(4, 6, 3, 3)
    assert torch.equal(GroupSort2()(x), tl.GroupSort2()(x))


def test_deel_torchlip_spectral_layers_export_to_norm_one_on_this_torch():
    """deel-torchlip 1.0.5 works on this torch: the exported layers are (numerically) 1-Lipschitz."""
    pytest.importorskip("deel.torchlip")
    from rbx_lipschitz.training import _export, orthogonal

    torch.manual_seed(0)
    arch = classifier_arch(1, 8, 6, width=8)
    state = _export(orthogonal(arch))
    net = plain(arch)
    net.load_state_dict(state)
    for layer in net:
        if isinstance(layer, nn.Linear):
            assert float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2)) <= 1 + 1e-3
    assert lipschitz_upper_bound(net, (8, 8)) <= 1 + 5e-3


@pytest.fixture(scope="module")
def lipschitz_cnn():
    from rbx_datasets.embedded import build as digits
    from rbx_lipschitz.classifier import build

    dataset = digits(name="embedded-digits", options={}, config_file=None)
    return build(dataset=dataset, log=lambda m: None), dataset


def test_the_declared_constant_bounds_the_measured_one(lipschitz_cnn):
    model, dataset = lipschitz_cnn
    net = model.module.double()
    try:
        torch.manual_seed(0)
        x = torch.rand(256, 1, 8, 8, dtype=torch.float64)
        y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
        with torch.no_grad():
            ratio = (net(x) - net(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        assert float(ratio.max()) <= model.lipschitz_constant + 1e-9
        # the local Jacobian's largest singular value at real digits
        transform = model.transform()
        for i in range(0, 40, 8):
            x0 = transform(dataset.samples("id")[i][0])[None].double()
            jac = torch.autograd.functional.jacobian(lambda v: net(v), x0).reshape(6, -1)
            assert float(torch.linalg.matrix_norm(jac.detach(), ord=2)) <= model.lipschitz_constant + 1e-9
    finally:
        net.float()
    assert 0.9 < model.lipschitz_constant <= 1.0 + 1e-3


def test_no_certified_sample_is_broken_by_apgd_l2(lipschitz_cnn):
    """Certified accuracy <= attacked robust accuracy at every ε, sample by sample."""
    from pyautoattack.autopgd_base import APGDAttack

    from rbx_lipschitz.certificates import certified_mask, certified_radius, top1_margin
    from rbx_lipschitz.grid import CLASSIFICATION_GRID, parse_eps

    model, dataset = lipschitz_cnn
    source = dataset.samples("id")
    transform = model.transform()
    idx = range(0, len(source), 3)  # 128 digits: the test budget
    x = torch.stack([transform(source[i][0]) for i in idx])
    y = torch.tensor([source[i][1] for i in idx])
    with torch.no_grad():
        logits = model.module(x)
    correct = (logits.argmax(1) == y).numpy()
    radius = certified_radius(top1_margin(logits.double().numpy(), y.numpy()), model.lipschitz_constant)
    for text in CLASSIFICATION_GRID:
        eps = parse_eps(text)
        certified = certified_mask(radius, correct, eps)
        if eps == 0:
            assert certified.mean() == correct.mean()
            continue
        attack = APGDAttack(model.module, n_iter=20, norm="L2", eps=eps, seed=0, loss="ce", n_restarts=1)
        x_adv = attack.perturb(x, y)
        assert float((x_adv - x).detach().flatten(1).norm(dim=1).max()) <= eps + 1e-5
        with torch.no_grad():
            robust = (model.module(x_adv).argmax(1) == y).numpy()
        assert not (certified & ~robust).any(), f"eps {text}: a certified sample was broken"
        assert certified.mean() <= robust.mean()
        # the attack is real: at the larger radii it breaks samples
        if eps >= 0.4:
            assert robust.mean() < correct.mean()
