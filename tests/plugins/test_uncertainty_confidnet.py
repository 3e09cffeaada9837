"""ConfidNet (Corbière et al., NeurIPS 2019, §3, Eq. (2)-(4)) against docs/methods.md#confidnet."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from rbx_uncertainty.confidnet import ConfidNet, confidnet_loss, make_head, tcp_target
from robustbench_x.api import Model
from robustbench_x.testing import ArrayContext, make_outputs


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matmuls on busy shared cores: more threads only add contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CachingContext(ArrayContext):
    """ArrayContext whose ``fitted`` caches by key, as the runner's does, and counts builds."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cache: dict[str, dict[str, np.ndarray]] = {}
        self.keys: list[dict] = []

    def fitted(self, build, **key):
        self.keys.append(key)
        k = json.dumps(key, sort_keys=True)
        if k not in self.cache:
            self.builds += 1
            self.cache[k] = {name: np.array(v) for name, v in build().items()}
        return self.cache[k]


def _toy(n: int, seed: int, d: int = 8, c: int = 3):
    """Gaussian classes with a deliberately noisy linear 'classifier' so TCP varies and errors exist."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    centers = np.random.default_rng(0).normal(size=(c, d)) * 1.5
    x = centers[y] + rng.normal(size=(n, d))
    w = centers.T + np.random.default_rng(1).normal(scale=0.8, size=(d, c))
    logits = x @ w
    return make_outputs(logits, features=x, labels=y)


def _ctx(seed: int = 0, cls=CachingContext, **kwargs) -> ArrayContext:
    outputs = {"train": _toy(300, 10), "val": _toy(120, 11), "id": _toy(90, 12), "ood/x": _toy(40, 13)}
    return cls(outputs, seed=seed, **kwargs)


def test_tcp_target_is_the_true_class_probability():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 2.0]])
    labels = np.array([0, 2, 1])
    e = math.e
    expected = [e**2 / (e**2 + e + 1), 1 / 3, e**3 / (e + e**3 + e**2)]
    np.testing.assert_allclose(tcp_target(logits, labels), expected, rtol=1e-12)
    torch_version = tcp_target(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_allclose(torch_version.numpy(), expected, rtol=1e-12)
    # the probability of the true class, not the MSP, when the classifier is wrong
    assert tcp_target(np.array([[0.0, 2.0]]), np.array([0]))[0] == pytest.approx(1 / (1 + e**2))


def test_loss_is_the_hand_formula_on_three_samples():
    c_hat = torch.tensor([0.0, math.log(3.0), -math.log(3.0)], dtype=torch.float64)  # σ = 0.5, 0.75, 0.25
    tcp = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    mis = torch.tensor([False, True, False])
    assert float(confidnet_loss(c_hat, tcp, mis)) == pytest.approx((0.4**2 + 0.25**2 + 0.05**2) / 3, rel=1e-12)
    assert float(confidnet_loss(c_hat, tcp, mis, weighting=3.0)) == pytest.approx((0.4**2 + 3 * 0.25**2 + 0.05**2) / 3, rel=1e-12)


def test_head_architecture():
    head = make_head(128)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 400), (400, 400), (400, 400), (400, 400), (400, 1)]
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU] * 4 + [nn.Linear]  # no final activation


def _train_loss(state_head: nn.Module, outputs) -> float:
    x = torch.as_tensor(np.asarray(outputs.features, dtype=np.float32))
    y = torch.as_tensor(outputs.labels)
    logits = torch.as_tensor(outputs.logits)
    with torch.no_grad():
        return float(confidnet_loss(state_head(x).squeeze(1), tcp_target(logits, y), logits.argmax(1) != y))


def test_training_lowers_the_loss():
    ctx = _ctx(seed=5)
    method = ConfidNet(epochs=40, lr=1e-3, eval_every=5)
    method.fit(ctx)
    state = method.state
    assert state["train_loss"].shape == (40,)
    assert state["train_loss"][-1] < 0.7 * state["train_loss"][0]
    torch.manual_seed(5)  # the build seeds torch with ctx.seed before creating the head
    initial = make_head(8)
    trained = make_head(8)
    trained.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("head.")})
    train = ctx.outputs("train")
    assert _train_loss(trained, train) < 0.7 * _train_loss(initial, train)


def test_epoch_selection_by_validation_ap_error():
    from robustbench_x.metrics.failure import ap_error

    ctx = _ctx()
    method = ConfidNet(epochs=12, lr=1e-3, eval_every=4)
    method.fit(ctx)
    history = method.state["val_ap_error"]
    assert history.shape == (3,) and method.state["val_loss"].shape == (3,)  # epochs 4, 8, 12
    assert len(set(history)) == 3  # distinct values: AP-error alone decides
    assert method.state["selected_epoch"][0] == 4 * (int(np.argmax(history)) + 1)
    assert ctx.diagnostics == {"chosen_epoch": int(method.state["selected_epoch"][0]), "selection": "validation AP-error"}
    # the kept head's validation AP-error is the best one of the history
    val = ctx.outputs("val")
    conf = method.score(ctx, "val")["confidence"]
    assert ap_error(conf, val.logits.argmax(1) == val.labels) == pytest.approx(history.max(), rel=1e-5)


def _one_validation_error(ctx) -> None:
    """A validation split with a single error and one shared feature vector: every head gives every
    validation sample the same confidence, so AP-error is the same at every epoch, while the
    validation loss (the TCPs differ) still moves as the head trains."""
    val, train = ctx.outputs("val"), ctx.outputs("train")
    y = np.asarray(val.labels)
    logits = np.eye(3)[y] * 5.0
    logits[0] = np.eye(3)[(y[0] + 1) % 3] * 5.0
    centre = np.asarray(train.features)[np.asarray(train.labels) == 0].mean(axis=0)
    ctx._outputs["val"] = make_outputs(logits, features=np.tile(centre, (len(y), 1)), labels=y)


def test_a_constant_validation_ap_error_selects_by_validation_loss_not_the_first_epoch():
    ctx = _ctx()
    _one_validation_error(ctx)
    method = ConfidNet(epochs=15, lr=1e-3)
    method.fit(ctx)
    ap, loss = method.state["val_ap_error"], method.state["val_loss"]
    assert len(set(np.round(ap, 12))) == 1, ap  # the case under test: AP-error is the same at every epoch
    chosen = int(method.state["selected_epoch"][0])
    assert chosen != 1
    assert chosen == int(np.argmin(loss)) + 1  # every epoch evaluated: epoch e is history[e - 1]
    assert ctx.diagnostics["chosen_epoch"] == chosen
    assert ctx.diagnostics["selection"].startswith("validation loss (validation AP-error constant at")
    assert any(f"chose epoch {chosen}/15" in m for m in ctx.messages)


def test_ties_on_ap_error_go_to_the_lower_validation_loss():
    from rbx_uncertainty.confidnet import _Selector

    correct = np.array([True, True, False, True])
    tcp = torch.tensor([0.9, 0.8, 0.2, 0.7])
    selector = _Selector(correct, weighting=1.0)
    head = nn.Linear(1, 1)
    # Same ranking (error last-but-one) at every step, so the same AP-error; the loss falls, then rises.
    for epoch, scale in enumerate([0.1, 1.0, 2.0, 8.0], start=1):
        conf_logits = torch.logit(torch.tensor([0.9, 0.8, 0.5, 0.7])) * scale
        selector.update(epoch, conf_logits, tcp, {"head": head})
    assert len(set(selector.ap_history)) == 1
    assert selector.best_epoch == 1 + int(np.argmin(selector.loss_history)) and selector.best_epoch not in (1, 4)
    assert selector.rule().startswith("validation loss (validation AP-error constant")


def test_second_fit_with_the_same_key_reuses_the_state():
    ctx = _ctx()
    a = ConfidNet(epochs=3)
    a.fit(ctx)
    b = ConfidNet(epochs=3)
    b.fit(ctx)
    assert ctx.builds == 1
    np.testing.assert_array_equal(a.score(ctx, "id")["confidence"], b.score(ctx, "id")["confidence"])
    assert ctx.keys[0]["method"] == "confidnet" and ctx.keys[0]["epochs"] == 3 and ctx.keys[0]["seed"] == 0
    ConfidNet(epochs=4).fit(ctx)  # another hyperparameter, another key
    assert ctx.builds == 2


def test_outputs_are_probabilities_and_predictions_come_from_the_classifier():
    ctx = _ctx()
    method = ConfidNet(epochs=3)
    method.fit(ctx)
    for subset in ("id", "ood/x"):
        out = method.score(ctx, subset)
        n = len(ctx.outputs(subset))
        assert out["confidence"].shape == (n,) and out["confidence"].dtype == np.float64
        assert ((out["confidence"] > 0) & (out["confidence"] < 1)).all()
        np.testing.assert_array_equal(out["score"], out["confidence"])
        np.testing.assert_array_equal(out["prediction"], ctx.outputs(subset).logits.argmax(1))


def test_seed_determinism():
    a = ConfidNet(epochs=3)
    a.fit(_ctx(seed=1))
    b = ConfidNet(epochs=3)
    b.fit(_ctx(seed=1))
    c = ConfidNet(epochs=3)
    c.fit(_ctx(seed=2))
    ca, cb, cc = (m.score(_ctx(seed=1), "id")["confidence"] for m in (a, b, c))
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(ca, cc)


def test_validation_without_errors_falls_back_to_the_loss():
    ctx = _ctx()
    val = ctx.outputs("val")
    perfect = make_outputs(np.eye(3)[val.labels] * 10, features=val.features, labels=val.labels)
    ctx._outputs["val"] = perfect
    method = ConfidNet(epochs=4)
    method.fit(ctx)
    assert np.isnan(method.state["val_ap_error"]).all()
    assert method.state["selected_epoch"][0] == int(np.argmin(method.state["val_loss"])) + 1
    assert ctx.diagnostics["selection"] == "validation loss (AP-error undefined: 0 error(s) in 120 validation samples)"


class LinearHeadModel(Model):
    """A model double exposing only ``head`` (the last layer) and a module, for ``feature_dropout``."""

    num_classes = 3

    def __init__(self, outputs) -> None:
        x, z = np.asarray(outputs.features, np.float64), np.asarray(outputs.logits, np.float64)
        w, *_ = np.linalg.lstsq(x, z, rcond=None)  # the toy logits are exactly linear in the features
        self.fc = nn.Linear(x.shape[1], 3, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w.T))
        self.calls = 0

    @property
    def module(self):
        return self.fc

    def head(self, features):
        self.calls += 1
        return self.fc(features)


def test_feature_dropout_recomputes_the_target_through_the_last_layer():
    ctx = _ctx()
    model = LinearHeadModel(ctx.outputs("train"))
    ctx.model = model
    plain = ConfidNet(epochs=2)
    plain.fit(ctx)
    dropped = ConfidNet(epochs=2, feature_dropout=0.3)
    dropped.fit(ctx)
    assert model.calls == 2 * 3  # 300 samples / batch 128 → 3 batches per epoch
    assert not np.array_equal(plain.score(ctx, "id")["confidence"], dropped.score(ctx, "id")["confidence"])


def test_invalid_parameters():
    with pytest.raises(ValueError):
        ConfidNet(epochs=0)
    with pytest.raises(ValueError):
        ConfidNet(feature_dropout=1.0)
