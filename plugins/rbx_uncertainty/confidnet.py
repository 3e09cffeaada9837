"""ConfidNet (``docs/methods.md#confidnet``).

Corbière, Thome, Bar-Hen, Cord & Pérez, "Addressing Failure Prediction by
Learning Model Confidence", NeurIPS 2019, §3 (Eqs. (2)-(4)): learn a
confidence ``ĉ(x)`` that regresses the **true class probability** of a frozen
classifier,

* TCP target: ``c*(x, y) = P(Y = y | w, x) = softmax(f(x))_y``
  (:func:`tcp_target`);
* loss: ``L = (1/N) Σ_i w_i (σ(ĉ(x_i)) − c*(x_i, y_i))²`` with
  ``ĉ`` the raw output of the ConfidNet head and ``σ`` the sigmoid
  (:func:`confidnet_loss`); ``w_i = weighting`` for a misclassified sample and
  1 otherwise (valeoai/ConfidNet ``utils/losses.py`` ``SelfConfidMSELoss``,
  ``weighting: 1`` in ``confs/selfconfid-classif.yaml``, so plain MSE);
* head (§3; ``models/*_selfconfid_classic.py``): an MLP on the classifier's
  penultimate activations, ``d → 400 → 400 → 400 → 400 → 1``, ReLU between the
  layers, no final activation (:func:`make_head`, PyTorch default init);
* test time: ``confidence = σ(ĉ(x))``, reported as ``confidence`` and also
  as ``score`` so that the OOD suites can rank by it;
  ``prediction = argmax`` of the *original* classifier's logits.

Training phases (§3, learning scheme; ``learners/selfconfid_learner.py``):

* phase 2 (always): classifier frozen, head trained with Adam, ``lr = 1e-4``,
  batch 128 (``selfconfid-classif.yaml``), reshuffled every epoch; the paper
  trains up to :data:`PAPER_EPOCHS` = 500 epochs and keeps the epoch with the
  best **validation AP-error** (errors positive, ranked by ``−confidence``,
  :func:`robustbench_x.metrics.failure.ap_error`). The official learner
  selects nothing by itself: after every epoch it saves a checkpoint and logs
  the validation AP-error (``val/ap_errors``) and the validation loss
  (``val/loss_confid``, the same weighted MSE on the validation split), and
  ``test.py --epoch`` evaluates the epoch the user picks. Here the choice is
  automatic, on the two quantities the official code logs: every
  ``eval_every`` epochs and at the last epoch, the best validation AP-error
  wins; **ties on AP-error go to the lower validation loss**, which covers a
  constant AP-error (a validation split with one error gives AP-error =
  1/rank of that error, often the same at every epoch; keeping the earliest
  tied epoch would keep a head trained for one epoch); when AP-error is
  undefined (no validation error, or no correct prediction) the validation
  loss alone selects. The chosen epoch and the rule that decided are logged
  and recorded as job diagnostics (``chosen_epoch``, ``selection``).
* phase 3 (optional, ``finetune_epochs > 0``; ``models/*_selfconfid_cloning.py``):
  a copy of the encoder (``copy.deepcopy(ctx.model.feature_extractor())``) and
  the phase-2 head are fine-tuned together with the same loss from
  ``ctx.loader("train")``, every parameter trainable, dropout off and
  BatchNorm frozen (the whole clone in eval mode); the target and
  ``prediction`` still come from the untouched classifier. ``finetune_lr =
  1e-6``: the paper fine-tunes with a smaller learning rate than phase 2 but
  no shipped config holds the value, so 1e-6 is **unverified** (``docs/methods.md#confidnet``).
  Selection as in phase 2, the phase-2 state (epoch 0) included; recorded as
  ``finetune_chosen_epoch`` and ``finetune_selection``.

Defaults and what differs from the paper / official code, because of CPU
budgets and of the harness's cached features:

* ``epochs = 100`` (not 500): on the embedded digits (540 training features
  of 128-d, batch 128, validation every epoch) 100 epochs cost ≈6 CPU-seconds
  on one core (measured 5.7 s); the selection above still applies. Set ``epochs=500`` (:data:`PAPER_EPOCHS`) for the paper's budget.
  The head is small: on shared, busy cores run torch with one intra-op
  thread, more threads only contend (measured ≈15× slower with 2 threads on
  2 loaded cores).
* phase 2 trains on the **cached** penultimate features (``ctx.outputs``), in
  eval mode: no training augmentation (the repository's train loader applies
  its config's augmentations, hflip + 15° rotation for CIFAR-10) and, by default, **no encoder dropout**, whereas in the
  repository the frozen encoder's dropout stays active while the head is
  trained (only ``disable_bn`` is called; dropout is switched off only in
  phase 3), so the head sees dropped-out activations and the TCP target is
  computed from the dropped-out logits. ``feature_dropout = p`` reproduces
  that exactly for a model whose only dropout sits right before its last
  linear layer (the built-in CNN, ``p = 0.3``; ConfidNet's own
  ``small_convnet_mnist_selfconfid_classic.py`` feeds the same dropped
  ``fc1`` activations to ``fc2`` and to the head): each batch of cached
  features goes through ``F.dropout(p)``, the head and the target
  ``softmax(ctx.model.head(h̃))_y`` both use the dropped ``h̃``. Dropout
  elsewhere in an encoder cannot be applied to cached features.
* validation = the dataset's ``val`` split (un-augmented); the repository
  holds out 10 % of train (``valid_size: 0.1``), augmented.
* phase 3 is off by default (``finetune_epochs = 0``): it needs full forward
  and backward passes of the encoder; ``ctx.loader`` yields the train split in
  a fixed order, so phase 3 does not reshuffle between epochs.
* no temperature on the target (the repository's optional ``temperature`` is
  unset in its configs).

Fitted state (head weights, the cloned encoder's weights after phase 3, the
selected epochs, the per-epoch train loss, validation AP-error and validation
loss) is a dict of numpy arrays cached through ``ctx.fitted(build,
method="confidnet", seed=…, selection=SELECTION, **params)``: a second run
with the same key does not retrain. Everything
random (head init, shuffling, feature dropout) runs inside
``torch.random.fork_rng`` seeded from ``ctx.seed``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rbx_uncertainty._common import device_of
from robustbench_x.api import Context, Method

__all__ = ["ConfidNet", "PAPER_EPOCHS", "confidnet_loss", "make_head", "tcp_target"]

#: The paper's phase-2 budget ("up to 500 epochs", ``nb_epochs: 500`` in ``selfconfid-classif.yaml``).
PAPER_EPOCHS = 500
#: The model-selection rule (part of the fitted-state key: a state chosen by another rule is not reused).
SELECTION = "val AP-error, ties by val loss"
#: Hidden width of the head (§3; ``uncertainty1..4`` are 400 wide, e.g. ``small_convnet_mnist_selfconfid_classic.py``).
HIDDEN = 400


def make_head(in_features: int, hidden: int = HIDDEN) -> nn.Sequential:
    """The ConfidNet head ``d → 400 → 400 → 400 → 400 → 1``, ReLU between layers, raw output."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 1),
    )  # fmt: skip


