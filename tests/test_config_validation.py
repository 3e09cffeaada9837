"""Configuration and store problems stop a run before any work: exit 2, the
message names the file, the key and the fix, and the store is left untouched."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_x.options import type_problem
from robustbench_x.registry import Registry


def _tree(root: Path, splits=("test",), with_ood=True) -> Path:
    rng = np.random.default_rng(0)
    folders = [root / s / c for s in splits for c in ("a", "b")] + ([root / "noise"] if with_ood else [])
    for d in folders:
        d.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def _yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _run(cli, tmp_path, config: Path, *extra: str):
    store = tmp_path / "store"
    result = cli("run", "--suite", "ood", "--methods", "msp", "--config", str(config), "--out", str(store), *extra)
    return result, store


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("with_ood", [False, True], ids=["without-ood", "with-ood"])
def test_missing_root_is_exit_2_before_any_work(cli, tmp_path, with_ood):
    ood = f"\n    ood: {{x: {tmp_path}}}" if with_ood else ""
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {tmp_path / 'missing'}\n    test: test{ood}\n")
    result, store = _run(cli, tmp_path, config)
    assert result.code == 2, result
    assert str(config) in result.err and "key 'datasets.mine.root'" in result.err and "fix:" in result.err
    assert "dataset root does not exist" in result.err
    assert not store.exists()


def test_missing_split_and_ood_folder_name_their_keys(cli, tmp_path):
    root = _tree(tmp_path / "data")
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {root}\n    train: nope\n    test: test\n    ood: {{x: {root / 'noise'}}}\n")
    result, store = _run(cli, tmp_path, config)
    assert result.code == 2 and "key 'datasets.mine.train'" in result.err and not store.exists(), result
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {root}\n    test: test\n    ood: {{x: {root / 'gone'}}}\n")
    result, store = _run(cli, tmp_path, config)
    assert result.code == 2 and "key 'datasets.mine.ood.x'" in result.err and not store.exists(), result


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("root", "5", "expected a file or folder, got 5 (int)"),
        ("root", "[1, 2]", "expected a file or folder, got [1, 2] (list)"),
        ("extensions", "5", "expected a list, got 5 (int)"),
        ("classes", "5", "expected a list, got 5 (int)"),
        ("classes", "cat", "expected a list, got 'cat' (str)"),
        ("ood", "[a, b]", "expected a mapping, got ['a', 'b'] (list)"),
    ],
)
def test_option_of_the_wrong_form_is_exit_2_naming_file_and_key(cli, tmp_path, key, value, expected):
    root = _tree(tmp_path / "data")
    options = {"root": str(root), "test": "test", key: value}
    body = "datasets:\n  mine:\n    type: imagefolder\n" + "".join(f"    {k}: {v}\n" for k, v in options.items())
    config = _yaml(tmp_path, body)
    result, store = _run(cli, tmp_path, config)
    assert result.code == 2, result
    assert f"key 'datasets.mine.{key}'" in result.err and expected in _flat(result.err) and "fix: write" in result.err
    assert "TypeError" not in result.err and not store.exists()


def test_imagefolder_without_train_for_a_model_that_trains_on_it(cli, tmp_path):
    root = _tree(tmp_path / "data")
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {root}\n    test: test\n    ood: {{noise: {root / 'noise'}}}\n")
    result, store = _run(cli, tmp_path, config, "--datasets", "mine")
    assert result.code == 2, result
    text = _flat(result.err)
    assert "model 'builtin-cnn' needs train_split" in text and "key 'datasets.mine.train'" in text and "`train:`" in text
    assert "KeyError" not in text and not store.exists()


def test_a_pretrained_only_dataset_refuses_models_that_train_on_it(tmp_path):
    """DatasetSpec.pretrained_only: a model whose build trains on the train split (requires train_split) stops the
    plan before any work, even when the dataset has a train split; models that do not train on it pass."""
    from robustbench_x.config import Config, Entry
    from robustbench_x.errors import ConfigError, UsageError
    from robustbench_x.plan import DatasetRef, ModelRef, _check_model_needs

    config = Config(tmp_path / "datasets.yaml", datasets={"big": Entry("big", "big-type", {"train": "train"})})
    big = DatasetRef("big", "big-type", {"train": "train"}, frozenset({"train_split"}), "big", "retrieval", pretrained_only=True)
    trains = ModelRef("cnn", "cnn", None, {}, frozenset({"features"}), None, frozenset({"train_split"}))
    with pytest.raises(ConfigError, match=r"model 'cnn' trains on the dataset it evaluates, and dataset 'big' is evaluated with pretrained models only") as exc:
        _check_model_needs(trains, big, config)
    assert exc.value.key == "datasets.big" and "--models" in exc.value.fix
    with pytest.raises(UsageError, match=r"(?s)dataset 'big' is evaluated with pretrained models only.*fix: evaluate a pretrained model"):
        _check_model_needs(trains, big, Config())  # a built-in dataset: no entry to name
    _check_model_needs(ModelRef("extractor", "extractor", None, {}, frozenset({"features"}), None), big, config)
    _check_model_needs(ModelRef("other", "other", None, {}, frozenset(), "imagenet-1k", frozenset({"train_split"})), big, config)
    small = DatasetRef("small", "small-type", {"train": "train"}, frozenset({"train_split"}), "small", "retrieval")
    _check_model_needs(trains, small, config)


def test_non_utf8_yaml_names_the_file(cli, tmp_path):
    config = tmp_path / "datasets.yaml"
    config.write_bytes("datasets:\n  caf\u00e9:\n    type: imagefolder\n".encode("latin-1"))
    result, store = _run(cli, tmp_path, config)
    assert result.code == 2, result
    assert str(config) in result.err and "not UTF-8" in result.err and "line 2" in result.err and "fix:" in result.err
    assert "internal error" not in result.err and not store.exists()


def test_out_that_is_a_file_is_exit_2_and_left_alone(cli, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    result = cli("run", "--suite", "ood", "--methods", "msp", "--out", str(target))
    assert result.code == 2 and "is a file, not a directory" in result.err, result
    assert target.read_text() == "keep me"


def test_out_that_cannot_be_written_is_exit_2(cli, tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits: use a directory nobody may create files in
        out = Path("/proc/rbx-results")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        out = parent / "store"
    result = cli("run", "--suite", "ood", "--methods", "msp", "--out", str(out))
    assert result.code == 2 and "cannot write into" in result.err, result
    assert not out.exists()


def test_a_configured_dataset_that_cannot_serve_the_suite_is_reported(cli, tmp_path):
    root = _tree(tmp_path / "data", splits=("train", "test"), with_ood=False)
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {root}\n    train: train\n    test: test\n")
    result, store = _run(cli, tmp_path, config, "--quiet", "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["excluded_datasets"] == [
        {"dataset": "mine", "reason": "it provides no ood_subsets; to include it, give the dataset an `ood:` entry (name: folder of images) in datasets.yaml"}
    ]
    result, _ = _run(cli, tmp_path, config, "--quiet")
    assert "ood: dataset 'mine' not evaluated: it provides no ood_subsets" in _flat(result.err), result


def test_every_first_party_dataset_type_declares_the_form_of_each_key():
    registry = Registry()
    registry.load_entry_points()
    types = [s for s in registry.specs("datasets") if not s.builtin and registry.plugin_label("datasets", s.name).startswith("robustbench")]
    assert {"imagefolder", "imagenet", "imagenet-c", "cifar-c", "hgldv2"} <= {s.name for s in types}
    for spec in types:
        assert set(spec.option_types) == set(spec.option_keys), spec.name


@pytest.mark.parametrize(
    "declared, value, ok",
    [
        ("path", "/data", True), ("path", "", False), ("path", 5, False), ("path", None, False),
        ("int", 10, True), ("int", True, False), ("int", "10", False),
        ("bool", False, True), ("bool", 0, False),
        ("names", ["a", "b"], True), ("names", [], True), ("names", "a", False), ("names", [1], False),
        ("paths", {"x": "/d"}, True), ("paths", {"x": 1}, False), ("paths", ["/d"], False),
        ("path|names", "classes.txt", True), ("path|names", ["a"], True), ("path|names", 3, False),
        ("str", "cifar10", True), ("str", 2024, False),
    ],
)
def test_option_forms(declared, value, ok):
    assert (type_problem("k", declared, value) is None) == ok


def test_an_unknown_declared_form_is_a_plugin_bug():
    with pytest.raises(ValueError, match="unknown option type 'folder'"):
        type_problem("root", "folder", "/data")


@pytest.mark.parametrize(
    "option_types, message",
    [({"root": "folder"}, "unknown option type 'folder'"), ({"root": "path", "rot": "path"}, r"names keys \['rot'\] that are not in option_keys")],
)
def test_the_conformance_kit_catches_bad_option_types(option_types, message):
    from robustbench_x.api import DatasetSpec
    from robustbench_x.testing.checks import check_dataset_provides_known

    spec = DatasetSpec("bad-type", factory="x:y", option_keys={"root"}, required_keys={"root"}, option_types=option_types)
    with pytest.raises(AssertionError, match=message):
        check_dataset_provides_known(spec)


@pytest.mark.parametrize("key, value, expected", [("checkpoint", "5", "expected a file or folder, got 5 (int)"), ("num_classes", "ten", "expected an integer")])
def test_model_entries_are_typed_too(tmp_path, key, value, expected):
    from robustbench_x.config import load_config
    from robustbench_x.errors import ConfigError

    registry = Registry()
    registry.load_entry_points()
    config = _yaml(tmp_path, f"models:\n  mine:\n    type: timm\n    arch: resnet18\n    {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"(?s)key 'models.mine.{key}'.*{re.escape(expected)}"):
        load_config(config, registry)


def test_a_missing_config_file_leaves_an_existing_store_unchanged(cli, tmp_path):
    store = tmp_path / "store"
    (store / "results").mkdir(parents=True)
    (store / "results" / "keep.txt").write_text("earlier run")
    before = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    result = cli("run", "--suite", "ood", "--methods", "msp", "--config", str(tmp_path / "nope.yaml"), "--out", str(store))
    assert result.code == 2 and "nope.yaml" in result.err and "fix:" in result.err, result
    assert sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*")) == before


def test_a_reader_error_without_the_file_gets_the_file_and_entry(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    config = _yaml(tmp_path, f"datasets:\n  cc:\n    type: cifar-c\n    root: {tmp_path / 'empty'}\n")
    result = cli("run", "--suite", "corruption", "--methods", "msp", "--config", str(config), "--out", str(tmp_path / "store"))
    assert result.code == 2, result
    assert f"{config}: key 'datasets.cc" in result.err and "fix:" in result.err and not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("body", "key", "message", "fix"),
    [
        ("datasets:\n  a:\n    type: imagefolder\n    root: x\n  a:\n    type: imagefolder\n    root: y\n", None,
         "the key 'a' is written twice in one mapping, at lines 2 and 5", "keep one of the two"),
        ("datasets:\n  a:\n    type: imagefolder\n    root: x\n    root: y\n", None, "the key 'root' is written twice", "keep one"),
        ("datasets:\n  007:\n    type: imagefolder\n    root: x\n", "datasets.7", "the name 7 is not a string to YAML (int)", "'007':"),
        ("datasets:\n  embedded-digits:\n    type: imagefolder\n    root: x\n", "datasets.embedded-digits", "is already a built-in dataset",
         "give the entry another name"),
        ("models:\n  builtin-cnn:\n    type: builtin-cnn\n", "models.builtin-cnn", "is already a registered model", "'builtin-cnn-mine'"),
    ],
    ids=["duplicate-entry", "duplicate-option", "numeric-name", "shadows-builtin-dataset", "shadows-registered-model"],
)
def test_entries_that_yaml_or_a_builtin_would_silently_replace_are_refused(cli, tmp_path, body, key, message, fix):
    # PyYAML keeps the last of two equal keys, reads 007 as 7; a built-in's name would mix two datasets' results
    config = _yaml(tmp_path, body)
    result, store = _run(cli, tmp_path, config)
    err = _flat(result.err)
    assert result.code == 2 and message in err and fix in err and str(config) in err, result
    assert key is None or f"key '{key}'" in err
    assert not store.exists()


def test_a_folder_given_as_the_config_file_is_named_as_such(cli, tmp_path):
    result, store = _run(cli, tmp_path, tmp_path)
    assert result.code == 2 and "--config names a folder, not a file" in _flat(result.err)
    assert f"--config {tmp_path / 'datasets.yaml'}" in _flat(result.err)


def test_datasets_verify_checks_every_dataset_and_reports_bad_data_as_such(cli, tmp_path):
    good = _tree(tmp_path / "good")
    bad = _tree(tmp_path / "bad")
    (bad / "test" / "a" / "0.png").write_bytes(b"not an image")
    config = _yaml(tmp_path, f"datasets:\n  bad:\n    type: imagefolder\n    root: {bad}\n    test: test\n    ood: {{x: {bad / 'noise'}}}\n"
                             f"  good:\n    type: imagefolder\n    root: {good}\n    test: test\n    ood: {{x: {good / 'noise'}}}\n")
    result = cli("datasets", "verify", "bad", "good", "--config", str(config))
    assert result.code == 1, result
    assert "internal error" not in result.err and "bad id:" in _flat(result.err) and "0.png" in result.err
    assert "good id: 6 samples" in result.out  # a bad dataset does not stop the others


@pytest.mark.parametrize(("name", "message"), [("imagefolder", "'imagefolder' is a dataset type, not a dataset"), ("nosuch", "known datasets:")])
def test_datasets_verify_names_configured_datasets(cli, tmp_path, name, message):
    config = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {_tree(tmp_path / 'd')}\n    test: test\n")
    result = cli("datasets", "verify", name, "--config", str(config))
    assert result.code == 2 and message in result.err, result
    assert name != "nosuch" or "mine" in result.err  # the configured names are among the known ones
