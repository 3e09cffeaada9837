"""The repository's datasets.yaml: configures nothing as committed, and its
commented examples cover every dataset type with entries the registry accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from robustbench_x.config import load_config
from robustbench_x.registry import get_registry

FILE = Path(__file__).resolve().parents[1] / "datasets.yaml"


def _uncommented_text() -> str:
    """The examples with their leading '# ' removed, from the first 'datasets:' line on."""
    lines = FILE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# datasets:")
    return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]) + "\n"


def _uncommented() -> dict:
    return yaml.safe_load(_uncommented_text())


def test_as_committed_it_configures_nothing():
    config = load_config(FILE, get_registry())
    assert config.path == FILE and not config.datasets and not config.models


def test_an_example_for_every_dataset_type():
    registry = get_registry()
    types = {s.name for s in registry.specs("datasets") if not s.builtin and registry.origin("datasets", s.name).distribution == "robustbench_x"}
    examples = _uncommented()["datasets"]
    assert types, "no dataset type registered: the check would pass vacuously"
    assert types - {e["type"] for e in examples.values()} == set()


def test_every_example_passes_the_configuration_checks(tmp_path):
    """Keys, required keys and option forms, as `rbx run` checks them (paths are opened later)."""
    example = tmp_path / "datasets.yaml"
    example.write_text(_uncommented_text(), encoding="utf-8")
    config = load_config(example, get_registry())
    assert set(config.datasets) == set(_uncommented()["datasets"]) and len(config.models) == 2
