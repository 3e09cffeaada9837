"""rbx_uncertainty's plugin contract: cheap import, valid specs, factories agree with their specs."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rbx_uncertainty
from robustbench_x.api import CAPABILITIES, METHOD_OUTPUTS, MethodSpec, load_factory
from robustbench_x.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"mc_dropout", "deep_ensemble", "trust_score", "confidnet"}


def test_listing_imports_neither_torch_nor_sklearn():
    code = (
        "import sys, rbx_uncertainty\n"
        "specs = rbx_uncertainty.rbx_methods()\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'scipy', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(len(specs))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"


def test_specs_are_registered_and_well_formed():
    registry = Registry()
    record = registry.register_object(rbx_uncertainty, "uncertainty")
    assert record.status == "ok"
    assert set(record.provides["methods"]) == NAMES
    for spec in rbx_uncertainty.rbx_methods():
        assert isinstance(spec, MethodSpec)
        assert spec.factory.startswith("rbx_uncertainty.")
        assert spec.requires <= set(CAPABILITIES), spec.requires - set(CAPABILITIES)
        assert {"score", "confidence", "prediction"} <= spec.outputs <= set(METHOD_OUTPUTS)
        assert spec.summary and spec.paper


@pytest.mark.parametrize("spec", rbx_uncertainty.rbx_methods(), ids=lambda s: s.name)
def test_factory_defaults_match_spec_params(spec):
    cls = load_factory(spec.factory)
    method = cls(**spec.params)
    assert method.params == spec.params
    signature = inspect.signature(cls.__init__)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == dict(spec.params)


def test_spec_requirements_follow_the_brief():
    specs = {s.name: s for s in rbx_uncertainty.rbx_methods()}
    assert "dropout" in specs["mc_dropout"].requires
    assert "ensemble" in specs["deep_ensemble"].requires
    assert {"features", "train_split"} <= specs["trust_score"].requires
    assert {"features", "train_split", "val_split", "grad"} <= specs["confidnet"].requires
    assert specs["mc_dropout"].params["T"] == 50
    assert specs["deep_ensemble"].params["K"] == 5
    assert specs["trust_score"].params == {"k": 10, "alpha": 0.0, "filtering": "none", "min_dist": 1e-12}
    assert specs["confidnet"].params["lr"] == 1e-4 and specs["confidnet"].params["batch_size"] == 128
