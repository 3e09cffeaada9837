"""Per-pixel scoring methods for segmentation (``docs/methods.md``, "Segmentation methods").

Every method yields one dict per image (``score_images``): ``prediction``
``(H, W)`` int64, ``probs`` ``(C, H, W)`` float32 and ``score`` ``(H, W)``
float32, **higher = more in-distribution**. ``score`` stacks them for a whole
subset (tests, the conformance kit); the evaluator streams ``score_images``
so it holds one image at a time.

* Post-hoc on the cached logits ``l`` (``p = softmax(l)``): MSP ``max p``,
  emitted as ``max p - 1`` (:func:`msp_minus_one`; same ranking, see below)
  (Hendrycks & Gimpel, ICLR 2017; per pixel as in Hendrycks et al., "Scaling
  OOD detection to real-world settings", ICML 2022, the StreetHazards
  baseline), MaxLogit ``max l`` (same paper, §4), entropy ``-H(p)``, energy
  ``T·logsumexp(l / T)`` with T = 1 (Liu et al., NeurIPS 2020, eq. 4).
* Sampling methods (:class:`Sampled`): K softmaxes ``p_k`` per pixel from MC
  Dropout (Gal & Ghahramani, ICML 2016; per pixel as Bayesian SegNet, Kendall
  et al., BMVC 2017), Deep Ensembles (Lakshminarayanan et al., NeurIPS 2017),
  BatchEnsemble or LP-BNN members (:mod:`rbx_segmentation.layers`); ``probs``
  is their mean ``p̄``, ``prediction = argmax p̄``, and ``score`` is
  ``-H(p̄)`` (predictive entropy), ``max p̄ - 1`` or ``-MI`` with the mutual
  information ``MI = H(p̄) - mean_k H(p_k)`` (Gal's thesis, 2016, §3.3.1),
  zero exactly when the members agree.
* ConfidNet for segmentation (:mod:`rbx_segmentation.confidnet`).

Scores bounded above by 1 (an MSP, a sigmoid confidence) are emitted minus
1, computed without cancellation: confident pixels crowd just below 1, where
float32 (and the evaluator's 12-significant-bit pooled histogram) cannot tell
``1 - 1e-5`` from ``1 - 1e-6``; near 0 they keep full relative precision, so
the pooled curves are those of the exact MSP, as SegmentMeIfYouCan's stored
``1 - MSP``. A constant shift changes no ranking metric.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from robustbench_x.api import Context, Method

__all__ = ["PixelMethod", "MSP", "MaxLogit", "Entropy", "Energy", "MCDropout", "DeepEnsemble", "BatchEnsemble", "LPBNN", "entropy", "mutual_information", "msp_minus_one", "softmax"]

#: Images per forward pass for the sampling methods.
BATCH = 16


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def entropy(probs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Shannon entropy (nats) along ``axis``; ``0 log 0 = 0``."""
    p = np.asarray(probs, dtype=np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def msp_minus_one(probs: np.ndarray) -> np.ndarray:
    """``max_c p_c - 1`` over axis 0, computed as ``-(sum of the other probabilities)``.

    ``sum(p) - max(p)`` would cancel (float32 ``p_max`` near 1 has an absolute
    step of 6e-8); the non-maximal probabilities of a softmax (``exp(l_j - max l) / S``)
    carry full relative precision down to float32's smallest values, so their sum does too."""
    rest = np.array(probs, dtype=np.float32, copy=True)
    np.put_along_axis(rest, rest.argmax(axis=0)[None], 0.0, axis=0)
    return -rest.sum(axis=0)


def mutual_information(member_probs: np.ndarray) -> np.ndarray:
    """``H(mean_k p_k) - mean_k H(p_k)`` for ``(K, C, H, W)`` member softmaxes; >= 0, 0 when they agree."""
    mean = member_probs.mean(axis=0)
    return np.maximum(entropy(mean, axis=0) - entropy(member_probs, axis=1).mean(axis=0), 0.0)


class PixelMethod(Method):
    """Base: ``score`` stacks :meth:`score_images`."""

    def score_images(self, ctx: Context, subset: str) -> Iterator[dict[str, np.ndarray]]:
        raise NotImplementedError

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        rows = list(self.score_images(ctx, subset))
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class _Posthoc(PixelMethod):
    def pixel_score(self, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_images(self, ctx, subset):
        logits_all = ctx.outputs(subset).logits
        for i in range(len(logits_all)):
            logits = np.asarray(logits_all[i], dtype=np.float32)
            probs = softmax(logits).astype(np.float32)
            yield {"prediction": logits.argmax(axis=0).astype(np.int64), "probs": probs,
                   "score": np.asarray(self.pixel_score(logits, probs), dtype=np.float32)}


class MSP(_Posthoc):
    def pixel_score(self, logits, probs):
        return msp_minus_one(probs)


class MaxLogit(_Posthoc):
    def pixel_score(self, logits, probs):
        return logits.max(axis=0)


class Entropy(_Posthoc):
    def pixel_score(self, logits, probs):
        return -entropy(probs, axis=0)


class Energy(_Posthoc):
    def __init__(self, temperature: float = 1.0, **params) -> None:
        super().__init__(temperature=temperature, **params)
        self.t = float(temperature)

    def pixel_score(self, logits, probs):
        z = logits / self.t
        m = z.max(axis=0)
        return self.t * (m + np.log(np.exp(z - m).sum(axis=0)))


class Sampled(PixelMethod):
    """K softmaxes per pixel -> mean probabilities and a score of their spread (module docstring)."""

    SCORES = ("entropy", "msp", "mutual_information")

    def __init__(self, score: str = "entropy", **params) -> None:
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}")
        super().__init__(score=score, **params)
        self.kind = score

    def member_logits(self, ctx, x) -> "torch.Tensor":  # noqa: F821
        """``(K, B, C, H, W)`` logits of the K members / samples for a batch."""
        raise NotImplementedError

    def combine(self, member_probs: np.ndarray) -> dict[str, np.ndarray]:
        """``(K, C, H, W)`` member softmaxes of one image -> the method's outputs."""
        mean = member_probs.mean(axis=0)
        if self.kind == "entropy":
            score = -entropy(mean, axis=0)
        elif self.kind == "msp":
            score = msp_minus_one(mean)
        else:
            score = -mutual_information(member_probs)
        return {"prediction": mean.argmax(axis=0).astype(np.int64), "probs": mean.astype(np.float32), "score": score.astype(np.float32)}

    def score_images(self, ctx, subset):
        import torch

        from robustbench_x.api import torch_threads

        for x, _ in ctx.loader(subset, batch_size=BATCH):
            # one thread: a small network's passes cost several times more CPU on two contended threads
            with torch.no_grad(), torch_threads(1):
                probs = torch.softmax(self.member_logits(ctx, x).float(), dim=2).cpu().numpy()
            for b in range(probs.shape[1]):
                yield self.combine(probs[:, b])


class MCDropout(Sampled):
    """T passes with only the dropout modules in train mode (batch norm stays in eval)."""

    def __init__(self, T: int = 20, score: str = "entropy", **params) -> None:
        super().__init__(score=score, T=T, **params)
        self.T = int(T)

    def member_logits(self, ctx, x):
        import torch
        from torch import nn

        module = ctx.model.module
        dropouts = [m for m in module.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Dropout3d))]
        if not dropouts:
            raise ValueError(f"model {ctx.model.name} has no dropout layer; MC Dropout needs one")
        for m in dropouts:
            m.train()
        try:
            return torch.stack([ctx.model.forward(x)[0] for _ in range(self.T)])
        finally:
            for m in dropouts:
                m.eval()

    def score_images(self, ctx, subset):
        import torch

        # the seed is set once per subset, not per batch, so batches draw different masks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            yield from super().score_images(ctx, subset)


