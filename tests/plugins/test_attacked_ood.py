"""The ``ood-attacked`` suite: OOD detectors under PGD.

On a small linear model (pixels → linear features → linear head) with exact
[0, 1] inputs: the attack stays in the ε-ball and the image box; attacking a
method by its own score lowers ID scores, raises OOD scores and cannot raise
AUROC; each torch rewrite of a method's score equals the method's own numpy
score (the attack targets the real method); a transfer-attacked method is
labelled so and scored by itself on the attacked inputs (through its outputs,
or its loader for ODIN); same seed, same result.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest
import torch

from rbx_attacked_ood import DEFAULT_METHODS, SUITES
from rbx_attacked_ood.attack import THREAT
from rbx_attacked_ood.evaluate import evaluate
from rbx_attacked_ood.objectives import OBJECTIVES, objective_for
from robustbench_x.api import Dataset, Method, Model, load_factory
from robustbench_x.errors import JobError
from robustbench_x.evaluation import ArrayStore, Evaluation
from robustbench_x.metrics.ood import auroc
from robustbench_x.testing.doubles import ArrayContext, make_outputs

MEAN, STD = 0.5, 0.25
SUITE = SUITES[0]
OWN = sorted(name for name, objective in OBJECTIVES.items() if objective.kind == "own score")


def _to_input(image, gamma=1.0):
    """PIL image → (1, 3, 3): grey levels resized to 3×3, ``** gamma``, then ``(p − 0.5) / 0.25``."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((3, 3), Image.BILINEAR), dtype=np.float32) / 255.0
    return (torch.from_numpy(grey**gamma)[None] - MEAN) / STD


class LinearModel(Model):
    """pixels (N, 1, 3, 3) → features W1·p + b1 (8) → logits (3); its ``transform`` resizes, then
    normalises (p − 0.5)/0.25, which the attack reads off the transform."""

    name = "linear"
    provides = frozenset({"logits", "features", "linear_head", "input_grad"})
    input_std = (STD,)  # ODIN's step scale (the transfer-attack test)

    def __init__(self, provides=None) -> None:
        g = torch.Generator().manual_seed(0)
        self.extractor = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 8))
        self.fc = torch.nn.Linear(8, 3)
        with torch.no_grad():
            for p in [*self.extractor.parameters(), *self.fc.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g))
        self.num_classes = 3
        self.gamma = 1.0
        if provides is not None:
            self.provides = frozenset(provides)

    def transform(self):
        return functools.partial(_to_input, gamma=self.gamma)

    @property
    def module(self):
        return torch.nn.Sequential(self.extractor, self.fc)

    def feature_extractor(self):
        return self.extractor

    def head(self, features):
        return self.fc(features)

    @torch.no_grad()
    def forward(self, x):
        h = self.extractor(x)
        return self.fc(h), h

    def linear_head(self):
        return self.fc.weight.detach().numpy().copy(), self.fc.bias.detach().numpy().copy()


class Subsets(Dataset):
    name = "toy"

    def __init__(self, names):
        self._names = list(names)

    def subsets(self):
        return list(self._names)


def _pixels(rng, n, kind):
    if kind == "ood":
        return rng.uniform(0, 1, size=(n, 1, 3, 3))
    protos = np.array([np.eye(3), np.fliplr(np.eye(3)), np.full((3, 3), 0.5)])
    labels = rng.integers(0, 3, n)
    return np.clip(protos[labels][:, None] + rng.normal(0, 0.1, (n, 1, 3, 3)), 0, 1), labels


def make_context(model=None, seed=0):
    """Train / val / id / ood subsets of the toy problem, outputs from the model itself."""
    model = model or LinearModel()
    rng = np.random.default_rng(0)
    outputs, inputs = {}, {}
    for subset, n in (("train", 120), ("val", 60), ("id", 40), ("ood/noise", 40)):
        if subset.startswith("ood"):
            pixels, labels = _pixels(rng, n, "ood"), np.full(n, -1)
        else:
            pixels, labels = _pixels(rng, n, "id")
        x = ((torch.as_tensor(pixels, dtype=torch.float32)) - MEAN) / STD
        logits, features = model.forward(x)
        y = torch.as_tensor(labels, dtype=torch.long)
        outputs[subset] = make_outputs(logits.numpy(), features.numpy(), labels, prefix=f"{subset}/")
        inputs[subset] = (x, y)
    return ArrayContext(outputs, model=model, inputs=inputs, dataset=Subsets(outputs), seed=seed)


