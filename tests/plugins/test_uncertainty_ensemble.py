"""Deep Ensembles (Lakshminarayanan et al. 2017) against docs/methods.md#deep_ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rbx_uncertainty.ensemble import DeepEnsemble
from robustbench_x.api import Model
from robustbench_x.testing import ArrayContext, make_outputs


class FixedMember(Model):
    """A 'network' that returns the same logits row for every input."""

    num_classes = 2

    def __init__(self, logits: list[float]) -> None:
        self.row = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        logits = self.row.expand(len(x), -1).clone()
        return logits, logits


class Family(FixedMember):
    """The evaluated model: member 0 is itself, the others are given; records the k it was asked for."""

    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__(rows[0])
        self.others = [FixedMember(r) for r in rows[1:]]
        self.asked: list[int] = []

    def members(self, k: int):
        self.asked.append(k)
        return ([self] + self.others)[:k]


def _ctx(model: Model, n: int = 3) -> ArrayContext:
    x = torch.zeros(n, 1)
    return ArrayContext({"id": make_outputs(np.zeros((n, 2)))}, model=model, inputs={"id": (x, torch.zeros(n))})


def h(q):
    return -sum(v * math.log(v) for v in q if v > 0)


def test_two_members_average_probabilities_not_logits():
    # member A: softmax([ln 9, 0]) = [0.9, 0.1]; member B: softmax([0, 0]) = [0.5, 0.5].
    model = Family([[math.log(9.0), 0.0], [0.0, 0.0]])
    out = DeepEnsemble(K=2).score(_ctx(model), "id")
    # float32 logits (ln 9 is rounded): agreement to float32 precision
    np.testing.assert_allclose(out["probs"], [[0.7, 0.3]] * 3, atol=1e-7)
    # averaging logits would give softmax([ln 3, 0]) = [0.75, 0.25]
    assert abs(out["probs"][0, 0] - 0.75) > 0.04
    assert out["confidence"] == pytest.approx([0.7 - 1] * 3)  # max p̄ − 1
    assert out["entropy"] == pytest.approx([h([0.7, 0.3])] * 3, rel=1e-6)
    assert out["mutual_information"] == pytest.approx([h([0.7, 0.3]) - (h([0.9, 0.1]) + h([0.5, 0.5])) / 2] * 3, rel=1e-5)
    np.testing.assert_array_equal(out["score"], -out["entropy"])
    np.testing.assert_array_equal(out["prediction"], [0, 0, 0])
    assert out["variation_ratio"] == pytest.approx([0.0] * 3)  # both members vote class 0
    assert all(v.dtype == np.float64 for k, v in out.items() if k != "prediction")


def test_default_asks_five_members_once():
    model = Family([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [0.5, 0.0]])
    method = DeepEnsemble()
    assert method.K == 5
    ctx = _ctx(model)
    method.fit(ctx)
    a = method.score(ctx, "id")
    method.score(ctx, "id")
    assert model.asked == [5]  # members() may train networks: once per fit, not per subset
    probs = np.array([[math.exp(r[0]), math.exp(r[1])] for r in [[1, 0], [0, 1], [2, 0], [0, 0], [0.5, 0]]])
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(a["probs"][0], probs.mean(axis=0), atol=1e-7)


def test_wrong_member_count_is_an_error():
    model = Family([[1.0, 0.0], [0.0, 1.0]])  # can only give 2
    with pytest.raises(ValueError, match="members"):
        DeepEnsemble(K=3).fit(_ctx(model))


def test_score_choice():
    model = Family([[2.0, 0.0], [0.0, 2.0]])
    out = DeepEnsemble(K=2, score="mutual_information", confidence="variation_ratio").score(_ctx(model), "id")
    np.testing.assert_array_equal(out["score"], -out["mutual_information"])
    np.testing.assert_array_equal(out["confidence"], -out["variation_ratio"])
    assert out["variation_ratio"] == pytest.approx([0.5] * 3)
