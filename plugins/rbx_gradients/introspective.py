"""Introspective learning (``docs/methods.md#introspective``).

Prabhushankar & AlRegib, "Introspective Learning: A Two-Stage Approach for
Inference in Neural Networks", NeurIPS 2022 (arXiv 2209.08425), §3–4: a
*sensing* stage (the trained network f) followed by a *reflection* stage in
which the network is "asked" about every class; the answers are gradients of
the trained network, and a **three-layer MLP H(·)** predicts from all the
gradient features. ``r_x`` is generated for every training image, H is
trained on them with f frozen, and at test time f → extraction → H.

**The official repository has no introspective-feature or H code**
(olivesgatech/Introspective-Learning README: "Introspective Features — Coming
soon"), so everything below except the two-stage structure is a
reconstruction, marked **[UNVERIFIED]** in ``docs/methods.md#introspective``:

* Introspective features (:func:`introspective_features`): the answer for
  class ``i`` is ``r_i = ∇_W CE(z, e_i)`` with respect to the last linear
  layer's weight ``W`` (C × d). For a linear head this is the closed form
  ``r_i = (p − e_i) hᵀ`` (p = softmax(z), h = penultimate features): no
  autograd, no C backward passes. ``r_x`` stacks the C answers, shape
  (C, C·d) per sample (each ``r_i`` flattened row-major like ``W``), i.e.
  ``C²·d`` numbers. :func:`introspective_features_autograd` computes the same
  tensor with autograd on ``model.module`` and is what the tests compare
  with. Note (``docs/methods.md#introspective``): ``Σ_i r_i = (C·p − 1) hᵀ`` and every ``r_i`` is
  a rank-1 function of (p, h); ``r_x`` carries no information beyond (p, h).
* Normalisation of H's input (our choice): each of the ``C²·d`` coordinates is
  standardised with the mean and standard deviation of the training
  introspective features (``(r − m)/s``; ``s = 1`` where a coordinate is
  constant on the training split).
* H (our choice of width, activations, optimiser): ``Linear(C²d, 256) → ReLU →
  Linear(256, 256) → ReLU → Linear(256, C)``, trained with cross-entropy on the
  **train split labels** (f frozen; features from the cached outputs), Adam
  (lr 1e-3, no weight decay), batch 128, 30 epochs, reshuffled every epoch,
  all randomness from ``ctx.seed``, one torch thread; the last epoch's
  weights are kept (no early stopping, no validation split used).

Outputs: ``probs = softmax(H(r_x))``, ``prediction = argmax``, ``confidence`` =
``score`` = ``max probs − 1`` (higher = more confident / in-distribution),
computed by :func:`robustbench_x.api.max_probability_minus_one` so that a
maximum that rounds to 1.0 does not tie samples (as MSP, ``docs/methods.md#msp``).

Size: ``C²·d`` features per sample grows quickly (CIFAR-10, d = 512: 51,200;
ImageNet: 2·10⁹). They are never stored for a whole split: the normalisation
statistics are streamed over chunks and each mini-batch's ``r_x`` is rebuilt
from the cached (logits, features), so memory is O(batch · C²·d) plus H's
first layer (C²·d × 256). ``max_features`` (default 2²⁰) guards against
building an impossible MLP; beyond it the method raises ``ValueError``.
The reduced form ``(p, h)`` is *not* offered: an MLP on it is a different
model from an MLP on ``r_x``.

Paper-reported setting not reproduced: the paper evaluates calibration (ECE)
and robustness on noisy data (CIFAR-10-C, CURE-TSR); its H width, epochs and
input normalisation are not recoverable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rbx_gradients._common import eval_mode, f64, last_linear_weight, score_dict, softmax
from robustbench_x.api import Context, Method, max_probability_minus_one

__all__ = ["Introspective", "introspective_features", "introspective_features_autograd"]

#: Rows per chunk when materialising introspective features (C²·d floats each).
CHUNK = 256


def introspective_features(logits, features) -> np.ndarray:
    """``r[n, i] = vec((p_n − e_i) h_nᵀ)``, shape (N, C, C·d), float64 (closed form)."""
    z = f64(logits)
    h = f64(features)
    if z.ndim != 2 or h.ndim != 2 or len(z) != len(h):
        raise ValueError(f"introspective_features: need logits (N, C) and features (N, d), got {z.shape} and {h.shape}")
    n, c = z.shape
    d = h.shape[1]
    p = softmax(z, axis=1)
    coef = p[:, None, :] - np.eye(c)[None, :, :]  # (N, i, C): ∂CE(z, e_i)/∂z = p − e_i
    return (coef[:, :, :, None] * h[:, None, None, :]).reshape(n, c, c * d)


def introspective_features_autograd(model, x) -> np.ndarray:
    """Reference with autograd: ``∇_W CE(model.module(x_n), i)`` for every sample and class (tests)."""
    import torch
    import torch.nn.functional as F

    module = model.module
    _, weight = last_linear_weight(model)
    rows = []
    with eval_mode(module):
        for n in range(len(x)):
            logits = module(x[n : n + 1])
            c = logits.shape[1]
            grads = []
            for i in range(c):
                loss = F.cross_entropy(logits, torch.tensor([i], device=logits.device))
                (g,) = torch.autograd.grad(loss, [weight], retain_graph=i < c - 1)
                grads.append(g.detach().double().reshape(-1).cpu())
            rows.append(torch.stack(grads))
    return torch.stack(rows).numpy()


def _mlp(in_dim: int, hidden: tuple[int, int], out_dim: int):
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_dim, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], out_dim),
    )



class Introspective(Method):
    """Two-stage introspective classifier H on closed-form introspective features."""

    name = "introspective"

    def __init__(
        self,
        hidden: tuple[int, int] | list[int] = (256, 256),
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        max_features: int = 2**20,
    ) -> None:
        hidden = tuple(int(h) for h in hidden)
        if len(hidden) != 2 or min(hidden) < 1:
            raise ValueError(f"introspective: hidden must be two positive widths (a 3-layer MLP), got {hidden!r}")
        if int(epochs) < 1 or int(batch_size) < 1 or not float(lr) > 0:
            raise ValueError("introspective: epochs and batch_size must be >= 1 and lr > 0")
        super().__init__(hidden=list(hidden), epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, max_features=max_features)
        self.hidden, self.epochs, self.batch_size = hidden, int(epochs), int(batch_size)
        self.lr, self.weight_decay, self.max_features = float(lr), float(weight_decay), int(max_features)
        self.state: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------ features
    def _check_size(self, c: int, d: int) -> None:
        if c * c * d > self.max_features:
            raise ValueError(
                f"introspective: C²·d = {c}²·{d} = {c * c * d} introspective features per sample exceeds "
                f"max_features = {self.max_features}"
            )

    @staticmethod
    def _rows(logits: np.ndarray, features: np.ndarray, sl: slice) -> np.ndarray:
        """Flattened introspective features of rows ``sl``, (n, C²·d) float64 (computed on the fly)."""
        r = introspective_features(logits[sl], features[sl])
        return r.reshape(len(r), -1)

    def _normalisation(self, logits: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate mean and std (ddof 0) over the rows, streamed in chunks (two passes)."""
        n = len(logits)
        total = None
        for start in range(0, n, CHUNK):
            r = self._rows(logits, features, slice(start, start + CHUNK))
            total = r.sum(0) if total is None else total + r.sum(0)
        mean = total / n
        sq = None
        for start in range(0, n, CHUNK):
            r = self._rows(logits, features, slice(start, start + CHUNK)) - mean
            sq = (r * r).sum(0) if sq is None else sq + (r * r).sum(0)
        std = np.sqrt(sq / n)
        std[std == 0] = 1.0
        return mean, std

    # ------------------------------------------------------------ fit
    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        out = ctx.outputs("train")
        labels = np.asarray(out.labels, dtype=np.int64)
        keep = labels >= 0
        if not keep.any():
            raise ValueError("introspective: the train split has no labelled sample")
        logits, feats, y = f64(out.logits)[keep], f64(out.features)[keep], labels[keep]
        c, d = logits.shape[1], feats.shape[1]
        self._check_size(c, d)
        mean, std = self._normalisation(logits, feats)
        yt = torch.as_tensor(y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(ctx.seed))
            net = _mlp(c * c * d, self.hidden, c)
        gen = torch.Generator().manual_seed(int(ctx.seed))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(y), generator=gen).numpy()
            for start in range(0, len(y), self.batch_size):
                idx = order[start : start + self.batch_size]
                r = (introspective_features(logits[idx], feats[idx]).reshape(len(idx), -1) - mean) / std
                loss = F.cross_entropy(net(torch.as_tensor(r, dtype=torch.float32)), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        state = {f"net/{k}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        state["norm/mean"] = mean
        state["norm/std"] = std
        return state

    def fit(self, ctx: Context) -> None:
        from robustbench_x.api import torch_threads

        def build() -> dict[str, np.ndarray]:
            with torch_threads(1):  # small MLP: one thread is faster on shared cores and reduces in a fixed order
                return self._build(ctx)

        self.state = ctx.fitted(build, method=self.name, **dict(self.params))

    # ------------------------------------------------------------ score
    def predict_proba(self, logits, features) -> np.ndarray:
        """``softmax(H(r_x))`` for rows of (logits, features), computed in chunks."""
        import torch

        assert self.state is not None
        logits, feats = f64(logits), f64(features)
        c, d = logits.shape[1], feats.shape[1]
        self._check_size(c, d)
        net = _mlp(c * c * d, self.hidden, c)
        net.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in self.state.items() if k.startswith("net/")})
        net.eval()
        mean, std = self.state["norm/mean"], self.state["norm/std"]
        out = []
        with torch.no_grad():
            for start in range(0, len(logits), CHUNK):
                r = (self._rows(logits, feats, slice(start, start + CHUNK)) - mean) / std
                out.append(net(torch.as_tensor(r, dtype=torch.float32)).double().numpy())
        z = np.concatenate(out) if out else np.zeros((0, c))
        return softmax(z, axis=1)

    def score(self, ctx: Context, subset: str) -> dict[str, Any]:
        if self.state is None:
            self.fit(ctx)
        out = ctx.outputs(subset)
        probs = self.predict_proba(out.logits, out.features)
        return score_dict(max_probability_minus_one(probs, axis=1), probs=probs, prediction=probs.argmax(axis=1))
