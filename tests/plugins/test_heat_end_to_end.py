"""HEAT on the embedded default (built-in CNN + embedded digits) through ModelContext.

The CNN trains once per session into a temporary ``RBX_CACHE_DIR`` shared by
the ``test_gradients_*`` files. The fits here run :data:`EPOCHS` epochs (the
default cpu budget runs the official script's step count, about two minutes of CPU:
its step arithmetic is checked in ``test_heat.py``); the fit is run twice to
check determinism with the same seed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rbx_heat.method import HEAT, STANDARDISE_BATCH, compose, energy_input, energy_values, extract_features
from robustbench_x.testing import ModelContext

SUBSETS = ("id", "ood/photos")
EPOCHS = 4


@pytest.fixture(scope="module")
def fitted(embedded_model):
    model, dataset = embedded_model
    ctx = ModelContext(model, dataset, seed=0)
    method = HEAT(epochs=EPOCHS)  # the registered default but for the epochs: GMM + EL + GMM-std, β = 0, cpu budget
    start = time.perf_counter()
    method.fit(ctx)
    elapsed = time.perf_counter() - start
    scores = {s: method.score(ctx, s) for s in SUBSETS}
    return ctx, method, scores, elapsed


def test_fits_and_scores_are_finite(fitted):
    ctx, method, scores, elapsed = fitted
    assert ctx.builds == 3  # one fitted state per energy
    for subset, out in scores.items():
        n = len(ctx.outputs(subset))
        assert set(out) == {"score", "confidence"}
        assert out["score"].shape == (n,) and out["score"].dtype == np.float64
        assert np.isfinite(out["score"]).all(), subset
        np.testing.assert_array_equal(out["score"], out["confidence"])
    print(f"HEAT cpu-budget fit: {elapsed:.1f} s")


def test_steps_and_residual_share_are_recorded_per_energy(fitted):
    ctx, method, _, _ = fitted
    n = len(ctx.outputs("train"))
    for e in method.energies:
        assert ctx.diagnostics[f"steps/{e}"] == EPOCHS * (n // 64) == int(method.states[e]["train/steps"][0])
        feats = extract_features(ctx, "id")
        values = energy_values(e, method.states[e], method.settings[e], energy_input(e, feats))
        expected = values["res"].std() / (values["prior"] / method.settings[e].temperature_prior).std()
        assert ctx.diagnostics[f"residual_share/{e}"] == pytest.approx(expected, rel=1e-9) and expected > 0


def test_state_is_a_dict_of_numpy_arrays_with_gmm_mlp_and_standardisation(fitted):
    ctx, method, _, _ = fitted
    d = ctx.outputs("train").features.shape[1]  # the built-in model's feature width
    for energy, state in method.states.items():
        assert all(isinstance(v, np.ndarray) for v in state.values())
        assert {"standardise/mean", "standardise/std", "mlp/mlp.0.weight", "mlp/mlp.2.weight", "mlp/mlp.10.weight"} <= set(state)
        assert "mlp/mlp.4.weight" not in state  # the shared hidden layer is stored once
        assert state["mlp/mlp.0.weight"].shape == (128, d)  # cpu budget width 128
    assert {"gmm/means", "gmm/scale_tril", "gmm/log_weights"} <= set(method.states["gmm"])
    assert method.states["gmm"]["gmm/means"].shape == (6, d)
    assert {"el/weight", "el/bias"} <= set(method.states["el"])


def test_score_is_minus_the_standardised_sum_of_the_three_energies(fitted):
    ctx, method, scores, _ = fitted
    feats = extract_features(ctx, "train")
    order = np.random.default_rng(ctx.seed).permutation(len(feats["labels"]))[:STANDARDISE_BATCH]
    means, stds = [], []
    for e in method.energies:
        total = energy_values(e, method.states[e], method.settings[e], energy_input(e, feats))["total"][order]
        assert method.states[e]["standardise/mean"][0] == pytest.approx(total.mean(), rel=1e-9)
        assert method.states[e]["standardise/std"][0] == pytest.approx(total.std(ddof=1), rel=1e-9)
        means.append(total.mean())
        stds.append(total.std(ddof=1))
    energies = method.energy_matrix(ctx, "id")
    np.testing.assert_allclose(scores["id"]["score"], -compose(energies, means, stds, 0.0), rtol=1e-9)
    np.testing.assert_allclose(scores["id"]["score"], -(((energies - means) / stds).sum(axis=1)), rtol=1e-9)


def test_features_are_the_spatial_mean_and_unbiased_std_of_the_feature_maps(fitted):
    ctx, _, _, _ = fitted
    feats = extract_features(ctx, "id")
    np.testing.assert_allclose(feats["avg"], ctx.outputs("id").features, rtol=1e-5, atol=1e-6)
    x, _ = next(iter(ctx.loader("id", batch_size=4)))
    with torch.no_grad():
        maps = ctx.model.feature_maps(x).double()
    n = maps.shape[2] * maps.shape[3]
    flat = maps.flatten(2)
    std = torch.sqrt(((flat - flat.mean(2, keepdim=True)) ** 2).sum(2) / (n - 1))
    np.testing.assert_allclose(feats["std"][:4], std.numpy(), rtol=1e-5, atol=1e-7)


def test_deterministic_with_the_same_seed(fitted, embedded_model):
    _, _, scores, _ = fitted
    model, dataset = embedded_model
    ctx = ModelContext(model, dataset, seed=0)
    again = HEAT(epochs=EPOCHS)
    again.fit(ctx)
    for subset in SUBSETS:
        np.testing.assert_array_equal(again.score(ctx, subset)["score"], scores[subset]["score"])


def test_single_energy_is_the_raw_hybrid_energy(fitted, embedded_model):
    ctx, method, _, _ = fitted
    single = HEAT(energies=["gmm_std"], epochs=EPOCHS)
    single.fit(ctx)
    # Same seed and settings: the GMM-std energy of the composition is reproduced exactly.
    for key, value in method.states["gmm_std"].items():
        np.testing.assert_array_equal(single.states["gmm_std"][key], value)
    out = single.score(ctx, "ood/photos")["score"]
    np.testing.assert_allclose(out, -method.energy_matrix(ctx, "ood/photos")[:, 2], rtol=1e-12)
