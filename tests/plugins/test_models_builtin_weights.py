"""The built-in CNN's shipped weights: same network, same fingerprint, on every machine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rbx_models.smallcnn as smallcnn
from rbx_datasets.embedded import ArraySource
from robustbench_x.api import Dataset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "train_builtin.py"

#: The committed fingerprints: a changed recipe, transform or weights file must change these on purpose.
EMBEDDED_DIGITS = "smallcnn-9fb70e739649f96d"
ENSEMBLE_MEMBERS = ["smallcnn-9fb70e739649f96d", "smallcnn-7b96e92d42eb1df4", "smallcnn-e4d0e9d8ba63c78e", "smallcnn-8be95a764239ca4d", "smallcnn-17c177e4d02f3bfe"]
EMBEDDED_HIER = "smallcnn-c468b673312d9b74"


def _script():
    spec = importlib.util.spec_from_file_location("train_builtin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_builtin"] = module
    spec.loader.exec_module(module)
    return module


def _no_training(*args, **kwargs):
    raise AssertionError("the embedded default must load shipped weights, not train")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", _no_training)
    return tmp_path / "cache"


def test_embedded_model_and_ensemble_members_load_the_shipped_weights(empty_cache):
    from rbx_datasets.embedded import build

    model = smallcnn.build(dataset=build(), seed=0, log=lambda m: None)
    assert model.fingerprint() == EMBEDDED_DIGITS
    assert [m.fingerprint() for m in model.members(5)] == ENSEMBLE_MEMBERS
    assert not (empty_cache / "models").exists()  # nothing trained, nothing cached


def test_robustness_variants_share_the_embedded_weights_and_hierarchy_has_its_own(empty_cache):
    from rbx_retrieval.embedded_hier import build as build_hier
    from rbx_robustness.embedded import EmbeddedDigitsC

    assert smallcnn.build(dataset=EmbeddedDigitsC(), seed=0, log=lambda m: None).fingerprint() == EMBEDDED_DIGITS
    hier = smallcnn.build(dataset=build_hier(), seed=0, log=lambda m: None)
    assert hier.fingerprint() == EMBEDDED_HIER and hier.num_classes == 10


def test_fingerprint_covers_the_transform(monkeypatch):
    state = smallcnn.SmallCNN(6).state_dict()
    before = smallcnn.fingerprint_of(state)
    monkeypatch.setitem(smallcnn.TRANSFORM, "std", 0.3)
    assert smallcnn.fingerprint_of(state) != before


def test_a_damaged_shipped_file_is_refused_naming_it_and_the_fix(empty_cache, tmp_path, monkeypatch):
    from rbx_datasets.embedded import build

    weights = tmp_path / "weights"
    shutil.copytree(smallcnn.WEIGHTS_DIR, weights)
    target = weights / "embedded-digits-seed0.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setattr(smallcnn, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(smallcnn, "MANIFEST", weights / "manifest.json")
    with pytest.raises(ValueError, match=r"embedded-digits-seed0\.safetensors: sha256 .* tools/train_builtin\.py"):
        smallcnn.build(dataset=build(), seed=0, log=lambda m: None)


class _TinyDigits(Dataset):
    """A user's dataset: no shipped weights fit its train split."""

    name = "tiny"
    classes = ["a", "b"]

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
        images[12:, 2:6, 2:6] = 255
        labels = np.repeat([0, 1], 12)
        self._train = ArraySource(images, labels, [f"t/{i}" for i in range(24)])

    def subsets(self):
        return ["train"]

    def samples(self, subset):
        return self._train

    def fingerprint(self, subset):
        return "tiny-train-v1"


def test_another_dataset_trains_at_first_use_then_loads_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    said: list[str] = []
    first = smallcnn.build(dataset=_TinyDigits(), seed=0, log=said.append)
    assert "no shipped weights for tiny" in said[0]
    assert list((tmp_path / "cache" / "models").glob("smallcnn-*.safetensors"))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", _no_training)
    again = smallcnn.build(dataset=_TinyDigits(), seed=0, log=said.append)
    assert again.fingerprint() == first.fingerprint() and "loaded cached weights" in said[-1]


def test_shipped_files_are_small_listed_and_packaged():
    manifest = json.loads(smallcnn.MANIFEST.read_text())
    files = sorted(p.name for p in smallcnn.WEIGHTS_DIR.glob("*.safetensors"))
    assert files == sorted(e["file"] for e in manifest["weights"])
    assert sum((smallcnn.WEIGHTS_DIR / f).stat().st_size for f in files) < 1_000_000
    assert manifest["recipe"] == smallcnn.RECIPE and manifest["transform"] == smallcnn.TRANSFORM
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "weights/*.safetensors" in package_data["rbx_models"]
    assert "!plugins/rbx_models/weights/*.safetensors" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_script_trains_one_epoch_identically_twice(tmp_path):
    script = _script()
    first = script.train_all(tmp_path / "a", epochs=1, log=lambda m: None)
    second = script.train_all(tmp_path / "b", epochs=1, log=lambda m: None)
    assert [e["sha256"] for e in first["weights"]] == [e["sha256"] for e in second["weights"]]
    assert len(first["weights"]) == 6
    # and it trained something: one epoch is not the shipped twelve
    shipped = {e["file"]: e["sha256"] for e in json.loads(smallcnn.MANIFEST.read_text())["weights"]}
    assert all(shipped[e["file"]] != e["sha256"] for e in first["weights"])
    assert [e["key"] for e in first["weights"]] == [e["key"] for e in json.loads(smallcnn.MANIFEST.read_text())["weights"]]


@pytest.mark.slow
def test_the_script_reproduces_the_shipped_weights(tmp_path):
    """Bit for bit where the shipped files were made (same torch and CPU kernels); elsewhere
    float kernels may differ in the last bits, so the networks must agree on the ID test digits."""
    from safetensors.torch import load_file

    from rbx_datasets.embedded import build
    from rbx_models.training import stack_split

    script = _script()
    manifest = json.loads(smallcnn.MANIFEST.read_text())
    fresh = script.train_all(tmp_path, log=lambda m: None)
    if manifest["generated_with"] == script.environment():
        assert [e["sha256"] for e in fresh["weights"]] == [e["sha256"] for e in manifest["weights"]]
        return
    x, _ = stack_split(build(), "id")
    for entry in (e for e in manifest["weights"] if e["dataset"] == "embedded-digits"):
        nets = []
        for folder in (smallcnn.WEIGHTS_DIR, tmp_path):
            net = smallcnn.SmallCNN(entry["classes"])
            net.load_state_dict(load_file(str(folder / entry["file"])))
            nets.append(net.eval())
        with torch.no_grad():
            agree = (nets[0](x).argmax(1) == nets[1](x).argmax(1)).float().mean().item()
        assert agree >= 0.98, f"{entry['file']}: retrained network agrees on {agree:.1%} of the ID test digits"


def test_a_changed_embedded_train_split_trains_and_says_why(tmp_path, monkeypatch):
    from rbx_datasets.embedded import EmbeddedDigits

    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", lambda dataset, seed, classes: smallcnn.SmallCNN(classes))
    dataset = EmbeddedDigits()
    monkeypatch.setattr(dataset, "fingerprint", lambda subset: "changed-digits")
    said: list[str] = []
    smallcnn.build(dataset=dataset, seed=0, log=said.append)
    assert "shipped ones were trained on train split 8205eadb4104faee, this one is changed-digits" in said[0]
