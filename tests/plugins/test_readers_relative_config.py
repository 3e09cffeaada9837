"""A relative ``root:`` in a datasets.yaml named by a relative ``--config`` from
another working directory: every path below the root is resolved against the
config file once (resolving it twice prefixed the config's folder twice, so a
valid config was refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_x.config import load_config


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 90, dtype=np.uint8)).save(path)


def _relative_config(tmp_path, monkeypatch, text: str) -> str:
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "datasets.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)  # the yaml is in y/, the cwd is its parent, --config is relative
    config = load_config("y/datasets.yaml")
    assert not config.path.is_absolute()
    return str(config.path)


def test_imagenet_train_split_below_a_relative_root(tmp_path, monkeypatch):
    from rbx_vlm.datasets import build_imagenet

    for split in ("val", "train"):
        _image(tmp_path / "data" / "in" / split / "n01440764" / "a.png")
    _image(tmp_path / "data" / "inv2" / "0" / "a.png")
    config_file = _relative_config(tmp_path, monkeypatch, "datasets: {}\n")
    ds = build_imagenet("in", {"root": "../data/in", "train": "train", "dg": {"imagenet-v2": "../data/inv2"}}, config_file)
    assert ds.subsets() == ["id", "train", "dg/imagenet-v2"]
    assert ds.samples("train").files[0].resolve() == (tmp_path / "data/in/train/n01440764/a.png").resolve()


def test_cure_tsd_default_labels_below_a_relative_root(tmp_path, monkeypatch):
    from rbx_detection.cure_tsd import build
    from rbx_detection.testing import write_cure_tsd_tree

    write_cure_tsd_tree(tmp_path / "data" / "tsd", video=False)
    config_file = _relative_config(tmp_path, monkeypatch, "datasets: {}\n")
    ds = build("tsd", {"root": "../data/tsd"}, config_file)
    assert ds.annotation_dir.resolve() == (tmp_path / "data/tsd/labels").resolve()
    assert "id" in ds.subsets()


def test_imagefolder_splits_and_ood_below_a_relative_root(tmp_path, monkeypatch):
    from rbx_datasets.imagefolder import build

    for split in ("test", "train"):
        _image(tmp_path / "data" / "if" / split / "a" / "x.png")
    _image(tmp_path / "data" / "ood" / "x.png")
    config_file = _relative_config(tmp_path, monkeypatch, "datasets: {}\n")
    ds = build("if", {"root": "../data/if", "test": "test", "train": "train", "ood": {"o": "../data/ood"}}, config_file)
    assert ds.subsets() == ["id", "train", "ood/o"] and len(ds.samples("train")) == 1
