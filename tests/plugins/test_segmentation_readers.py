"""Segmentation readers on small fixtures written in each release's layout
(file names and label encodings as released)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from robustbench_x.api import load_factory
from robustbench_x.errors import ConfigError
from rbx_segmentation.readers import READER_SPECS

W, H = 8, 6


def _image(path, fmt=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)


def _label(path, values, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")
    if mode == "P":
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    img.save(path)


def _stripes(*values):
    """An (H, W) map whose column j holds values[j % len(values)]."""
    return np.tile(np.array([values[j % len(values)] for j in range(W)]), (H, 1))


def build(type_name, root, **extra):
    spec = next(s for s in READER_SPECS if s.name == type_name)
    return load_factory(spec.factory)(name="probe", options={"root": str(root), **extra}, config_file="datasets.yaml")


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        _image(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        # road 7, sidewalk 8, parking 9 (ignored), bicycle 33, unlabeled 0, license plate stored as 255 (id -1)
        _label(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", _stripes(7, 8, 9, 33, 0, 255, 26, 24))
    ds = build("cityscapes", tmp_path)
    assert ds.subsets() == ["train", "val"] and ds.task == "segmentation" and ds.ignore_index == 255
    assert len(ds.classes) == 19 and ds.classes[18] == "bicycle"
    image, mask, sid = ds.samples("val")[0]
    assert image.mode == "RGB" and image.size == (W, H) and mask.dtype == np.int64
    assert mask[0].tolist() == [0, 1, 255, 18, 255, 255, 13, 11]
    assert sid == "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    assert ds.provides == {"train_split", "val_split"}


def test_camvid_segnet_layout_void_is_ignored(tmp_path):
    for split in ("train", "val", "test"):
        _image(tmp_path / split / "0001TP_006690.png")
        _label(tmp_path / f"{split}annot" / "0001TP_006690.png", _stripes(0, 3, 10, 11))
    ds = build("camvid", tmp_path)
    assert ds.subsets() == ["train", "val", "test"] and len(ds.classes) == 11
    assert ds.samples("test")[0][1][0].tolist() == [0, 3, 10, 255] * 2
    (tmp_path / "valannot" / "0001TP_006690.png").unlink()
    with pytest.raises(ConfigError, match="has no label file"):
        build("camvid", tmp_path)


def test_pascal_voc_reads_palette_indices(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for i, split in (("2007_000032", "train"), ("2007_000033", "val")):
        _image(root / "JPEGImages" / f"{i}.jpg", fmt="JPEG")
        _label(root / "SegmentationClass" / f"{i}.png", _stripes(0, 1, 20, 255), mode="P")
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"{i}\n")
    with Image.open(root / "SegmentationClass" / "2007_000032.png") as img:
        assert img.mode == "P"  # as released: colours in the palette, class ids as indices
    ds = build("pascal-voc", root)
    assert ds.subsets() == ["train", "val"] and ds.classes[20] == "tvmonitor"
    assert ds.samples("train")[0][1][0].tolist() == [0, 1, 20, 255] * 2
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000999\n")
    with pytest.raises(ConfigError, match="2007_000999"):
        build("pascal-voc", root)


def test_streethazards_one_based_ids_and_anomaly_subset(tmp_path):
    layout = (("train", "training", "t1"), ("train", "validation", "t4"), ("test", "test", "t5"))
    for part, folder, town in layout:
        _image(tmp_path / part / "images" / folder / town / "300.png")
        # stored ids: 1 unlabeled, 2 building, 13 traffic sign, 14 anomaly, 0 (never released; void)
        _label(tmp_path / part / "annotations" / folder / town / "300.png", _stripes(1, 2, 13, 14, 0, 8, 8, 8))
    ds = build("streethazards", tmp_path)
    assert ds.subsets() == ["train", "val", "test", "anomaly/streethazards"]
    assert len(ds.classes) == 13 and ds.classes[0] == "unlabeled" and ds.classes[12] == "traffic sign"
    assert ds.samples("test")[0][1][0].tolist() == [0, 1, 12, 255, 255, 7, 7, 7]
    assert ds.samples("anomaly/streethazards")[0][1][0].tolist() == [0, 0, 0, 1, 255, 0, 0, 0]
    assert ds.anomaly_protocol("anomaly/streethazards") == "streethazards"
    assert "anomaly_masks" in ds.provides
    with pytest.raises(KeyError):
        ds.anomaly_protocol("test")


def test_bdd_anomaly_holds_out_train_motorcycle_bicycle(tmp_path, monkeypatch):
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    frames = {("train", "0a0a0b1a-7c39d841"): (0, 13, 255), ("train", "0a0c3694-24b5193a"): (0, 17, 2),
              ("val", "7d2f7975-e0c1c5a7"): (10, 11), ("val", "7d4a9094-0e5c9e5e"): (18, 0)}
    root = tmp_path / "bdd100k"
    for (split, stem), values in frames.items():
        _image(root / "seg" / "images" / split / f"{stem}.jpg", fmt="JPEG")
        _label(root / "seg" / "labels" / split / f"{stem}_train_id.png", _stripes(*values))
    ds = build("bdd-anomaly", root)
    assert ds.subsets() == ["train", "val", "anomaly/bdd-anomaly"] and len(ds.classes) == 16
    assert [s[2] for s in ds.samples("anomaly/bdd-anomaly")] == [
        "seg/images/train/0a0c3694-24b5193a.jpg", "seg/images/val/7d4a9094-0e5c9e5e.jpg"]
    assert ds.samples("anomaly/bdd-anomaly")[0][1][0].tolist() == [0, 1, 0] * 2 + [0, 1]
    assert ds.samples("train")[0][1][0].tolist() == [0, 13, 255] * 2 + [0, 13]
    assert ds.anomaly_protocol("anomaly/bdd-anomaly") == "streethazards"
    assert build("bdd-anomaly", root).subsets() == ds.subsets()  # the cached split


@pytest.mark.parametrize("type_name, folder, ext, subset, protocol", [
    ("road-anomaly-21", "dataset_AnomalyTrack", "jpg", "anomaly/road-anomaly-21", "smiyc-anomaly"),
    ("road-obstacle-21", "dataset_ObstacleTrack", "webp", "anomaly/road-obstacle-21", "smiyc-obstacle"),
])
def test_segmentmeifyoucan_tracks(tmp_path, type_name, folder, ext, subset, protocol):
    root = tmp_path / folder
    _image(root / "images" / f"validation_1.{ext}", fmt="WEBP" if ext == "webp" else "JPEG")
    _image(root / "images" / f"test_2.{ext}", fmt="WEBP" if ext == "webp" else "JPEG")  # test labels are withheld
    _label(root / "labels_masks" / "validation_1_labels_semantic.png", _stripes(0, 1, 255))
    ds = build(type_name, root)
    assert ds.subsets() == [subset] and ds.anomaly_protocol(subset) == protocol
    assert len(ds.samples(subset)) == 1
    assert ds.samples(subset)[0][1][0].tolist() == [0, 1, 255] * 2 + [0, 1]
    (root / "labels_masks" / "validation_1_labels_semantic.png").unlink()
    with pytest.raises(ConfigError, match="test labels are not released"):
        build(type_name, root)


def test_fishyscapes_lost_and_found_pairs_labels_with_laf_frames(tmp_path):
    frame = "04_Maurener_Weg_8_000000_000030"
    _image(tmp_path / "leftImg8bit" / "test" / "04_Maurener_Weg_8" / f"{frame}_leftImg8bit.png")
    _label(tmp_path / "fishyscapes_lostandfound" / f"0000_{frame}_labels.png", _stripes(0, 1, 255, 0))
    ds = build("fishyscapes-laf", tmp_path)
    assert ds.subsets() == ["anomaly/fishyscapes-laf"] and ds.anomaly_protocol("anomaly/fishyscapes-laf") == "fishyscapes"
    image, mask, sid = ds.samples("anomaly/fishyscapes-laf")[0]
    assert mask[0].tolist() == [0, 1, 255, 0] * 2 and sid == f"leftImg8bit/test/04_Maurener_Weg_8/{frame}_leftImg8bit.png"
    _label(tmp_path / "fishyscapes_lostandfound" / "0001_05_Schafgasse_1_000001_000100_labels.png", _stripes(0))
    with pytest.raises(ConfigError, match="05_Schafgasse_1_000001_000100_leftImg8bit.png"):
        build("fishyscapes-laf", tmp_path)


def test_wrong_root_names_the_file_key_and_fix(tmp_path):
    for spec in READER_SPECS:
        with pytest.raises(ConfigError) as missing:
            build(spec.name, tmp_path / "nowhere")
        assert "datasets.yaml" in str(missing.value) and "datasets.probe.root" in str(missing.value) and "fix:" in str(missing.value)
        with pytest.raises(ConfigError, match="fix:"):
            build(spec.name, tmp_path)  # exists, but holds no release


def test_fingerprint_is_stable_and_tracks_label_files(tmp_path):
    for split in ("train", "val"):
        _image(tmp_path / split / "a.png")
        _label(tmp_path / f"{split}annot" / "a.png", _stripes(1, 2))
    first = build("camvid", tmp_path)
    again = build("camvid", tmp_path)
    assert first.fingerprint("val") == again.fingerprint("val") != first.fingerprint("train")
    label = tmp_path / "valannot" / "a.png"
    _label(label, _stripes(1, 2, 3))
    os.utime(label, ns=(1, 1))
    assert build("camvid", tmp_path).fingerprint("val") != first.fingerprint("val")


def test_a_label_of_another_size_is_an_error_naming_both_files(tmp_path):
    _image(tmp_path / "train" / "a.png")
    _label(tmp_path / "trainannot" / "a.png", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="trainannot/a.png is 3x3 but image"):
        build("camvid", tmp_path).samples("train")[0]