def tcp_target(logits, labels):
    """True class probability ``softmax(logits)_y`` (Eq. (2)); numpy in → float64 numpy out, torch in → torch out."""
    if isinstance(logits, torch.Tensor):
        labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
        return torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p[np.arange(len(y)), y]


def confidnet_loss(confidence_logits: torch.Tensor, tcp: torch.Tensor, misclassified: torch.Tensor, weighting: float = 1.0) -> torch.Tensor:
    """``mean_i w_i (σ(ĉ_i) − c*_i)²``, ``w_i = weighting`` if sample ``i`` is misclassified, else 1 (Eq. (4))."""
    weights = torch.where(misclassified, torch.full_like(tcp, float(weighting)), torch.ones_like(tcp))
    return torch.mean(weights * (torch.sigmoid(confidence_logits) - tcp) ** 2)


def _labelled(outputs, subset: str) -> np.ndarray:
    index = np.flatnonzero(np.asarray(outputs.labels) >= 0)
    if index.size == 0:
        raise ValueError(f"confidnet: subset {subset!r} has no labelled samples")
    return index


def _state_arrays(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _load(module: nn.Module, state: dict[str, np.ndarray], prefix: str) -> None:
    sub = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(sub)


class _Selector:
    """Model selection on the validation split: best AP-error, ties to the lower validation loss.

    With few validation errors AP-error takes few values (with one error it is
    1/rank of that error) and is often the same at every epoch; taking the
    earliest of tied epochs then keeps a barely trained head. Ties on AP-error
    (a constant AP-error included) therefore go to the lower validation loss,
    and when AP-error is undefined (no error, or no correct prediction) the
    validation loss alone selects. Among exact ties of both the earliest epoch wins.
    """

    def __init__(self, correct: np.ndarray, weighting: float) -> None:
        self.correct = correct
        self.weighting = weighting
        self.use_ap = 0 < int(correct.sum()) < len(correct)
        self.ap_history: list[float] = []
        self.loss_history: list[float] = []
        self.best_key: tuple[float, ...] | None = None
        self.best_epoch = -1
        self.best_state: dict[str, dict[str, torch.Tensor]] | None = None

    def update(self, epoch: int, conf_logits: torch.Tensor, tcp: torch.Tensor, modules: dict[str, nn.Module]) -> None:
        from robustbench_x.metrics.failure import ap_error

        conf_logits = conf_logits.double()
        loss = float(confidnet_loss(conf_logits, tcp.double(), torch.from_numpy(~self.correct), self.weighting))
        ap = float(ap_error(torch.sigmoid(conf_logits).numpy(), self.correct)) if self.use_ap else float("nan")
        self.ap_history.append(ap)
        self.loss_history.append(loss)
        # Rounded so that float noise between equal rankings cannot break a tie.
        key = (round(ap, 12), -loss) if self.use_ap else (-loss,)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch
            self.best_state = {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}

    def rule(self) -> str:
        """Which criterion decided, in words (recorded with the chosen epoch)."""
        errors, n = int((~self.correct).sum()), len(self.correct)
        if not self.use_ap:
            return f"validation loss (AP-error undefined: {errors} error(s) in {n} validation samples)"
        ap = np.round(np.asarray(self.ap_history), 12)
        tied = int((ap == ap.max()).sum())
        if tied == len(ap) and tied > 1:
            return f"validation loss (validation AP-error constant at {ap.max():.4f}; {errors} error(s) in {n} validation samples)"
        if tied > 1:
            return f"validation AP-error, ties between {tied} evaluated epochs broken by validation loss"
        return "validation AP-error"

    def restore(self, modules: dict[str, nn.Module]) -> None:
        assert self.best_state is not None
        for name, m in modules.items():
            m.load_state_dict(self.best_state[name])

    def history(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}val_ap_error": np.array(self.ap_history, dtype=np.float64),
            f"{prefix}val_loss": np.array(self.loss_history, dtype=np.float64),
        }


