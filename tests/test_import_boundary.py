"""The import boundary between the core and the plugins.

* a first-party plugin (``plugins/``) imports from the core only the modules
  listed in :data:`robustbench_x.api.PUBLIC_MODULES`, exactly what a third
  party may use;
* the core (``robustbench_x/``) imports no plugin: a task lives in its plugin.

Imports are read from the source (``ast``), so a lazy import inside a
function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from robustbench_x.api import is_public_module

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a file; ``from pkg import name``
    counts as ``pkg.name`` when that is a module of the core (``from robustbench_x
    import cache`` imports the private ``robustbench_x.cache``). A scaffold
    template (``*.py.tmpl``) is read with its ``{{placeholders}}`` filled in."""
    text = path.read_text(encoding="utf-8")
    if path.name.endswith(".tmpl"):
        text = re.sub(r"\{\{(\w+)\}\}", r"placeholder_\1", text)
    tree = ast.parse(text, filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if _is_core_module(sub) else node.module))
    return found


def _is_core_module(module: str) -> bool:
    parts = module.split(".")
    if parts[0] != "robustbench_x":
        return False
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def private_core_imports(plugins_root: Path, pattern: str = "*.py") -> list[str]:
    """``file:line: module`` for every import of a non-public core module in the files
    matching ``pattern`` under ``plugins_root``."""
    bad = []
    for path in sorted(plugins_root.rglob(pattern)):
        for line, module in imported_modules(path):
            if module.split(".")[0] == "robustbench_x" and not is_public_module(module):
                bad.append(f"{path.relative_to(plugins_root.parent)}:{line}: {module}")
    return bad


def plugin_imports(core_root: Path) -> list[str]:
    """``file:line: module`` for every import of a plugin (``rbx_*``) under ``core_root``."""
    bad = []
    for path in sorted(core_root.rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0].startswith("rbx_"):
                bad.append(f"{path.relative_to(core_root.parent)}:{line}: {module}")
    return bad


def test_first_party_plugins_import_only_the_public_core():
    bad = private_core_imports(ROOT / "plugins")
    assert not bad, (
        "plugins import private core modules (public: robustbench_x.api.PUBLIC_MODULES):\n  "
        + "\n  ".join(bad)
        + "\nfix: use what robustbench_x.api re-exports, or make the module public on purpose (PUBLIC_MODULES + docs/tasks.md)"
    )


def test_scaffold_templates_import_only_the_public_core():
    """What `rbx new-plugin` writes is a third party's plugin: the same rule holds."""
    templates = ROOT / "robustbench_x" / "templates"
    assert list(templates.rglob("*.py.tmpl")), "no template found: the test would check nothing"
    bad = private_core_imports(templates, "*.py.tmpl")
    assert not bad, "scaffold templates import private core modules:\n  " + "\n  ".join(bad)


def test_the_core_imports_no_plugin():
    bad = plugin_imports(ROOT / "robustbench_x")
    assert not bad, "the core imports plugins:\n  " + "\n  ".join(bad) + "\nfix: move the code into the plugin or reach it through a hook"


def test_a_private_import_is_caught(tmp_path):
    plugin = tmp_path / "plugins" / "rbx_fake"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("from robustbench_x import hookimpl\nfrom robustbench_x.api import MethodSpec\n")
    (plugin / "ok.py").write_text("from robustbench_x.metrics.ood import auroc\nfrom robustbench_x.errors import PluginError\nimport robustbench_x.testing.checks\n")
    assert private_core_imports(tmp_path / "plugins") == []
    (plugin / "bad.py").write_text(
        "import numpy\n"
        "from robustbench_x.cache import FeatureCache\n"
        "def lazy():\n"
        "    from robustbench_x import runner\n"
        "    import robustbench_x.registry as r\n"
    )
    assert private_core_imports(tmp_path / "plugins") == [
        "plugins/rbx_fake/bad.py:2: robustbench_x.cache",
        "plugins/rbx_fake/bad.py:4: robustbench_x.runner",
        "plugins/rbx_fake/bad.py:5: robustbench_x.registry",
    ]


def test_a_plugin_import_in_the_core_is_caught(tmp_path):
    core = tmp_path / "robustbench_x"
    core.mkdir()
    (core / "fine.py").write_text("import numpy\nfrom robustbench_x.api import load_factory\n")
    (core / "leak.py").write_text("def f():\n    from rbx_retrieval.ranking import rank_gallery\n")
    assert plugin_imports(core) == ["robustbench_x/leak.py:2: rbx_retrieval.ranking"]
