"""CURE-TSR reader on a small tree of real BMP files (docs/datasets.md#cure-tsr)."""

import pytest
from PIL import Image

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.readers.cure_tsr import CLASSES, CureTSR, build, parse_filename


def bmp(path, size=(37, 41)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path, format="BMP")


@pytest.fixture
def root(tmp_path):
    for rel in [
        "Real_Test/ChallengeFree/01_05_00_00_0050.bmp",
        "Real_Test/ChallengeFree/01_01_00_00_0147.bmp",
        "Real_Test/Noise-1/01_01_08_01_0147.bmp",
        "Real_Test/DirtyLens-5/01_05_05_05_0050.bmp",
        "Real_Test/DirtyLens-5/01_14_05_05_0003.bmp",
        "Real_Train/ChallengeFree/01_13_00_00_0001.bmp",
        "Real_Train/Noise-1/01_13_08_01_0001.bmp",  # train challenge folders are not exposed
    ]:
        bmp(tmp_path / rel)
    return tmp_path


def test_parse_filename_fields():
    f = parse_filename("01_05_08_01_0050.bmp")
    assert (f.sequence_type, f.sign_type, f.challenge_type, f.challenge_level, f.index) == (1, 5, 8, 1, 50)
    assert (f.sequence, f.sign, f.challenge, f.challenge_folder, f.label) == ("Real", "no_parking", "Noise", "Noise", 4)
    g = parse_filename("02_14_00_00_0147.BMP")
    assert (g.sequence, g.sign, g.challenge, g.challenge_folder, g.label) == ("Unreal", "parking", None, "ChallengeFree", 13)
    assert parse_filename("01_01_12_05_0001.bmp").challenge == "Haze"
    for bad, why in [
        ("01_15_00_00_0001.bmp", "sign type 15"),
        ("03_01_00_00_0001.bmp", "sequence type 03"),
        ("01_01_13_01_0001.bmp", "challenge type 13"),
        ("01_01_08_00_0001.bmp", "level 00 is invalid"),
        ("01_01_00_02_0001.bmp", "level 02 is invalid"),
        ("01_01_08_06_0001.bmp", "level 06 is invalid"),
        ("1_01_08_01_0001.bmp", "does not match"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_filename(bad)


def test_subsets_labels_ids(root):
    ds = build(options={"root": str(root), "train": "Real_Train"})
    assert ds.subsets() == ["id", "c/DirtyLens/5", "c/Noise/1", "train"]
    assert ds.provides == frozenset({"train_split"})
    assert ds.classes == CLASSES and len(CLASSES) == 14 and CLASSES[4] == "no_parking"
    src = ds.samples("id")
    assert len(src) == 2
    # official order: sorted(os.listdir); label = signType - 1
    assert [src[i][1:] for i in range(2)] == [
        (0, "Real_Test/ChallengeFree/01_01_00_00_0147.bmp"),
        (4, "Real_Test/ChallengeFree/01_05_00_00_0050.bmp"),
    ]
    img = src[0][0]
    assert img.mode == "RGB" and img.size == (37, 41)
    dirty = ds.samples("c/DirtyLens/5")
    assert [dirty[i][1] for i in range(2)] == [4, 13]
    assert [(f.challenge_type, f.challenge_level, f.index) for f in dirty.fields] == [(5, 5, 50), (5, 5, 3)]
    # the same Index links a challenge image to its challenge-free original
    assert ds.samples("c/Noise/1").fields[0].index == src.fields[0].index == 147
    assert ds.samples("train")[0][1:] == (12, "Real_Train/ChallengeFree/01_13_00_00_0001.bmp")
    assert ds.fingerprint("id") != ds.fingerprint("c/Noise/1")


def test_missing_root_and_missing_test_split(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"CURE-TSR root '.*nope' does not exist\n.*Real_Test"):
        CureTSR(tmp_path / "nope")
    (tmp_path / "RealChallengeFree").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"Real_Test' does not exist"):
        CureTSR(tmp_path)


def test_unknown_folder_and_bad_level(root):
    (root / "Real_Test" / "Dirtylens-4").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"Dirtylens-4' is not a CURE-TSR condition folder. Did you mean 'DirtyLens'"):
        CureTSR(root)
    (root / "Real_Test" / "Dirtylens-4").rmdir()
    (root / "Real_Test" / "Haze-6").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"Haze-6': challenge level '6' is outside 1–5"):
        CureTSR(root)