class ConfidNet(Method):
    """An MLP on penultimate features regressing the classifier's true-class probability."""

    name = "confidnet"

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 1e-4,
        batch_size: int = 128,
        weighting: float = 1.0,
        eval_every: int = 1,
        feature_dropout: float = 0.0,
        finetune_epochs: int = 0,
        finetune_lr: float = 1e-6,
        **params: Any,
    ) -> None:
        if int(epochs) < 1:
            raise ValueError(f"confidnet: epochs must be >= 1, got {epochs}")
        if int(eval_every) < 1:
            raise ValueError(f"confidnet: eval_every must be >= 1, got {eval_every}")
        if not 0.0 <= float(feature_dropout) < 1.0:
            raise ValueError(f"confidnet: feature_dropout must be in [0, 1), got {feature_dropout}")
        super().__init__(
            epochs=epochs, lr=lr, batch_size=batch_size, weighting=weighting, eval_every=eval_every,
            feature_dropout=feature_dropout, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, **params,
        )  # fmt: skip
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.weighting, self.eval_every = float(weighting), int(eval_every)
        self.feature_dropout = float(feature_dropout)
        self.finetune_epochs, self.finetune_lr = int(finetune_epochs), float(finetune_lr)
        self.state: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, ctx: Context) -> None:
        self.state = ctx.fitted(lambda: self._build(ctx), method=self.name, seed=int(ctx.seed), selection=SELECTION, **self.params)

    def _build(self, ctx: Context) -> dict[str, np.ndarray]:
        from robustbench_x.api import torch_threads

        with torch_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(ctx.seed))
            head, state = self._phase2(ctx)
            if self.finetune_epochs > 0:
                state.update(self._phase3(ctx, head))
            else:
                state.update(_state_arrays(head, "head."))
        return state

    def _phase2(self, ctx: Context) -> tuple[nn.Module, dict[str, np.ndarray]]:
        train, val = ctx.outputs("train"), ctx.outputs("val")
        ti, vi = _labelled(train, "train"), _labelled(val, "val")
        x = torch.as_tensor(np.asarray(train.features, dtype=np.float32)[ti])
        y = torch.as_tensor(np.asarray(train.labels, dtype=np.int64)[ti])
        logits = torch.as_tensor(np.asarray(train.logits, dtype=np.float32)[ti])
        tcp_all = tcp_target(logits, y)
        mis_all = logits.argmax(dim=1) != y

        xv = torch.as_tensor(np.asarray(val.features, dtype=np.float32)[vi])
        yv = np.asarray(val.labels, dtype=np.int64)[vi]
        lv = np.asarray(val.logits, dtype=np.float32)[vi]
        tcp_val = torch.as_tensor(tcp_target(lv, yv), dtype=torch.float32)
        selector = _Selector(lv.argmax(axis=1) == yv, self.weighting)

        head = make_head(x.shape[1])
        opt = torch.optim.Adam(head.parameters(), lr=self.lr)
        last_layer = None
        if self.feature_dropout > 0:
            model_device = device_of(ctx.model.module)
            last_layer = lambda h: ctx.model.head(h.to(model_device)).float().cpu()  # noqa: E731

        losses = []
        n = len(x)
        for epoch in range(1, self.epochs + 1):
            head.train()
            total = 0.0
            for idx in torch.randperm(n).split(self.batch_size):
                h = x[idx]
                if last_layer is not None:
                    # As the official phase 2 with the encoder's dropout on: head input and target see the same mask.
                    h = F.dropout(h, self.feature_dropout, training=True)
                    with torch.no_grad():
                        lg = last_layer(h)
                    tcp, mis = tcp_target(lg, y[idx]), lg.argmax(dim=1) != y[idx]
                else:
                    tcp, mis = tcp_all[idx], mis_all[idx]
                loss = confidnet_loss(head(h).squeeze(1), tcp, mis, self.weighting)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            losses.append(total / n)
            if epoch % self.eval_every == 0 or epoch == self.epochs:
                head.eval()
                with torch.no_grad():
                    selector.update(epoch, head(xv).squeeze(1), tcp_val, {"head": head})
        selector.restore({"head": head})
        head.eval()
        rule = selector.rule()
        ctx.log(f"confidnet phase 2: chose epoch {selector.best_epoch}/{self.epochs} by {rule}")
        ctx.record("chosen_epoch", selector.best_epoch)
        ctx.record("selection", rule)
        state = {
            "selected_epoch": np.array([selector.best_epoch], dtype=np.int64),
            "train_loss": np.array(losses, dtype=np.float64),
            **selector.history(),
        }
        return head, state

    def _phase3(self, ctx: Context, head: nn.Module) -> dict[str, np.ndarray]:
        device = device_of(ctx.model.module)
        encoder = copy.deepcopy(ctx.model.feature_extractor()).to(device)
        head = head.to(device)
        # Dropout off and BN frozen (running stats untouched): the whole clone stays in eval mode while training.
        encoder.eval()
        head.eval()
        encoder.requires_grad_(True)
        params = [p for p in encoder.parameters()] + [p for p in head.parameters()]
        opt = torch.optim.Adam(params, lr=self.finetune_lr)

        val = ctx.outputs("val")
        vi = _labelled(val, "val")
        yv = np.asarray(val.labels, dtype=np.int64)[vi]
        lv = np.asarray(val.logits, dtype=np.float32)[vi]
        tcp_val = torch.as_tensor(tcp_target(lv, yv), dtype=torch.float32)
        selector = _Selector(lv.argmax(axis=1) == yv, self.weighting)
        modules = {"encoder": encoder, "head": head}

        def val_logits() -> torch.Tensor:
            with torch.no_grad():
                c = torch.cat([head(encoder(xb.to(device))).squeeze(1).cpu() for xb, _ in ctx.loader("val", batch_size=self.batch_size)])
            return c[torch.as_tensor(vi)]

        selector.update(0, val_logits(), tcp_val, modules)
        losses = []
        for epoch in range(1, self.finetune_epochs + 1):
            total, count = 0.0, 0
            for xb, yb in self._labelled_batches(ctx, "train"):
                xb, yb = xb.to(device), yb.to(device)
                with torch.no_grad():
                    lg, _ = ctx.model.forward(xb)
                loss = confidnet_loss(head(encoder(xb)).squeeze(1), tcp_target(lg, yb), lg.argmax(dim=1) != yb, self.weighting)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(yb)
                count += len(yb)
            losses.append(total / max(count, 1))
            if epoch % self.eval_every == 0 or epoch == self.finetune_epochs:
                selector.update(epoch, val_logits(), tcp_val, modules)
        selector.restore(modules)
        encoder.requires_grad_(False)
        rule = selector.rule()
        ctx.log(f"confidnet phase 3: chose fine-tuning epoch {selector.best_epoch}/{self.finetune_epochs} by {rule}")
        ctx.record("finetune_chosen_epoch", selector.best_epoch)
        ctx.record("finetune_selection", rule)
        return {
            **_state_arrays(head.cpu(), "head."),
            **_state_arrays(encoder.cpu(), "encoder."),
            "finetune_selected_epoch": np.array([selector.best_epoch], dtype=np.int64),
            "finetune_train_loss": np.array(losses, dtype=np.float64),
            **selector.history("finetune_"),
        }

    def _labelled_batches(self, ctx: Context, subset: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in ctx.loader(subset, batch_size=self.batch_size):
            yb = torch.as_tensor(yb, dtype=torch.long)
            keep = yb >= 0
            if bool(keep.any()):
                yield xb[keep], yb[keep]

    # ---------------------------------------------------------------- score
    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        if self.state is None:
            self.fit(ctx)
        assert self.state is not None
        state = self.state
        head = make_head(int(np.asarray(state["head.0.weight"]).shape[1]))
        _load(head, state, "head.")
        head.eval()
        out = ctx.outputs(subset)
        with torch.no_grad():
            if any(k.startswith("encoder.") for k in state):
                device = device_of(ctx.model.module)
                encoder = copy.deepcopy(ctx.model.feature_extractor())
                _load(encoder, state, "encoder.")
                encoder.to(device).eval()
                head.to(device)
                c = torch.cat([head(encoder(xb.to(device))).squeeze(1).cpu() for xb, _ in ctx.loader(subset, batch_size=self.batch_size)])
            else:
                c = head(torch.from_numpy(np.array(out.features, dtype=np.float32))).squeeze(1)  # copy: cached arrays may be read-only memmaps
        # Sigmoid in float64 so that large ĉ stays strictly below 1 as long as possible.
        conf = torch.sigmoid(c.double()).numpy()
        pred = np.asarray(out.logits).argmax(axis=1).astype(np.int64)
        return {"score": conf, "confidence": conf.copy(), "prediction": pred}
