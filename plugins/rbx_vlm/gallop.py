"""GalLoP: global and local prompts for CLIP (Lafon et al., ECCV 2024; ``docs/methods.md#gallop``).

Read in MarcLafon/gallop @f75999e: ``gallop/vlprompt/gallop.py``, ``clip_local.py``,
``tools/global_local_loss.py``, ``tools/topk_reduce.py``, ``gallop/train.py``,
``datasets/tools/create_balanced_subset.py``, ``scripts/run_imagenet.sh``.

Trainable parts (CLIP frozen, ``logit_scale`` included)
    ``global_prompt`` ``[M=4, n_ctx, width]``, ``local_prompts`` ``[N=4, n_ctx, width]``
    and ``local_proj``, a width × width linear map **without bias, initialised
    to the identity**. ``n_ctx`` = number of tokens of ``"A photo of a"`` (4);
    **every** global and local prompt starts from the same embedding of
    ``"A photo of a"`` (diversity only from prompt dropout and the per-prompt k).
    Prompts ``[SOT] [V1..V4] <class name> [EOT]``, **no trailing period**; each
    (class, prompt) text feature L2-normalised.

Image side
    Global ``g``: the normalised CLIP embedding. Local ``l_p``: value-value
    tokens of the last block after ``ln_post`` (CLS dropped), then
    ``local_proj``, **then** ``visual.proj``, normalised
    (:meth:`rbx_vlm.model.OpenClipModel.image_global_and_tokens` / ``project_local``).

Logits: unscaled cosines ``global[b,k,m] = ⟨g_b, t_{k,m}⟩``, ``local[b,p,k,n] = ⟨l_{b,p}, t^loc_{k,n}⟩``.

Sparse top-k alignment (:func:`topk_reduce`)
    For local prompt n with its own ``k_n``, the mean of the top-``k_n`` patch
    cosines per (class, prompt); ``topk = [5, 10, 15, 20]`` (one per local
    prompt, or a single shared k); k larger than the number of patches takes all.

Loss (:func:`gallop_loss`)
    local: ``CE(τ·s^loc[:, :, n], y)`` averaged over batch and local prompts;
    global with **prompt dropout** (:func:`prompt_dropout`): ``keep = max(M − int(p·M), 1)``
    (p = 0.75, M = 4 → 1), for **each image** ``keep`` prompt indices drawn
    uniformly **with replacement**, cosines averaged over them, ``CE(τ·mean, y)``;
    total = global + local, unweighted. ``τ = exp(logit_scale)`` frozen.

Classification (:func:`gallop_logits`): ``softmax(τ·(g + l)/2)`` with ``g`` the mean over
global prompts and ``l`` the mean over local prompts of the top-k-reduced cosines
(an average of logits); ImageNet-A/-R restricted to their 200 classes.

OOD score (:func:`gallop_ood_score`, ``compute_gl_scores``): GL-MCM **at T = ``ood_temp_scale`` = 1 on
raw cosines**: ``max_k softmax_k(g/T)`` + λ · max over patches and classes of
``softmax_k(mean_n local[b,p,k,n] / T)`` — per patch, **no top-k**, λ = 1. The
official code stores −score; here higher = ID. ``ood_method`` "MCM" / "L-MCM"
keep one term. The OOD score thus uses a different temperature and pooling
from the classifier.

Training (defaults = the paper's)
    SGD lr 0.002, momentum 0.9, **weight decay 1e-2** (on every trainable
    tensor, ``local_proj`` included, as ``get_params_group``), CosineAnnealingLR
    (``T_max = epochs``) stepped per epoch, no warm-up; augmentation
    RandomResizedCrop(scale 0.08–1, bicubic) + flip + CLIP normalisation
    (``augment=False``: eval transform, frozen features computed once — a
    CPU shortcut, not the paper). Few-shot: ``StratifiedShuffleSplit(train_size=shots·C,
    random_state=seed)`` on the train split (the official seed is 1; here the job seed).

Budgets (``budget`` param; ``epochs`` / ``batch_size`` override)
    * ``paper``: ImageNet-scale label spaces (≥ 1000 classes) 50 epochs, batch 128
      (``run_imagenet.sh``); other datasets 200 epochs, batch 32 (EuroSAT's 10
      epochs and SUN397's batch 128 need explicit ``epochs`` / ``batch_size``).
    * ``cpu`` (default): 5 epochs, batch 32; its numbers are **not** the paper's.

Deviations: fp32 (the paper uses fp16 autocast + GradScaler); the last
incomplete batch is kept when the few-shot set is smaller than one batch
(GalLoP always drops it, which would train nothing); ``prompts_batch_size``
(off by default upstream) is not implemented. Fitted prompts and projection are
cached with ``ctx.fitted`` (numpy arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_x.api import Method
from rbx_vlm._common import (
    CHECKPOINT_CLASSES,
    IMAGENET_SCALE,
    TrainImages,
    batches,
    check_budget,
    class_mask,
    classifier_outputs,
    cosine_lr,
    few_shot_stratified,
    image_batches,
    source_labels,
)

OOD_METHODS = ("GL-MCM", "MCM", "L-MCM")


# ----------------------------------------------------------------- the definitions


def topk_reduce(local_logits: torch.Tensor, topk: Sequence[int]) -> torch.Tensor:
    """``(B, P, C, N)`` patch cosines → ``(B, C, N)``: mean of the top-``k_n`` patches for prompt n."""
    topk = [int(k) for k in topk]
    _, n_patches, _, n_prompts = local_logits.shape
    if len(topk) not in (1, n_prompts):
        raise ValueError(f"give one k per local prompt ({n_prompts}) or a single k; got {topk}")
    maxk = min(max(topk), n_patches)
    top = local_logits.topk(k=maxk, dim=1).values
    if len(topk) == 1:
        return top.mean(dim=1)
    return torch.stack([top[:, :k, :, i].mean(dim=1) for i, k in enumerate(topk)], dim=-1)


def dropout_keep(n_prompts: int, p: float) -> int:
    """Number of global prompts kept per image: ``max(M − int(p·M), 1)``."""
    return max(n_prompts - int(p * n_prompts), 1)


def prompt_dropout(global_logits: torch.Tensor, p: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, M)`` → (mean over the kept prompts ``(B, C)``, kept indices ``(B, keep)``).

    Indices are drawn per image, uniformly, **with replacement** (``torch.randint``), as upstream."""
    b, c, m = global_logits.shape
    keep = dropout_keep(m, p)
    index = torch.randint(m, (b, 1, keep), generator=generator, device="cpu").to(global_logits.device)
    return global_logits.gather(-1, index.expand(-1, c, -1)).mean(-1), index[:, 0, :]


