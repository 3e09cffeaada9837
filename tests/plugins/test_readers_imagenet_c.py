"""ImageNet-C reader on small trees in both distributed layouts (docs/datasets.md#imagenet-c)."""

import warnings

import pytest
from PIL import Image

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.readers.imagenet_c import TARS, ImageNetC, build
from robustbench_x.errors import ConfigError

WNIDS = ["n01440764", "n01443537", "n01484850"]


def jpeg(path, value=0, size=(224, 224)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 17)).save(path, format="JPEG", quality=85, optimize=True)


def make_tree(root, corruption, severities, category=None, files=None):
    base = root / category / corruption if category else root / corruption
    files = files or {WNIDS[0]: ["ILSVRC2012_val_00000293.JPEG", "ILSVRC2012_val_00002138.JPEG"], WNIDS[2]: ["ILSVRC2012_val_00000001.JPEG"]}
    for s in severities:
        for wnid, names in files.items():
            for k, name in enumerate(names):
                jpeg(base / str(s) / wnid / name, value=40 * s + k, size=(16, 16))
    return base


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ImageNetC(*args, **kwargs)


def test_tars_cover_the_19_corruptions():
    members = [c for tar in TARS.values() for c in tar]
    assert len(members) == len(set(members)) == 19
    assert TARS["weather"] == ("frost", "snow", "fog", "brightness")


def test_flat_and_per_category_layouts_mixed(tmp_path):
    make_tree(tmp_path, "gaussian_noise", [1, 3])  # flat, as extracting noise.tar into the root
    make_tree(tmp_path, "fog", [5], category="weather")  # per category
    clean = tmp_path.parent / (tmp_path.name + "_val")
    jpeg(clean / WNIDS[1] / "ILSVRC2012_val_00000010.JPEG", size=(500, 375))
    with pytest.warns(UserWarning, match="found 3 wnid folders instead of 1000"):
        ds = ImageNetC(tmp_path, clean_root=clean)
    assert ds.subsets() == ["id", "c/gaussian_noise/1", "c/gaussian_noise/3", "c/fog/5"]
    assert ds.classes == WNIDS  # union of all wnid folders, sorted

    src = ds.samples("c/gaussian_noise/3")
    assert len(src) == 3
    img, label, sid = src[0]
    assert sid == "gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG"
    assert label == 0 and img.mode == "RGB" and img.size == (16, 16)
    assert [src[i][1] for i in range(3)] == [0, 0, 2]
    assert src[2][2] == "gaussian_noise/3/n01484850/ILSVRC2012_val_00000001.JPEG"
    # per-category layout gets the same id scheme (no "weather/" prefix)
    assert ds.samples("c/fog/5")[0][2] == "fog/5/n01440764/ILSVRC2012_val_00000293.JPEG"
    # clean subset: no resizing by the reader
    img, label, sid = ds.samples("id")[0]
    assert (label, sid, img.size) == (1, "n01443537/ILSVRC2012_val_00000010.JPEG", (500, 375))
    assert len(ds.fingerprint("c/fog/5")) == 16 and ds.fingerprint("c/fog/5") != ds.fingerprint("c/gaussian_noise/3")
    with pytest.raises(KeyError, match="c/gaussian_noise/2"):
        ds.samples("c/gaussian_noise/2")


def test_class_list_gives_imagenet_indices(tmp_path):
    make_tree(tmp_path, "snow", [2])
    classes = [f"n{k:08d}" for k in range(997)] + WNIDS
    (tmp_path.parent / "synsets.txt").write_text("\n".join(f"{w} some name, other" for w in classes) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full class list: no warning
        ds = build(options={"type": "imagenet-c", "root": str(tmp_path), "classes": str(tmp_path.parent / "synsets.txt")})
    assert len(ds.classes) == 1000
    assert [ds.samples("c/snow/2")[i][1] for i in range(3)] == [997, 997, 999]


def test_corruption_selection(tmp_path):
    make_tree(tmp_path, "snow", [1])
    make_tree(tmp_path, "frost", [1])
    ds = quiet(tmp_path, corruptions=["snow"])
    assert ds.subsets() == ["c/snow/1"]
    with pytest.raises(DatasetLayoutError, match="Did you mean 'frost'"):
        quiet(tmp_path, corruptions=["forst"])
    with pytest.raises(DatasetLayoutError, match="'fog' is not under"):
        quiet(tmp_path, corruptions=["fog"])


def test_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError) as info:
        ImageNetC(tmp_path / "nope")
    message = str(info.value)
    assert str(tmp_path / "nope") in message and "does not exist" in message and "Zenodo record 2235448" in message
    assert isinstance(info.value, ConfigError)


def test_severity_outside_1_to_5(tmp_path):
    make_tree(tmp_path, "zoom_blur", [1, 6])
    with pytest.raises(DatasetLayoutError, match=r"zoom_blur/6' is not a severity folder: ImageNet-C severities are 1–5"):
        quiet(tmp_path)


