"""Segmentation readers on small fixtures written in each release's layout
(file names and label encodings as released; ``rbx_segmentation.readers.testing``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from robustbench_x.api import load_factory
from robustbench_x.errors import ConfigError
from rbx_segmentation.readers import READER_SPECS
from rbx_segmentation.readers.testing import RELEASE_WRITERS, W, H, stripes, write_image, write_label


def build(type_name, root=None, options=None):
    spec = next(s for s in READER_SPECS if s.name == type_name)
    return load_factory(spec.factory)(name="probe", options=options or {"root": str(root)}, config_file="datasets.yaml")


def written(type_name, tmp_path):
    return build(type_name, options=RELEASE_WRITERS[type_name](tmp_path))


def test_every_registered_type_has_a_writer():
    assert {s.name for s in READER_SPECS} == set(RELEASE_WRITERS)


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    # stored labelIds: road 7, sidewalk 8, parking 9 (ignored in training), bicycle 33, unlabeled 0,
    # license plate -1 (stored 255), car 26, person 24
    ds = written("cityscapes", tmp_path)
    assert ds.subsets() == ["train", "val"] and ds.task == "segmentation" and ds.ignore_index == 255
    assert len(ds.classes) == 19 and ds.classes[18] == "bicycle"
    image, mask, sid = ds.samples("val")[0]
    assert image.mode == "RGB" and image.size == (W, H) and mask.dtype == np.int64
    assert mask[0].tolist() == [0, 1, 255, 18, 255, 255, 13, 11]
    assert sid == "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    assert ds.provides == {"train_split", "val_split"}


def test_camvid_segnet_layout_void_is_ignored(tmp_path):
    ds = written("camvid", tmp_path)
    assert ds.subsets() == ["train", "val", "test"] and len(ds.classes) == 11
    assert ds.samples("test")[0][1][0].tolist() == [0, 3, 10, 255] * 2  # 11 "Unlabelled" -> 255
    (tmp_path / "valannot" / "0001TP_006690.png").unlink()
    with pytest.raises(ConfigError, match="has no label file"):
        build("camvid", tmp_path)


def test_pascal_voc_reads_palette_indices(tmp_path):
    root = RELEASE_WRITERS["pascal-voc"](tmp_path)["root"]
    with Image.open(f"{root}/SegmentationClass/2007_000032.png") as img:
        assert img.mode == "P"  # as released: colours in the palette, class ids as indices
    ds = build("pascal-voc", root)
    assert ds.subsets() == ["train", "val"] and ds.classes[20] == "tvmonitor"
    assert ds.samples("train")[0][1][0].tolist() == [0, 1, 20, 255] * 2
    (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").write_text("2007_000999\n")
    with pytest.raises(ConfigError, match="2007_000999"):
        build("pascal-voc", root)


def test_streethazards_one_based_ids_and_anomaly_subset(tmp_path):
    # stored ids 1 unlabeled, 2 building, 13 traffic sign, 14 anomaly, 0 (not a released value: void), 8 road
    ds = written("streethazards", tmp_path)
    assert ds.subsets() == ["train", "val", "test", "anomaly/streethazards"]
    assert len(ds.classes) == 13 and ds.classes[0] == "unlabeled" and ds.classes[12] == "traffic sign"
    assert ds.samples("test")[0][1][0].tolist() == [0, 1, 12, 255, 255, 7, 7, 7]
    assert ds.samples("anomaly/streethazards")[0][1][0].tolist() == [0, 0, 0, 1, 255, 0, 0, 0]
    assert ds.anomaly_protocol("anomaly/streethazards") == "streethazards"
    assert "anomaly_masks" in ds.provides
    with pytest.raises(KeyError):
        ds.anomaly_protocol("test")


def test_bdd_anomaly_holds_out_train_motorcycle_bicycle(tmp_path, monkeypatch):
    # frames: train (0, 13, 255) stays; train (0, 17, 255) and val (18, 0) hold motorcycle / bicycle;
    # in the anomaly subset void (255) counts as in-distribution, as the official evaluation does
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path / "cache"))
    ds = written("bdd-anomaly", tmp_path)
    assert ds.subsets() == ["train", "val", "anomaly/bdd-anomaly"] and len(ds.classes) == 16
    assert [s[2] for s in ds.samples("anomaly/bdd-anomaly")] == [
        "seg/images/train/0a0c3694-24b5193a.jpg", "seg/images/val/7d4a9094-0e5c9e5e.jpg"]
    assert ds.samples("anomaly/bdd-anomaly")[0][1][0].tolist() == [0, 1, 0] * 2 + [0, 1]
    assert ds.samples("train")[0][1][0].tolist() == [0, 13, 255] * 2 + [0, 13]
    assert ds.anomaly_protocol("anomaly/bdd-anomaly") == "streethazards"
    assert len(list((tmp_path / "cache").rglob("bdd-anomaly-split-????????????????.json"))) == 1
    assert build("bdd-anomaly", tmp_path / "bdd100k").subsets() == ds.subsets()  # from the cached split


@pytest.mark.parametrize("type_name, folder, subset, protocol", [
    ("road-anomaly-21", "dataset_AnomalyTrack", "anomaly/road-anomaly-21", "smiyc-anomaly"),
    ("road-obstacle-21", "dataset_ObstacleTrack", "anomaly/road-obstacle-21", "smiyc-obstacle"),
])
def test_segmentmeifyoucan_tracks(tmp_path, type_name, folder, subset, protocol):
    root = RELEASE_WRITERS[type_name](tmp_path)["root"]
    ext = "webp" if "Obstacle" in folder else "jpg"
    write_image(tmp_path / folder / "images" / f"test_2.{ext}", fmt=ext.upper().replace("JPG", "JPEG"))  # test labels are withheld
    ds = build(type_name, root)
    assert ds.subsets() == [subset] and ds.anomaly_protocol(subset) == protocol
    assert len(ds.samples(subset)) == 1  # the unlabelled test frame is left out
    assert ds.samples(subset)[0][1][0].tolist() == [0, 1, 255] * 2 + [0, 1]
    (tmp_path / folder / "labels_masks" / "validation_1_labels_semantic.png").unlink()
    with pytest.raises(ConfigError, match="test labels are not released"):
        build(type_name, tmp_path / folder)


def test_fishyscapes_lost_and_found_pairs_labels_with_laf_frames(tmp_path):
    frame = "04_Maurener_Weg_8_000000_000030"
    ds = written("fishyscapes-laf", tmp_path)
    assert ds.subsets() == ["anomaly/fishyscapes-laf"] and ds.anomaly_protocol("anomaly/fishyscapes-laf") == "fishyscapes"
    image, mask, sid = ds.samples("anomaly/fishyscapes-laf")[0]
    assert mask[0].tolist() == [0, 1, 255, 0] * 2 and sid == f"leftImg8bit/test/04_Maurener_Weg_8/{frame}_leftImg8bit.png"
    write_label(tmp_path / "fishyscapes_lostandfound" / "0001_05_Schafgasse_1_000001_000100_labels.png", stripes(0))
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
    first = written("camvid", tmp_path)
    again = build("camvid", tmp_path)
    assert first.fingerprint("val") == again.fingerprint("val") != first.fingerprint("train")
    label = tmp_path / "valannot" / "0001TP_006690.png"
    write_label(label, stripes(1, 2, 3))
    os.utime(label, ns=(1, 1))
    assert build("camvid", tmp_path).fingerprint("val") != first.fingerprint("val")


def test_a_label_of_another_size_is_an_error_naming_both_files(tmp_path):
    write_image(tmp_path / "train" / "a.png")
    write_label(tmp_path / "trainannot" / "a.png", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="trainannot/a.png is 3x3 but image"):
        build("camvid", tmp_path).samples("train")[0]


def test_pascal_voc_val_listing_train_ids_is_a_warning(tmp_path):
    import warnings

    root = RELEASE_WRITERS["pascal-voc"](tmp_path)["root"]
    lists = tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("pascal-voc", root)  # the released lists do not overlap
    (lists / "val.txt").write_text((lists / "train.txt").read_text())
    with pytest.warns(UserWarning, match=r"val\.txt lists 1 of its 1 ids in train\.txt too \(e\.g\. '2007_000032'\)"):
        assert build("pascal-voc", root).subsets() == ["train", "val"]
