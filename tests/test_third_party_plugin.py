"""A third party's plugin: built as a distribution, found by its entry point,
run, and shown on the leaderboard, with nothing special-cased."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robustbench_x.results import read_results

pytestmark = pytest.mark.slow

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rbx-demo-score"
version = "0.3.1"
dependencies = ["robustbench_x"]

[project.entry-points.robustbench_x]
demo-score = "rbx_demo_score"
"""

MODULE = '''
"""Demo: the negative L2 norm of the penultimate features as an OOD score."""

import numpy as np

from robustbench_x import hookimpl
from robustbench_x.api import Method, MethodSpec


class FeatureNorm(Method):
    def score(self, ctx, subset):
        norm = np.linalg.norm(np.asarray(ctx.outputs(subset).features), axis=1)
        return {"score": self.params["sign"] * norm, "confidence": self.params["sign"] * norm}


@hookimpl
def rbx_methods():
    return [MethodSpec("demo-score", "rbx_demo_score:FeatureNorm", requires={"features"},
                       outputs={"score", "confidence"}, params={"sign": 1.0}, summary="feature norm")]
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("demo-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "rbx_demo_score").mkdir()
    (src / "rbx_demo_score" / "__init__.py").write_text(MODULE)
    site = tmp_path_factory.mktemp("demo-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
        check=True,
    )
    assert list(site.glob("rbx_demo_score-0.3.1.dist-info"))
    return site


def test_third_party_method_runs_and_reaches_the_leaderboard(installed_plugin, cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin))
    listed = cli("list", "methods", "--format", "json")
    assert '"demo-score"' in listed.out and "rbx-demo-score==0.3.1" in listed.out
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "msp,demo-score", "--out", str(tmp_path / "store"), "--format", "json")
    assert result.code == 0, result
    frame = read_results(tmp_path / "store")
    demo = frame[frame["method"] == "demo-score"]
    assert (demo["status"] == "ok").all() and set(demo["plugin"]) == {"rbx-demo-score==0.3.1"}
    pages = cli("leaderboard", str(tmp_path / "store"), "--out", str(tmp_path / "pages"), "--bootstrap", "20")
    assert pages.code == 0, pages
    page = (tmp_path / "pages" / "ood.md").read_text()
    assert "| demo-score" in page and "rbx-demo-score==0.3.1" in page