def test_unknown_corruption_folder_suggests(tmp_path):
    make_tree(tmp_path, "gausian_noise", [1])
    with pytest.raises(DatasetLayoutError, match="Did you mean 'gaussian_noise'"):
        quiet(tmp_path)
    (tmp_path / "gausian_noise").rename(tmp_path / "gaussian_noise")
    make_tree(tmp_path, "pixelated", [1], category="digital")
    with pytest.raises(DatasetLayoutError, match=r"digital/pixelated' is not an ImageNet-C corruption folder. Did you mean 'pixelate'"):
        quiet(tmp_path)


def test_same_corruption_in_both_layouts_is_an_error(tmp_path):
    make_tree(tmp_path, "shot_noise", [1])
    make_tree(tmp_path, "shot_noise", [1], category="noise")
    with pytest.raises(DatasetLayoutError, match="appears twice"):
        quiet(tmp_path)


def test_undecodable_file_is_named(tmp_path):
    make_tree(tmp_path, "contrast", [4])
    bad = tmp_path / "contrast" / "4" / WNIDS[0] / "ILSVRC2012_val_00000293.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    src = quiet(tmp_path).samples("c/contrast/4")
    assert src[1][0].size == (16, 16)  # other files still decode
    with pytest.raises(UndecodableFileError) as info:
        src[0]
    assert str(bad) in str(info.value)


def test_clean_root_must_be_imagefolder(tmp_path):
    make_tree(tmp_path, "fog", [1])
    flat = tmp_path.parent / (tmp_path.name + "_flat")
    jpeg(flat / "ILSVRC2012_val_00000001.JPEG", size=(8, 8))
    with pytest.raises(DatasetLayoutError, match="no class .wnid. folders.*\n.*valprep"):
        quiet(tmp_path, clean_root=flat)


def test_unknown_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="corruption.*Did you mean 'corruptions'"):
        build(options={"root": str(tmp_path), "corruption": ["fog"]})


def test_fewer_than_1000_wnids_is_a_warning_for_imagenet_c_only_printed_once_by_the_run(tmp_path):
    """imagefolder-c with classes a/b/c printed twice a raw `imagenet_c.py:265: UserWarning:
    ImageNet-C … instead of 1000` line although the data is not ImageNet. Now only the
    ImageNet type warns, the run collects it before any work and the jobs stay quiet."""
    from robustbench_x.config import load_config
    from robustbench_x.plan import dataset_refs
    from robustbench_x.preflight import open_datasets
    from robustbench_x.registry import get_registry
    from robustbench_x.runner import RunOptions, build_dataset

    make_tree(tmp_path / "c", "fog", [1])
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  inc:\n    type: imagenet-c\n    root: c\n  ifc:\n    type: imagefolder-c\n    root: c\n  tic:\n    type: tiny-imagenet-c\n    root: c\n")
    registry = get_registry()
    loaded = load_config(config, registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a raw warning line
        notes = open_datasets(registry, loaded, None)
        (ref,) = dataset_refs(registry, loaded, ["inc"], registry.get("suites", "corruption"), {})
        build_dataset(type("Group", (), {"dataset": ref})(), RunOptions(out=str(tmp_path / "out"), config_file=str(config)))
    assert len(notes) == 1 and notes[0].startswith("dataset 'inc': ImageNet-C at ") and "found 2 wnid folders instead of 1000" in notes[0]


def test_a_clean_root_one_level_too_high_names_clean_root_at_open(tmp_path):
    """It was an empty `id` subset inside the job, reported as key 'root'."""
    from rbx_robustness.datasets import build_imagefolder_c

    make_tree(tmp_path / "c", "fog", [1])
    for split in ("test", "train"):
        jpeg(tmp_path / "clean" / split / WNIDS[0] / "a.JPEG", size=(16, 16))
    with pytest.raises(ConfigError) as info:
        build_imagefolder_c("ifc", {"root": "c", "clean_root": "clean"}, str(tmp_path / "datasets.yaml"))
    assert info.value.key == "clean_root" and "holds the folders test, train, none of them a class folder of the corrupted tree" in info.value.message
    assert info.value.fix.startswith("set `clean_root:` one level deeper, to its 'test' folder")
    assert build_imagefolder_c("ifc", {"root": "c", "clean_root": "clean/test"}, str(tmp_path / "datasets.yaml")).samples("id").ids == [f"{WNIDS[0]}/a.JPEG"]


def test_a_model_that_trains_is_not_told_to_add_a_key_the_type_lacks(tmp_path):
    """imagefolder-c has no `train:` key: the built-in CNN's refusal named `datasets.ifc.train`
    and told the user to add it, which was then an unknown key."""
    from robustbench_x.config import load_config
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    make_tree(tmp_path / "c", "fog", [1])
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  ifc:\n    type: imagefolder-c\n    root: c\n")
    registry = get_registry()
    with pytest.raises(ConfigError, match="needs train_split") as info:
        make_plan(registry, load_config(config, registry), "corruption", models=["builtin-cnn"], datasets=["ifc"], seeds=[0])
    assert info.value.key == "datasets.ifc" and "train:" not in info.value.fix and "evaluate another model" in info.value.fix
