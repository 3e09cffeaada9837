"""`rbx leaderboard --check`: the values behind the cells never drift from the
code that renders them; a drift lists the cells that moved."""

from __future__ import annotations

import re

import pytest

import rbx_posthoc
from robustbench_x import hookimpl

pytestmark = pytest.mark.slow

ARGS = ("--quiet", "run", "--suite", "ood", "--methods", "msp,knn", "--format", "json")


def test_check_passes_on_identical_results_and_fails_readably_when_a_default_changes(cli, tmp_path, monkeypatch):
    assert cli(*ARGS, "--out", str(tmp_path / "store")).code == 0
    assert cli("leaderboard", str(tmp_path / "store"), "--out", str(tmp_path / "pages"), "--bootstrap", "50").code == 0
    same = cli("leaderboard", str(tmp_path / "store"), "--out", str(tmp_path / "pages"), "--bootstrap", "50", "--check")
    assert same.code == 0, same
    assert "match" in same.out

    # Change KNN's default k: a new config hash, new values, a different page.
    original = rbx_posthoc.rbx_methods

    @hookimpl
    def changed_defaults():
        specs = original()
        return [type(s)(**{**s.__dict__, "params": {**s.params, "k": 10}}) if s.name == "knn" else s for s in specs]

    monkeypatch.setattr(rbx_posthoc, "rbx_methods", changed_defaults)
    assert cli(*ARGS, "--out", str(tmp_path / "store2")).code == 0
    drift = cli("leaderboard", str(tmp_path / "store2"), "--out", str(tmp_path / "pages"), "--bootstrap", "50", "--check")
    assert drift.code == 1, drift
    moved = [line for line in drift.out.splitlines() if line.startswith("moved: ood.md · table ")]
    assert moved and all("· row knn ·" in line for line in moved), drift.out  # only KNN's cells, old → new
    assert re.search(r"row knn · column embedded-digits / ood/\S+: [\d.]+ → [\d.]+ \(\|Δ\| [\d.]+ > 0.05\)", drift.out), drift.out
    # A tolerance wider than the move passes the cells; the page still names KNN's old configuration.
    wide = cli("leaderboard", str(tmp_path / "store2"), "--out", str(tmp_path / "pages"), "--bootstrap", "50", "--check", "--tolerance", "1e6")
    assert wide.code == 1 and len(wide.out.splitlines()) == 2, wide.out
    assert re.match(r"edited: \S+ood.md line \d+: committed '\| builtin-cnn \| embedded-digits \| knn \| 0 \| `\w+` \| ok \|'", wide.out), wide.out


def test_check_reports_missing_and_stale_pages(cli, tmp_path):
    assert cli(*ARGS, "--out", str(tmp_path / "store")).code == 0
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "old-suite.md").write_text("# gone\n")
    result = cli("leaderboard", str(tmp_path / "store"), "--out", str(tmp_path / "pages"), "--bootstrap", "20", "--check")
    assert result.code == 1
    assert "missing:" in result.out and "stale:" in result.out
