"""HEAT building blocks on cases small enough to check by hand (``docs/methods.md#heat``).

Priors against scipy, the shared-weight residual MLP, the SGLD schedule and
projection, the contrastive-divergence loss, training, and the composition of
energies (standardisation + sum / max / min / soft β).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import rbx_heat
from rbx_heat.ebm import EnergySettings, ResidualMLP, cd_loss, polynomial_decay, prior_grad_fn, project, residual_input_grad, sgld, train_residual
from rbx_heat.method import HEAT, PRESETS, compose, for_data, official_steps, settings_for, standardisation_stats
from rbx_heat.priors import ELPrior, GMMPrior, fit_gmm
from robustbench_x.api import CAPABILITIES, METHOD_OUTPUTS, load_factory
from robustbench_x.registry import Registry


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _settings(**kw) -> EnergySettings:
    base = dict(energy="gmm", epochs=1, batch_size=8, steps=4, step_size=1e-2, noise=0.0, proposal="base_dist", l2_coef=1.0, lr=1e-3, temperature_prior=1.0)
    base.update(kw)
    return EnergySettings(**base)


# ----------------------------------------------------------------------------- composition


E = np.array([[1.0, 4.0], [3.0, 0.0], [5.0, 2.0]])
MEANS, STDS = [3.0, 2.0], [2.0, 2.0]  # standardised: [[-1, 1], [0, -1], [1, 0]]
L = math.log(math.e + 1 / math.e)  # log(e^1 + e^-1) = 1.1269280110...
L0 = math.log(1 + 1 / math.e)  # log(e^0 + e^-1) = 0.3132616875...
L1 = math.log(math.e + 1)  # log(e^1 + e^0) = 1.3132616875...


@pytest.mark.parametrize(
    "beta, expected",
    [
        (0, [0.0, -1.0, 1.0]),  # sum (default, product of experts)
        (math.inf, [1.0, 0.0, 1.0]),  # max
        ("inf", [1.0, 0.0, 1.0]),
        (-math.inf, [-1.0, -1.0, 0.0]),  # min
        ("-inf", [-1.0, -1.0, 0.0]),
        (1.0, [L, L0, L1]),  # logsumexp(Ē)
        (-1.0, [-L, -L1, -L0]),  # −logsumexp(−Ē)
        (2.0, [math.log(math.exp(-2) + math.exp(2)) / 2, math.log(1 + math.exp(-2)) / 2, math.log(math.exp(2) + 1) / 2]),
    ],
)
def test_compose_on_hand_values(beta, expected):
    np.testing.assert_allclose(compose(E, MEANS, STDS, beta), expected, rtol=0, atol=1e-12)


def test_compose_soft_beta_limits_and_validation():
    big = compose(E, MEANS, STDS, 200.0)
    np.testing.assert_allclose(big, compose(E, MEANS, STDS, math.inf), atol=0.01)
    np.testing.assert_allclose(compose(E, MEANS, STDS, -200.0), compose(E, MEANS, STDS, -math.inf), atol=0.01)
    with pytest.raises(ValueError):
        compose(E, MEANS, [2.0, 0.0])
    with pytest.raises(ValueError):
        compose(E, [0.0], [1.0])
    with pytest.raises(ValueError):
        compose(E, MEANS, STDS, "sideways")


def test_standardisation_is_mean_and_unbiased_std_like_torch():
    x = np.array([0.5, 2.0, -1.0, 3.5, 0.0])
    m, s = standardisation_stats(x)
    t = torch.tensor(x)
    assert m == pytest.approx(t.mean().item())
    assert s == pytest.approx(t.std().item())  # torch default: unbiased (N − 1)
    assert s == pytest.approx(np.std(x, ddof=1))
    with pytest.raises(ValueError):
        standardisation_stats([1.0])


# ----------------------------------------------------------------------------- priors


def _toy_2d(rng):
    counts = (30, 50, 20)
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 4.0]])
    z = np.concatenate([rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]]) + c for n, c in zip(counts, centres)])
    y = np.repeat(np.arange(3), counts)
    return z, y, counts


def test_gmm_energy_equals_scipy_mixture_density():
    rng = np.random.default_rng(0)
    z, y, counts = _toy_2d(rng)
    state = fit_gmm(z, y)
    # Independent reference: class means, np.cov(bias=True) of class-centred features + 1e-12 I, π = N_c/N.
    means = np.stack([z[y == c].mean(0) for c in range(3)])
    centred = np.concatenate([z[y == c] - means[c] for c in range(3)])
    cov = np.cov(centred.T, bias=True) + 1e-12 * np.eye(2)
    pi = np.array(counts) / sum(counts)
    queries = np.concatenate([z[:5], rng.normal(scale=4.0, size=(7, 2))])
    ref = -logsumexp(np.stack([np.log(pi[c]) + multivariate_normal(means[c], cov).logpdf(queries) for c in range(3)], axis=1), axis=1)
    prior = GMMPrior(state["means"], state["scale_tril"], state["log_weights"])
    got = prior.energy(torch.as_tensor(queries)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.exp(state["log_weights"]), pi)
    np.testing.assert_allclose(state["scale_tril"] @ state["scale_tril"].T, cov, atol=1e-12)


def test_gmm_energy_gradient_and_sampling():
    rng = np.random.default_rng(1)
    z, y, counts = _toy_2d(rng)
    state = fit_gmm(z, y)
    prior = GMMPrior(state["means"], state["scale_tril"], state["log_weights"])
    q = torch.tensor(rng.normal(size=(4, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: prior.energy(t), (q,))
    draws = prior.sample(40000, torch.Generator().manual_seed(0)).numpy()
    # Mixture moments: mean Σ π μ; covariance Σ + Σ π (μ − m)(μ − m)ᵀ.
    pi = np.array(counts) / sum(counts)
    m = pi @ state["means"]
    cov = state["scale_tril"] @ state["scale_tril"].T
    cov_mix = cov + sum(pi[c] * np.outer(state["means"][c] - m, state["means"][c] - m) for c in range(3))
    np.testing.assert_allclose(draws.mean(0), m, atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), cov_mix, atol=0.1)


def test_gmm_jitter_is_raised_and_logged_when_cholesky_fails():
    # Rank-1 covariance with entries ~1e7: 1e-12 is below float64 resolution there, so Σ + 1e-12 I stays singular.
    z = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]) * 1e4
    y = np.array([0, 0, 1, 1])
    logs: list[str] = []
    state = fit_gmm(z, y, log=logs.append)
    assert state["jitter"][0] > 1e-12 and logs and "jitter" in logs[0]


def test_el_energy_is_minus_logsumexp_of_the_head():
    rng = np.random.default_rng(2)
    w, b, h = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(6, 3))
    got = ELPrior(w, b).energy(torch.as_tensor(h)).numpy()
    np.testing.assert_allclose(got, -logsumexp(h @ w.T + b, axis=1), rtol=1e-12)


def _autograd_input_grad(energy, z):
    x = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x).sum(), [x])
    return grad


def test_closed_form_prior_gradients_equal_autograd():
    rng = np.random.default_rng(3)
    z, y, _ = _toy_2d(rng)
    state = fit_gmm(z, y)
    gmm = GMMPrior(state["means"], state["scale_tril"], state["log_weights"])
    q = torch.as_tensor(rng.normal(scale=3.0, size=(9, 2)))
    torch.testing.assert_close(gmm.energy_grad(q), _autograd_input_grad(gmm.energy, q), rtol=1e-10, atol=1e-12)
    el = ELPrior(rng.normal(size=(4, 3)), rng.normal(size=4))
    h = torch.as_tensor(rng.normal(size=(6, 3)))
    torch.testing.assert_close(el.energy_grad(h), _autograd_input_grad(el.energy, h), rtol=1e-10, atol=1e-12)
    # float32 input: the gradient comes back in the input's dtype.
    assert prior_grad_fn(el)(h.to(torch.float32)).dtype == torch.float32


def test_hand_written_residual_input_gradient_equals_autograd():
    torch.manual_seed(0)
    net = ResidualMLP(input_dim=5, width=16, n_hidden=3, temperature=2.0)
    z = torch.randn(11, 5)
    z[0] = 0.0  # pre-activations equal to the bias: exercises both LeakyReLU branches
    torch.testing.assert_close(residual_input_grad(net, z), _autograd_input_grad(net, z), rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())  # SGLD leaves the parameters untouched


# ----------------------------------------------------------------------------- residual MLP


def test_residual_mlp_has_exactly_one_shared_hidden_linear():
    net = ResidualMLP(input_dim=5, width=16, n_hidden=4)
    linears = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6  # input, 4 applications of the hidden layer, output
    unique = {id(m) for m in linears}
    assert len(unique) == 3
    hidden = net.mlp[2]
    assert all(net.mlp[i] is hidden for i in (2, 4, 6, 8))
    assert sum(p.numel() for p in net.parameters()) == (5 * 16 + 16) + (16 * 16 + 16) + (16 + 1)
    # The forward pass applies the same weights four times.
    z = torch.randn(3, 5)
    a = torch.nn.functional.leaky_relu(net.mlp[0](z), 0.2)
    for _ in range(4):
        a = torch.nn.functional.leaky_relu(hidden(a), 0.2)
    torch.testing.assert_close(net(z), net.mlp[10](a).view(-1))


def test_residual_mlp_loads_the_official_state_dict_layout_and_round_trips():
    net = ResidualMLP(input_dim=5, width=8, n_hidden=4)
    official = {f"mlp.{i}.{k}": v for i, m in enumerate(net.mlp) if isinstance(m, torch.nn.Linear) for k, v in m.state_dict().items()}
    assert set(official) == {f"mlp.{i}.{k}" for i in (0, 2, 4, 6, 8, 10) for k in ("weight", "bias")}
    other = ResidualMLP(input_dim=5, width=8, n_hidden=4)
    other.load_state_dict(official)  # the heatood checkpoint keys (ebm.mlp.*) minus the "ebm." prefix
    z = torch.randn(4, 5)
    torch.testing.assert_close(other(z), net(z))
    exported = net.export("mlp/")
    assert set(exported) == {"mlp/mlp.0.weight", "mlp/mlp.0.bias", "mlp/mlp.2.weight", "mlp/mlp.2.bias", "mlp/mlp.10.weight", "mlp/mlp.10.bias"}
    third = ResidualMLP(input_dim=5, width=8, n_hidden=4).load(exported, "mlp/")
    torch.testing.assert_close(third(z), net(z))


# ----------------------------------------------------------------------------- SGLD


def test_polynomial_decay_values():
    k, start = 40, 1e-4
    end = 0.1 * start
    assert polynomial_decay(0, k, start, end) == pytest.approx(1e-4)
    assert polynomial_decay(20, k, start, end) == pytest.approx(0.9e-4 * 0.25 + 1e-5)  # 3.25e-5
    assert polynomial_decay(39, k, start, end) == pytest.approx(0.9e-4 / 1600 + 1e-5)
    assert polynomial_decay(40, k, start, end) == pytest.approx(end)
    assert polynomial_decay(0, 1, 5e-3, 5e-4) == pytest.approx(5e-3)  # GMM-std: one step at the start value


class _LinearPrior:
    """E(z) = a·z: constant gradient a, so each SGLD step moves z by −η_t a / T_prior."""

    normalize = False
    has_sample = False

    def __init__(self, a):
        self.a = torch.as_tensor(a, dtype=torch.float64)

    def energy(self, z):
        return z.to(torch.float64) @ self.a


def _zero_net(d):
    net = ResidualMLP(d, width=4, n_hidden=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def test_sgld_step_sizes_follow_the_schedule_on_the_full_hybrid_energy():
    d, k, eta0, tp = 3, 7, 0.05, 4.0
    a = np.array([1.0, -2.0, 0.5])
    s = _settings(steps=k, step_size=eta0, noise=0.0, sgld_relu=False, temperature_prior=tp)
    z0 = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]])
    out, init = sgld(_zero_net(d), _LinearPrior(a), z0, s, torch.Generator().manual_seed(0))
    total = sum(polynomial_decay(t, k, eta0, 0.1 * eta0) for t in range(k))
    expected = z0.numpy() - total * a / tp
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    torch.testing.assert_close(init, z0)


def test_sgld_noise_follows_the_schedule_independently_of_the_step_size():
    d, k, sigma0, n = 2, 5, 0.3, 20000
    s = _settings(steps=k, step_size=123.0, noise=sigma0, sgld_relu=False)
    z0 = torch.zeros(n, d)
    out, _ = sgld(_zero_net(d), _LinearPrior(np.zeros(d)), z0, s, torch.Generator().manual_seed(1))
    var = sum(polynomial_decay(t, k, sigma0, 0.1 * sigma0) ** 2 for t in range(k))
    assert out.numpy().var(axis=0) == pytest.approx([var, var], rel=0.05)


def test_sgld_projects_relu_then_l2_when_the_prior_normalises():
    class _Sphere(_LinearPrior):
        normalize = True

    s = _settings(steps=3, step_size=0.1, noise=0.1)
    z0 = torch.tensor([[-1.0, 2.0, 2.0], [3.0, -4.0, 0.0]])
    out, init = sgld(_zero_net(3), _Sphere(np.ones(3)), z0, s, torch.Generator().manual_seed(2))
    torch.testing.assert_close(init, project(z0, True, True))
    torch.testing.assert_close(init[0], torch.tensor([0.0, 2.0, 2.0]) / math.sqrt(8))
    assert (out >= 0).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_cd_loss_is_on_the_residual_energy_only():
    s = _settings(l2_coef=0.5, eps_data=0.0)

    def net(z):
        return z.sum(dim=1)

    real = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # E_res = 2, 2
    neg = torch.tensor([[0.0, 1.0], [3.0, 3.0], [-1.0, 0.0], [0.0, 0.0]])  # E_res = 1, 6, -1, 0
    loss, logs = cd_loss(net, real, neg, s, torch.Generator().manual_seed(0))
    # mean(E⁺) − mean(E⁻) + λ (mean E⁺² + mean E⁻²) = 2 − 1.5 + 0.5 (4 + 38/4)
    assert loss.item() == pytest.approx(2 - 1.5 + 0.5 * (4 + 9.5))
    assert logs["cd"] == pytest.approx(0.5)


def test_training_makes_the_residual_energy_lower_on_real_features_than_on_proposals():
    rng = np.random.default_rng(3)
    d = 8
    directions = np.abs(rng.normal(size=(2, d)))
    real = np.concatenate([directions[i] + 0.05 * rng.normal(size=(128, d)) for i in range(2)])
    real = torch.nn.functional.normalize(torch.relu(torch.as_tensor(real, dtype=torch.float32)), dim=1)
    labels = np.repeat([0, 1], 128)
    state = fit_gmm(real.double().numpy(), labels)
    prior = GMMPrior(state["means"], state["scale_tril"], state["log_weights"])
    s = _settings(epochs=25, batch_size=64, steps=5, step_size=1e-3, noise=1e-3, proposal="random_normal", l2_coef=0.1, lr=1e-3, temperature_prior=1e3, width=32, n_hidden=2, milestones=(100,))
    net, history = train_residual(real, prior, s, seed=0)
    assert len(history) == 25 * 4
    gen = torch.Generator().manual_seed(123)
    proposals = project(torch.randn(256, d, generator=gen), True, True)
    with torch.no_grad():
        e_real, e_prop = net(real).mean().item(), net(proposals).mean().item()
    assert e_real < e_prop - 0.05, (e_real, e_prop)
    # Same seed, same network.
    again, _ = train_residual(real, prior, s, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(again(real), net(real))


# ----------------------------------------------------------------------------- settings and specs


def test_presets_are_the_official_cifar10_script_values():
    gmm, std, el = (settings_for(e, "cifar10", "paper") for e in ("gmm", "gmm_std", "el"))
    assert (gmm.epochs, gmm.batch_size, gmm.steps, gmm.step_size, gmm.noise, gmm.proposal, gmm.l2_coef, gmm.lr, gmm.temperature_prior) == (
        20, 1024, 40, 1e-4, 5e-3, "base_dist", 10.0, 1e-5, 1e3
    )
    assert std.steps == 1 and std.temperature_prior == 1e3 and std.proposal == "base_dist"
    assert (el.epochs, el.batch_size, el.steps, el.step_size, el.noise, el.proposal, el.l2_coef, el.lr, el.temperature_prior) == (
        20, 256, 50, 1e-1, 1e-1, "random_normal", 0.1, 1e-5, 1.0
    )
    for s in (gmm, std, el):
        assert (s.width, s.n_hidden, s.temperature, s.milestones, s.gamma, s.eps_data, s.end_factor) == (1024, 4, 1.0, (10,), 0.1, 1e-4, 0.1)
    assert set(PRESETS) == {"cifar10", "cifar100"}


def test_official_step_counts_are_the_scripts_epochs_times_full_batches():
    # scripts/cifar10.sh: 20 epochs; batch 1024 (GMM, GMM-std) or 256 (EL); 50,000 CIFAR-10 images, drop_last.
    assert official_steps("gmm") == 20 * 48 == 960
    assert official_steps("gmm_std") == 960
    assert official_steps("el") == 20 * 195 == 3900
    assert official_steps("el", "cifar100") == 8 * 48  # scripts/cifar100.sh: EL 8 epochs, batch 1024


@pytest.mark.parametrize("energy", ["gmm", "gmm_std", "el"])
@pytest.mark.parametrize("n", [540, 1000, 50_000, 200_000])
def test_cpu_budget_keeps_at_least_the_official_optimiser_steps_for_any_data_size(energy, n):
    s = for_data(settings_for(energy), n)
    steps = s.epochs * (n // s.batch_size)
    assert steps >= official_steps(energy)
    assert steps - (n // s.batch_size) < official_steps(energy) or s.epochs == PRESETS["cifar10"][energy]["epochs"]  # no epoch more than needed
    assert s.epochs >= PRESETS["cifar10"][energy]["epochs"] and s.milestones == (s.epochs // 2,)


def test_cpu_budget_changes_only_width_batch_lr_and_the_epochs_needed_for_the_step_count():
    for e in ("gmm", "gmm_std", "el"):
        paper, cpu = settings_for(e, budget="paper"), settings_for(e, budget="cpu")
        assert (cpu.width, cpu.batch_size, cpu.min_steps) == (128, min(paper.batch_size, 64), official_steps(e))
        assert cpu.lr == pytest.approx(paper.lr * 1024 / 128)  # width-compensated learning rate
        same = {k: v for k, v in paper.key().items() if k not in {"width", "batch_size", "lr", "min_steps"}}
        assert same == {k: v for k, v in cpu.key().items() if k in same}
        assert for_data(paper, 540) == paper  # the paper budget trains for the script's epochs, whatever the data
    assert settings_for("gmm", width=256).lr == pytest.approx(1e-5 * 4)  # the scaling follows an overridden width
    explicit = for_data(settings_for("gmm", epochs=3), 540)
    assert (explicit.epochs, explicit.min_steps, explicit.milestones) == (3, 0, (1,))  # an explicit epoch count wins
    with pytest.raises(ValueError):
        settings_for("gmm", budget="gpu")
    with pytest.raises(ValueError):
        HEAT(energies=["gmm", "knn"])


def test_plugin_import_is_cheap_and_specs_resolve():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "plugins"), env.get("PYTHONPATH", "")])
    code = (
        "import rbx_heat, sys; rbx_heat.rbx_methods(); "
        "bad = [m for m in ('torch', 'numpy', 'scipy') if m in sys.modules] + [m for m in sys.modules if m.startswith('rbx_heat.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    specs = {s.name: s for s in rbx_heat.rbx_methods()}
    assert set(specs) == {"heat", "heat-gmm", "heat-el", "heat-gmm-std"}
    assert specs["heat"].params["energies"] == ["gmm", "el", "gmm_std"] and specs["heat"].params["beta"] == 0.0
    for spec in specs.values():
        assert spec.requires == {"features", "feature_maps", "linear_head", "train_split"} <= set(CAPABILITIES)
        assert spec.outputs == {"score", "confidence"} <= set(METHOD_OUTPUTS)
        method = load_factory(spec.factory)(**spec.params)
        assert isinstance(method, HEAT)
    registry = Registry()
    registry.register_object(rbx_heat, "heat")
    assert registry.names("methods", "heat*") == ["heat", "heat-el", "heat-gmm", "heat-gmm-std"]