def build_method(name):
    from robustbench_x.registry import get_registry

    spec = get_registry().get("methods", name)
    return load_factory(spec.factory)(**spec.params)


def run(name, ctx, tmp_path, method=None):
    method = method or build_method(name)
    method.fit(ctx)
    specs = [_metric(m) for m in SUITE.metrics]
    store = ArrayStore(tmp_path / name / str(ctx.seed))
    metrics, table = evaluate(Evaluation(method=method, ctx=ctx, suite=SUITE, metric_specs=specs, method_name=name, arrays=store))
    values = {(m.subset, m.metric): m.value for m in metrics}
    return values, table, store


def _metric(name):
    from robustbench_x.registry import get_registry

    return get_registry().get("metrics", name)


def _clean_pixels(ctx, table):
    order = {sid: i for subset in ("id", "ood/noise") for i, sid in enumerate(ctx.outputs(subset).sample_ids)}
    parts = [ctx._inputs[s][0] * STD + MEAN for s in ("id", "ood/noise")]
    return torch.cat(parts).numpy(), order


def test_attack_stays_in_the_eps_ball_and_the_image_box(tmp_path):
    ctx = make_context()
    _, table, store = run("msp", ctx, tmp_path)
    adv, ids = store.load("adversarial_pixels")
    assert adv.dtype == np.float32 and list(ids) == list(table["sample_id"])
    clean, _ = _clean_pixels(ctx, table)
    assert np.abs(adv - clean).max() <= THREAT.eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert (table["perturbation_norm"] <= THREAT.eps + 1e-6).all() and table["perturbation_norm"].max() > 0.5 * THREAT.eps


@pytest.mark.parametrize("name", ["msp", "energy", "mahalanobis"])
def test_own_score_attack_lowers_id_raises_ood_and_never_helps_auroc(tmp_path, name):
    values, table, _ = run(name, make_context(), tmp_path)
    is_id = table["subset"] == "id"
    clean, attacked = table["score"], table["score_attacked"]
    assert attacked[is_id].mean() < clean[is_id].mean() and (attacked[is_id] <= clean[is_id] + 1e-9).mean() > 0.9
    assert attacked[~is_id].mean() > clean[~is_id].mean() and (attacked[~is_id] >= clean[~is_id] - 1e-9).mean() > 0.9
    subset = "ood/noise"
    assert values[(subset, "auroc")] == pytest.approx(auroc(score_id=clean[is_id], score_ood=clean[~is_id]))
    assert values[(subset, "auroc-attacked")] == pytest.approx(auroc(score_id=attacked[is_id], score_ood=attacked[~is_id]))
    assert values[(subset, "auroc-id-attacked")] == pytest.approx(auroc(score_id=attacked[is_id], score_ood=clean[~is_id]))
    for pairing in ("auroc-id-attacked", "auroc-ood-attacked", "auroc-attacked"):
        assert values[(subset, pairing)] <= values[(subset, "auroc")]
    assert values[(subset, "auroc-attacked")] < values[(subset, "auroc")]  # the attack does something
    assert values[(subset, "fpr@95tpr-attacked")] >= values[(subset, "fpr@95tpr")]


