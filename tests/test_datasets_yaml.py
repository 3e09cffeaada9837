"""The repository's datasets.yaml: configures nothing as committed, and its
commented examples cover every dataset type with entries the registry accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from robustbench_x.config import MODEL_KEYS, load_config
from robustbench_x.registry import get_registry

FILE = Path(__file__).resolve().parents[1] / "datasets.yaml"


def _uncommented() -> dict:
    """The examples with their leading '# ' removed, from the first 'datasets:' line on."""
    lines = FILE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# datasets:")
    body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]]
    return yaml.safe_load("\n".join(body))


def test_as_committed_it_configures_nothing():
    config = load_config(FILE, get_registry())
    assert config.path == FILE and not config.datasets and not config.models


def test_an_example_for_every_dataset_type():
    registry = get_registry()
    types = {s.name for s in registry.specs("datasets") if not s.builtin and registry.origin("datasets", s.name).distribution == "robustbench_x"}
    examples = _uncommented()["datasets"]
    assert types, "no dataset type registered: the check would pass vacuously"
    assert types - {e["type"] for e in examples.values()} == set()


def test_every_example_is_a_valid_entry():
    registry = get_registry()
    raw = _uncommented()
    for name, entry in raw["datasets"].items():
        spec = registry.get("datasets", entry["type"])
        keys = set(entry) - {"type"}
        assert not spec.builtin, name
        assert keys <= set(spec.option_keys), f"{name}: unknown keys {keys - set(spec.option_keys)}"
        assert set(spec.required_keys) <= keys, f"{name}: missing {set(spec.required_keys) - keys}"
    for name, entry in raw["models"].items():
        assert registry.get("models", entry["type"]).family, name
        assert set(entry) <= MODEL_KEYS, f"{name}: unknown keys {set(entry) - MODEL_KEYS}"
