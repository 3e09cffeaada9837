"""ImageNet, MOS OOD and shifted-ImageNet readers on trees in the distributed layouts (``docs/datasets.md#imagenet``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rbx_vlm.datasets import build_imagenet, build_imagenet_a, build_imagenet_v2, official_wnids, standard_classes
from rbx_vlm.testing import WNIDS, make_imagenet_tree
from robustbench_x.errors import ConfigError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagenet_tree(tmp_path_factory.mktemp("imagenet-trees"), train=2, val=2, ood=4)


def _options(tree, **extra):
    options = {
        "root": str(tree["imagenet"]),
        "train": "train",
        "ood_root": str(tree["ood_root"]),
        "ood": ["iNaturalist", "Textures"],
        "dg": {"imagenet-v2": str(tree["v2"]), "imagenet-sketch": str(tree["sketch"]), "imagenet-a": str(tree["a"]), "imagenet-r": str(tree["r"])},
    }
    options.update(extra)
    return options


def test_shipped_class_names_are_clip_s_in_the_standard_order():
    classes = standard_classes()
    assert len(classes) == 1000 and [w for w, _ in classes] == sorted(w for w, _ in classes)
    assert classes[0] == ("n01440764", "tench") and classes[1] == ("n01443537", "goldfish") and classes[999] == ("n15075141", "toilet paper")
    assert len(official_wnids("imagenet-a")) == len(official_wnids("imagenet-r")) == 200


def test_imagenet_tree_subsets_labels_and_names(tree):
    ds = build_imagenet("tiny", _options(tree))
    assert ds.subsets() == ["id", "train", "ood/iNaturalist", "ood/Textures", "dg/imagenet-v2", "dg/imagenet-sketch", "dg/imagenet-a", "dg/imagenet-r"]
    assert ds.wnids == list(WNIDS) and ds.classes == ["tench", "goldfish", "stingray"]
    assert ds.provides == {"train_split", "ood_subsets"}
    assert ds.samples("id").labels == [0, 0, 1, 1, 2, 2]
    image, label, sid = ds.samples("id")[2]
    assert isinstance(image, Image.Image) and label == 1 and sid == "n01443537/ILSVRC2012_val_10000.JPEG"
    assert ds.samples("train").labels == [0, 0, 1, 1, 2, 2]
    assert ds.class_mask("id") is None and ds.class_mask("dg/imagenet-v2") is None


def test_mos_ood_layouts(tree):
    ds = build_imagenet("tiny", _options(tree))
    inat, textures = ds.samples("ood/iNaturalist"), ds.samples("ood/Textures")
    assert len(inat) == 4 and set(inat.labels) == {-1}  # iNaturalist/images/*.jpg
    assert textures.root == tree["ood_root"] / "dtd" / "images"  # MCM / GalLoP layout for Textures
    assert len(textures) == 4 and not any(".directory" in str(p) for p in textures.files)  # DTD's stray file skipped
    explicit = build_imagenet("tiny", _options(tree, ood={"inat": "iNaturalist"}))
    assert len(explicit.samples("ood/inat")) == 4


def test_imagenet_v2_integer_folders_map_to_the_standard_order(tree, tmp_path):
    ds = build_imagenet("tiny", _options(tree))
    v2 = ds.samples("dg/imagenet-v2")
    assert [p.parent.name for p in v2.files] == ["0", "0", "1", "1", "6", "6"] and v2.labels == [0, 0, 1, 1, 2, 2]
    # When the dataset's classes are a subset, folder "6" is still stingray (standard index 6).
    val = tmp_path / "in" / "val"
    for wnid in WNIDS[1:]:
        (val / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(val / wnid / "x.JPEG")
    sub = build_imagenet("sub", {"root": str(tmp_path / "in"), "dg": {"imagenet-v2": str(tree["v2"])}})
    with pytest.raises(ValueError, match="n01440764"):  # folder 0 = tench, not among this dataset's classes
        sub.samples("dg/imagenet-v2")
    only16 = tmp_path / "v2"
    for c in ("1", "6"):
        (only16 / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(only16 / c / "y.jpeg")
    sub = build_imagenet("sub", {"root": str(tmp_path / "in"), "dg": {"imagenet-v2": str(only16)}})
    assert sub.classes == ["goldfish", "stingray"] and sub.samples("dg/imagenet-v2").labels == [0, 1]
    (only16 / "n01443537").mkdir()
    with pytest.raises(ValueError, match="integer class indices"):
        build_imagenet("bad", {"root": str(tmp_path / "in"), "dg": {"imagenet-v2": str(only16)}}).samples("dg/imagenet-v2")


def test_imagenet_a_r_keep_imagenet_labels_and_expose_the_official_mask(tree):
    ds = build_imagenet("tiny", _options(tree))
    # ImageNet indices, not ImageFolder's 0..k
    assert ds.samples("dg/imagenet-a").labels == [2, 2] and ds.samples("dg/imagenet-r").labels == [1, 1, 2, 2]
    # the official 200 among the dataset's classes: A has stingray; R goldfish and stingray; tench is in neither
    np.testing.assert_array_equal(ds.class_mask("dg/imagenet-a"), [False, False, True])
    np.testing.assert_array_equal(ds.class_mask("dg/imagenet-r"), [False, True, True])
    assert ds.samples("dg/imagenet-sketch").labels == [0, 0, 1, 1, 2, 2]
    # Stand-alone types classify over the 1000 standard classes.
    with pytest.warns(UserWarning, match="imagenet-a at .* is incomplete: 199 of its 200 classes have no images"):
        alone = build_imagenet_a("ina", {"root": str(tree["a"])})
        assert alone.subsets() == ["id"] and len(alone.classes) == 1000
        assert alone.samples("id").labels == [6, 6]
    assert alone.class_mask("id").sum() == 200
    v2 = build_imagenet_v2("v2", {"root": str(tree["v2"])})
    assert v2.samples("id").labels == [0, 0, 1, 1, 6, 6] and v2.class_mask("id") is None and v2.incomplete("id") is None
    assert ds.fingerprint("dg/imagenet-a") != ds.fingerprint("dg/imagenet-r")


def test_partial_imagenet_r_is_evaluated_over_the_official_200_and_flagged(tmp_path):
    """A download missing classes keeps the 200-class mask (hendrycks' eval.py) and says what is missing."""
    from rbx_vlm.datasets import build_imagenet_r

    official = official_wnids("imagenet-r")
    root = tmp_path / "imagenet-r"
    for wnid in official[:150]:  # the last 50 classes were not extracted
        (root / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / wnid / "art_0.jpg")
    (root / official[150]).mkdir()  # an empty folder counts as missing
    with pytest.warns(UserWarning, match=rf"imagenet-r at {root} is incomplete: 50 of its 200 classes have no images \({official[150]}, "):
        ds = build_imagenet_r("inr", {"root": str(root)})
        note = ds.incomplete("id")
    assert "50 of its 200 classes have no images" in note and official[199] not in note  # at most 5 named
    mask = ds.class_mask("id")
    assert mask.sum() == 200 and all(mask[ds.wnids.index(w)] for w in official)  # not shrunk to the 150 present
    # the record of incompleteness is part of the fingerprint: the complete tree differs
    for wnid in official[150:]:
        (root / wnid).mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / wnid / "art_0.jpg")
    complete = build_imagenet_r("inr", {"root": str(root)})
    assert complete.incomplete("id") is None and complete.class_mask("id").sum() == 200
    # a class folder outside the 200 is an error, not a silently unpredictable class
    (root / "n01440764").mkdir()
    with pytest.raises(ValueError, match="class folder 'n01440764' .* is not one of the 200 imagenet-r classes"):
        build_imagenet_r("inr", {"root": str(root)}).samples("id")


def test_class_name_files_and_configuration_errors(tree, tmp_path):
    coop = tmp_path / "classnames.txt"
    coop.write_text("n01440764 tench fish\nn01443537 goldfish\n")
    assert build_imagenet("t", _options(tree, classes=str(coop))).classes[:3] == ["tench fish", "goldfish", "stingray"]
    index = tmp_path / "imagenet_class_index.json"
    index.write_text(json.dumps({"0": ["n01440764", "tinca"], "6": ["n01498041", "sting_ray"]}))
    assert build_imagenet("t", _options(tree, classes=str(index))).classes == ["tinca", "goldfish", "sting_ray"]
    with pytest.raises(ConfigError, match="unknown dg set"):
        build_imagenet("t", _options(tree, dg={"imagenet-c": str(tree["a"])}))
    with pytest.raises(ConfigError, match="not found"):
        build_imagenet("t", _options(tree, ood=["SUN"]))
    with pytest.raises(ConfigError, match="folder does not exist"):
        build_imagenet("t", _options(tree, test="nope"))