def test_file_must_match_its_folder(root):
    stray = root / "Real_Test" / "Noise-1" / "01_01_08_02_0147.bmp"
    bmp(stray)
    with pytest.raises(DatasetLayoutError, match=r"01_01_08_02_0147.bmp' is a Real Noise level 2 image inside folder 'Real_Test/Noise-1'"):
        CureTSR(root).samples("c/Noise/1")
    stray.unlink()
    bmp(root / "Real_Test" / "Noise-1" / "thumbnail.bmp")
    with pytest.raises(DatasetLayoutError, match=r"'thumbnail.bmp' does not match .*\(file '.*Noise-1/thumbnail.bmp'\)"):
        CureTSR(root).samples("c/Noise/1")


def test_unreal_sequence_split(root):
    bmp(root / "Unreal_Test" / "ChallengeFree" / "02_07_00_00_0001.bmp")
    bmp(root / "Unreal_Test" / "ChallengeFree" / "01_07_00_00_0002.bmp")  # a Real image in the Unreal split
    ds = CureTSR(root, sequence="unreal")
    assert ds.subsets() == ["id"] and ds.provides == frozenset()
    with pytest.raises(DatasetLayoutError, match="is a Real ChallengeFree level 0 image inside folder 'Unreal_Test/ChallengeFree'"):
        ds.samples("id")


def test_undecodable_file_is_named(root):
    bad = root / "Real_Test" / "Noise-1" / "01_01_08_01_0147.bmp"
    bad.write_bytes(b"BM this is not a bitmap")
    with pytest.raises(UndecodableFileError) as info:
        CureTSR(root).samples("c/Noise/1")[0]
    assert str(bad) in str(info.value)


def test_train_split_is_what_the_planner_and_the_reader_both_see(root):
    """The planner reads a dataset's splits from its options: a train split found on
    disk alone could never be trained on (the CNN was refused with a `train:` hint
    that was then an unknown key). Now `train:` names it, and both agree."""
    from robustbench_x.config import load_config
    from robustbench_x.errors import ConfigError
    from robustbench_x.plan import dataset_refs, make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry()
    config = root / "datasets.yaml"
    config.write_text("datasets:\n  tsr:\n    type: cure-tsr\n    root: .\n")
    assert "train" not in CureTSR(root).subsets() and CureTSR(root).provides == frozenset()
    with pytest.raises(ConfigError, match="needs train_split") as info:
        make_plan(registry, load_config(config, registry), "cure", models=["builtin-cnn"], datasets=["tsr"], seeds=[0])
    assert info.value.key == "datasets.tsr.train" and "give the dataset a `train:` split" in info.value.fix
    config.write_text("datasets:\n  tsr:\n    type: cure-tsr\n    root: .\n    train: Real_Train\n")
    loaded = load_config(config, registry)
    (ref,) = dataset_refs(registry, loaded, ["tsr"], registry.get("suites", "cure"), {})
    ds = build("tsr", {"root": str(root), "train": "Real_Train"})
    assert "train_split" in ref.provides and "train_split" in ds.provides and ds.samples("train").ids == ["Real_Train/ChallengeFree/01_13_00_00_0001.bmp"]
    plan = make_plan(registry, loaded, "cure", models=["builtin-cnn"], datasets=["tsr"], seeds=[0])
    reasons = {job.skip_reason for job in plan.jobs if job.skip_reason}
    assert plan.runnable and any("requires val_split" in r for r in reasons)
    assert not any("`val:`" in r for r in reasons)  # the type has no val key: no hint naming one
    with pytest.raises(DatasetLayoutError, match="train folder .*Real_Trian' does not exist") as info:
        build("tsr", {"root": str(root), "train": "Real_Trian"})
    assert info.value.key == "train" and "Real_Train" in info.value.fix
