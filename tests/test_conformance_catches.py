"""The conformance kit catches each kind of broken plugin, with a message naming the problem.

Each broken plugin (tests/fixtures/conformance_bad*.py) breaks one rule; the
test runs the check for that rule and asserts it fails saying what is wrong.
A well-behaved plugin (conformance_good) passes every check but discovery
(it is registered through RBX_PLUGINS, not an entry point).
"""

from __future__ import annotations

import pytest

from robustbench_x.api import MethodSpec
from robustbench_x.registry import get_registry
from robustbench_x.testing import (
    RestrictedContext,
    UndeclaredCapability,
    check_plugin,
    default_env,
    parametrize_with_checks,
)
from robustbench_x.testing import checks as C


@pytest.fixture(autouse=True)
def _conformance_cache(monkeypatch, shared_cache):
    """A cache of the conformance tests' own (shared by xdist workers), so that the kit's
    jobs do not warm the suite's shared feature cache for other tests."""
    path = shared_cache.parent / "rbx-conformance-cache"
    path.mkdir(exist_ok=True)
    monkeypatch.setenv("RBX_CACHE_DIR", str(path))


@pytest.fixture
def bad(test_plugins):
    """The registered spec of a conformance_bad method, by name."""
    test_plugins("conformance_bad", "conformance_bad_torch", "conformance_good")

    def get(name: str) -> MethodSpec:
        return get_registry(refresh=True).get("methods", name)

    return get


def fails(check, spec, *fragments: str) -> str:
    with pytest.raises(AssertionError) as info:
        check(spec, default_env())
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_reversed_score_direction_is_caught(bad):
    spec = bad("bad-reversed")
    fails(C.check_method_score_direction, spec, "bad-reversed", "higher for in-distribution", "return its negative")
    C.check_method_per_sample_outputs(spec, default_env())  # everything else about it is fine


def test_wrong_number_of_samples_is_caught(bad):
    message = fails(C.check_method_per_sample_outputs, bad("bad-length"), "bad-length", "'score'", "one value per sample")
    assert "(63,)" in message and "(64,)" in message  # 64 = the capped subset


@pytest.mark.parametrize("name", ["bad-global-rng", "bad-unseeded"])
def test_method_ignoring_its_seed_is_caught(bad, name):
    fails(C.check_method_deterministic, bad(name), name, "same ctx.seed=0", "ignores its seed", "ctx.rng()")


def test_stochastic_method_with_a_fixed_seed_is_caught(bad):
    spec = bad("bad-fixed-seed")
    C.check_method_deterministic(spec, default_env())  # deterministic, yes...
    fails(C.check_method_uses_its_seed, spec, "bad-fixed-seed", "stochastic=True", "ignores ctx.seed")  # ...but not from ctx.seed


def test_torch_import_at_discovery_is_caught(bad):
    message = fails(C.check_plugin_import_is_light, bad("bad-torch-import"), "bad-torch-import", "conformance_bad_torch", "imports torch")
    assert "conformance_bad_torch.py:4" in message  # the line that imports it


def test_lying_about_requires_is_caught(bad):
    message = fails(C.check_method_honours_requires, bad("bad-requires"), "method 'bad-requires' used", "did not declare")
    assert "ctx.outputs('train') (needs train_split)" in message
    assert ".features (needs features)" in message
    assert "add 'train_split', 'features' to MethodSpec.requires" in message or "add 'features', 'train_split'" in message


def test_restricted_context_strict_mode_raises_at_the_first_undeclared_access():
    env = default_env()
    ctx = RestrictedContext(env.context(0), {"logits"}, method="probe")
    assert ctx.outputs("id").logits.shape[0] == len(ctx.outputs("id"))  # declared: fine
    assert len(ctx.outputs("id").labels)  # labels are free
    with pytest.raises(UndeclaredCapability, match=r"method 'probe' used ctx.outputs\('id'\).features \(needs features\)"):
        ctx.outputs("id").features
    with pytest.raises(UndeclaredCapability, match="needs train_split"):
        ctx.outputs("train")
    with pytest.raises(UndeclaredCapability, match="needs linear_head"):
        ctx.model.linear_head()
    with pytest.raises(UndeclaredCapability, match="needs one of .*grad"):
        ctx.model.module
    with pytest.raises(UndeclaredCapability, match="needs one of .*input_grad"):
        next(iter(ctx.loader("id")))
    assert ctx.model.num_classes == env.model.num_classes and ctx.seed == 0  # free attributes
    allowed = RestrictedContext(env.context(0), {"grad", "ensemble", "train_split"}, method="probe")
    allowed.model.module, allowed.model.members, allowed.outputs("train").labels
    assert not allowed.violations


def test_check_plugin_reports_every_failure_at_once(bad):
    with pytest.raises(AssertionError) as info:
        check_plugin(bad("bad-requires"), env=default_env())
    text = str(info.value)
    assert "check_method_honours_requires" in text and "check_plugin_discoverable" in text and "RBX_PLUGINS" in text


@pytest.mark.parametrize("name", ["good-feature-norm", "good-noisy-msp"])
def test_well_behaved_plugin_passes(bad, name):
    results = check_plugin(bad(name), expected_failed_checks={"check_plugin_discoverable": "registered through RBX_PLUGINS"})
    status = {r.check: r.status for r in results}
    assert status.pop("check_plugin_discoverable") == "xfailed"
    assert set(status.values()) == {"passed"}, results
    if name == "good-noisy-msp":
        assert "check_method_uses_its_seed" in status


def test_parametrize_with_checks_ids_and_expected_failures():
    spec = MethodSpec("probe", "conformance_good_impl:FeatureNorm", requires={"features"}, outputs={"score"})
    mark = parametrize_with_checks([spec], expected_failed_checks={"check_plugin_discoverable": "not installed"})
    params = mark.args[1]
    ids = [p.id for p in params]
    assert "method-probe-check_method_score_direction" in ids and "method-probe-check_method_uses_its_seed" not in ids
    xfail = [p for p in params if p.marks]
    assert [p.id for p in xfail] == ["method-probe-check_plugin_discoverable"]
    assert xfail[0].marks[0].kwargs["reason"] == "not installed"
    with pytest.raises(ValueError, match="unknown check"):
        parametrize_with_checks([spec], expected_failed_checks={"check_typo": "x"})


def test_check_params_reject_unknown_parameters(bad):
    env = default_env().with_params({"good-feature-norm": {"powr": 3}})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['powr'\]"):
        env.params_for(bad("good-feature-norm"))
