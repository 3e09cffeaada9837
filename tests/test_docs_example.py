"""The plugin example of README.md and docs/plugins.md works as written: its
blocks, saved under the file names their first comment gives, form a package
that passes the conformance kit. What a reader copies is what is tested."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from robustbench_x.testing import check_plugin, default_env

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "docs" / "plugins.md"]
BLOCK = re.compile(r"```(?:python|toml)\n# ([\w./-]+?):?(?: [^\n]*)?\n(.*?)```", re.DOTALL)
PACKAGE_FILES = {"pyproject.toml", "rbx_feature_norm/__init__.py", "rbx_feature_norm/method.py"}


def _example(page: Path) -> dict[str, str]:
    """Relative file name -> the block's code (without its naming comment)."""
    blocks = {}
    for name, code in BLOCK.findall(page.read_text(encoding="utf-8")):
        blocks[name.removeprefix("rbx-feature-norm/")] = code
    return blocks


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_has_the_whole_example(page):
    assert PACKAGE_FILES <= set(_example(page)), sorted(_example(page))


def test_the_readme_and_the_guide_show_the_same_code():
    readme, guide = _example(PAGES[0]), _example(PAGES[1])
    for name in ("rbx_feature_norm/__init__.py", "rbx_feature_norm/method.py"):
        assert readme[name] == guide[name], name


def _install(example: dict[str, str], site: Path) -> dict:
    """Write the package and the dist-info an installer would (metadata and entry points)."""
    project = tomllib.loads(example["pyproject.toml"])["project"]
    for name in PACKAGE_FILES - {"pyproject.toml"}:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(example[name], encoding="utf-8")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = "\n".join(f"{k} = {v}" for k, v in project["entry-points"]["robustbench_x"].items())
    (info / "entry_points.txt").write_text(f"[robustbench_x]\n{points}\n")
    return project


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_example_passes_the_conformance_kit(page, tmp_path, monkeypatch):
    _install(_example(page), tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in [m for m in sys.modules if m.startswith("rbx_feature_norm")]:
        monkeypatch.delitem(sys.modules, module)
    importlib.invalidate_caches()
    results = check_plugin("feature-norm", kind="methods", env=default_env())
    assert {r.status for r in results} == {"passed"}, results
    assert "check_plugin_discoverable" in {r.check for r in results}