class DeepEnsemble(Sampled):
    """K independently trained members (the model's ``members(K)``)."""

    def __init__(self, K: int = 5, score: str = "entropy", **params) -> None:
        super().__init__(score=score, K=K, **params)
        self.K = int(K)
        self.members = None

    def fit(self, ctx):
        self.members = ctx.model.members(self.K)

    def member_logits(self, ctx, x):
        import torch

        return torch.stack([m.forward(x)[0] for m in self.members])


class _RankOneEnsemble(Sampled):
    """A rank-1 ensemble of the built-in segmenter's architecture, trained on the train split."""

    layer_kind = ""

    def __init__(self, members: int = 4, score: str = "entropy", **params) -> None:
        super().__init__(score=score, members=members, **params)
        self.M = int(members)
        self.net = None

    def fit(self, ctx):
        from rbx_segmentation.models import train_cached

        self.net = train_cached(ctx.dataset, ctx.seed, kind=self.layer_kind, members=self.M, log=ctx.log)

    def member_logits(self, ctx, x):
        out = self.net(x)  # (M·B, C, H, W), member-major
        return out.view(self.M, x.shape[0], *out.shape[1:])


class BatchEnsemble(_RankOneEnsemble):
    layer_kind = "batchensemble"


class LPBNN(_RankOneEnsemble):
    """Default score: the maximum of the mean softmax (MSP − 1), as the official ``evaluate_uncertainty.py``."""

    layer_kind = "lpbnn"

    def __init__(self, members: int = 4, score: str = "msp", **params) -> None:
        super().__init__(members=members, score=score, **params)

    def fit(self, ctx):
        super().fit(ctx)
        # How far each layer's auto-encoder keeps the members apart: the std over members of the
        # decoded scalings, relative to that of the prior draws. Near 0, the layer's encoder has
        # collapsed (dead ReLUs) and its members differ only by their output scalings and biases.
        spreads = ", ".join(f"{name} {spread:.2f}" for name, spread in alpha_spread(self.net).items())
        ctx.record("members' α̂ spread / α spread, per LP-BNN layer", spreads)


def alpha_spread(net) -> dict[str, float]:
    """Per LP-BNN layer: ``mean_c std_m α̂[m, c] / mean_c std_m α[m, c]``."""
    import torch

    from rbx_segmentation.layers import LPBNNConv2d

    out = {}
    with torch.no_grad():
        for name, layer in net.named_modules():
            if isinstance(layer, LPBNNConv2d):
                was = layer.training
                layer.eval()
                decoded = layer.decoded_alpha()
                layer.train(was)
                out[name] = float(decoded.std(0).mean() / layer.alpha.std(0).mean())
    return out
