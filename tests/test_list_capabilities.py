"""``rbx list capabilities``: every token a method may require, what it means,
and which registered components provide or require it, without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

from robustbench_x import hookimpl, registry
from robustbench_x.api import CAPABILITIES, ModelSpec


def test_json_lists_every_token_with_providers_and_requirers(cli):
    result = cli("list", "capabilities", "--format", "json")
    assert result.code == 0, result
    rows = {row["token"]: row for row in json.loads(result.out)}
    assert set(CAPABILITIES) <= set(rows)
    assert rows["logits"]["meaning"] == CAPABILITIES["logits"]
    # Checked against the specs themselves, not against the command's own logic.
    reg = registry.get_registry()
    for token, row in rows.items():
        provided = {s.name for k in ("models", "datasets") for s in reg.specs(k) if token in s.provides}
        required = {s.name for s in reg.specs("methods") if token in s.requires}
        assert set(row["provided_by"]) == provided and set(row["required_by"]) == required, token
    assert "builtin-cnn" in rows["dropout"]["provided_by"] and "mc_dropout" in rows["dropout"]["required_by"]
    assert "ood_subsets" in rows and "embedded-digits" in rows["ood_subsets"]["provided_by"]


def test_table_names_every_token(cli):
    result = cli("list", "capabilities")
    assert result.code == 0, result
    assert all(token in result.out for token in CAPABILITIES)


def test_a_token_declared_by_a_plugin_is_listed(cli, monkeypatch):
    class Plugin:
        @staticmethod
        @hookimpl
        def rbx_models():
            return [ModelSpec("token-model", "x:y", provides={"logits", "depth_maps"})]

    reg = registry.Registry()
    reg.load_entry_points()
    reg.register_object(Plugin, "token-plugin")
    monkeypatch.setattr(registry, "get_registry", lambda refresh=False: reg)
    rows = {row["token"]: row for row in json.loads(cli("list", "capabilities", "--format", "json").out)}
    assert rows["depth_maps"]["provided_by"] == ["token-model"]
    assert rows["depth_maps"]["meaning"] == "(declared by a plugin)"


def test_listing_capabilities_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from robustbench_x.cli import app; "
        "r = CliRunner().invoke(app, ['list', 'capabilities', '--format', 'json']); "
        "assert r.exit_code == 0, r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_unknown_kind_names_capabilities_and_a_real_command(cli):
    result = cli("list", "kinds")
    assert result.code == 2
    assert "capabilities" in result.err and "`rbx list --help`" in result.err and "rbx list kinds" not in result.err
