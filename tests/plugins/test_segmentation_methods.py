"""Per-pixel methods against their definitions on tiny cases (docs/methods.md, "Segmentation methods")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.special import softmax as sp_softmax
from scipy.stats import entropy as sp_entropy
from torch import nn

from rbx_segmentation.layers import BatchConv2d, LPBNNConv2d, member_rows, tile_members
from rbx_segmentation.methods import MSP, DeepEnsemble, Energy, Entropy, MaxLogit, MCDropout, Sampled, mutual_information
from rbx_segmentation.net import SegNet
from robustbench_x.api import Outputs

LOGITS = np.array([[[[2.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [3.0, -1.0]], [[0.0, 0.0], [-2.0, 0.5]]]], dtype=np.float32)  # (1, 3, 2, 2)


class _Ctx:
    """The parts of a job's context the methods use."""

    def __init__(self, logits=LOGITS, model=None, images=None, seed=0):
        self.seed, self.model, self._logits = seed, model, logits
        self._images = images

    def outputs(self, subset):
        n = len(self._logits)
        return Outputs(logits=self._logits, features=np.zeros((n, 1)), labels=np.zeros((n, 2, 2), dtype=np.int64), sample_ids=np.arange(n).astype(str))

    def loader(self, subset, batch_size=16):
        for start in range(0, len(self._images), batch_size):
            yield self._images[start : start + batch_size], None


