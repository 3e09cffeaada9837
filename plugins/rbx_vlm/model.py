"""``openclip:<arch>/<pretrained>``: an open_clip CLIP model as a harness :class:`Model`.

Naming
    ``openclip:ViT-B-16/openai`` (family name), or a ``models:`` entry::

        models:
          clip-b16:
            type: openclip
            arch: ViT-B-16            # an open_clip config name, or a JSON model config file (<name>.json)
            pretrained: openai        # the open_clip tag these weights are (QuickGELU, preprocessing)
            checkpoint: /weights/ViT-B-16-openai.safetensors   # optional local copy
            options: {quick_gelu: true}                        # optional override

Weights, first match wins
    1. ``checkpoint:``: a ``.safetensors`` file, or a PyTorch file read with
       ``torch.load(weights_only=True)`` (never a bare unpickle; ``state_dict``
       / ``model`` wrappers and a ``module.`` prefix are unwrapped). A local
       file, when given, is always used and the hub is never contacted; the
       ``pretrained`` tag then only says which weights they are. Relative
       paths are relative to the working directory.
    2. ``pretrained: <tag>`` (or ``/<tag>`` in the name): open_clip's hub
       weights, downloaded by open_clip when the hub is reachable (a clear
       error when it is not).
    3. ``pretrained: false``: random weights (smoke runs only).

QuickGELU (``docs/methods.md#clip-methods``, open_clip issue #771)
    OpenAI's CLIP weights were trained with QuickGELU; open_clip's ``ViT-B-16``
    config uses nn.GELU and open_clip 3.x only *warns* on the mismatch, giving
    silently wrong features. The activation is therefore decided here: an
    explicit ``options: {quick_gelu: ...}`` wins; else the tag's pretrained
    config (``openai`` → QuickGELU); else the model config (``*-quickgelu``
    archs, a JSON config's ``quick_gelu``). With a checkpoint and neither a tag
    nor an explicit choice the model config decides and a log line says so.

Image side (``docs/methods.md#gl-mcm``, GalLoP ``clip_local.py``)
    * global embedding = ``ln_post(x_CLS) @ visual.proj``, L2-normalised
      (exactly ``encode_image``);
    * local embeddings, **last block only**, the value-value (MaskCLIP) trick:
      ``y = ln_1(x)``, ``v = out_proj(W_v y + b_v)`` (the attention's value
      projection then its output projection, no attention mixing), ``v = x + v``,
      ``v = v + MLP(ln_2(v))``, ``ln_post(v)``, drop the CLS token; then the
      optional learned ``local_proj`` (GalLoP: width × width, no bias, identity
      init), **then** ``visual.proj``; L2-normalise each patch. GL-MCM uses no
      ``local_proj`` (identity). Only ViT towers with standard open_clip blocks
      are supported (a clear error otherwise).

Text side
    Zero-shot prompts ``"a photo of a {class}"`` (MCM / GL-MCM; no period),
    class names from ``dataset.classes`` with ``_`` → space (ImageNet wnids are
    translated with the shipped CLIP class names). Prompt learning injects
    context vectors after the start token:
    ``[SOT] [V1..Vn] <class tokens> [EOT] [pad]``, feature at the EOT position
    (shifted by n) × ``text_projection`` (:meth:`OpenClipModel.encode_text_with_context`).

``forward(x)`` returns ``(τ · cos(image, text_k), global embedding)`` with
``τ = exp(logit_scale)`` (frozen, ≈ 100 for OpenAI weights), so the feature
cache and the post-hoc methods (MSP, energy, KNN...) work on a VLM as on any
classifier. Everything runs in fp32 (the papers use fp16 autocast on GPU).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_x.api import Model, load_state_dict
from robustbench_x.errors import ConfigError

ZERO_SHOT_TEMPLATE = "a photo of a {}"
_WNID = re.compile(r"^n\d{8}$")


# ----------------------------------------------------------------- helpers


def split_arch(arch: str) -> tuple[str, str | None]:
    """``'ViT-B-16/openai'`` → ``('ViT-B-16', 'openai')``; schema names and JSON files are kept whole."""
    if arch.startswith(("hf-hub:", "local-dir:")) or arch.endswith(".json") or "/" not in arch:
        return arch, None
    name, _, tag = arch.partition("/")
    return name, tag or None


def _hash_state(net: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _shipped_names() -> dict[str, str]:
    from rbx_vlm.datasets import standard_classes

    return dict(standard_classes())


def class_names(classes: list[str]) -> list[str]:
    """Prompt class names: ``_`` → space; ImageNet wnids → CLIP's class names."""
    names = [str(c) for c in classes]
    if names and all(_WNID.match(c) for c in names):
        shipped = _shipped_names()
        if all(c in shipped for c in names):
            names = [shipped[c] for c in names]
    return [c.replace("_", " ") for c in names]


