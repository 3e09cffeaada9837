"""MCM, GL-MCM, CoOp and GalLoP against hand computations (``docs/methods.md#clip-methods``).

The two temperature conventions of GalLoP are checked on hand-made cosines:
classification ``softmax(τ·(g + l)/2)`` with top-k local pooling, OOD scoring
GL-MCM at T = 1 on raw cosines, per patch, without top-k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rbx_vlm._common import few_shot_per_class, few_shot_stratified
from rbx_vlm.coop import CoOp, coop_epochs, coop_lr
from rbx_vlm.gallop import GalLoP, dropout_keep, gallop_logits, gallop_loss, gallop_ood_score, prompt_dropout, topk_reduce
from rbx_vlm.mcm import MCM, ZeroShotMSP, gl_mcm_score
from rbx_vlm.model import build
from rbx_vlm.testing import COLOURS, save_tiny_clip
from robustbench_x.testing import ArrayContext, make_outputs


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _softmax(z, axis=-1):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ MCM / GL-MCM


class _TextModel:
    """Stands in for OpenClipModel: unit text embeddings e_1..e_3, τ = 100."""

    logit_scale = 100.0

    def zero_shot_text(self):
        return torch.eye(3)


class _Masked:
    classes = ["a", "b", "c"]

    def class_mask(self, subset):
        return np.array([True, False, True]) if subset == "dg/imagenet-a" else None


def _ctx(features, subset="id"):
    outputs = make_outputs(np.zeros((len(features), 3)), features=features, labels=np.zeros(len(features)))
    return ArrayContext({subset: outputs}, model=_TextModel(), dataset=_Masked())


def test_mcm_is_max_softmax_of_raw_cosines_at_t1():
    feats = np.array([[0.8, 0.6, 0.0], [0.0, 0.6, 0.8]])
    out = MCM().score(_ctx(feats), "id")
    expected = _softmax(feats).max(axis=1)  # cosines = features (unit text vectors), T = 1, no τ
    np.testing.assert_allclose(out["score"], expected, rtol=1e-6)
    assert expected[0] < 0.5  # at T = 1 on cosines the softmax is nearly flat: not τ-scaled
    np.testing.assert_array_equal(out["prediction"], [0, 2])
    hot = MCM(temperature=0.01).score(_ctx(feats), "id")["score"]
    np.testing.assert_allclose(hot, _softmax(feats / 0.01).max(axis=1), rtol=1e-6)


def test_zero_shot_msp_uses_tau_and_the_200_class_mask():
    feats = np.array([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]])
    out = ZeroShotMSP().score(_ctx(feats, "dg/imagenet-a"), "dg/imagenet-a")
    restricted = _softmax(np.where([True, False, True], 100.0 * feats, -np.inf))
    np.testing.assert_allclose(out["probs"], restricted, rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(out["prediction"], [0, 2])  # class 1 (largest cosine of sample 0) is masked out
    mcm = MCM().score(_ctx(feats, "dg/imagenet-a"), "dg/imagenet-a")
    np.testing.assert_array_equal(mcm["prediction"], [0, 2])


def test_gl_mcm_adds_the_per_patch_maximum():
    g = torch.tensor([[0.30, 0.10, 0.20]])
    local = torch.tensor([[[0.1, 0.2, 0.0], [0.9, -0.3, 0.1]]])  # 2 patches
    expected = _softmax(g.numpy()).max() + _softmax(local.numpy()[0], axis=-1).max()
    assert float(gl_mcm_score(g, local)) == pytest.approx(expected, rel=1e-9)
    assert float(gl_mcm_score(g, local, lambda_local=0.5)) == pytest.approx(_softmax(g.numpy()).max() + 0.5 * _softmax(local.numpy()[0], axis=-1).max())


# ------------------------------------------------------------------ GalLoP definitions


def test_topk_reduce_against_a_hand_computation():
    # local[b, p, k, n]: 4 patches, 2 classes, 2 local prompts with k = 1 and k = 3.
    values = np.array(
        [
            [[0.1, 0.5], [0.9, 0.2]],
            [[0.4, 0.3], [0.0, 0.8]],
            [[0.7, 0.1], [0.3, 0.6]],
            [[0.2, 0.9], [0.5, 0.4]],
        ]
    )[None]  # (1, 4, 2, 2)
    out = topk_reduce(torch.tensor(values), [1, 3]).numpy()[0]  # (C, N)
    by_hand = np.empty((2, 2))
    for c in range(2):
        for n, k in enumerate([1, 3]):
            by_hand[c, n] = np.sort(values[0, :, c, n])[::-1][:k].mean()
    np.testing.assert_allclose(out, by_hand)
    assert by_hand[0, 1] == pytest.approx((0.9 + 0.5 + 0.3) / 3)
    # A single k is shared; k above the number of patches takes them all (upstream behaviour).
    np.testing.assert_allclose(topk_reduce(torch.tensor(values), [20]).numpy()[0], values[0].mean(axis=0))
    with pytest.raises(ValueError, match="one k per local prompt"):
        topk_reduce(torch.tensor(values), [1, 2, 3])


def test_prompt_dropout_keeps_max_m_minus_int_pm_1_with_replacement_per_sample():
    assert dropout_keep(4, 0.75) == 1  # the paper's setting: 1 of 4 global prompts per image
    assert dropout_keep(4, 0.5) == 2
    assert dropout_keep(4, 1.0) == 1
    assert dropout_keep(3, 0.75) == 1  # int(2.25) = 2
    b, c, m = 4000, 3, 4
    logits = torch.arange(m, dtype=torch.float64).expand(b, c, m).clone()  # logit of prompt m = m
    mean, index = prompt_dropout(logits, 0.5, torch.Generator().manual_seed(0))
    assert index.shape == (b, 2)
    # Each image averages its own draw, identically for every class.
    torch.testing.assert_close(mean, index.double().mean(dim=1, keepdim=True).expand(b, c))
    # Per sample: draws differ between images; uniform over the 4 prompts.
    assert len({tuple(r) for r in index.tolist()}) == 16
    np.testing.assert_allclose(np.bincount(index.flatten().numpy(), minlength=m) / index.numel(), 0.25, atol=0.02)
    # With replacement: both kept slots hold the same prompt in ≈ 1/4 of the images.
    assert (index[:, 0] == index[:, 1]).double().mean().item() == pytest.approx(0.25, abs=0.03)


def test_gallop_loss_is_global_with_dropout_plus_local_topk():
    torch.manual_seed(0)
    b, p, c = 5, 6, 3
    g = torch.rand(b, c, 4)
    local = torch.rand(b, p, c, 2)
    y = torch.tensor([0, 1, 2, 1, 0])
    tau, topk = 10.0, [2, 4]
    loss = gallop_loss(g, local, y, tau, topk, 0.75, torch.Generator().manual_seed(3))
    _, index = prompt_dropout(g, 0.75, torch.Generator().manual_seed(3))
    kept = g.gather(-1, index[:, None, :].expand(-1, c, -1)).mean(-1)
    l_red = topk_reduce(local, topk)
    local_ce = np.mean([torch.nn.functional.cross_entropy(tau * l_red[:, :, n], y).item() for n in range(2)])
    expected = torch.nn.functional.cross_entropy(tau * kept, y).item() + local_ce
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_classification_and_ood_use_different_temperatures_and_pooling():
    tau = 100.0
    g = np.array([[[0.30, 0.26], [0.20, 0.22]]])  # (B=1, C=2, M=2)
    local = np.array(  # (B=1, P=3, C=2, N=2)
        [[[[0.40, 0.10], [0.05, 0.30]], [[0.00, 0.20], [0.35, 0.25]], [[0.10, 0.15], [0.10, 0.05]]]]
    )
    topk = [1, 2]
    g_t, l_t = torch.tensor(g), torch.tensor(local)
    # Classification: softmax(τ · (mean_m g + mean_n topk_n-mean over patches) / 2).
    g_mean = g[0].mean(axis=-1)
    l_top = np.array([[np.sort(local[0, :, cls, n])[::-1][:k].mean() for n, k in enumerate(topk)] for cls in range(2)]).mean(axis=-1)
    probs = _softmax(tau * (g_mean + l_top) / 2)
    np.testing.assert_allclose(torch.softmax(tau * gallop_logits(g_t, l_t, topk), -1).numpy()[0], probs, rtol=1e-9)
    # OOD: T = 1 on raw cosines; local = per-patch softmax of the prompt-mean cosines, max over patches and classes.
    ood = _softmax(g_mean).max() + _softmax(local[0].mean(axis=-1), axis=-1).max()
    assert float(gallop_ood_score(g_t, l_t, 1.0, 1.0)) == pytest.approx(ood, rel=1e-9)
    # ...which is neither the τ-scaled nor the top-k-pooled variant.
    wrong_tau = _softmax(tau * g_mean).max() + _softmax(tau * local[0].mean(axis=-1), axis=-1).max()
    wrong_topk = _softmax(g_mean).max() + _softmax(l_top).max()
    assert abs(ood - wrong_tau) > 1e-2 and abs(ood - wrong_topk) > 1e-3
    assert float(gallop_ood_score(g_t, l_t, method="MCM")) == pytest.approx(_softmax(g_mean).max())
    assert float(gallop_ood_score(g_t, l_t, method="L-MCM")) == pytest.approx(_softmax(local[0].mean(axis=-1), axis=-1).max())


# ------------------------------------------------------------------ few-shot and CoOp pieces


def test_few_shot_samplers_are_seeded_and_per_class():
    labels = np.repeat(np.arange(5), 30)
    a = few_shot_stratified(labels, 16, seed=1)
    assert np.array_equal(np.bincount(labels[a]), [16] * 5)
    assert np.array_equal(a, few_shot_stratified(labels, 16, seed=1)) and not np.array_equal(a, few_shot_stratified(labels, 16, seed=2))
    b = few_shot_per_class(labels, 4, seed=1)
    assert np.array_equal(np.bincount(labels[b]), [4] * 5)
    assert np.array_equal(b, few_shot_per_class(labels, 4, seed=1))
    assert len(few_shot_stratified(labels, 100, seed=0)) == len(labels)  # more shots than images: everything


def test_coop_schedule_and_budgets():
    assert coop_lr(0, 50, 0.002) == 1e-5  # 1 warm-up epoch at constant 1e-5
    assert coop_lr(1, 50, 0.002) == pytest.approx(0.002)
    assert coop_lr(2, 50, 0.002) == pytest.approx(0.002 * (1 + np.cos(np.pi / 50)) / 2)
    assert [coop_epochs(1000, s) for s in (1, 16)] == [50, 50]
    assert [coop_epochs(10, s) for s in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert CoOp(budget="paper").schedule(1000) == (50, 32)
    assert CoOp().schedule(1000) == (5, 32)
    assert GalLoP(budget="paper").schedule(1000) == (50, 128)
    assert GalLoP(budget="paper").schedule(37) == (200, 32)
    assert GalLoP(epochs=3, batch_size=7).schedule(1000) == (3, 7)


# ------------------------------------------------------------------ on the tiny CLIP


class _Colours:
    """A train SampleSource: noisy red / green / blue images."""

    def __init__(self, n: int = 8, seed: int = 0) -> None:
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.images, self.labels = [], []
        for c, colour in enumerate(COLOURS):
            for _ in range(n):
                arr = np.clip(np.asarray(colour)[None, None] + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
                self.images.append(Image.fromarray(arr))
                self.labels.append(c)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], str(i)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    class _Classes:
        classes = ["red", "green", "blue"]

    config, weights = save_tiny_clip(Path(tmp_path_factory.mktemp("tiny-clip-methods")))
    return build(str(config), {"checkpoint": str(weights)}, dataset=_Classes(), log=lambda m: None)


def test_gallop_initialisation(tiny):
    method = GalLoP()
    prompts = method.build_prompts(tiny)
    init = tiny.context_init("A photo of a")
    assert prompts.global_prompt.shape == (4, 4, 32) and prompts.local_prompts.shape == (4, 4, 32)
    for stack in (prompts.global_prompt, prompts.local_prompts):  # every prompt starts from "A photo of a"
        for row in stack:
            torch.testing.assert_close(row.detach(), init)
    assert prompts.local_proj.bias is None
    torch.testing.assert_close(prompts.local_proj.weight.detach(), torch.eye(32))
    # No trailing period: the class token is followed directly by EOT.
    tokens = tiny.class_tokens("")
    eot = tokens.argmax(dim=-1)
    assert all(int(tokens[i, e - 1]) != 269 for i, e in enumerate(eot))  # 269 = '.'
    assert int(tiny.class_tokens(".")[0, int(tiny.class_tokens(".")[0].argmax()) - 1]) == 269  # CoOp's period


def test_coop_context_init_is_n_0_002(tiny):
    ctx = CoOp().init_context(tiny, torch.Generator().manual_seed(0))
    assert ctx.shape == (16, 32)
    assert float(ctx.std()) == pytest.approx(0.02, rel=0.15) and abs(float(ctx.mean())) < 0.005
    assert CoOp(csc=True).init_context(tiny, torch.Generator().manual_seed(0)).shape == (3, 16, 32)
    torch.testing.assert_close(CoOp(ctx_init="a photo of a").init_context(tiny, torch.Generator()), tiny.context_init("a photo of a"))


def test_gallop_training_lowers_its_loss_and_scores(tiny):
    method = GalLoP(shots=8, epochs=6, batch_size=8)  # the paper's lr / wd / dropout / top-k, a small budget
    state = method.train(tiny, _Colours(), seed=0)
    loss = state["loss"]
    assert loss.shape == (6,) and loss[-1] < 0.75 * loss[0], loss
    assert not np.allclose(state["local_proj"], np.eye(32))  # the projection is learned
    # Prompt dropout lets the 4 global prompts drift apart from their common start.
    assert np.abs(state["global_prompt"][0] - state["global_prompt"][1]).max() > 0
    method.load(tiny, state)
    x = torch.stack([tiny.transform()(img) for img in _Colours(n=2, seed=5).images])
    ctx = ArrayContext({"id": make_outputs(np.zeros((6, 3)), labels=np.repeat([0, 1, 2], 2))}, model=tiny, inputs={"id": (x, torch.zeros(6))})
    out = method.score(ctx, "id")
    assert out["probs"].shape == (6, 3) and np.all(np.isfinite(out["score"]))
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0)
    assert 2 / 3 < out["score"].min() and out["score"].max() <= 2.0  # MCM_global + MCM_local, each in [1/C, 1]