@pytest.mark.parametrize(
    ("method", "reference"),
    [
        (MSP(), lambda l: sp_softmax(l, axis=0).max(axis=0) - 1.0),  # emitted as MSP - 1 (same ranking)
        (MaxLogit(), lambda l: l.max(axis=0)),
        (Entropy(), lambda l: -sp_entropy(sp_softmax(l, axis=0), axis=0)),
        (Energy(temperature=2.0), lambda l: 2.0 * logsumexp(l / 2.0, axis=0)),
    ],
)
def test_posthoc_scores_match_their_definitions(method, reference):
    out = method.score(_Ctx(), "test")
    np.testing.assert_allclose(out["score"][0], reference(LOGITS[0].astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["prediction"][0], LOGITS[0].argmax(axis=0))
    np.testing.assert_allclose(out["probs"][0], sp_softmax(LOGITS[0], axis=0), rtol=1e-5)


def test_mutual_information_is_zero_when_members_agree_and_positive_otherwise():
    p = sp_softmax(np.random.default_rng(0).normal(size=(3, 4, 4)), axis=0)
    agree = np.stack([p] * 5)
    assert np.abs(mutual_information(agree)).max() < 1e-12
    disagree = np.stack([p, np.roll(p, 1, axis=0)])
    mi = mutual_information(disagree)
    # hand-worked: H(mean) - mean H, with scipy's entropy
    expected = sp_entropy(disagree.mean(0), axis=0) - 0.5 * (sp_entropy(disagree[0], axis=0) + sp_entropy(disagree[1], axis=0))
    np.testing.assert_allclose(mi, expected, atol=1e-12)
    assert (mi > 0).all()
    combined = Sampled(score="mutual_information").combine(disagree)
    np.testing.assert_allclose(combined["score"], -expected, atol=1e-6)
    np.testing.assert_allclose(combined["probs"], disagree.mean(0), atol=1e-6)


class _DropoutModel:
    """A 'segmenter': per-pixel logits of a 1×1 conv after channel dropout of probability p."""

    name, num_classes = "toy", 3

    def __init__(self, p: float, weight_seed: int = 0):
        torch.manual_seed(weight_seed)
        self.module = nn.Sequential(nn.Dropout2d(p), nn.Conv2d(4, 3, 1)).eval()

    def forward(self, x):
        with torch.no_grad():
            logits = self.module(x)
        return logits, logits.mean(dim=(2, 3))

    def members(self, k):
        return [self] * k if self.same else [_DropoutModel(0.0, weight_seed=i) for i in range(k)]


def _mi_map(method, model):
    images = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    ctx = _Ctx(logits=np.zeros((3, 3, 5, 5), np.float32), model=model, images=images)
    method.fit(ctx)
    return -method.score(ctx, "test")["score"]


def test_mc_dropout_mutual_information_is_zero_without_dropout_and_positive_with_it():
    assert np.abs(_mi_map(MCDropout(T=8, score="mutual_information"), _DropoutModel(0.0))).max() < 1e-6
    assert _mi_map(MCDropout(T=8, score="mutual_information"), _DropoutModel(0.5)).mean() > 1e-3


def test_deep_ensemble_mutual_information_is_zero_for_identical_members_and_positive_otherwise():
    same = _DropoutModel(0.0)
    same.same = True
    different = _DropoutModel(0.0)
    different.same = False
    assert np.abs(_mi_map(DeepEnsemble(K=3, score="mutual_information"), same)).max() < 1e-6
    assert _mi_map(DeepEnsemble(K=3, score="mutual_information"), different).mean() > 1e-3


def test_member_major_layout():
    """Row j of an M·b batch belongs to member j // b: the M copies of image 0 meet M different members.
    (An interleaved tiling, per-member vectors repeated as r.repeat(b, 1), gives every copy member 0 when
    b % M == 0: the collapse of torch-uncertainty's LP-BNN layer.)"""
    m, b = 4, 4
    owner = member_rows(torch.arange(m, dtype=torch.float32)[:, None], m * b)[:, 0, 0, 0]
    assert owner.tolist() == [i // b for i in range(m * b)]
    copies_of_image0 = [k * b for k in range(m)]
    assert sorted(owner[copies_of_image0].tolist()) == list(range(m))
    interleaved = torch.arange(m, dtype=torch.float32)[:, None].repeat(b, 1)[:, 0]
    assert interleaved[copies_of_image0].tolist() == [0.0] * m
    x = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1, 1)
    tiled = tile_members(x, 3)
    assert torch.equal(tiled[2:4], x) and torch.equal(tiled[4:6], x)


def test_batchconv_is_the_rank_one_formula():
    """y_j = (W ⊛ (x_j ∘ r_i)) ∘ s_i + b_i with i = j // b (Wen et al. 2020, eq. 5)."""
    torch.manual_seed(0)
    layer = BatchConv2d(3, 2, 3, members=2, padding=1)
    x = torch.randn(2, 3, 5, 5)
    y = layer(tile_members(x, 2))
    for j in range(4):
        i = j // 2
        ref = torch.nn.functional.conv2d(x[j % 2 : j % 2 + 1] * layer.r[i].view(1, 3, 1, 1), layer.conv.weight, padding=1)
        ref = ref * layer.s[i].view(1, 2, 1, 1) + layer.bias[i].view(1, 2, 1, 1)
        torch.testing.assert_close(y[j : j + 1], ref)


@pytest.mark.parametrize("kind", ["batchensemble", "lpbnn"])
def test_rank_one_members_differ_on_the_same_input(kind):
    torch.manual_seed(0)
    net = SegNet(4, members=4, kind=kind).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = net(x).view(4, 2, 4, 16, 16)
    for a in range(4):
        for b in range(a + 1, 4):
            assert (out[a] - out[b]).abs().max() > 1e-3, (kind, a, b)


def _identity_autoencoder(layer: LPBNNConv2d, mean: float = 0.0, logvar: float = 0.0) -> None:
    """enc/dec that pass a positive α through unchanged; constant μ and log σ² (independent of e)."""
    cin = layer.alpha.shape[1]
    with torch.no_grad():
        for lin in (layer.encoder, layer.decoder, layer.mean, layer.logvar):
            lin.weight.zero_()
            lin.bias.zero_()
        layer.encoder.weight[:cin, :cin] = torch.eye(cin)
        layer.decoder.weight[:cin, :cin] = torch.eye(cin)
        layer.mean.bias.fill_(mean)
        layer.logvar.bias.fill_(logvar)
        layer.alpha.copy_(torch.tensor([[1.0, 2.0, 0.5], [0.25, 1.0, 3.0]]))


def test_lpbnn_decodes_the_embedding_so_members_differ_and_evaluation_is_deterministic():
    # official Ensemble_Conv2d: α̂ = dec(ReLU(enc(α))), the sample μ + σ·ε is not decoded
    torch.manual_seed(0)
    layer = LPBNNConv2d(3, 2, 1, members=2)
    _identity_autoencoder(layer, mean=0.5, logvar=1.0)  # a sampled decoder would add noise of σ = e^0.5 here
    x = torch.randn(1, 3, 4, 4)
    rows = tile_members(x, 2)
    for mode in (layer.train, layer.eval):
        mode()
        torch.testing.assert_close(layer.decoded_alpha(), layer.alpha.detach(), rtol=0, atol=0)
        torch.manual_seed(1)
        first = layer(rows)
        torch.manual_seed(2)
        torch.testing.assert_close(layer(rows), first, rtol=0, atol=0)
    for i in range(2):
        member = nn.functional.conv2d(x * layer.alpha[i][None, :, None, None], layer.conv.weight)
        expected = member * layer.gamma[i][None, :, None, None] + layer.bias[i][None, :, None, None]
        torch.testing.assert_close(first[i : i + 1], expected)
    assert (first[0] - first[1]).abs().max() > 1e-3
    assert layer.alpha.requires_grad is False


def test_lpbnn_latent_loss_is_mse_plus_kl_weighted_as_the_official_training():
    layer = LPBNNConv2d(3, 2, 1, members=2).train()
    m, lv = 0.5, 1.0
    _identity_autoencoder(layer, mean=m, logvar=lv)
    layer.decoded_alpha()
    # MSE(α̂, α) = 0; KL of 2 members × 32 latents, each -0.5 (1 + lv - m² - e^lv)
    torch.testing.assert_close(layer.latent_loss, torch.tensor(-0.5 * 2 * 32 * (1 + lv - m * m - np.exp(lv)), dtype=torch.float32))
    net = SegNet(4, members=4, kind="lpbnn")
    layers = [mod for mod in net.modules() if isinstance(mod, LPBNNConv2d)]
    assert len(layers) == 6
    for i, mod in enumerate(layers):
        mod.latent_loss = torch.tensor(float(i + 1))
    # official: the sum over the LP-BNN layers divided by (their number + 1): (1 + … + 6) / 7
    torch.testing.assert_close(net.latent_loss(), torch.tensor(21.0 / 7.0))


def test_lpbnn_member_spread_diagnostic_is_one_for_an_identity_autoencoder_and_zero_when_collapsed():
    from rbx_segmentation.methods import alpha_spread

    net = SegNet(4, members=2, kind="lpbnn").train()
    layers = {n: mod for n, mod in net.named_modules() if isinstance(mod, LPBNNConv2d)}
    first = next(iter(layers))
    assert layers[first].alpha.shape[1] == 3  # the RGB input
    with torch.no_grad():
        for name, mod in layers.items():
            for lin in (mod.encoder, mod.decoder):
                lin.weight.zero_()
                lin.bias.zero_()
            if name == first:  # α̂ = α: identity through the ReLU, α made positive
                mod.alpha.abs_()
                mod.encoder.weight[:3, :3] = torch.eye(3)
                mod.decoder.weight[:3, :3] = torch.eye(3)
            else:  # every latent unit dead: α̂ is the decoder's bias whatever α
                mod.encoder.bias.fill_(-10.0)
                mod.decoder.bias.fill_(1.0)
    spread = alpha_spread(net)
    assert spread[first] == pytest.approx(1.0, rel=1e-6)
    assert all(v == 0.0 for n, v in spread.items() if n != first) and len(spread) == 6
    assert net.training  # the diagnostic leaves the training mode as it found it


def test_seg_lpbnn_default_score_is_the_max_of_the_mean_softmax():
    from rbx_segmentation import METHODS
    from rbx_segmentation.methods import LPBNN, msp_minus_one

    spec = next(s for s in METHODS if s.name == "seg-lpbnn")
    assert spec.params["score"] == "msp" and not spec.stochastic
    members = sp_softmax(np.random.default_rng(0).normal(size=(4, 3, 2, 2)), axis=1).astype(np.float32)
    for method in (LPBNN(), LPBNN(**spec.params)):
        np.testing.assert_array_equal(method.combine(members)["score"], msp_minus_one(members.mean(axis=0)).astype(np.float32))
    assert LPBNN(score="entropy").combine(members)["score"] == pytest.approx(-sp_entropy(members.mean(axis=0), axis=0), abs=1e-6)


def test_the_recipes_lpbnn_members_decode_different_scalings_and_disagree():
    from rbx_segmentation.models import train_cached
    from rbx_segmentation.scenes import build as build_scenes

    net = SegNet(4, members=4, kind="lpbnn")
    net.load_state_dict(train_cached(build_scenes(), 0, kind="lpbnn", members=4, log=lambda m: None).state_dict())
    net.eval()
    layers = {n: mod for n, mod in net.named_modules() if isinstance(mod, LPBNNConv2d)}
    with torch.no_grad():
        for mod in layers.values():  # deterministic: the spread below is between members, not noise
            torch.testing.assert_close(mod.decoded_alpha(), mod.decoded_alpha(), rtol=0, atol=0)
        spreads = {n: float(mod.decoded_alpha().std(0).mean()) for n, mod in layers.items()}
        probs = torch.softmax(net(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))), 1).view(4, 2, -1, 32, 32)
    assert sum(v > 0.05 for v in spreads.values()) >= 4, spreads
    assert mutual_information(probs[:, 0].numpy()).mean() > 1e-3


def test_confidnet_target_is_the_true_class_probability():
    from rbx_segmentation.confidnet import true_class_probability

    logits = torch.from_numpy(LOGITS)
    labels = torch.tensor([[[0, 1], [2, 0]]])
    tcp = true_class_probability(logits, labels)
    p = sp_softmax(LOGITS[0], axis=0)
    np.testing.assert_allclose(tcp[0].numpy(), [[p[0, 0, 0], p[1, 0, 1]], [p[2, 1, 0], p[0, 1, 1]]], rtol=1e-6)