def uses_quick_gelu(net: nn.Module) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in net.modules())


# ----------------------------------------------------------------- the model


class OpenClipModel(Model):
    provides = frozenset({"vlm", "logits", "features", "embeddings"})

    def __init__(self, net: nn.Module, tokenizer, classes: list[str], *, name: str, arch: str, preprocess_cfg: dict[str, Any], weights_hash: str, template: str = ZERO_SHOT_TEMPLATE) -> None:
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.arch = arch
        self.template = template
        self.classnames = class_names(classes)
        self.num_classes = len(self.classnames)
        self.quick_gelu = uses_quick_gelu(net)
        self.preprocess_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in preprocess_cfg.items()}
        cfg = PreprocessCfg(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in preprocess_cfg.items() if k in PreprocessCfg.__dataclass_fields__})
        self._cfg = cfg
        self._transform = image_transform_v2(cfg, is_train=False)
        self.input_std = tuple(float(s) for s in cfg.std)
        self._weights_hash = weights_hash
        self._zero_shot: torch.Tensor | None = None

    # ------------------------------------------------------------ harness API

    @property
    def module(self) -> nn.Module:
        return self.net

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def logit_scale(self) -> float:
        """τ = exp(logit_scale), CLIP's frozen temperature (≈ 100 for OpenAI weights)."""
        return float(self.net.logit_scale.detach().exp().reshape(-1)[0])

    def transform(self):
        tf = self._transform

        def apply(image):
            return tf(image.convert("RGB"))

        return apply

    def train_transform(self):
        """CoOp / GalLoP training augmentation: RandomResizedCrop(size, scale=(0.08, 1), bicubic)
        + horizontal flip + the model's normalisation (``docs/methods.md#coop``)."""
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        size = self._cfg.size if isinstance(self._cfg.size, int) else tuple(self._cfg.size)
        interp = InterpolationMode.BICUBIC if self._cfg.interpolation == "bicubic" else InterpolationMode.BILINEAR
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=interp),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean=self._cfg.mean, std=self._cfg.std),
            ]
        )

        def apply(image):
            return tf(image.convert("RGB"))

        return apply

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.encode_image(x)
        text = self.zero_shot_text()
        return self.logit_scale * image @ text.T, image

    def fingerprint(self) -> str:
        payload = {
            "arch": self.arch,
            "weights": self._weights_hash,
            "quick_gelu": self.quick_gelu,
            "preprocess": self.preprocess_cfg,
            "template": self.template,
            "classes": hashlib.sha256("\n".join(self.classnames).encode()).hexdigest()[:16],
        }
        return "openclip-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]

    # ------------------------------------------------------------ image side

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Global image embedding ``ln_post(x_CLS) @ visual.proj``."""
        feats = self.net.encode_image(x.to(self.device)).float()
        return F.normalize(feats, dim=-1) if normalize else feats

    def _vit(self):
        from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

        visual = self.net.visual
        if not isinstance(visual, VisionTransformer) or getattr(visual, "attn_pool", None) is not None:
            raise NotImplementedError(f"{self.name}: local features need a ViT image tower without attention pooling (got {type(visual).__name__})")
        last = visual.transformer.resblocks[-1]
        if not isinstance(last, ResidualAttentionBlock) or hasattr(last, "ln_1_kv") or not last.attn._qkv_same_embed_dim:
            raise NotImplementedError(f"{self.name}: local features need open_clip's standard ResidualAttentionBlock (got {type(last).__name__})")
        return visual

    @staticmethod
    def value_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The value-value trick on one block: each token attends only to itself.

        ``v = x + out_proj(W_v ln_1(x) + b_v)``; ``v = v + MLP(ln_2(v))``
        (layer scales, identity for CLIP, applied as in the block).
        """
        attn = block.attn
        width = x.shape[-1]
        bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
        v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width :], bias)
        v = attn.out_proj(v)
        v = x + block.ls_1(v)
        return v + block.ls_2(block.mlp(block.ln_2(v)))

    @torch.no_grad()
    def image_global_and_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: (L2-normalised global embedding ``(B, D)``, local tokens after
        ``ln_post`` and before any projection ``(B, P, width)``). The frozen part of
        the local path; :meth:`project_local` finishes it."""
        visual = self._vit()
        h = visual._embeds(x.to(self.device))
        tr = visual.transformer
        batch_first = getattr(tr, "batch_first", True)
        if not batch_first:
            h = h.transpose(0, 1)
        blocks = list(tr.resblocks)
        for block in blocks[:-1]:
            h = block(h)
        out = blocks[-1](h)
        local = self.value_path(blocks[-1], h)
        if not batch_first:
            out, local = out.transpose(0, 1), local.transpose(0, 1)
        pooled, _ = visual._pool(out)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        local = visual.ln_post(local)
        if getattr(visual, "class_embedding", None) is not None:
            local = local[:, 1:]
        return F.normalize(pooled.float(), dim=-1), local.float()

    def project_local(self, tokens: torch.Tensor, local_proj: nn.Module | None = None, normalize: bool = True) -> torch.Tensor:
        """``local_proj`` first (if any), **then** ``visual.proj``; L2-normalise each patch."""
        if local_proj is not None:
            tokens = local_proj(tokens)
        proj = self.net.visual.proj
        if proj is not None:
            tokens = tokens @ proj
        return F.normalize(tokens, dim=-1) if normalize else tokens

    @torch.no_grad()
    def encode_image_local(self, x: torch.Tensor, local_proj: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(global ``(B, D)``, local ``(B, P, D)``), both L2-normalised."""
        g, tokens = self.image_global_and_tokens(x)
        return g, self.project_local(tokens, local_proj)

    @property
    def vision_width(self) -> int:
        return int(self._vit().transformer.width)

    # ------------------------------------------------------------ text side

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), 500):
            out.append(self.net.encode_text(self.tokenize(texts[start : start + 500])).float())
        feats = torch.cat(out)
        return F.normalize(feats, dim=-1) if normalize else feats

    def zero_shot_text(self) -> torch.Tensor:
        """L2-normalised embeddings of ``template.format(class)`` for every class, ``(C, D)``."""
        if self._zero_shot is None or self._zero_shot.device != self.device:
            with torch.inference_mode(False):  # a normal tensor even when first asked inside the cache's inference_mode
                self._zero_shot = self.encode_text([self.template.format(c) for c in self.classnames])
        return self._zero_shot

    def _text_tower(self):
        net = self.net
        if not (hasattr(net, "token_embedding") and hasattr(net, "transformer") and hasattr(net, "ln_final")):
            raise NotImplementedError(f"{self.name}: prompt learning needs open_clip's built-in CLIP text tower (not {type(net).__name__})")
        pool = getattr(net, "text_pool_type", "argmax")
        if pool not in ("argmax", "eos"):
            raise NotImplementedError(f"{self.name}: text pooling '{pool}' is not supported for prompt learning (argmax / eos are)")
        return net

    @contextmanager
    def text_checkpointing(self, enabled: bool = True) -> Iterator[None]:
        """Gradient checkpointing of the text transformer while prompts are learned (memory only:
        the values and gradients are unchanged; GalLoP checkpoints its text encoder on ImageNet)."""
        transformer = self._text_tower().transformer
        previous = getattr(transformer, "grad_checkpointing", False)
        transformer.grad_checkpointing = bool(enabled)
        try:
            yield
        finally:
            transformer.grad_checkpointing = previous

    @property
    def text_width(self) -> int:
        return int(self._text_tower().token_embedding.weight.shape[1])

    def class_tokens(self, suffix: str = "") -> torch.Tensor:
        """Tokens of ``"<class name><suffix>"`` per class, ``(C, L)`` (CoOp: suffix ``"."``)."""
        return self.tokenize([f"{c}{suffix}" for c in self.classnames])

    @torch.no_grad()
    def context_init(self, text: str) -> torch.Tensor:
        """Token embeddings of ``text`` without start / end tokens, ``(n, width)``:
        the initial context of GalLoP (``"A photo of a"``, n = 4) and of CoOp's ``CTX_INIT``."""
        tower = self._text_tower()
        tokens = self.tokenize([text])
        n = int(self._eot_positions(tokens)[0]) - 1
        return tower.token_embedding(tokens)[0, 1 : 1 + n].float().clone()

    def _eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        net = self.net
        if getattr(net, "text_pool_type", "argmax") == "eos":
            return (tokens == net.text_eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)

    def encode_text_with_context(self, ctx: torch.Tensor, class_tokens: torch.Tensor, *, class_specific: bool = False, normalize: bool = False) -> torch.Tensor:
        """Text features of prompts ``[SOT] ctx <class tokens> [EOT]``, differentiable in ``ctx``.

        ``ctx`` is ``(n, width)`` (one prompt shared by every class → ``(C, D)``),
        ``(P, n, width)`` (P prompts → ``(C, P, D)``), or, with
        ``class_specific=True``, ``(C, n, width)`` (one per class → ``(C, D)``).
        ``class_tokens`` come from :meth:`class_tokens`; their embeddings after the
        start token are shifted right by n and cut at the context length (as
        CoOp's and GalLoP's ``token_suffix``).
        """
        tower = self._text_tower()
        tokens = class_tokens.to(self.device)
        n_cls, length = tokens.shape
        if class_specific:
            if ctx.dim() != 3 or ctx.shape[0] != n_cls:
                raise ValueError(f"class-specific context must be (C={n_cls}, n, width), got {tuple(ctx.shape)}")
            return self._encode_prompts(tower, ctx, tokens, normalize)
        if ctx.dim() == 2:
            return self._encode_prompts(tower, ctx.unsqueeze(0).expand(n_cls, -1, -1), tokens, normalize)
        feats = [self._encode_prompts(tower, ctx[i].unsqueeze(0).expand(n_cls, -1, -1), tokens, normalize) for i in range(ctx.shape[0])]
        return torch.stack(feats, dim=1)

    def _encode_prompts(self, tower, ctx: torch.Tensor, tokens: torch.Tensor, normalize: bool) -> torch.Tensor:
        n_ctx = ctx.shape[1]
        length = tokens.shape[1]
        eot = self._eot_positions(tokens) + n_ctx
        if int(eot.max()) >= length:
            raise ValueError(f"a class name is too long for {n_ctx} context tokens within the context length {length}")
        with torch.no_grad():
            emb = tower.token_embedding(tokens)
        x = torch.cat([emb[:, :1], ctx.to(emb.dtype), emb[:, 1 : length - n_ctx]], dim=1)
        x = x + tower.positional_embedding.to(x.dtype)
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        x = tower.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        x = x.float()
        return F.normalize(x, dim=-1) if normalize else x


