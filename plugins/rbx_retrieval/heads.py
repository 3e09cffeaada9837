"""Retrieval heads trained with rank losses on frozen embeddings: ROADMAP,
HAPPIER and SmoothAP (the losses and their sources: :mod:`.rank_losses`).

Each method trains a linear projection head (``dim`` outputs, L2-normalised,
as the papers' ``fc`` after the backbone) on the model's cached penultimate
features of the dataset's ``train`` split, with batches from
:func:`.samplers.hierarchical` (both papers' SOP configs use pytorch-metric-
learning's hierarchical sampler), and embeds ``query`` and ``gallery`` with it.
The backbone never changes: the papers fine-tune a ResNet-50 end to end, so
these rows measure what the loss does to a head on frozen features, and say
so (``deviations``).

Defaults, from the official SOP configurations, except the head's learning
rate (:data:`HEAD_LR`):

========== ============================================ =================================================
loss       ``roadmap`` (ROADMAP, NeurIPS 2021)          ``happier`` (HAPPIER, ECCV 2022)
========== ============================================ =================================================
objective  SupAP + calibration, weights 1 / 1           H-AP (SupAP step, exact H-rank) 0.9 + cluster 0.1
head       512-d ``fc``, Adam wd 1e-4 (paper lr 2e-5)   LayerNorm (no affine), 512-d ``fc``, Adam wd 1e-4
                                                        (paper lr 1e-4 = 2 x 5e-5)
schedule   MultiStepLR [30, 70], gamma 0.3, 100 epochs  cosine to 0 over 100 epochs; proxies Adam lr 10,
                                                        wd 0, cosine to 0.1
batches    128 images, 4 per class, 10 per super pair   256 images, 4 per class, 2 super-classes, 5 per pair
========== ============================================ =================================================

(``roadmap/config/{loss/roadmap.yaml, optimizer/sop.yaml, dataset/sop.yaml,
model/resnet.yaml}`` with ``experience.max_iter=100`` from its README;
``happier/config/{loss/HAPPIER_SOP.yaml, optimizer/sop.yaml, dataset/sop.yaml,
model/resnet_ln.yaml, experience/default.yaml}``: HAPPIER's SOP model
standardises the pooled features with a LayerNorm without affine parameters
before its ``fc``, ``happier/models/retrieval_net.py``, ``norm_features``.) ``smoothap`` uses ROADMAP's SmoothAP (tau 0.01) with
ROADMAP's optimiser and batches. An epoch is, as in pytorch-metric-learning's
sampler, ``batches_per_pair`` batches for every pair of super-classes.
``sampler="m-per-class"`` draws ROADMAP's CUB / iNaturalist batches instead
(:func:`.samplers.m_per_class`: ``batch_size / m`` classes, each image once an
epoch), as ROADMAP trains on CUB and iNaturalist; the
SOP configs' hierarchical batches stay the default, with the rest of the SOP
configuration.

The papers' ``fc`` rates are those of a layer trained together with its
backbone (lr 1e-5), which does most of the moving. A head alone on frozen
features at those rates is still far from its optimum after the 100 epochs:
on the embedded hierarchy ROADMAP's objective *rises* (its negatives clear
their margin before its positives are pulled to theirs) and HAPPIER's train
mean AP falls. The heads therefore train at Adam's default rate, 1e-3, the
usual rate of a linear probe, and say so (``deviations``); ``lr`` sets
another, e.g. the paper's (``PAPER_LR``). ``docs/methods.md#the-heads-implementation-budget-and-results``
has the rates measured side by side.

The head is initialised like ``torch.nn.Linear`` from the job's seed; the
fit is cached (``ctx.fitted``) and records the training loss (on one epoch's
batches, at most :data:`PROBE_BATCHES`) and the train split's exact mean AP
(query excluded; on a fixed sample of :data:`MAP_SAMPLES` items when the
split is larger) before and after training. It trains on the model's device
(the GPU of a CUDA run) with the features left in host memory, batches drawn
as they are consumed and one HAPPIER proxy per finest class present, so
H-GLDv2's train split (~1 M images, 78 super-categories: 3,003 pairs, 30,030
ROADMAP batches per epoch) fits in memory; at that size the SOP schedule's
100 epochs are 3 M steps, a GPU job.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from robustbench_x.api import Context, Method, torch_threads
from robustbench_x.errors import JobError

from .methods import l2_normalize
from .samplers import SAMPLERS

__all__ = ["RankLossHead", "LOSSES", "HEAD_LR", "PAPER_LR"]

#: Per-loss defaults from the official SOP configs (see the module docstring).
LOSSES = {
    "roadmap": dict(weight_decay=1e-4, schedule="multistep", batch_size=128, batches_per_pair=10, norm_features=False),
    "happier": dict(weight_decay=1e-4, schedule="cosine", batch_size=256, batches_per_pair=5, norm_features=True),
    "smoothap": dict(weight_decay=1e-4, schedule="multistep", batch_size=128, batches_per_pair=10, norm_features=False),
}
#: The head-only learning rate (Adam's default; why not the papers': the module docstring).
HEAD_LR = 1e-3
#: The papers' ``fc`` learning rates, for ``lr=PAPER_LR[loss]``.
PAPER_LR = {"roadmap": 2e-5, "happier": 1e-4, "smoothap": 2e-5}


#: Batches of the before / after loss probe (one epoch, when shorter).
PROBE_BATCHES = 256
#: Train items over which the before / after exact mean AP is taken (all of them when fewer).
MAP_SAMPLES = 8192
#: A training of at least this many steps logs its progress every tenth of its epochs.
LOG_STEPS = 50_000
#: Rows embedded at a time by ``score``.
SCORE_ROWS = 65_536


def _device(ctx: Context):
    """The model's device (a CUDA run trains the head there), else the CPU."""
    import torch

    try:
        return next(ctx.model.module.parameters()).device
    except (AttributeError, NotImplementedError, StopIteration, TypeError):
        return torch.device("cpu")


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``torch.nn.LayerNorm(d, elementwise_affine=False)`` on rows: zero mean, unit (biased) variance."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    return (centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + eps)).astype(np.float32)


