"""MC Dropout (Gal & Ghahramani 2016) against docs/methods.md#mc_dropout, on cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rbx_uncertainty._common import entropy
from rbx_uncertainty.mc_dropout import MCDropout, mc_dropout_mode, sampling_scores
from robustbench_x.api import Model
from robustbench_x.testing import ArrayContext, make_outputs

LN2 = math.log(2.0)


# ----------------------------------------------------------------- the pure score function


def test_all_passes_equal_one_hot():
    probs = np.tile(np.array([0.0, 1.0, 0.0]), (5, 1, 1))  # T=5, N=1, C=3
    s = sampling_scores(probs)
    assert s["entropy"][0] == 0.0
    assert s["mutual_information"][0] == 0.0
    assert s["variation_ratio"][0] == 0.0
    np.testing.assert_array_equal(s["probs"], [[0.0, 1.0, 0.0]])
    assert s["prediction"][0] == 1 and s["msp"][0] == 0.0  # max p̄ − 1


def test_all_passes_binary_uniform():
    s = sampling_scores(np.full((4, 1, 2), 0.5))
    assert s["entropy"][0] == pytest.approx(LN2, abs=1e-15)
    assert s["mutual_information"][0] == pytest.approx(0.0, abs=1e-15)
    assert s["msp"][0] == -0.5


def test_half_passes_class0_half_class1():
    probs = np.array([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])  # T=4, N=1, C=2
    s = sampling_scores(probs)
    assert s["entropy"][0] == pytest.approx(LN2, abs=1e-15)
    assert s["mutual_information"][0] == pytest.approx(LN2, abs=1e-15)
    assert s["variation_ratio"][0] == 0.5
    np.testing.assert_allclose(s["probs"], [[0.5, 0.5]])


def test_general_case_matches_the_formulas():
    # Three samples stacked along N so rows cannot leak into each other.
    p = np.array(
        [
            [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
            [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]],
            [[0.2, 0.7, 0.1], [0.2, 0.2, 0.6], [0.4, 0.5, 0.1]],
            [[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.9, 0.05, 0.05]],
            [[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.4, 0.2, 0.4]],
        ]
    )
    s = sampling_scores(p)
    mean = p.mean(axis=0)
    h = lambda q: -sum(x * math.log(x) for x in q if x > 0)  # noqa: E731
    for i in range(3):
        assert s["entropy"][i] == pytest.approx(h(mean[i]), rel=1e-12)
        assert s["mutual_information"][i] == pytest.approx(h(mean[i]) - np.mean([h(p[t, i]) for t in range(5)]), rel=1e-12)
    # votes: sample 0 → [0,0,1,0,0] (4/5), sample 1 → [2,0,2,2,1] (3/5), sample 2 → [2,1,1,0,0]: ties at 2/5.
    np.testing.assert_allclose(s["variation_ratio"], [1 - 4 / 5, 1 - 3 / 5, 1 - 2 / 5])
    np.testing.assert_array_equal(s["prediction"], mean.argmax(axis=1))
    assert all(v.dtype == np.float64 for k, v in s.items() if k != "prediction")


def test_entropy_convention_zero_log_zero():
    assert entropy(np.array([1.0, 0.0, 0.0])) == 0.0
    assert entropy(np.array([0.25] * 4)) == pytest.approx(math.log(4))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError):
        sampling_scores(np.ones((3, 2)))


# ----------------------------------------------------------------- the method on a tiny model


class TinyModel(Model):
    """Linear → BatchNorm → ReLU → Dropout → Linear, with trained-looking BN statistics."""

    provides = frozenset({"logits", "dropout"})
    num_classes = 3

    def __init__(self, with_dropout: bool = True) -> None:
        torch.manual_seed(0)
        layers = [nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU()]
        if with_dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.Linear(16, 3))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.net[1].running_mean.uniform_(-0.5, 0.5)
            self.net[1].running_var.uniform_(0.5, 2.0)
        self.net.eval()

    @property
    def module(self) -> nn.Module:
        return self.net


def _ctx(model: Model, seed: int = 0, n: int = 37) -> ArrayContext:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 4, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return ArrayContext({"id": make_outputs(np.zeros((n, 3)))}, model=model, inputs={"id": (x, y), "ood/x": (x + 3, y)}, seed=seed)


def test_only_dropout_modules_are_in_train_mode_and_bn_stats_do_not_move():
    model = TinyModel()
    modes: list[tuple[str, bool]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: modes.append((type(mod).__name__, mod.training))) for m in model.net]
    bn = model.net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    out = MCDropout(T=7, batch_size=16).score(_ctx(model), "id")
    for h in hooks:
        h.remove()
    assert modes, "no forward pass happened"
    assert {name for name, training in modes if training} == {"Dropout"}
    assert all(not training for name, training in modes if name != "Dropout")
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.net.training and not any(m.training for m in model.net.modules())
    assert out["mutual_information"].max() > 0  # the passes did differ


def test_module_modes_are_restored_even_from_train_mode():
    model = TinyModel()
    model.net.train()
    with mc_dropout_mode(model.net):
        assert [m.training for m in model.net] == [False, False, False, True, False]
    assert all(m.training for m in model.net.modules())


def test_pass_count_and_batching():
    model = TinyModel()
    calls: list[int] = []
    h = model.net.register_forward_hook(lambda mod, i, o: calls.append(len(i[0])))
    MCDropout(T=10, batch_size=16, max_rows=64).score(_ctx(model, n=37), "id")
    h.remove()
    # batches of 16, 16, 5 inputs; ⌊64/16⌋ = 4 passes per call for full batches, ⌊64/5⌋ = 12 ≥ T for the last.
    assert calls == [64, 64, 32, 64, 64, 32, 50]
    assert sum(calls) == 10 * 37


def test_outputs_definition_and_types():
    out = MCDropout(T=9).score(_ctx(TinyModel()), "id")
    n = 37
    for key in ("score", "confidence", "entropy", "mutual_information", "variation_ratio"):
        assert out[key].shape == (n,) and out[key].dtype == np.float64 and np.isfinite(out[key]).all()
    assert out["probs"].shape == (n, 3) and out["prediction"].dtype == np.int64
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(out["confidence"] + 1, out["probs"].max(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(out["prediction"], out["probs"].argmax(axis=1))
    np.testing.assert_allclose(out["entropy"], entropy(out["probs"]), atol=1e-12)
    np.testing.assert_array_equal(out["score"], -out["entropy"])
    assert (out["mutual_information"] <= out["entropy"] + 1e-12).all()


def test_probabilities_are_averaged_not_logits():
    # Dropout on the logits themselves: each pass is softmax(2·m⊙z) or similar; compare with the mean of softmaxes.
    class LogitDropout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(x)

    module = LogitDropout().eval()

    class M(Model):
        num_classes = 2

        @property
        def module(self):
            return module

    x = torch.tensor([[3.0, 0.0]])
    ctx = ArrayContext({"id": make_outputs(np.zeros((1, 2)))}, model=M(), inputs={"id": (x, torch.zeros(1))})
    out = MCDropout(T=400).score(ctx, "id")
    # Each pass keeps or drops z0 = 3 (scaled to 6) with prob 1/2: p0 ∈ {softmax([6,0])_0, 1/2}.
    expected_mean = 0.5 * (1 / (1 + math.exp(-6))) + 0.5 * 0.5
    logit_mean = 1 / (1 + math.exp(-3))  # softmax of the mean logit [3, 0]
    assert out["probs"][0, 0] == pytest.approx(expected_mean, abs=0.03)
    assert abs(out["probs"][0, 0] - logit_mean) > 0.1


def test_seed_determinism():
    model = TinyModel()
    a = MCDropout(T=5).score(_ctx(model, seed=3), "id")
    b = MCDropout(T=5).score(_ctx(model, seed=3), "id")
    c = MCDropout(T=5).score(_ctx(model, seed=4), "id")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["probs"], c["probs"])
    # each subset has its own stream: the same inputs under another subset name get other masks
    d = MCDropout(T=5).score(_ctx(model, seed=3), "ood/x")
    assert not np.array_equal(a["probs"], d["probs"])


def test_global_rng_is_untouched():
    ctx = _ctx(TinyModel())  # builds (and seeds) before the check
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    MCDropout(T=3).score(ctx, "id")
    np.testing.assert_array_equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("score", "column", "sign"),
    [("entropy", "entropy", -1), ("mutual_information", "mutual_information", -1), ("variation_ratio", "variation_ratio", -1)],
)
def test_score_choice(score, column, sign):
    out = MCDropout(T=6, score=score, confidence=score).score(_ctx(TinyModel()), "id")
    np.testing.assert_array_equal(out["score"], sign * out[column])
    np.testing.assert_array_equal(out["confidence"], sign * out[column])


def test_msp_choice_and_invalid_choice():
    out = MCDropout(T=6, score="msp").score(_ctx(TinyModel()), "id")
    np.testing.assert_allclose(out["score"] + 1, out["probs"].max(axis=1), rtol=1e-12)
    with pytest.raises(ValueError):
        MCDropout(score="energy")
    with pytest.raises(ValueError):
        MCDropout(T=0)


def test_model_without_dropout_module_is_an_error():
    with pytest.raises(ValueError, match="dropout"):
        MCDropout(T=2).score(_ctx(TinyModel(with_dropout=False)), "id")