def gallop_loss(global_logits: torch.Tensor, local_logits: torch.Tensor, targets: torch.Tensor, logit_scale: float, topk: Sequence[int], dropout_p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Global loss with prompt dropout + local top-k loss, unweighted (``GlobalLocalLoss``)."""
    local = topk_reduce(local_logits, topk)
    local_loss = F.cross_entropy(logit_scale * local, targets.unsqueeze(-1).expand(-1, local.size(-1)))
    global_mean, _ = prompt_dropout(global_logits, dropout_p, generator)
    return F.cross_entropy(logit_scale * global_mean, targets) + local_loss


def gallop_logits(global_logits: torch.Tensor, local_logits: torch.Tensor, topk: Sequence[int]) -> torch.Tensor:
    """``(g + l)/2`` cosines ``(B, C)``; the classifier is ``softmax(τ · ·)`` of this."""
    return (global_logits.mean(dim=-1) + topk_reduce(local_logits, topk).mean(dim=-1)) / 2


def gallop_ood_score(global_logits: torch.Tensor, local_logits: torch.Tensor | None, temperature: float = 1.0, lambda_local: float = 1.0, method: str = "GL-MCM") -> torch.Tensor:
    """GL-MCM as GalLoP computes it: T on raw cosines, per-patch softmax, no top-k. Higher = ID."""
    out = 0
    if method in ("GL-MCM", "MCM"):
        out = torch.softmax(global_logits.double().mean(dim=-1) / temperature, dim=-1).amax(dim=-1)
    if method in ("GL-MCM", "L-MCM"):
        local = torch.softmax(local_logits.double().mean(dim=-1) / temperature, dim=-1).amax(dim=(1, 2))
        out = out + (lambda_local if method == "GL-MCM" else 1.0) * local
    return out


# ----------------------------------------------------------------- the learned parts


class GalLoPPrompts(nn.Module):
    def __init__(self, init: torch.Tensor, n_global: int, n_local: int, vision_width: int) -> None:
        super().__init__()
        self.global_prompt = nn.Parameter(init.unsqueeze(0).repeat(n_global, 1, 1).clone())
        self.local_prompts = nn.Parameter(init.unsqueeze(0).repeat(n_local, 1, 1).clone())
        self.local_proj = nn.Linear(vision_width, vision_width, bias=False)
        with torch.no_grad():
            self.local_proj.weight.copy_(torch.eye(vision_width))

    def text_features(self, model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised ``(C, M, D)`` global and ``(C, N, D)`` local prompt features."""
        t_global = model.encode_text_with_context(self.global_prompt, tokens, normalize=True)
        t_local = model.encode_text_with_context(self.local_prompts, tokens, normalize=True)
        return t_global, t_local

    def logits(self, model, g: torch.Tensor, tokens_img: torch.Tensor, t_global: torch.Tensor, t_local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local = model.project_local(tokens_img, self.local_proj)
        return torch.einsum("bd,kmd->bkm", g, t_global), torch.einsum("bpd,knd->bpkn", local, t_local)


def _template(text: str) -> str:
    text = text[:-1] if text.endswith(".") else text
    return text.replace("{}", " ").replace("_", " ").strip()


class GalLoP(Method):
    def __init__(
        self,
        shots: int = 16,
        n_global_prompts: int = 4,
        n_local_prompts: int = 4,
        topk: Sequence[int] = (5, 10, 15, 20),
        global_dropout_p: float = 0.75,
        template: str = "A photo of a",
        learn_local_proj: bool = True,
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 1e-2,
        budget: str = "cpu",
        epochs: int | None = None,
        batch_size: int | None = None,
        augment: bool = True,
        ood_method: str = "GL-MCM",
        ood_temp_scale: float = 1.0,
        lambda_local: float = 1.0,
    ) -> None:
        super().__init__(
            shots=shots, n_global_prompts=n_global_prompts, n_local_prompts=n_local_prompts, topk=list(topk),
            global_dropout_p=global_dropout_p, template=template, learn_local_proj=learn_local_proj, lr=lr,
            momentum=momentum, weight_decay=weight_decay, budget=budget, epochs=epochs, batch_size=batch_size,
            augment=augment, ood_method=ood_method, ood_temp_scale=ood_temp_scale, lambda_local=lambda_local,
        )  # fmt: skip
        check_budget(budget)
        if ood_method not in OOD_METHODS:
            raise ValueError(f"ood_method must be one of {OOD_METHODS}, got {ood_method!r}")
        if len(self.params["topk"]) not in (1, int(n_local_prompts)):
            raise ValueError(f"topk needs one k per local prompt ({n_local_prompts}) or a single k, got {self.params['topk']}")
        self.prompts: GalLoPPrompts | None = None
        self.loss_history: np.ndarray | None = None
        self._text: tuple[torch.Tensor, torch.Tensor] | None = None

    def schedule(self, n_classes: int) -> tuple[int, int]:
        p = self.params
        if p["budget"] == "paper":
            epochs, batch = (50, 128) if n_classes >= IMAGENET_SCALE else (200, 32)
        else:
            epochs, batch = 5, 32
        return int(p["epochs"] or epochs), int(p["batch_size"] or batch)

    def build_prompts(self, model) -> GalLoPPrompts:
        p = self.params
        init = model.context_init(_template(str(p["template"])))
        prompts = GalLoPPrompts(init, int(p["n_global_prompts"]), int(p["n_local_prompts"]), model.vision_width).to(model.device)
        prompts.local_proj.weight.requires_grad_(bool(p["learn_local_proj"]))
        return prompts

    # ---------------------------------------------------------------- training

    def train(self, model, source, seed: int, log=lambda m: None) -> dict[str, np.ndarray]:
        p = self.params
        labels = source_labels(source)
        index = few_shot_stratified(labels, int(p["shots"]), seed)
        epochs, batch_size = self.schedule(model.num_classes)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        prompts = self.build_prompts(model)
        trainable = [t for t in prompts.parameters() if t.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=float(p["lr"]), momentum=float(p["momentum"]), weight_decay=float(p["weight_decay"]))
        tokens = model.class_tokens("")
        tau = model.logit_scale
        data = TrainImages(source, index, labels, model.train_transform() if p["augment"] else model.transform())
        cached = None if p["augment"] else self._frozen(model, data)
        log(f"gallop: {len(index)} training images, {epochs} epochs, batch {batch_size}")
        history = []
        with model.text_checkpointing(model.num_classes >= CHECKPOINT_CLASSES):
            for epoch in range(epochs):
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(float(p["lr"]), epoch, epochs)
                losses = []
                for batch in batches(len(data), batch_size, generator):
                    if cached is None:
                        x, y = image_batches(data, batch)
                        g, tok = model.image_global_and_tokens(x)
                    else:
                        g, tok, y = cached[0][batch], cached[1][batch], cached[2][batch]
                    t_global, t_local = prompts.text_features(model, tokens)
                    global_logits, local_logits = prompts.logits(model, g, tok, t_global, t_local)
                    loss = gallop_loss(global_logits, local_logits, y.to(g.device), tau, p["topk"], float(p["global_dropout_p"]), generator)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()))
                history.append(float(np.mean(losses)) if losses else float("nan"))
                log(f"gallop: epoch {epoch + 1}/{epochs} loss {history[-1]:.4f}")
        return {
            "global_prompt": prompts.global_prompt.detach().cpu().numpy().astype(np.float32),
            "local_prompts": prompts.local_prompts.detach().cpu().numpy().astype(np.float32),
            "local_proj": prompts.local_proj.weight.detach().cpu().numpy().astype(np.float32),
            "loss": np.asarray(history, dtype=np.float64),
            "indices": index.astype(np.int64),
        }

    @staticmethod
    def _frozen(model, data: TrainImages):
        gs, toks, ys = [], [], []
        for start in range(0, len(data), 64):
            x, y = image_batches(data, torch.arange(start, min(start + 64, len(data))))
            g, tok = model.image_global_and_tokens(x)
            gs.append(g)
            toks.append(tok)
            ys.append(y)
        return torch.cat(gs), torch.cat(toks), torch.cat(ys)

    def load(self, model, state: dict[str, np.ndarray]) -> None:
        prompts = self.build_prompts(model)
        with torch.no_grad():
            prompts.global_prompt.copy_(torch.as_tensor(np.asarray(state["global_prompt"])))
            prompts.local_prompts.copy_(torch.as_tensor(np.asarray(state["local_prompts"])))
            prompts.local_proj.weight.copy_(torch.as_tensor(np.asarray(state["local_proj"])))
        self.prompts = prompts.eval()
        self.loss_history = np.asarray(state["loss"])
        self._text = None

    def fit(self, ctx) -> None:
        model = ctx.model
        state = ctx.fitted(lambda: self.train(model, ctx.dataset.samples("train"), ctx.seed, ctx.log), kind="gallop", version=1)
        self.load(model, state)

    # ---------------------------------------------------------------- scoring

    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        model, p = ctx.model, self.params
        if self._text is None:
            with torch.no_grad():
                self._text = self.prompts.text_features(model, model.class_tokens(""))
        t_global, t_local = self._text
        mask = class_mask(ctx, subset)
        logits, scores = [], []
        with torch.no_grad():
            for x, _ in ctx.loader(subset, batch_size=32):
                g, tok = model.image_global_and_tokens(x)
                global_logits, local_logits = self.prompts.logits(model, g, tok, t_global, t_local)
                logits.append((model.logit_scale * gallop_logits(global_logits, local_logits, p["topk"])).cpu())
                scores.append(gallop_ood_score(global_logits, local_logits, float(p["ood_temp_scale"]), float(p["lambda_local"]), p["ood_method"]).cpu())
        out = classifier_outputs(torch.cat(logits), mask)
        out["score"] = torch.cat(scores).numpy()
        return out
