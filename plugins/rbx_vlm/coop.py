"""CoOp: context optimisation for CLIP (Zhou et al., IJCV 2022; ``docs/methods.md#coop``).

Read in KaiyangZhou/CoOp ``trainers/coop.py``, ``train.py::extend_cfg``,
``configs/trainers/CoOp/vit_b16_ep50.yaml`` and Dassl ``dassl/config/defaults.py``,
``dassl/optim/lr_scheduler.py``, ``dassl/data/datasets/base_dataset.py``.

Definition
    Frozen image and text encoders; only the context is learned.
    ``N_CTX = 16`` vectors of the text width, initialised **N(0, 0.02²)**
    (``ctx_init=""``), shared by all classes (``csc=False``; ``csc=True`` gives
    one context per class). With ``ctx_init`` (e.g. ``"a photo of a"``) the
    context starts from those words' token embeddings and ``n_ctx`` becomes
    their token count. Prompt ``[SOT] [V1..V16] <class name> . [EOT]``: class
    token at the **end**, class names with ``_`` → space, **a trailing period**.
    Text feature at EOT × ``text_projection``; logits ``τ · cos`` with CLIP's
    frozen ``τ = exp(logit_scale)``; cross-entropy.

Training (defaults = the paper's)
    SGD lr 0.002, momentum 0.9, weight decay 5e-4, batch 32; 1 warm-up epoch at
    the constant lr 1e-5, then cosine annealing with ``T_max = epochs`` (Dassl's
    ``ConstantWarmupScheduler`` around ``CosineAnnealingLR``: epoch e ≥ 1 runs at
    ``0.002·(1 + cos(π(e−1)/E))/2``). Augmentation RandomResizedCrop(scale
    0.08–1, bicubic) + horizontal flip + CLIP normalisation. Few-shot: ``shots``
    images per class from the train split, Dassl-style ``random.sample`` per
    class seeded with the job seed (the official seeds are 1, 2, 3).

Budgets (``budget`` param; ``epochs`` / ``batch_size`` override)
    * ``paper``: ImageNet-scale label spaces (≥ 1000 classes) 50 epochs for every
      shot count (``*_ep50.yaml``); other datasets 50 (1 shot), 100 (2–4 shots),
      200 (8–16 shots); batch 32.
    * ``cpu`` (default): 5 epochs (the first is the warm-up), batch 32, so that
      a CPU run finishes; its numbers are **not** the paper's.

Outputs
    ``probs = softmax(τ·cos)`` over the learned prompts, ``prediction`` its
    argmax, ``confidence`` its max (ImageNet-A/-R restricted to their 200
    classes). ``score`` (OOD): CoOp defines none; default ``ood_score="mcm"``,
    MCM on the learned prompts (T = 1 on raw cosines: the "CoOp_MCM" baseline of
    LoCoOp / GL-MCM / GalLoP); ``"gl-mcm"`` adds the local term (zero-shot local
    features, λ = 1); ``"msp"`` uses ``confidence``.

Deviations: fp32 on CPU (the paper trains in fp16, ``PREC="fp16"``); the
few-shot draw cannot reproduce Dassl's global-``random`` state, only its rule;
``class_token_position`` "middle"/"front" are not implemented. Fitted contexts
are cached with ``ctx.fitted`` (a numpy array).
"""

from __future__ import annotations

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
    few_shot_per_class,
    image_batches,
    mcm,
    source_labels,
)
from rbx_vlm.mcm import gl_mcm_score

OOD_SCORES = ("mcm", "msp", "gl-mcm")


def coop_epochs(n_classes: int, shots: int) -> int:
    """Paper epochs (CoOp configs): 50 on ImageNet; else 50 / 100 / 200 for 1 / 2–4 / 8–16 shots."""
    if n_classes >= IMAGENET_SCALE:
        return 50
    if shots <= 1:
        return 50
    if shots <= 4:
        return 100
    return 200


