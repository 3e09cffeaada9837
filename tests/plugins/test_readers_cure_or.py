"""CURE-OR reader on a small tree of real JPEG files (docs/datasets.md#cure-or)."""

import pytest
from PIL import Image

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.readers.cure_or import CATEGORIES, CATEGORY_NAMES, OBJECT_CLASSES, CureOR, build, levels_of, parse_filename


def jpg(path, gray=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("L", (48, 36), 90) if gray else Image.new("RGB", (48, 36), (10, 120, 200))
    img.save(path, format="JPEG")


FILES = [
    "01_no_challenge/white/iPhone/1_1_1_001_01_0.jpg",
    "01_no_challenge/3d2/DSLR_JPG/5_5_5_099_01_0.jpg",
    "02_resize/Level_4/texture1/LG/2_3_2_045_02_4.jpg",
    "05_blur/Level_3/3d1/HTC/4_2_3_045_05_3.jpg",
    "05_blur/Level_1/white/Logitech/1_4_4_020_05_1.jpg",
    "10_grayscale_no_challenge/texture2/HTC/3_2_1_069_10_0.jpg",
    "06_contrast/1_1_1_012_06_2.jpg",  # no Level_ folders: split by the level in the name
    "06_contrast/sub/1_1_2_012_06_5.jpg",
]


@pytest.fixture
def root(tmp_path):
    for rel in FILES:
        jpg(tmp_path / rel, gray="grayscale" in rel)
    return tmp_path


def test_parse_filename_fields():
    f = parse_filename("4_2_3_045_05_3.jpg")
    assert (f.background, f.device, f.orientation, f.object_id, f.challenge_type, f.challenge_level) == (4, 2, 3, 45, 5, 3)
    assert (f.challenge, f.challenge_folder, f.object_name, f.category) == ("Gaussian blur", "05_blur", "Silver coffee pot", "Household")
    assert parse_filename("1_1_1_099_10_0.JPG").category == "Personal Belongings"
    assert levels_of(1) == levels_of(10) == (0,) and levels_of(11) == (1, 2, 3, 4) and levels_of(18) == (1, 2, 3, 4, 5)
    for bad, why in [
        ("6_1_1_001_01_0.jpg", "background 6"),
        ("1_0_1_001_01_0.jpg", "device 0"),
        ("1_1_1_101_01_0.jpg", "object id 101"),
        ("1_1_1_001_19_1.jpg", "challenge type 19"),
        ("1_1_1_001_01_1.jpg", "level 1 is invalid for challenge type 01"),
        ("1_1_1_001_02_5.jpg", "level 5 is invalid for challenge type 02"),
        ("1_1_1_001_05_0.jpg", "level 0 is invalid"),
        ("1_1_1_1_05_1.jpg", "does not match"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_filename(bad)


def test_categories_table():
    assert [len(v) for v in CATEGORIES.values()] == [23, 10, 14, 27, 10, 16]
    assert OBJECT_CLASSES[69] == "070 Sifter" and OBJECT_CLASSES[33] == "034 Calculator" and OBJECT_CLASSES[65] == "066 Calculator"


def test_subsets_labels_fields(root):
    ds = build(options={"root": str(root)})
    assert ds.subsets() == [
        "id",
        "c/02_resize/4",
        "c/05_blur/1",
        "c/05_blur/3",
        "c/06_contrast/2",
        "c/06_contrast/5",
        "c/10_grayscale_no_challenge/0",
    ]
    src = ds.samples("id")
    assert [src[i][1:] for i in range(2)] == [
        (98, "01_no_challenge/3d2/DSLR_JPG/5_5_5_099_01_0.jpg"),
        (0, "01_no_challenge/white/iPhone/1_1_1_001_01_0.jpg"),
    ]
    assert [(f.background, f.device, f.orientation) for f in src.fields] == [(5, 5, 5), (1, 1, 1)]
    img, label, sid = ds.samples("c/10_grayscale_no_challenge/0")[0]
    assert img.mode == "RGB" and img.size == (48, 36) and label == 68
    assert ds.samples("c/06_contrast/5")[0][2] == "06_contrast/sub/1_1_2_012_06_5.jpg"
    assert ds.samples("c/05_blur/3")[0][1:] == (44, "05_blur/Level_3/3d1/HTC/4_2_3_045_05_3.jpg")

    by_category = CureOR(root, label="category")
    assert by_category.classes == CATEGORY_NAMES
    assert by_category.samples("c/05_blur/3")[0][1] == CATEGORY_NAMES.index("Household")
    assert by_category.samples("c/05_blur/1")[0][1] == CATEGORY_NAMES.index("Toy")
    assert ds.fingerprint("c/05_blur/3") != by_category.fingerprint("c/05_blur/3")


def test_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"CURE-OR root '.*nope' does not exist\n.*01_no_challenge"):
        CureOR(tmp_path / "nope")


def test_unknown_challenge_folder_suggests(root):
    (root / "05_blurr").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"05_blurr' is not a CURE-OR challenge folder. Did you mean '05_blur'"):
        CureOR(root)


def test_level_folder_outside_the_types_levels(root):
    jpg(root / "11_grayscale_resize" / "Level_5" / "1_1_1_001_11_4.jpg", gray=True)
    with pytest.raises(DatasetLayoutError, match=r"Level_5': level 5 does not exist for 11_grayscale_resize \(levels \(1, 2, 3, 4\)\)"):
        CureOR(root)


def test_file_must_match_its_folders(root):
    stray = root / "05_blur" / "Level_3" / "3d1" / "HTC" / "4_2_3_045_05_2.jpg"
    jpg(stray)
    with pytest.raises(DatasetLayoutError, match=r"4_2_3_045_05_2.jpg' is a 05_blur level 2 image inside the 05_blur level 3 folder"):
        CureOR(root).samples("c/05_blur/3")
    stray.unlink()
    jpg(root / "05_blur" / "Level_3" / "4_2_3_045_06_3.jpg")
    with pytest.raises(DatasetLayoutError, match=r"is a 06_contrast level 3 image inside the 05_blur level 3 folder"):
        CureOR(root).samples("c/05_blur/3")


def test_undecodable_file_is_named(root):
    bad = root / "02_resize" / "Level_4" / "texture1" / "LG" / "2_3_2_045_02_4.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    with pytest.raises(UndecodableFileError) as info:
        CureOR(root).samples("c/02_resize/4")[0]
    assert str(bad) in str(info.value)


def test_a_model_that_trains_on_cure_or_is_refused_with_a_true_fix(root):
    """CURE-OR has no train split: the fix is a pretrained model, not a `train:` key the type lacks."""
    from robustbench_x.config import load_config
    from robustbench_x.errors import ConfigError
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry()
    config = root / "datasets.yaml"
    config.write_text("datasets:\n  objects:\n    type: cure-or\n    root: .\n")
    with pytest.raises(ConfigError, match="evaluated with pretrained models only") as info:
        make_plan(registry, load_config(config, registry), "cure", models=["builtin-cnn"], datasets=["objects"], seeds=[0])
    assert info.value.key == "datasets.objects" and "evaluate a pretrained model with --models" in info.value.fix
