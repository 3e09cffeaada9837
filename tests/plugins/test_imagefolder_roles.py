"""imagefolder: one folder serving two roles, a tree one level too high and a root that
is a file stop the run before any work, naming both keys and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rbx_datasets.imagefolder import build
from robustbench_x.errors import ConfigError


@pytest.fixture
def tree(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("a", "b"):
            (tmp_path / "if" / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "if" / split / cls / "x.png")
    (tmp_path / "far").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "far" / "x.png")
    return tmp_path


def _error(tree, options) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build("mine", options, str(tree / "datasets.yaml"))
    return info.value


@pytest.mark.parametrize(
    "extra, first, second, how",
    [
        ({"train": "test"}, "test", "train", "the same folder"),
        ({"train": "train", "val": "./test"}, "test", "val", "the same folder"),
        ({"ood": {"same": "if/test"}}, "test", "ood.same", "the same folder"),
        ({"ood": {"up": "if"}}, "test", "ood.up", "nested folders"),  # the OOD set would hold every test image
    ],
)
def test_one_folder_for_two_roles_names_both_keys(tree, extra, first, second, how):
    error = _error(tree, {"root": "if", "test": "test", **extra})
    assert f"'datasets.mine.{first}' and 'datasets.mine.{second}' are {how}" in error.message
    assert error.key == f"datasets.mine.{second}" and f"give '{second}' its own folder" in error.fix


def test_class_folders_named_like_splits_suggest_the_right_root(tree):
    error = _error(tree, {"root": ".", "test": "if", "train": "if"})
    assert "the class folders of the test split" in error.message and "test, train, val: split folders, one level too high" in error.message
    assert error.key == "datasets.mine.test" and error.fix.startswith("set `root: if` with test: test, train: train, val: val")


def test_a_root_that_is_a_file_says_so(tree):
    (tree / "afile").write_text("")
    error = _error(tree, {"root": "afile", "test": "test"})
    assert "dataset root is a file, not a folder" in error.message and error.key == "datasets.mine.root"


def test_distinct_roles_still_open(tree):
    ds = build("mine", {"root": "if", "test": "test", "train": "train", "val": "val", "ood": {"far": "far"}}, str(tree / "datasets.yaml"))
    assert ds.subsets() == ["id", "train", "val", "ood/far"]
