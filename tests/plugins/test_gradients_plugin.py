"""The rbx_gradients plugin's contract: cheap import, resolvable specs, registry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rbx_gradients
from robustbench_x.api import CAPABILITIES, METHOD_OUTPUTS, Method, MethodSpec, load_factory
from robustbench_x.registry import Registry

SPECS = {s.name: s for s in rbx_gradients.rbx_methods()}


def test_import_does_not_pull_torch_or_the_method_modules():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "plugins"), env.get("PYTHONPATH", "")])
    code = (
        "import rbx_gradients, sys; rbx_gradients.rbx_methods(); "
        "bad = [m for m in ('torch', 'numpy', 'scipy', 'sklearn') if m in sys.modules] "
        "+ [m for m in sys.modules if m.startswith('rbx_gradients.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_specs():
    assert set(SPECS) == {"introspective", "purview-initial", "purview-final", "gradtrust"}
    for spec in SPECS.values():
        assert isinstance(spec, MethodSpec)
        assert spec.requires <= set(CAPABILITIES) and spec.outputs <= set(METHOD_OUTPUTS)
        assert {"score", "confidence"} <= spec.outputs and spec.summary and spec.paper
    assert SPECS["introspective"].requires == {"logits", "features", "linear_head", "train_split"}
    assert SPECS["introspective"].outputs == {"score", "confidence", "probs", "prediction"}
    assert SPECS["purview-initial"].requires == SPECS["purview-final"].requires == {"grad"}
    assert SPECS["purview-initial"].params["part"] == "initial" and SPECS["purview-final"].params["part"] == "final"
    assert SPECS["gradtrust"].requires == {"logits", "features", "linear_head"} and SPECS["gradtrust"].params == {"top_k": None}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_factories_build_with_default_params(name):
    spec = SPECS[name]
    method = load_factory(spec.factory)(**spec.params)
    assert isinstance(method, Method)
    assert method.params == dict(spec.params)


def test_registry_lists_the_methods():
    registry = Registry()
    registry.register_object(rbx_gradients, "gradients")
    assert set(registry.names("methods")) == set(SPECS)