# ----------------------------------------------------------------- factory


def _quick_gelu(name: str, tag: str | None, extra: dict, model_cfg: dict | None) -> tuple[bool, str]:
    """Which activation the weights need (see the module docstring)."""
    import open_clip

    if extra.get("quick_gelu") is not None:
        return bool(extra["quick_gelu"]), "options.quick_gelu"
    if tag:
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if cfg:
            return bool(cfg.get("quick_gelu", False)), f"pretrained tag '{tag}'"
    return bool((model_cfg or {}).get("quick_gelu", False)), "model config"


def _create(name: str, pretrained: str | None, quick_gelu: bool) -> nn.Module:
    """open_clip.create_model; its root-logger warning about random init is silenced
    when the weights come from a checkpoint loaded right after."""
    import logging

    import open_clip

    if pretrained is not None:
        return open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        logging.disable(previous)


def build(arch: str | None = None, options: dict | None = None, dataset=None, seed: int = 0, log=print) -> OpenClipModel:
    import open_clip
    from open_clip.factory import merge_preprocess_dict

    options = dict(options or {})
    extra = dict(options.get("options") or {})
    if not arch:
        raise ConfigError("an openclip model needs an architecture", key="arch", fix="name it openclip:<arch>/<pretrained>, e.g. openclip:ViT-B-16/openai, or set 'arch:'")
    if dataset is None or not list(getattr(dataset, "classes", []) or []):
        raise ValueError("an openclip model classifies the dataset's classes; the dataset has none (dataset.classes is empty)")
    name, tag = split_arch(str(arch))
    pretrained = options.get("pretrained")
    if isinstance(pretrained, str) and pretrained:
        tag = pretrained
    if name.endswith(".json"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"model config file not found: {path}", key="arch", fix="give an open_clip model name (open_clip.list_models()) or a JSON model config")
        open_clip.add_model_config(path)
        name = path.stem
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None and not name.startswith(("hf-hub:", "local-dir:")):
        raise ConfigError(f"open_clip has no model '{name}'", key="arch", fix="see open_clip.list_models(), e.g. ViT-B-16")
    quick_gelu, why = _quick_gelu(name, tag, extra, model_cfg)
    checkpoint = options.get("checkpoint")
    preprocess: dict[str, Any] = {}
    if checkpoint:
        path = Path(str(checkpoint)).expanduser()
        if not path.is_file():
            raise ConfigError("checkpoint file not found", file=str(path), key="checkpoint", fix="give the path of a .safetensors or .pt state dict")
        net = _create(name, None, quick_gelu)
        state = load_state_dict(path)
        if "logit_scale" in state and state["logit_scale"].ndim != net.logit_scale.ndim:
            state["logit_scale"] = state["logit_scale"].reshape(net.logit_scale.shape)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise ConfigError(f"checkpoint does not fit '{name}': missing {len(missing)} keys, e.g. {missing[:3]}", file=str(path), key="checkpoint", fix="use the architecture the checkpoint was saved from")
        if unexpected:
            log(f"openclip:{name}: ignored {len(unexpected)} unexpected checkpoint keys")
        preprocess = dict(open_clip.get_model_preprocess_cfg(net))
        if tag and open_clip.get_pretrained_cfg(name, tag):
            preprocess = merge_preprocess_dict(preprocess, open_clip.get_pretrained_cfg(name, tag))
        elif extra.get("quick_gelu") is None and not name.endswith("-quickgelu"):
            log(f"openclip:{name}: checkpoint without a pretrained tag; activation from the {why} (quick_gelu={quick_gelu}); OpenAI weights need `pretrained: openai` or `options: {{quick_gelu: true}}`")
    elif tag:
        try:
            net = _create(name, tag, quick_gelu)
        except Exception as exc:
            raise ConfigError(
                f"could not load open_clip weights '{name}/{tag}': {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                key="pretrained",
                fix="check the tag (open_clip.list_pretrained()), connect to the hub, or give a local 'checkpoint:' in a models entry",
            ) from None
        preprocess = dict(open_clip.get_model_preprocess_cfg(net))
    elif pretrained is False:
        log(f"openclip:{name}: random weights (pretrained: false)")
        net = _create(name, None, quick_gelu)
        preprocess = dict(open_clip.get_model_preprocess_cfg(net))
    else:
        raise ConfigError(
            f"openclip model '{name}' has no weights",
            key="pretrained",
            fix="name hub weights (openclip:ViT-B-16/openai, or 'pretrained: openai') or a local 'checkpoint:' in a models entry",
        )
    net = net.float().eval()
    tokenizer = open_clip.get_tokenizer(name)
    label = f"openclip:{name}" + (f"/{tag}" if tag else "")
    return OpenClipModel(
        net,
        tokenizer,
        list(dataset.classes),
        name=label,
        arch=name,
        preprocess_cfg=preprocess,
        weights_hash=_hash_state(net),
    )


__all__ = ["OpenClipModel", "build", "split_arch", "class_names", "ZERO_SHOT_TEMPLATE"]
