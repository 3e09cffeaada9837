"""The rbx_posthoc plugin's contract: cheap import, resolvable specs, and every
method returning well-formed outputs through a Context (a small conformance
check, in the spirit of sklearn's check_estimator)."""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import rbx_posthoc
from robustbench_x.api import CAPABILITIES, METHOD_OUTPUTS, MethodSpec, Model, load_factory
from robustbench_x.registry import Registry
from robustbench_x.testing.doubles import ArrayContext, make_outputs

SPECS = rbx_posthoc.rbx_methods()
EXPECTED = {"msp", "maxlogit", "energy", "temperature_scaling", "temperature_scaling-lbfgs", "odin", "gradnorm", "mahalanobis", "knn", "vim", "react"}


def test_import_does_not_pull_torch_or_sklearn():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "plugins"), env.get("PYTHONPATH", "")])
    code = (
        "import rbx_posthoc, sys; specs = rbx_posthoc.rbx_methods(); "
        "bad = [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules] "
        "+ [m for m in sys.modules if m.startswith('rbx_posthoc.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_spec_names_and_fields():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED
    for spec in SPECS:
        assert isinstance(spec, MethodSpec)
        assert spec.requires <= set(CAPABILITIES), spec.name
        assert spec.outputs <= set(METHOD_OUTPUTS), spec.name
        assert {"score", "confidence"} <= spec.outputs, spec.name
        assert spec.summary and spec.paper, spec.name
        assert spec.factory.startswith("rbx_posthoc."), spec.name
        assert not spec.stochastic


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_factory_resolves_and_builds_with_default_params(spec):
    method = load_factory(spec.factory)(**spec.params)
    assert method.params == spec.params
    module = importlib.import_module(spec.factory.partition(":")[0])
    assert module.__doc__ and len(module.__doc__) > 200


def test_registers_in_the_registry():
    registry = Registry()
    record = registry.register_object(rbx_posthoc, "posthoc")
    assert record.status == "ok"
    assert sorted(record.provides["methods"]) == sorted(EXPECTED)


# ------------------------------------------------------------- conformance


class LinearModel(Model):
    provides = frozenset({"logits", "features", "linear_head"})

    def __init__(self, w, b):
        self.w, self.b = w, b

    def linear_head(self):
        return self.w, self.b


class CachingContext(ArrayContext):
    """ArrayContext whose ``fitted`` caches by key, like the harness."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache = {}
        self.keys = []

    def fitted(self, build, **key):
        self.keys.append(key)
        k = tuple(sorted((name, repr(value)) for name, value in key.items()))
        if k not in self.cache:
            self.builds += 1
            state = build()
            assert isinstance(state, dict) and state
            assert all(isinstance(v, np.ndarray) for v in state.values()), key
            self.cache[k] = state
        return self.cache[k]


def conformance_context():
    rng = np.random.default_rng(0)
    d, c = 8, 4
    w, b = rng.normal(size=(c, d)), rng.normal(size=c)

    def split(n, prefix):
        h = np.abs(rng.normal(size=(n, d)))
        return make_outputs(h @ w.T + b, h, rng.integers(0, c, n), prefix=prefix)

    outputs = {"train": split(120, "t"), "val": split(60, "v"), "id": split(30, "i"), "ood/x": split(17, "o")}
    return CachingContext(outputs, model=LinearModel(w, b))


@pytest.mark.parametrize("spec", [s for s in SPECS if "input_grad" not in s.requires], ids=lambda s: s.name)
def test_outputs_are_well_formed_and_fitting_is_cached(spec):
    ctx = conformance_context()
    method = load_factory(spec.factory)(**spec.params)
    method.fit(ctx)
    for subset in ("id", "ood/x"):
        out = method.score(ctx, subset)
        n = len(ctx.outputs(subset))
        assert set(out) == set(spec.outputs), spec.name
        for key, value in out.items():
            assert isinstance(value, np.ndarray)
            assert len(value) == n
            if key == "probs":
                assert value.shape == (n, ctx.num_classes)
                np.testing.assert_allclose(value.sum(axis=1), 1.0)
            elif key == "prediction":
                assert value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
            else:
                assert value.ndim == 1 and value.dtype == np.float64
                assert np.all(np.isfinite(value))
        np.testing.assert_array_equal(out["confidence"], out["score"])
    builds = ctx.builds
    again = load_factory(spec.factory)(**spec.params)
    again.fit(ctx)
    np.testing.assert_array_equal(again.score(ctx, "id")["score"], method.score(ctx, "id")["score"])
    assert ctx.builds == builds  # the second fit reused the cached state
    assert all(key.get("method") == spec.name for key in ctx.keys)
