"""Discovery: entry points, broken plugins, light listing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robustbench_x.errors import PluginUnavailable, UnknownComponent
from robustbench_x.registry import Registry


def _fake_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A dist-info directory on sys.path is all importlib.metadata needs."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[robustbench_x]\n{lines}\n")


@pytest.fixture
def broken_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "rbx_broken_demo.py").write_text("import robustbench_x_dependency_that_does_not_exist\n")
    _fake_distribution(site, "rbx-broken-demo", {"broken-demo": "rbx_broken_demo"})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_listing_does_not_import_torch():
    code = "import sys; from robustbench_x.registry import get_registry; r = get_registry(); assert r.names('methods'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_first_party_plugins_load_through_entry_points():
    registry = Registry()
    registry.load_entry_points()
    names = {p.name for p in registry.plugins if p.status == "ok"}
    assert {"standard", "models", "datasets", "posthoc"} <= names
    assert registry.plugin_label("methods", "msp").startswith("robustbench_x==")


def test_a_broken_plugin_is_recorded_and_the_rest_work(broken_site):
    registry = Registry()
    registry.load_entry_points()
    broken = [p for p in registry.plugins if p.name == "broken-demo"]
    assert broken and broken[0].status == "failed"
    assert "ModuleNotFoundError" in broken[0].error
    assert broken[0].distribution == "rbx-broken-demo"
    assert "msp" in registry.names("methods")


def test_asking_for_a_component_of_a_broken_plugin_names_the_plugin(broken_site):
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(PluginUnavailable, match="broken-demo.*rbx-broken-demo.*ModuleNotFoundError"):
        registry.get("methods", "method-of-the-broken-plugin")


def test_unknown_name_suggests_the_closest():
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(UnknownComponent, match="Did you mean 'mahalanobis'"):
        registry.get("methods", "mahalanobs")


def test_strict_mode_raises(broken_site, monkeypatch):
    from robustbench_x.errors import PluginError

    monkeypatch.setenv("RBX_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken-demo"):
        Registry().load_entry_points()


def test_rbx_plugins_shows_the_broken_plugin(broken_site, cli):
    result = cli("plugins", "--format", "json")
    assert result.code == 0, result
    records = {r["name"]: r for r in json.loads(result.out)}
    assert records["broken-demo"]["status"] == "failed"
    assert records["posthoc"]["status"] == "ok"
    table = cli("plugins")
    assert "broken-demo" in table.out and "failed" in table.out


def test_rbx_list_json_lists_every_kind(cli):
    result = cli("list", "--format", "json")
    assert result.code == 0, result
    data = json.loads(result.out)
    assert set(data) == {"methods", "datasets", "metrics", "models", "suites", "executors"}
    assert all(data[k] for k in data)
    assert {"msp", "odin", "energy", "mahalanobis", "knn", "vim", "react", "gradnorm", "temperature_scaling", "maxlogit"} <= {m["name"] for m in data["methods"]}
    assert {"ood", "failure", "calibration"} <= {s["name"] for s in data["suites"]}


def _methods_plugin(*names: str, factory: str = "x:y"):
    from robustbench_x import hookimpl
    from robustbench_x.api import MethodSpec

    class Plugin:
        @staticmethod
        @hookimpl
        def rbx_methods():
            return [MethodSpec(n, factory) for n in names]

    return Plugin


def test_a_name_two_plugins_register_is_a_conflict_never_a_silent_winner():
    from robustbench_x.errors import AmbiguousComponent

    registry = Registry()
    registry.register_object(_methods_plugin("dup", factory="x:y"), "one", distribution="dist-one")
    registry.register_object(_methods_plugin("dup", factory="z:w"), "two", distribution="dist-two")
    with pytest.raises(AmbiguousComponent, match=r"(?s)registered by 2 plugins.*dist-one::dup.*dist-two::dup.*fix: name the one"):
        registry.get("methods", "dup")
    assert registry.get("methods", "dist-one::dup").factory == "x:y"
    assert registry.get("methods", "dist_two::dup").factory == "z:w"  # distribution names compare normalised
    assert registry.get("methods", "two::dup").factory == "z:w"  # or the entry-point name
    assert [r.name for r in registry.conflicts()[("methods", "dup")]] == ["one", "two"]
    with pytest.raises(UnknownComponent, match="dist-one::dup"):
        registry.get("methods", "dist-three::dup")


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".hidden", "a..b", "timm:x", "", "-x", "a b"])
def test_a_path_like_or_unsafe_name_is_refused_at_registration_naming_the_plugin(name):
    from robustbench_x.errors import PluginError

    with pytest.raises(PluginError, match=r"plugin 'sneaky' \(dist-sneaky\) registers method name .* not allowed"):
        Registry().register_object(_methods_plugin(name), "sneaky", distribution="dist-sneaky")


def test_every_first_party_name_passes_the_name_rule():
    registry = Registry()
    registry.load_entry_points(strict=True)
    assert {"fpr@95tpr", "heat-gmm", "r@1", "timm", "mc_dropout"} <= {n for k in ("methods", "metrics", "models") for n in registry.names(k)}


@pytest.fixture
def evil_msp_site(tmp_path, monkeypatch):
    """A third-party distribution whose entry point sorts first and registers ``msp`` again."""
    site = tmp_path / "evil-site"
    site.mkdir()
    (site / "rbx_evil_demo.py").write_text(textwrap.dedent("""
        import numpy as np
        from robustbench_x import hookimpl
        from robustbench_x.api import Method, MethodSpec

        class Constant(Method):
            def score(self, ctx, subset):
                n = len(ctx.outputs(subset).labels)
                return {"score": np.zeros(n), "confidence": np.zeros(n)}

        @hookimpl
        def rbx_methods():
            return [MethodSpec("msp", "rbx_evil_demo:Constant", outputs={"score", "confidence"})]
    """))
    _fake_distribution(site, "rbx-evil", {"aaa": "rbx_evil_demo"})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_run_refuses_an_ambiguous_method_and_runs_the_qualified_first_party_one(evil_msp_site, cli, tmp_path):
    from robustbench_x.results import read_results

    store = tmp_path / "store"
    refused = cli("--quiet", "run", "--suite", "ood", "--methods", "msp", "--out", str(store))
    assert refused.code == 2, refused
    assert "robustbench_x::msp" in refused.err and "rbx-evil::msp" in refused.err and "fix: name the one" in refused.err
    assert not store.exists()
    default = cli("--quiet", "run", "--suite", "ood", "--out", str(store))
    assert default.code == 2 and "rbx-evil::msp" in default.err, default

    ran = cli("--quiet", "run", "--suite", "ood", "--methods", "robustbench_x::msp", "--out", str(store))
    assert ran.code == 0, ran
    frame = read_results(store)
    assert set(frame["method"]) == {"msp"} and (frame["status"] == "ok").all()
    assert all(p.startswith("robustbench_x==") for p in frame["plugin"])
    auroc = frame[frame["metric"] == "auroc"]["value"]
    assert (auroc > 0.6).all()  # the real MSP, not the evil constant (AUROC 0.5)


def test_list_and_plugins_show_both_providers_of_a_conflict(evil_msp_site, cli):
    listed = json.loads(cli("list", "methods", "--format", "json").out)["methods"]
    providers = sorted(m["plugin"] for m in listed if m["name"] == "msp")
    assert providers[0].startswith("rbx-evil==") and providers[1].startswith("robustbench_x==")
    assert all("conflict" in m for m in listed if m["name"] == "msp")
    table = cli("plugins")
    assert table.code == 0 and "conflict: method 'msp' is registered by" in table.out
    assert "robustbench_x::msp" in table.out and "rbx-evil::msp" in table.out


def test_a_hook_returning_the_wrong_type_is_a_plugin_error():
    from robustbench_x import hookimpl
    from robustbench_x.errors import PluginError

    class Bad:
        @staticmethod
        @hookimpl
        def rbx_methods():
            return ["msp"]

    with pytest.raises(PluginError, match="expected MethodSpec"):
        Registry().register_object(Bad, "bad")
