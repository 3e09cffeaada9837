"""The built-in CNN's weights: generated from the recipe at first use (not tracked), cached,
the same network on every run, and the manifest's bits where the manifest was made."""

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

#: The committed fingerprints (the pages' provenance): a changed recipe or transform must change these on
#: purpose. Float kernels differ in the last bits between CPUs, so they are asserted where the manifest was made.
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
    raise AssertionError("trained again: the cached weights should have been loaded")


def _where_made() -> bool:
    return json.loads(smallcnn.MANIFEST.read_text())["generated_with"] == _script().environment()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The embedded default's networks, trained at first use into an empty cache."""
    from rbx_datasets.embedded import build
    from rbx_retrieval.embedded_hier import build as build_hier

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RBX_CACHE_DIR", str(cache))
        mp.setattr(smallcnn, "MANIFEST", tmp_path_factory.mktemp("nothing-kept") / "manifest.json")  # as in a fresh clone
        model = smallcnn.build(dataset=build(), seed=0, log=lambda m: None)
        members = [m.fingerprint() for m in model.members(5)]
        hier = smallcnn.build(dataset=build_hier(), seed=0, log=lambda m: None)
    return cache, model, members, hier


def test_embedded_model_and_ensemble_members_train_at_first_use_then_load_from_the_cache(trained, monkeypatch):
    from rbx_datasets.embedded import build

    cache, model, members, _ = trained
    assert len(list((cache / "models").glob("smallcnn-*.safetensors"))) == 6
    assert members[0] == model.fingerprint() and len(set(members)) == 5
    if _where_made():  # the pages' networks, bit for bit
        assert model.fingerprint() == EMBEDDED_DIGITS and members == ENSEMBLE_MEMBERS
    monkeypatch.setenv("RBX_CACHE_DIR", str(cache))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", _no_training)
    again = smallcnn.build(dataset=build(), seed=0, log=lambda m: None)
    assert again.fingerprint() == model.fingerprint() and [m.fingerprint() for m in again.members(5)] == members


def test_robustness_variants_share_the_embedded_weights_and_hierarchy_has_its_own(trained, monkeypatch):
    from rbx_robustness.embedded import EmbeddedDigitsC

    cache, model, _, hier = trained
    monkeypatch.setenv("RBX_CACHE_DIR", str(cache))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", _no_training)
    assert smallcnn.build(dataset=EmbeddedDigitsC(), seed=0, log=lambda m: None).fingerprint() == model.fingerprint()
    assert hier.fingerprint() != model.fingerprint() and hier.num_classes == 10
    if _where_made():
        assert hier.fingerprint() == EMBEDDED_HIER


def test_fingerprint_covers_the_transform(monkeypatch):
    state = smallcnn.SmallCNN(6).state_dict()
    before = smallcnn.fingerprint_of(state)
    monkeypatch.setitem(smallcnn.TRANSFORM, "std", 0.3)
    assert smallcnn.fingerprint_of(state) != before


def test_a_damaged_weights_file_is_refused_naming_it_and_the_fix(tmp_path, monkeypatch):
    from rbx_datasets.embedded import build

    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", _no_training)
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(smallcnn.MANIFEST, weights / "manifest.json")
    (weights / "embedded-digits-seed0.safetensors").write_bytes(b"a stale or damaged copy")
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


def test_the_manifest_describes_the_current_recipe():
    manifest = json.loads(smallcnn.MANIFEST.read_text())
    assert manifest["recipe"] == smallcnn.RECIPE and manifest["transform"] == smallcnn.TRANSFORM
    assert len(manifest["weights"]) == 6


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
def test_the_script_reproduces_the_manifest_and_the_first_use_training(tmp_path, trained):
    """Bit for bit where the manifest was made (same torch and CPU kernels); everywhere, the script
    and the first-use training are one recipe, so they give the same networks on this machine."""
    from safetensors.torch import load_file

    script = _script()
    manifest = json.loads(smallcnn.MANIFEST.read_text())
    fresh = script.train_all(tmp_path, log=lambda m: None)
    if manifest["generated_with"] == script.environment():
        assert [e["sha256"] for e in fresh["weights"]] == [e["sha256"] for e in manifest["weights"]]
    _, _, members, hier = trained
    by_file = {e["file"]: smallcnn.fingerprint_of(load_file(str(tmp_path / e["file"]))) for e in fresh["weights"]}
    assert [by_file[f"embedded-digits-seed{s}.safetensors"] for s in (0, 1000, 2000, 3000, 4000)] == members
    assert by_file["embedded-digits-hier-seed0.safetensors"] == hier.fingerprint()


def test_a_changed_embedded_train_split_trains_and_says_why(tmp_path, monkeypatch):
    from rbx_datasets.embedded import EmbeddedDigits

    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("rbx_models.training.train_smallcnn", lambda dataset, seed, classes: smallcnn.SmallCNN(classes))
    dataset = EmbeddedDigits()
    monkeypatch.setattr(dataset, "fingerprint", lambda subset: "changed-digits")
    said: list[str] = []
    smallcnn.build(dataset=dataset, seed=0, log=said.append)
    assert "shipped ones were trained on train split 8205eadb4104faee, this one is changed-digits" in said[0]