def _mean_ap(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Exact mean AP of every sample against the others (query excluded), the evaluation convention."""
    from .definitions import average_precision

    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # the query itself sorts last
    relevant = labels[order] == labels[:, None]
    return float(np.nanmean(average_precision(relevant)))


class RankLossHead(Method):
    """A linear head trained on frozen features with a rank loss (``loss``)."""

    def __init__(
        self,
        loss: str = "roadmap",
        dim: int = 512,
        epochs: int = 100,
        lr: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        samples_per_class: int = 4,
        batches_per_pair: int | None = None,
        include_self: bool = True,
        norm_features: bool | None = None,
        sampler: str = "hierarchical",
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
        d = LOSSES[loss]
        self.loss, self.dim, self.epochs = loss, int(dim), int(epochs)
        self.lr = float(HEAD_LR if lr is None else lr)
        self.weight_decay = float(d["weight_decay"] if weight_decay is None else weight_decay)
        self.batch_size = int(d["batch_size"] if batch_size is None else batch_size)
        self.m = int(samples_per_class)
        self.batches_per_pair = int(d["batches_per_pair"] if batches_per_pair is None else batches_per_pair)
        self.include_self = bool(include_self)
        self.norm_features = bool(d["norm_features"] if norm_features is None else norm_features)
        self.sampler = sampler
        super().__init__(
            loss=loss, dim=self.dim, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
            batch_size=self.batch_size, samples_per_class=self.m, batches_per_pair=self.batches_per_pair,
            include_self=self.include_self, norm_features=self.norm_features, sampler=sampler,
        )
        self.state: dict[str, np.ndarray] | None = None

    # -- training -----------------------------------------------------------------

    def fit(self, ctx: Context) -> None:
        if "train" not in ctx.dataset.subsets():
            raise JobError(
                f"{self.loss}-head trains on the dataset's 'train' split, and {ctx.dataset.name} has none "
                f"(subsets: {ctx.dataset.subsets()}); pick a dataset with a labelled train split"
            )
        self.state = ctx.fitted(lambda: self._train(ctx))

    def _train(self, ctx: Context) -> dict[str, np.ndarray]:
        import torch

        from . import rank_losses as rl

        features = np.asarray(ctx.outputs("train").features, dtype=np.float32)
        hierarchy = np.asarray(ctx.dataset.hierarchy("train"), dtype=np.int64)
        if hierarchy.shape[1] < 2 and (self.sampler == "hierarchical" or self.loss == "happier"):
            raise JobError(
                f"{self.loss}-head needs a super-class (hierarchy column 1) for "
                f"{'its H-AP' if self.loss == 'happier' else 'the hierarchical sampler'}; {ctx.dataset.name} has one level"
                + ("" if self.loss == "happier" else "; fix: sampler: m-per-class")
            )
        seed = int(ctx.seed)
        rng = np.random.default_rng(seed)
        # One epoch at a time (the same random stream as one call for all epochs), each
        # drawn as consumed: H-GLDv2's 100 epochs are millions of batches.
        draw = lambda: SAMPLERS[self.sampler](  # noqa: E731
            hierarchy, batch_size=self.batch_size, m=self.m, batches_per_pair=self.batches_per_pair, epochs=1, rng=rng
        )
        # One epoch's batches (at most PROBE_BATCHES), the same before and after training.
        probe = list(itertools.islice(draw(), PROBE_BATCHES))
        if not probe:
            raise JobError(
                f"{self.loss}-head: the {self.sampler} sampler forms no batch from {ctx.dataset.name}'s train split "
                f"(every class has fewer than samples_per_class={self.m} images); fix: lower samples_per_class"
            )
        if self.sampler == "hierarchical":
            steps_per_epoch = max(math.comb(len(np.unique(hierarchy[:, 1])), 2), 1) * self.batches_per_pair
        else:  # at most every class's chunks of m, batch_size / m to a batch (the exact count depends on the order)
            counts = np.unique(hierarchy[:, 0], return_counts=True)[1]
            steps_per_epoch = max(int((counts // self.m).sum()) // min(max(self.batch_size // self.m, 1), len(counts)), 1)
        device = _device(ctx)

        with torch_threads(1):
            torch.manual_seed(seed)
            head = torch.nn.Linear(features.shape[1], self.dim)
            params = [{"params": head.parameters(), "lr": self.lr, "weight_decay": self.weight_decay}]
            opt = torch.optim.Adam(params)
            sched = self._scheduler(opt, steps_per_epoch, eta_min=0.0)
            proxies = proxy_opt = proxy_sched = None
            # One proxy per finest class present, not per id up to the largest (GLDv2 ids reach ~200 k).
            classes, fine_index = np.unique(hierarchy[:, 0], return_inverse=True)
            if self.loss == "happier":
                proxies = torch.nn.Parameter(torch.empty(len(classes), self.dim).uniform_(-1 / math.sqrt(self.dim), 1 / math.sqrt(self.dim)))
                proxy_opt = torch.optim.Adam([proxies], lr=10.0, weight_decay=0.0)
                proxy_sched = self._scheduler(proxy_opt, steps_per_epoch, eta_min=0.1)
            head.to(device)
            if proxies is not None:  # moved as a tensor: the optimiser holds this very Parameter
                proxies.data = proxies.data.to(device)
            h_all = torch.from_numpy(np.stack([fine_index, *hierarchy[:, 1:].T], 1))

            def embed(idx: np.ndarray) -> torch.Tensor:
                # The features stay where the cache keeps them (~8 GB for H-GLDv2's train split); a batch moves.
                x = torch.from_numpy(features[idx]).to(device)
                if self.norm_features:
                    x = torch.nn.functional.layer_norm(x, x.shape[1:])
                return torch.nn.functional.normalize(head(x), dim=1)

            def parts(idx: np.ndarray) -> dict[str, torch.Tensor]:
                """The weighted terms of the paper's objective on one batch."""
                e = embed(idx)
                s = e @ e.T
                h = h_all[idx].to(device)
                if self.loss == "roadmap":
                    return {
                        "supap": 1 - rl.sup_ap(s, h[:, 0], include_self=self.include_self).mean(),
                        "calibration": rl.calibration_loss(s, h[:, 0]),
                    }
                if self.loss == "smoothap":
                    return {"smoothap": 1 - rl.smooth_ap(s, h[:, 0], include_self=self.include_self).mean()}
                return {
                    "hap": 0.9 * (1 - rl.h_ap(s, h, include_self=self.include_self).mean()),
                    "cluster": 0.1 * rl.cluster_loss(e, proxies, h[:, 0]),
                }

            def probe_losses() -> dict[str, float]:
                with torch.no_grad():
                    rows = [{k: float(v) for k, v in parts(b).items()} for b in probe]
                out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                out["total"] = sum(out.values())
                return out

            def calibration_pairs() -> dict[str, float]:
                """Where ROADMAP's calibration margins stand on the probe batches: its
                terms are averages over the active pairs only, so their value can rise
                while each pair improves (``docs/methods.md#the-heads-implementation-budget-and-results``)."""
                pos, neg = [], []
                with torch.no_grad():
                    for b in probe:
                        e = embed(b)
                        s, y = (e @ e.T).cpu(), h_all[b, 0]
                        same = y[:, None] == y[None, :]
                        pos.append(s[same & ~torch.eye(len(b), dtype=torch.bool)])
                        neg.append(s[~same])
                p, n = torch.cat(pos), torch.cat(neg)
                return {
                    "positive pairs below 0.9": float((p < 0.9).double().mean()),
                    "negative pairs above 0.6": float((n > 0.6).double().mean()),
                    "mean positive similarity": float(p.mean()),
                    "mean negative similarity": float(n.mean()),
                }

            def train_map() -> float:
                with torch.no_grad():
                    e = torch.cat([embed(chunk).cpu() for chunk in np.array_split(map_sample, max(1, len(map_sample) // 4096))])
                return _mean_ap(e.numpy(), hierarchy[map_sample, 0])

            # Exact on the whole split up to MAP_SAMPLES items (an N x N matrix), else on a fixed sample.
            map_sample = np.arange(len(hierarchy))
            if len(map_sample) > MAP_SAMPLES:
                map_sample = np.sort(np.random.default_rng(seed).choice(len(hierarchy), MAP_SAMPLES, replace=False))
            map_key = "train_map" if len(map_sample) == len(hierarchy) else f"train_map ({MAP_SAMPLES} sampled items)"

            pairs_before = calibration_pairs() if self.loss == "roadmap" else {}
            before, map_before = probe_losses(), train_map()
            steps, loss = 0, None
            for epoch in range(1, self.epochs + 1):
                for idx in draw():
                    opt.zero_grad()
                    if proxy_opt is not None:
                        proxy_opt.zero_grad()
                    loss = sum(parts(idx).values())
                    loss.backward()
                    opt.step()
                    if proxy_opt is not None:
                        proxy_opt.step()
                    steps += 1
                sched.step()
                if proxy_sched is not None:
                    proxy_sched.step()
                if loss is not None and self.epochs * steps_per_epoch >= LOG_STEPS and epoch % max(1, self.epochs // 10) == 0:
                    ctx.log(f"{self.loss}-head: epoch {epoch}/{self.epochs}, batch loss {float(loss):.4f}")
            after, map_after = probe_losses(), train_map()
            pairs_after = calibration_pairs() if self.loss == "roadmap" else {}
        ctx.record("steps", steps)
        for key in before:
            ctx.record(f"loss/{key}", f"{before[key]:.4f} -> {after[key]:.4f}")
        for key in pairs_before:
            ctx.record(f"calibration/{key}", f"{pairs_before[key]:.3f} -> {pairs_after[key]:.3f}")
        if self.loss == "roadmap" and after["calibration"] > before["calibration"]:
            ctx.record(
                "calibration/why it rose",
                "each kind of pair is averaged over its active pairs only (the official loss's pytorch-metric-learning "
                "reducer): the negatives cleared their margin before the positives reached theirs, so the head is "
                "under-trained at this lr and epoch count; docs/methods.md#the-heads-implementation-budget-and-results",
            )
        ctx.record(map_key, f"{map_before:.4f} -> {map_after:.4f}")
        return {"weight": head.weight.detach().cpu().numpy().copy(), "bias": head.bias.detach().cpu().numpy().copy()}

    def _scheduler(self, opt, steps_per_epoch: int, eta_min: float):
        import torch

        if self.loss == "happier":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs, eta_min=eta_min)
        # ROADMAP's [30, 70] milestones are for 100 epochs; scaled with ``epochs``.
        milestones = [max(1, round(self.epochs * 0.3)), max(1, round(self.epochs * 0.7))]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.3)

    # -- embedding ------------------------------------------------------------------

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        if self.state is None:
            raise JobError(f"{self.loss}-head scored before fit")
        features = ctx.outputs(subset).features
        weight, bias = self.state["weight"], self.state["bias"]
        projected = np.empty((len(features), len(bias)), dtype=np.float32)
        # A block at a time: H-GLDv2's gallery features are ~6 GB, and the LayerNorm works in float64.
        for start in range(0, len(features), SCORE_ROWS):
            block = np.asarray(features[start : start + SCORE_ROWS], dtype=np.float32)
            if self.norm_features:
                block = layer_norm(block)
            projected[start : start + SCORE_ROWS] = block @ weight.T + bias
        return {"embedding": l2_normalize(projected)}