@pytest.mark.parametrize("name", OWN)
def test_torch_score_is_the_methods_own_score(name):
    """The attack climbs exactly the method's score: its torch form equals ``method.score`` on the same outputs."""
    ctx = make_context()
    method = build_method(name)
    method.fit(ctx)
    score_t, loss_t = OBJECTIVES[name].build(method, ctx)
    for subset in ("id", "ood/noise"):
        out = ctx.outputs(subset)
        z = torch.as_tensor(out.logits, dtype=torch.float64)
        h = torch.as_tensor(out.features, dtype=torch.float64)
        expected = method.score(ctx, subset)["score"]
        np.testing.assert_allclose(score_t(z, h).numpy(), expected, rtol=1e-5, atol=1e-5)
        # PGD climbs an increasing transform of the score: the same order
        loss = loss_t(z, h).numpy()
        order = np.argsort(expected, kind="stable")
        assert (np.diff(loss[order]) >= -1e-9).all()


def test_same_seed_same_result_other_seed_other_start(tmp_path):
    _, first, store_a = run("energy", make_context(seed=0), tmp_path / "a")
    _, again, store_b = run("energy", make_context(seed=0), tmp_path / "b")
    _, other, _ = run("energy", make_context(seed=1), tmp_path / "c")
    np.testing.assert_array_equal(first["score_attacked"], again["score_attacked"])
    np.testing.assert_array_equal(store_a.load("adversarial_pixels")[0], store_b.load("adversarial_pixels")[0])
    assert not np.array_equal(first["score_attacked"], other["score_attacked"])


class SquaredLogits(Method):
    """A detector the suite knows nothing about: score = −Σ z², numpy only."""

    def score(self, ctx, subset):
        z = np.asarray(ctx.outputs(subset).logits, dtype=np.float64)
        return {"score": -(z**2).sum(axis=1)}


def test_unknown_method_is_transfer_attacked_and_scored_by_itself(tmp_path):
    ctx = make_context()
    assert objective_for("squared-logits").kind == "transfer"
    _, table, store = run("squared-logits", ctx, tmp_path, method=SquaredLogits())
    assert set(table["objective"]) == {"transfer"}
    adv, _ = store.load("adversarial_pixels")
    z, _ = ctx.model.forward((torch.as_tensor(adv) - MEAN) / STD)
    np.testing.assert_allclose(table["score_attacked"], -(z.double() ** 2).sum(dim=1).numpy(), rtol=1e-6)
    assert not np.allclose(table["score_attacked"], table["score"])


def test_odin_is_transfer_attacked_through_its_own_input_step(tmp_path):
    """ODIN reads its inputs from the loader: it must see the attacked ones."""
    ctx = make_context()
    assert objective_for("odin").kind == "transfer" and "transfer" in objective_for("odin").how
    values, table, store = run("odin", ctx, tmp_path)
    adv, _ = store.load("adversarial_pixels")
    x_adv = (torch.as_tensor(adv) - MEAN) / STD
    n_id = int((table["subset"] == "id").sum())
    logits, features = ctx.model.forward(x_adv)
    swapped = ArrayContext(
        {"id": make_outputs(logits[:n_id].numpy(), features[:n_id].numpy())}, model=ctx.model, inputs={"id": (x_adv[:n_id], torch.zeros(n_id, dtype=torch.long))}
    )
    expected = build_method("odin").score(swapped, "id")["score"]
    np.testing.assert_allclose(table["score_attacked"][:n_id], expected, rtol=1e-6)
    assert values[("ood/noise", "auroc-attacked")] <= values[("ood/noise", "auroc")]


def test_vision_language_model_is_not_attacked(tmp_path):
    ctx = make_context(LinearModel(provides={"logits", "features", "input_grad", "vlm"}))
    with pytest.raises(JobError, match="not attacked: on a vision-language model"):
        run("msp", ctx, tmp_path)


def test_model_whose_transform_is_not_affine_is_refused_before_attacking(tmp_path, monkeypatch):
    import rbx_attacked_ood.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "attack_score", lambda *a, **k: pytest.fail("attacked a model it should refuse"))
    model = LinearModel()
    model.gamma = 2.2  # ε-balls in pixel units cannot be mapped through a gamma
    with pytest.raises(JobError, match=r"model 'linear': the model's transform is not an affine map of pixel values"):
        run("msp", make_context(model), tmp_path)


