"""A malformed spec, a hook of no hook, a name registered twice, a suite name
taken twice and a metric name taken twice: refused (or resolved) when the
plugin registers, never listed "ok" to break later."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec, MetricSpec, SuiteSpec
from robustbench_x.errors import AmbiguousComponent, PluginError
from robustbench_x.registry import Registry
from robustbench_x.testing.checks import check_spec_well_formed


def _plugin(*specs):
    by_hook = {"MethodSpec": "rbx_methods", "MetricSpec": "rbx_metrics", "SuiteSpec": "rbx_suites"}
    hooks = {}
    for spec in specs:
        hooks.setdefault(by_hook[type(spec).__name__], []).append(spec)
    return type("Plugin", (), {name: staticmethod(hookimpl(lambda s=tuple(found): list(s))) for name, found in hooks.items()})


def _method(**fields):
    return MethodSpec(**{"name": "m", "factory": "pkg.mod:Method", **fields})


def _metric(**fields):
    return MetricSpec(**{"name": "mt", "kind": "ood", "fn": "pkg.mod:fn", "higher_is_better": True, **fields})


MALFORMED = [
    (_method(requires="features"), r"method 'm': requires='features' is a str.*fix: requires=\{'features'\}"),
    (_method(outputs="score"), r"method 'm': outputs='score' is a str.*fix: outputs=\{'score'\}"),
    (_method(packages="nonexistent_pkg"), r"method 'm': packages='nonexistent_pkg' is a str.*fix: packages=\('nonexistent_pkg',\)"),
    (_method(deviations="one sentence"), r"method 'm': deviations='one sentence' is a str.*fix: deviations=\('one sentence',\)"),
    (_method(stochastic="no"), r"method 'm': stochastic='no' is a str, not a bool.*fix: stochastic=True or stochastic=False"),
    (_method(factory="pkg.mod.Method"), r"method 'm': factory='pkg.mod.Method' is not a 'package.module:attribute'.*fix: factory='pkg.mod:Method'"),
    (_method(params={"s": {1, 2}}), r"method 'm': params=.*holds params\['s'\]=\{1, 2\} \(of type set\), which is not a JSON value.*fix: use dict, list"),
    (_method(params={"o": object()}), r"method 'm': params=.*holds params\['o'\]=<object.*\(of type object\)"),
    (_method(params={"deep": [{"x": math.inf}]}), r"params\['deep'\]\[0\]\['x'\]=inf, which is not a JSON value"),
    (_method(params={1: 2}), r"holds the key 1 of params"),
    (_method(params=[("power", 2)]), r"params=\[\('power', 2\)\] is a list, not a mapping"),
    (_metric(higher_is_better="no"), r"metric 'mt': higher_is_better='no' is a str, not a bool"),
    (_metric(scale="100"), r"metric 'mt': scale='100' is not a positive finite number; fix: a number, e.g. scale=100.0"),
    (_metric(fn="fn"), r"metric 'mt': fn='fn' is not a 'package.module:attribute'"),
    (SuiteSpec("s", "score", metrics="auroc", headline=("auroc",)), r"suite 's': metrics='auroc' is a str.*fix: metrics=\('auroc',\)"),
]


@pytest.mark.parametrize("spec, message", MALFORMED, ids=[m[:40] for _, m in MALFORMED])
def test_a_malformed_spec_fails_its_plugin_and_the_kit_agrees(spec, message):
    with pytest.raises(PluginError, match=rf"(?s)plugin 'lab' \(rbx-lab 0\.1\) registers malformed specs:.*{message}"):
        Registry().register_object(_plugin(spec), "lab", distribution="rbx-lab", version="0.1")
    with pytest.raises(AssertionError, match=rf"(?s){message}"):
        check_spec_well_formed(spec)


def test_well_formed_specs_pass_both_tuples_and_nested_json_params_included():
    specs = [
        _method(requires=["features"], params={"layers": (1, 2), "opt": {"lr": 0.1, "names": ["a"], "off": None}}),
        _metric(scale=1),
        SuiteSpec("s", "score", metrics=["mt"], headline=("mt",), plots=["curve"]),
    ]
    record = Registry().register_object(_plugin(*specs), "lab", distribution="rbx-lab")
    assert record.status == "ok" and record.warning is None
    for spec in specs:
        check_spec_well_formed(spec)


def test_a_name_registered_twice_by_one_plugin_fails_it_naming_the_duplicate():
    with pytest.raises(PluginError, match=r"(?s)plugin 'other' \(rbx-other 0\.2\).*method 'twice' is registered twice by this plugin"):
        Registry().register_object(_plugin(_method(name="twice"), _method(name="twice", params={"x": 1})), "other", distribution="rbx-other", version="0.2")


class Typo:
    @staticmethod
    @hookimpl
    def rbx_method():
        return [_method()]


class Alias:
    @staticmethod
    @hookimpl
    def rbx_methods():
        return [_method()]

    _orig = rbx_methods  # a plugin wrapping its own hook: never called by pluggy, not a typo


def test_a_misspelled_hook_fails_the_plugin_with_did_you_mean():
    with pytest.raises(PluginError, match=r"plugin 'typo' \(rbx-typo\) implements 'rbx_method', which is not a robustbench_x hook; did you mean rbx_methods\?"):
        Registry().register_object(Typo, "typo", distribution="rbx-typo")
    assert Registry().register_object(Alias, "alias").provides == {"methods": ["m"]}


def test_in_the_listing_a_failed_plugin_shows_its_problems_and_an_empty_one_a_warning(tmp_path, monkeypatch, cli):
    (tmp_path / "rbx_spec_rules_bad.py").write_text(textwrap.dedent("""
        from robustbench_x import hookimpl
        from robustbench_x.api import MethodSpec

        @hookimpl
        def rbx_methods():
            return [MethodSpec("str-requires", "pkg.mod:Method", requires="features")]
    """))
    (tmp_path / "rbx_spec_rules_empty.py").write_text("from robustbench_x import hookimpl\n\n@hookimpl\ndef rbx_methods():\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RBX_PLUGINS", "rbx_spec_rules_bad,rbx_spec_rules_empty")
    monkeypatch.setenv("COLUMNS", "400")
    records = {r["name"]: r for r in json.loads(cli("plugins", "--format", "json").out)}
    assert records["rbx_spec_rules_bad"]["status"] == "failed"
    assert "method 'str-requires': requires='features' is a str" in records["rbx_spec_rules_bad"]["error"]
    assert records["rbx_spec_rules_empty"]["status"] == "ok" and "provides nothing" in records["rbx_spec_rules_empty"]["warning"]
    # the table wraps its cells at the console's width (other plugins installed, another console): one word is safe
    assert "warning:" in cli("plugins").out
    assert "str-requires" not in cli("list", "methods").out
    monkeypatch.setenv("RBX_STRICT_PLUGINS", "1")
    strict = cli("list")
    assert strict.code == 2 and "requires='features' is a str" in strict.err, strict


def test_a_suite_metric_resolves_to_the_suites_own_plugin_and_the_other_stays_qualified():
    registry = Registry()
    registry.register_object(_plugin(_metric(name="auroc"), SuiteSpec("s", "score", metrics=("auroc",), headline=("auroc",))), "first", distribution="first")
    registry.register_object(_plugin(_metric(name="auroc", fn="other.mod:fn")), "other", distribution="rbx-other")
    suite = registry.get("suites", "s")
    assert registry.suite_metric(suite, "auroc").fn == "pkg.mod:fn"
    assert registry.get("metrics", "rbx-other::auroc").fn == "other.mod:fn"
    with pytest.raises(AmbiguousComponent):
        registry.get("metrics", "auroc")
    lone = Registry()  # a suite whose own plugin does not provide the name: still ambiguous, never a silent winner
    lone.register_object(_plugin(SuiteSpec("s", "score", metrics=("auroc",), headline=("auroc",))), "suite-only", distribution="suite-only")
    lone.register_object(_plugin(_metric(name="auroc")), "one", distribution="one")
    lone.register_object(_plugin(_metric(name="auroc")), "two", distribution="two")
    with pytest.raises(AmbiguousComponent):
        lone.suite_metric(lone.get("suites", "s"), "auroc")


@pytest.fixture
def colliding_site(tmp_path, monkeypatch):
    """A third party that sorts before the first-party plugins, registering a metric ``auroc`` and a suite ``ood``."""
    from test_registry import _fake_distribution

    site = tmp_path / "collide-site"
    site.mkdir()
    (site / "rbx_collide_metric.py").write_text(textwrap.dedent("""
        from robustbench_x import hookimpl
        from robustbench_x.api import MetricSpec

        def const(score_id, score_ood):
            return 0.99

        @hookimpl
        def rbx_metrics():
            return [MetricSpec(name="auroc", kind="ood", fn="rbx_collide_metric:const", higher_is_better=True)]
    """))
    (site / "rbx_collide_suite.py").write_text(textwrap.dedent("""
        from robustbench_x import hookimpl
        from robustbench_x.api import SuiteSpec

        @hookimpl
        def rbx_suites():
            return [SuiteSpec(name="ood", method_output="score", metrics=("auroc",), headline=("auroc",), subsets=("id", "ood/*"))]
    """))
    _fake_distribution(site, "rbx-collide", {"aaa-metric": "rbx_collide_metric", "aaa-suite": "rbx_collide_suite"})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_colliding_suite_is_refused_and_a_colliding_metric_does_not_block_the_suite(colliding_site, cli, tmp_path):
    from robustbench_x.results import read_results

    registry = Registry()
    registry.load_entry_points()
    suite_plugin = next(p for p in registry.plugins if p.name == "aaa-suite")
    assert suite_plugin.status == "failed"
    assert "registers suite 'ood', which plugin 'standard' (robustbench_x" in suite_plugin.error and "fix: rename the suite" in suite_plugin.error
    assert registry.origin("suites", "ood").distribution == "robustbench_x"
    assert registry.get("metrics", "rbx-collide::auroc").fn == "rbx_collide_metric:const"

    store = tmp_path / "store"
    ran = cli("--quiet", "run", "--suite", "robustbench_x::ood", "--methods", "robustbench_x::msp", "--out", str(store))
    assert ran.code == 0, ran
    auroc = read_results(store).query("metric == 'auroc'")["value"]
    assert len(auroc) and (auroc > 0.6).all() and (auroc != 0.99).all()  # the suite's own AUROC, not the third party's constant
    pages = cli("leaderboard", str(store), "--out", str(tmp_path / "pages"), "--bootstrap", "0")
    assert pages.code == 0, pages
    assert "auroc" in (tmp_path / "pages" / "ood.md").read_text().lower()


@pytest.mark.parametrize("name", ["a:b", "a..b"])
def test_the_kit_refuses_the_names_the_registry_refuses(name):
    with pytest.raises(PluginError):
        Registry().register_object(_plugin(_method(name=name)), "lab")
    with pytest.raises(AssertionError, match="is malformed"):
        check_spec_well_formed(_method(name=name))
