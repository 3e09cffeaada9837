"""MethodSpec.packages: a method whose optional package is missing is planned
as skipped, with the install hint, and runs when the package is there."""

from __future__ import annotations

from robustbench_x.api import MethodSpec
from robustbench_x.plan import missing_packages


def test_missing_package_gives_the_install_hint():
    spec = MethodSpec("m", "x:y", packages=("numpy", "no_such_package_rbx"), install="pip install 'dist[extra]'")
    reason = missing_packages(spec)
    assert reason == "needs the optional package no_such_package_rbx, which is not installed; to run it, pip install 'dist[extra]'"


def test_installed_packages_are_no_reason():
    assert missing_packages(MethodSpec("m", "x:y", packages=("numpy",))) is None
    assert missing_packages(MethodSpec("m", "x:y")) is None


def test_planner_skips_the_job(monkeypatch):
    from robustbench_x import plan

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    model = plan.ModelRef("mo", "mo", None, {}, frozenset(), None)
    data = plan.DatasetRef("d", "d", {}, frozenset(), "d", "classification")
    spec = MethodSpec("m", "x:y", packages=("pkg",), install="pip install pkg")
    assert "pip install pkg" in plan._incompatibility(model, data, spec)
