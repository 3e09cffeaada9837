"""The openclip model: weights from a local checkpoint, QuickGELU, the global and
local (value-value) image embeddings, prompt injection into the text encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rbx_vlm.model import build, class_names, split_arch
from rbx_vlm.testing import save_tiny_clip
from robustbench_x.errors import ConfigError


class _Classes:
    def __init__(self, classes):
        self.classes = list(classes)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config, weights = save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    model = build(str(config), {"checkpoint": str(weights)}, dataset=_Classes(["tench", "gold_fish", "shark"]), log=lambda m: None)
    return model, config, weights


def _images(n=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.normal(size=(n, 3, size, size)), dtype=torch.float32)


def test_names_and_class_names():
    assert split_arch("ViT-B-16/openai") == ("ViT-B-16", "openai")
    assert split_arch("ViT-B-16") == ("ViT-B-16", None)
    assert split_arch("hf-hub:timm/x") == ("hf-hub:timm/x", None)
    assert class_names(["great_white_shark", "tench"]) == ["great white shark", "tench"]
    # ImageNet wnids (e.g. an imagefolder over ImageNet) become CLIP's class names.
    assert class_names(["n01440764", "n01443537"]) == ["tench", "goldfish"]


def test_checkpoint_weights_are_loaded_exactly(tiny):
    from safetensors.torch import load_file

    model, config, weights = tiny
    state = load_file(str(weights))
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert model.name == "openclip:rbx-tiny-clip"
    assert model.provides == {"vlm", "logits", "features", "embeddings"}
    assert model.classnames == ["tench", "gold fish", "shark"]
    assert not model.quick_gelu  # the tiny config uses nn.GELU


def test_quick_gelu_follows_the_tag_or_the_explicit_option(tiny, tmp_path):
    from rbx_vlm.model import _quick_gelu

    # OpenAI weights need QuickGELU even under the plain ViT-B-16 config (open_clip #771); LAION's do not.
    assert _quick_gelu("ViT-B-16", "openai", {}, {"quick_gelu": False}) == (True, "pretrained tag 'openai'")
    assert _quick_gelu("ViT-B-16", "laion2b_s34b_b88k", {}, {})[0] is False
    assert _quick_gelu("ViT-B-16", "openai", {"quick_gelu": False}, {})[0] is False
    model, config, weights = tiny
    forced = build(str(config), {"checkpoint": str(weights), "options": {"quick_gelu": True}}, dataset=_Classes(["a", "b"]), log=lambda m: None)
    assert forced.quick_gelu
    assert forced.fingerprint() != build(str(config), {"checkpoint": str(weights)}, dataset=_Classes(["a", "b"]), log=lambda m: None).fingerprint()


def test_bad_weights_are_config_errors(tiny, tmp_path):
    import argparse

    model, config, _ = tiny
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        build(str(config), {"checkpoint": str(tmp_path / "nope.safetensors")}, dataset=_Classes(["a"]))
    torch.save({"state_dict": argparse.Namespace(payload=1)}, tmp_path / "evil.pt")  # refused by weights_only
    with pytest.raises(ConfigError, match="cannot read"):
        build(str(config), {"checkpoint": str(tmp_path / "evil.pt")}, dataset=_Classes(["a"]))
    with pytest.raises(ConfigError, match="has no weights"):
        build(str(config), {}, dataset=_Classes(["a"]))


def test_forward_is_tau_times_cosine_with_a_photo_of_a_prompts(tiny):
    model, _, _ = tiny
    x = _images()
    logits, feats = model.forward(x)
    image = F.normalize(model.net.encode_image(x), dim=-1)
    text = F.normalize(model.net.encode_text(model.tokenize(["a photo of a tench", "a photo of a gold fish", "a photo of a shark"])), dim=-1)
    torch.testing.assert_close(feats, image)
    torch.testing.assert_close(logits, model.net.logit_scale.exp() * image @ text.T, rtol=1e-5, atol=1e-5)
    tf = model.transform()
    assert tf(Image.new("L", (50, 40))).shape == (3, 32, 32)


def test_local_features_shape_and_value_value_trick(tiny):
    """Value-value = the last block with attention restricted to each token itself."""
    model, _, _ = tiny
    x = _images(2)
    g, local = model.encode_image_local(x)
    assert g.shape == (2, 16) and local.shape == (2, 64, 16)  # (32 / 4)² patches, embed_dim 16
    torch.testing.assert_close(local.norm(dim=-1), torch.ones(2, 64))
    torch.testing.assert_close(g, F.normalize(model.net.encode_image(x), dim=-1))

    visual = model.net.visual
    with torch.no_grad():
        h = visual._embeds(x)
        blocks = list(visual.transformer.resblocks)
        for block in blocks[:-1]:
            h = block(h)
        n = h.shape[1]
        self_only = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
        v = blocks[-1](h, attn_mask=self_only)
        expected = F.normalize(visual.ln_post(v)[:, 1:] @ visual.proj, dim=-1)
    torch.testing.assert_close(local, expected, rtol=1e-5, atol=1e-5)

    # local_proj is applied before visual.proj: an identity map changes nothing, a scaling of a
    # width direction changes the result.
    _, tokens = model.image_global_and_tokens(x)
    assert tokens.shape == (2, 64, 32)
    identity = torch.nn.Linear(32, 32, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(32))
    torch.testing.assert_close(model.project_local(tokens, identity), local)
    scale = torch.nn.Linear(32, 32, bias=False)
    with torch.no_grad():
        scale.weight.copy_(torch.diag(torch.linspace(0.1, 3.0, 32)))
    torch.testing.assert_close(model.project_local(tokens, scale), F.normalize((tokens @ scale.weight.T) @ visual.proj, dim=-1))


def test_context_injection_reproduces_the_hand_written_prompt(tiny):
    model, _, _ = tiny
    ctx = model.context_init("A photo of a")
    assert ctx.shape == (4, 32)  # n_ctx = 4 tokens, as GalLoP
    injected = model.encode_text_with_context(ctx, model.class_tokens(""), normalize=True)
    torch.testing.assert_close(injected, model.zero_shot_text(), rtol=1e-5, atol=1e-5)
    # CoOp's trailing period; several prompts at once give (C, P, D).
    with_period = model.encode_text_with_context(ctx, model.class_tokens("."), normalize=True)
    torch.testing.assert_close(with_period, model.encode_text(["a photo of a tench.", "a photo of a gold fish.", "a photo of a shark."]), rtol=1e-5, atol=1e-5)
    stacked = model.encode_text_with_context(torch.stack([ctx, ctx + 0.1]), model.class_tokens(""), normalize=True)
    assert stacked.shape == (3, 2, 16)
    torch.testing.assert_close(stacked[:, 0], injected)
    # Gradients reach the context, identically with the text encoder checkpointed (a memory saving only).
    learned = torch.nn.Parameter(ctx.clone())
    model.encode_text_with_context(learned, model.class_tokens("")).sum().backward()
    assert learned.grad is not None and learned.grad.abs().sum() > 0
    again = torch.nn.Parameter(ctx.clone())
    with model.text_checkpointing():
        model.encode_text_with_context(again, model.class_tokens("")).sum().backward()
    torch.testing.assert_close(again.grad, learned.grad)
    assert not model.net.transformer.grad_checkpointing


def test_fingerprint_depends_on_classes(tiny):
    model, config, weights = tiny
    other = build(str(config), {"checkpoint": str(weights)}, dataset=_Classes(["tench", "gold_fish", "whale"]), log=lambda m: None)
    same = build(str(config), {"checkpoint": str(weights)}, dataset=_Classes(["tench", "gold_fish", "shark"]), log=lambda m: None)
    assert other.fingerprint() != model.fingerprint() == same.fingerprint()
