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


def test_duplicate_names_keep_the_first_and_warn():
    from robustbench_x import hookimpl
    from robustbench_x.api import MethodSpec

    class One:
        @staticmethod
        @hookimpl
        def rbx_methods():
            return [MethodSpec("dup", "x:y")]

    class Two:
        @staticmethod
        @hookimpl
        def rbx_methods():
            return [MethodSpec("dup", "z:w")]

    registry = Registry()
    registry.register_object(One, "one")
    with pytest.warns(UserWarning, match="already registered by 'one'"):
        registry.register_object(Two, "two")
    assert registry.get("methods", "dup").factory == "x:y"


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