def test_default_run_plans_the_declared_methods_and_methods_overrides_it():
    from robustbench_x.config import Config
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry()
    plan = make_plan(registry, Config(), "ood-attacked")
    assert {j.method for j in plan.jobs} == set(DEFAULT_METHODS)
    assert {j.method for j in make_plan(registry, Config(), "ood-attacked", methods=["trust_score"]).jobs} == {"trust_score"}
    assert len({j.method for j in make_plan(registry, Config(), "ood").jobs}) > len(DEFAULT_METHODS)


@pytest.mark.slow
def test_suite_runs_on_the_embedded_default_and_renders_its_page(cli, tmp_path):
    out, pages = tmp_path / "store", tmp_path / "pages"
    result = cli("--quiet", "run", "--suite", "ood-attacked", "--methods", "msp,odin", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.out)["ok"] == 2
    assert cli("leaderboard", str(out), "--out", str(pages)).code == 0
    page = (pages / "ood-attacked.md").read_text()
    assert "Threat model: **PGD-10, ℓ∞ ε = 0.05" in page and "AUROC both attacked" in page
    assert re.search(r"\| msp(\[\^\d+\])? \| own score \|", page) and re.search(r"\| odin(\[\^\d+\])? \| transfer \|", page)


def _write_job(out, method, rows, diagnostics=None, status="ok", error=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from robustbench_x.results import RESULT_SCHEMA, ResultStore

    base = dict(suite="ood-attacked", model="m", dataset="d", method=method, seed=0, config_hash=f"{method}-0", created_at=None,
                rbx_version="0.1.0", plugin="robustbench_x==0.1.0", params="{}", diagnostics=diagnostics, duration_s=0.0,
                model_fingerprint="mfp", dataset_fingerprint=None, status=status, error=error, higher_is_better=True, n=80,
                value=float("nan"), subset=None, metric=None)  # fmt: skip
    directory = ResultStore(out).job_dir("results", "ood-attacked", "m", "d", method)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{**base, **r} for r in rows], schema=RESULT_SCHEMA), directory / f"part-{method}-0.parquet")


def test_page_shows_the_threat_the_objectives_and_what_was_not_attacked(cli, tmp_path):
    out = tmp_path / "store"
    threat = json.dumps({"threat": THREAT.short})
    values = {"msp": {"auroc": 0.9, "auroc-attacked": 0.4}, "purview-final": {"auroc": 0.14, "auroc-attacked": 0.46},
              "mahalanobis": {"auroc": 0.5, "auroc-attacked": 1.0}}
    for method, metrics in values.items():
        _write_job(out, method, [{"subset": "ood/x", "metric": k, "value": v} for k, v in metrics.items()], diagnostics=threat)
    _write_job(out, "gallop", [{}], status="failed", error="method 'gallop' is not attacked: on a vision-language model …")
    assert cli("leaderboard", str(out), "--out", str(tmp_path / "pages")).code == 0
    page = (tmp_path / "pages" / "ood-attacked.md").read_text()
    assert f"Threat model: **{THREAT}**." in page
    msp = next(line for line in page.splitlines() if line.startswith("| msp") and "own score |" in line)
    assert "| 90.0 | – | – | 40.0 |" in msp
    purview = next(line for line in page.splitlines() if line.startswith("| purview-final") and "| 14.0 |" in line)
    mark = re.search(r"\| transfer(\[\^\d+\]) \|", purview).group(1)
    assert re.search(re.escape(mark) + r": AUROC rose under a transfer attack", page)
    # an own-score attack that backfired (seen on a tiny dataset) is marked as the attack failing, not left as a plain number
    maha = next(line for line in page.splitlines() if line.startswith("| mahalanobis") and "| 50.0 |" in line)
    mark = re.search(r"\| own score(\[\^\d+\]) \|", maha).group(1)
    assert re.search(re.escape(mark) + r": AUROC rose under an attack on this method's own score", page)
    assert "own score[^" not in msp
    assert "## Not evaluated" in page and "is not attacked: on a vision-language model" in page
