"""``robustbench_x.scaffold.create_plugin``: the generated packages install, pass
their own tests and the conformance kit, and a generated method reaches the leaderboard."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_x.errors import UsageError
from robustbench_x.results import read_results
from robustbench_x.scaffold import create_plugin, render, templates_root
from robustbench_x.testing import check_plugin, default_env, write_imagefolder

GENERATED = {"method": "demo-score", "dataset": "demo-data", "metric": "demo-metric", "model": "demo-model"}


# ----------------------------------------------------------------------------- validation (fast)


@pytest.mark.parametrize("name", ["Demo", "demo score", "-demo", "demo--score", "1demo", "demo_", "", "dé-mo"])
def test_malformed_names_are_rejected_with_the_rule(tmp_path, name):
    with pytest.raises(UsageError, match="invalid plugin name|plugin name is empty") as info:
        create_plugin(name, "method", tmp_path)
    assert "e.g." in str(info.value)
    assert not any(tmp_path.iterdir())


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(UsageError, match="unknown plugin kind 'suite': choose one of method, dataset, metric, model"):
        create_plugin("demo", "suite", tmp_path)


def test_existing_folder_is_not_overwritten(tmp_path):
    create_plugin("demo", "method", tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        create_plugin("demo", "metric", tmp_path)


def test_layout_and_names(tmp_path):
    root = create_plugin("demo-score", "methods", tmp_path)  # plural kinds are accepted
    assert root == tmp_path / "demo-score"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "rbx_demo_score/__init__.py", "rbx_demo_score/method.py", "tests/test_demo_score.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "demo-score"' in pyproject and '"robustbench_x"' in pyproject
    assert '[project.entry-points.robustbench_x]\ndemo-score = "rbx_demo_score"' in pyproject
    init = (root / "rbx_demo_score" / "__init__.py").read_text()
    assert "\nimport torch" not in init and 'factory="rbx_demo_score.method:DemoScore"' in init and "TODO" in init
    readme = (root / "README.md").read_text()
    assert "pip install -e ." in readme and "rbx run --suite ood --methods msp,demo-score" in readme and "pytest" in readme
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
        assert "__NAME__" not in path.read_text() and "__PACKAGE__" not in path.read_text()


@pytest.mark.parametrize("kind", list(GENERATED))
def test_templates_are_files_and_every_placeholder_is_filled(tmp_path, kind):
    root = templates_root()
    sources = [p for p in Path(str(root)).rglob("*") if p.is_file()]
    assert (root / "common" / "pyproject.toml.tmpl").is_file() and (root / kind / "usage.md.tmpl").is_file()
    assert sources and all(p.name.endswith(".tmpl") for p in sources)  # never collected by pytest, never imported
    package = create_plugin(GENERATED[kind], kind, tmp_path)
    written = [p for p in package.rglob("*") if p.is_file()]
    assert len(written) == 5
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "{{" not in text and "{{" not in str(path) and not path.name.endswith(".tmpl"), path
        if path.suffix == ".py":
            compile(text, str(path), "exec")


def test_render_refuses_a_placeholder_without_a_value():
    assert render("{{name}}/{{package}}", {"name": "a", "package": "b"}) == "a/b"
    with pytest.raises(KeyError, match=r"\{\{nope\}\} has no value"):
        render("x {{nope}} y", {"name": "a"})


# ----------------------------------------------------------------------------- installed packages (slow)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Every kind generated, then installed with pip into a private --target directory."""
    src = tmp_path_factory.mktemp("scaffold-src")
    roots = [create_plugin(name, kind, src) for kind, name in GENERATED.items()]
    target = tmp_path_factory.mktemp("scaffold-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), *map(str, roots)],
        check=True,
    )
    for name in GENERATED.values():
        assert list(target.glob(f"{name.replace('-', '_')}-0.1.0.dist-info")), name
    return target


@pytest.mark.slow
def test_generated_packages_pass_their_own_tests(site, shared_cache):
    src = site.parent / "scaffold-src0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RBX_"))}
    cache = shared_cache.parent / "rbx-conformance-cache"  # the conformance tests' cache (trained model reused)
    cache.mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(site), RBX_CONFORMANCE_CACHE_DIR=str(cache), RBX_CACHE_DIR=str(cache))
    tests = [str(src / name / "tests") for name in GENERATED.values()]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", *tests],
        cwd=src, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary


@pytest.mark.slow
def test_generated_method_is_listed_and_reaches_the_leaderboard(site, cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    listed = cli("list", "methods", "--format", "json")
    assert listed.code == 0, listed
    assert '"demo-score"' in listed.out and "demo-score==0.1.0" in listed.out, listed.out[-2000:]
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "msp,demo-score", "--out", str(tmp_path / "store"), "--format", "json")
    assert result.code == 0, result
    frame = read_results(tmp_path / "store")
    demo = frame[frame["method"] == "demo-score"]
    assert len(demo) and (demo["status"] == "ok").all() and set(demo["plugin"]) == {"demo-score==0.1.0"}
    pages = cli("leaderboard", str(tmp_path / "store"), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "ood.md").read_text()
    assert "| demo-score" in page and "demo-score==0.1.0" in page


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(GENERATED))
def test_each_generated_kind_imports_and_passes_the_kit_in_process(site, kind, monkeypatch, shared_cache):
    monkeypatch.syspath_prepend(str(site))
    cache = shared_cache.parent / "rbx-conformance-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("RBX_CACHE_DIR", str(cache))  # the kit's jobs stay out of the suite's shared cache
    name = GENERATED[kind]
    package = importlib.import_module(f"rbx_{name.replace('-', '_')}")
    hook = getattr(package, f"rbx_{kind}s")
    assert [s.name for s in hook()] == [name]
    results = check_plugin(name, kind=kind, env=default_env(), check_params={"demo-data": write_imagefolder})
    status = {r.check: r.status for r in results}
    assert set(status.values()) == {"passed"}, results
    assert "check_plugin_discoverable" in status and "check_plugin_import_is_light" in status
    if kind == "metric":  # the metric template also registers a suite reporting it
        assert {r.status for r in check_plugin(name, kind="suite", env=default_env())} == {"passed"}