def coop_lr(epoch: int, epochs: int, lr: float, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> float:
    """Dassl's constant warm-up then cosine: ``warmup_lr`` for the first epochs, then
    ``CosineAnnealingLR(T_max=epochs)`` counted from the end of the warm-up."""
    if epoch < warmup_epochs:
        return warmup_lr
    return cosine_lr(lr, epoch - warmup_epochs, epochs)


class CoOp(Method):
    def __init__(
        self,
        shots: int = 16,
        n_ctx: int = 16,
        ctx_init: str = "",
        csc: bool = False,
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        budget: str = "cpu",
        epochs: int | None = None,
        batch_size: int | None = None,
        augment: bool = True,
        ood_score: str = "mcm",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(
            shots=shots, n_ctx=n_ctx, ctx_init=ctx_init, csc=csc, lr=lr, momentum=momentum, weight_decay=weight_decay,
            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, budget=budget, epochs=epochs, batch_size=batch_size,
            augment=augment, ood_score=ood_score, temperature=temperature,
        )  # fmt: skip
        check_budget(budget)
        if ood_score not in OOD_SCORES:
            raise ValueError(f"ood_score must be one of {OOD_SCORES}, got {ood_score!r}")
        self.ctx_vectors: torch.Tensor | None = None
        self._text: torch.Tensor | None = None
        self.loss_history: np.ndarray | None = None

    # ---------------------------------------------------------------- budget

    def schedule(self, n_classes: int) -> tuple[int, int]:
        """(epochs, batch size) for this run."""
        p = self.params
        if p["budget"] == "paper":
            epochs, batch = coop_epochs(n_classes, int(p["shots"])), 32
        else:
            epochs, batch = 5, 32
        return int(p["epochs"] or epochs), int(p["batch_size"] or batch)

    # ---------------------------------------------------------------- training

    def init_context(self, model, generator: torch.Generator) -> torch.Tensor:
        p = self.params
        if p["ctx_init"]:
            init = model.context_init(str(p["ctx_init"]).replace("_", " "))
            return init.unsqueeze(0).repeat(model.num_classes, 1, 1) if p["csc"] else init
        shape = (model.num_classes, int(p["n_ctx"]), model.text_width) if p["csc"] else (int(p["n_ctx"]), model.text_width)
        return torch.empty(shape).normal_(0.0, 0.02, generator=generator)

    def text_features(self, model, ctx_vectors: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return model.encode_text_with_context(ctx_vectors, tokens, class_specific=bool(self.params["csc"]), normalize=True)

    def train(self, model, source, seed: int, log=lambda m: None) -> dict[str, np.ndarray]:
        """Learn the context on ``shots`` images per class of ``source`` (a train SampleSource)."""
        p = self.params
        labels = source_labels(source)
        index = few_shot_per_class(labels, int(p["shots"]), seed)
        epochs, batch_size = self.schedule(model.num_classes)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        ctx = nn.Parameter(self.init_context(model, generator).to(model.device))
        tokens = model.class_tokens(".")
        optimizer = torch.optim.SGD([ctx], lr=float(p["lr"]), momentum=float(p["momentum"]), weight_decay=float(p["weight_decay"]))
        tau = model.logit_scale
        if p["augment"]:
            data = TrainImages(source, index, labels, model.train_transform())
            cached = None
        else:
            data = TrainImages(source, index, labels, model.transform())
            cached = self._frozen_features(model, data)
        log(f"coop: {len(index)} training images, {epochs} epochs, batch {batch_size}")
        history = []
        with model.text_checkpointing(model.num_classes >= CHECKPOINT_CLASSES):
            for epoch in range(epochs):
                for group in optimizer.param_groups:
                    group["lr"] = coop_lr(epoch, epochs, float(p["lr"]), int(p["warmup_epochs"]), float(p["warmup_lr"]))
                losses = []
                for batch in batches(len(data), batch_size, generator):
                    if cached is None:
                        x, y = image_batches(data, batch)
                        image = model.encode_image(x)
                    else:
                        image, y = cached[0][batch], cached[1][batch]
                    text = self.text_features(model, ctx, tokens)
                    loss = F.cross_entropy(tau * image @ text.T, y.to(image.device))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()))
                history.append(float(np.mean(losses)) if losses else float("nan"))
        return {"ctx": ctx.detach().cpu().numpy().astype(np.float32), "loss": np.asarray(history, dtype=np.float64), "indices": index.astype(np.int64)}

    @staticmethod
    def _frozen_features(model, data: TrainImages) -> tuple[torch.Tensor, torch.Tensor]:
        feats, ys = [], []
        for start in range(0, len(data), 64):
            x, y = image_batches(data, torch.arange(start, min(start + 64, len(data))))
            feats.append(model.encode_image(x))
            ys.append(y)
        return torch.cat(feats), torch.cat(ys)

    def fit(self, ctx) -> None:
        model = ctx.model
        state = ctx.fitted(lambda: self.train(model, ctx.dataset.samples("train"), ctx.seed, ctx.log), kind="coop", version=1)
        self.ctx_vectors = torch.as_tensor(np.asarray(state["ctx"]), dtype=torch.float32)
        self.loss_history = np.asarray(state["loss"])
        self._text = None

    # ---------------------------------------------------------------- scoring

    def learned_text(self, model) -> torch.Tensor:
        if self._text is None:
            with torch.no_grad():
                self._text = self.text_features(model, self.ctx_vectors.to(model.device), model.class_tokens("."))
        return self._text

    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        model = ctx.model
        text = self.learned_text(model).float().cpu()
        feats = F.normalize(torch.from_numpy(np.array(ctx.outputs(subset).features, dtype=np.float32)), dim=-1)
        s = feats @ text.T
        out = classifier_outputs(model.logit_scale * s, class_mask(ctx, subset))
        kind, T = self.params["ood_score"], float(self.params["temperature"])
        if kind == "mcm":
            out["score"] = mcm(s, T).numpy()
        elif kind == "msp":
            out["score"] = out["confidence"]
        else:
            text_dev = text.to(model.device)
            scores = []
            with torch.no_grad():
                for x, _ in ctx.loader(subset, batch_size=64):
                    g, local = model.encode_image_local(x)
                    scores.append(gl_mcm_score(g @ text_dev.T, local @ text_dev.T, T, 1.0).cpu())
            out["score"] = torch.cat(scores).numpy()
        return out
