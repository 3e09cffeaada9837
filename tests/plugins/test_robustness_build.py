"""build_c_command / build_p_command: an ImageFolder (or a configured dataset) in,
a tree out that the ImageNet-C / ImageNet-P readers read back."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from robustbench_x.errors import UsageError

pytestmark = pytest.mark.filterwarnings("ignore:ImageNet-[CP] at .* wnid folders instead of 1000")

CLASSES = ("n01440764", "n01443537", "n01484850")
FAST = {"resize": 48, "crop": 48}  # small frames: the layout is under test, not the published 224 px


@pytest.fixture(autouse=True)
def _single_thread():
    """Small tensors: one intra-op thread is faster, and far faster on busy cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def folder(tmp_path):
    """A 3-class ImageFolder, 2 images per class, odd sizes."""
    from PIL import Image

    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    for c, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            arr = np.clip(rng.normal(60 + 60 * c, 40, (50 + 4 * i, 60, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"ILSVRC2012_val_{c}{i:07d}.JPEG", quality=95)
    return root


def _messages():
    said: list[str] = []
    return said, said.append


def test_build_c_command_tree_reads_back_as_imagenet_c(folder, tmp_path):
    from rbx_robustness.commands import build_c_command
    from rbx_robustness.readers.imagenet_c import ImageNetC

    out = tmp_path / "imagenet-c"
    said, log = _messages()
    stats = build_c_command(str(folder), out, corruptions=["gaussian_noise", "fog"], severities=[1, 3], log=log, **FAST)
    assert stats["written"] == 6 * 2 * 2 and stats["skipped"] == 0 and stats["images"] == 6
    # resized/cropped: not the same view as the source folder, so no clean_root
    assert stats["entry"] == {"type": "imagenet-c", "root": str(out)}
    assert any("type: imagenet-c" in m for m in said)

    ds = ImageNetC(out, clean_root=folder, corruptions=["gaussian_noise", "fog"])
    assert ds.subsets() == ["id", "c/gaussian_noise/1", "c/gaussian_noise/3", "c/fog/1", "c/fog/3"]
    assert ds.classes == list(CLASSES)
    clean = ds.samples("id")
    for subset in ds.subsets()[1:]:
        source = ds.samples(subset)
        assert len(source) == 6
        assert source.labels.tolist() == clean.labels.tolist() == [0, 0, 1, 1, 2, 2]
        corruption, severity = subset.split("/")[1:]
        assert source.ids[0] == f"{corruption}/{severity}/{CLASSES[0]}/ILSVRC2012_val_00000000.JPEG"
        image, label, _ = source[5]
        assert image.size == (48, 48) and label == 2

    # resumable: a second call writes nothing
    again = build_c_command(str(folder), out, corruptions="gaussian_noise,fog", severities="1,3", log=lambda m: None, **FAST)
    assert again["written"] == 0 and again["skipped"] == 24


def test_build_p_command_tree_reads_back_as_imagenet_p(folder, tmp_path):
    from rbx_robustness.commands import build_p_command
    from rbx_robustness.readers.imagenet_p import ImageNetP

    out = tmp_path / "imagenet-p"
    stats = build_p_command(folder, out, perturbations=["gaussian_noise", "translate"], log=lambda m: None, **FAST)
    assert stats["written"] == 6 * 2 and stats["entry"] == {"type": "imagenet-p", "root": str(out)}

    ds = ImageNetP(out)
    assert ds.subsets() == ["p/gaussian_noise", "p/translate"]
    assert ds.classes == list(CLASSES)
    for subset, frames in (("p/gaussian_noise", 31), ("p/translate", 41)):
        source = ds.samples(subset)
        assert len(source) == 6 * frames
        assert source.labels.tolist() == np.repeat([0, 0, 1, 1, 2, 2], frames).tolist()
        image, label, sid = source[frames + 3]  # sequence 1, frame 3
        assert sid == f"{subset[2:]}/{CLASSES[0]}/ILSVRC2012_val_00000001#3" and label == 0
        assert image.size == (48, 48)
    # gaussian noise: frame 0 is the clean image, the others differ (lossless codec)
    seq = ds.sequence_source("gaussian_noise").frames(0)
    assert not np.array_equal(np.asarray(seq[0]), np.asarray(seq[1]))


def test_configured_dataset_as_source_and_the_imagenet_c_type(folder, tmp_path):
    """A datasets.yaml imagefolder entry is a source; the printed entry works as an
    `imagenet-c` dataset (relative paths, label_space accepted and dropped)."""
    from robustbench_x.api import load_factory
    from robustbench_x.config import load_config
    from robustbench_x.registry import get_registry

    from rbx_robustness.commands import build_c_command

    config = tmp_path / "datasets.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"mine": {"type": "imagefolder", "root": str(tmp_path), "test": "val", "label_space": "imagenet-1k"}}}))
    out = tmp_path / "mine-c"
    stats = build_c_command("mine", out, corruptions=["contrast"], severities=[2], config=config, log=lambda m: None, **FAST)
    assert stats["written"] == 6
    assert stats["entry"] == {"type": "imagenet-c", "root": str(out), "label_space": "imagenet-1k"}

    entry = {"type": "imagenet-c", "root": "mine-c", "clean_root": "val", "label_space": "imagenet-1k"}
    config.write_text(yaml.safe_dump({"datasets": {"mine-c": entry}}))
    registry = get_registry()
    cfg = load_config(config, registry)
    spec = registry.get("datasets", "imagenet-c")
    assert spec.label_space == "imagenet-1k" and "corruptions" in spec.provides
    ds = load_factory(spec.factory)(name="mine-c", options=cfg.datasets["mine-c"].options, config_file=str(config))
    assert ds.subsets() == ["id", "c/contrast/2"]
    assert len(ds.samples("c/contrast/2")) == 6

    with pytest.raises(UsageError, match="neither a folder nor a dataset"):
        build_c_command("nope", out, config=config, log=lambda m: None)


def test_bad_selections_are_usage_errors(folder, tmp_path):
    from rbx_robustness.commands import build_c_command, build_p_command

    with pytest.raises(UsageError, match="Did you mean 'gaussian_noise'"):
        build_c_command(folder, tmp_path / "x", corruptions=["gaussian_nois"], log=lambda m: None)
    with pytest.raises(UsageError, match="outside 1..5"):
        build_c_command(folder, tmp_path / "x", corruptions=["fog"], severities=[6], log=lambda m: None)
    with pytest.raises(UsageError, match="unknown perturbation 'rotation'"):
        build_p_command(folder, tmp_path / "x", perturbations=["rotation"], log=lambda m: None)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(UsageError, match="no image"):
        build_c_command(tmp_path / "empty", tmp_path / "x", corruptions=["fog"], log=lambda m: None)


# --------------------------------------------------------------------------- presets


@pytest.fixture()
def cifar_folder(tmp_path):
    """6 images of 32 px in CIFAR-10 class folders (cat = 3, ship = 8)."""
    from PIL import Image

    root = tmp_path / "c32"
    rng = np.random.default_rng(2)
    for cls in ("cat", "ship"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _benchmark(ds):
    from types import SimpleNamespace

    from rbx_robustness.evaluate import benchmark_of

    return benchmark_of(SimpleNamespace(dataset=ds, dataset_type=None))


def test_cifar_preset_writes_cifar_c_files_the_reader_reads(cifar_folder, tmp_path):
    from robustbench_x.api import load_factory
    from robustbench_x.registry import get_registry

    from rbx_robustness.commands import build_c_command

    out = tmp_path / "mine-c"
    said, log = _messages()
    stats = build_c_command(cifar_folder, out, corruptions=["frost", "fog", "contrast"], preset="cifar", log=log)
    assert stats["written"] == 3 * 6 * 5
    assert stats["entry"] == {"type": "cifar-c", "root": str(out)}
    assert any("make_cifar_c.py" in m for m in said)
    assert sorted(p.name for p in out.iterdir()) == ["contrast.npy", "fog.npy", "frost.npy", "labels.npy", "rbx-build.json"]
    frost = np.load(out / "frost.npy")
    assert frost.shape == (30, 32, 32, 3) and frost.dtype == np.uint8
    assert np.load(out / "labels.npy").tolist() == [3, 3, 3, 8, 8, 8] * 5

    spec = get_registry().get("datasets", "cifar-c")
    ds = load_factory(spec.factory)(name="mine-c", options={"root": str(out)}, config_file=None)
    assert ds.subsets() == [f"c/{c}/{s}" for c in ("frost", "fog", "contrast") for s in range(1, 6)]
    image, label, sid = ds.samples("c/contrast/5")[4]
    assert image.size == (32, 32) and label == 8 and sid == "contrast/5/4"
    # severity 5 of make_cifar_c.py's contrast, (x - mean) * 0.15 + mean, truncated to uint8
    from PIL import Image

    with Image.open(cifar_folder / "ship" / "1.png") as im:
        x = np.asarray(im.convert("RGB")) / 255.0
    expected = np.uint8(np.clip((x - x.mean(axis=(0, 1))) * 0.15 + x.mean(axis=(0, 1)), 0, 1) * 255)
    assert np.abs(np.asarray(image).astype(int) - expected).max() <= 1
    # CIFAR-C is never AlexNet-normalised (no mce / relative-mce / ce rows)
    assert _benchmark(ds) == "cifar-c"


def test_cifar_preset_refuses_other_sizes_and_partial_severities(folder, cifar_folder, tmp_path):
    from rbx_robustness.commands import build_c_command

    from PIL import Image

    big = tmp_path / "big" / "cat"
    big.mkdir(parents=True)
    Image.new("RGB", (40, 36)).save(big / "0.png")
    with pytest.raises(UsageError, match=r"writes 32 px CIFAR-C files but the images are 40x36; fix: pass --resize 32 --crop 32"):
        build_c_command(big.parent, tmp_path / "a", corruptions=["fog"], preset="cifar", log=lambda m: None)
    with pytest.raises(UsageError, match=r"class folder 'n01440764' is neither a CIFAR-10/100 class name nor an integer label; fix"):
        build_c_command(folder, tmp_path / "a2", corruptions=["fog"], preset="cifar", log=lambda m: None)
    with pytest.raises(UsageError, match="all five severities"):
        build_c_command(cifar_folder, tmp_path / "b", corruptions=["fog"], severities=[1], preset="cifar", log=lambda m: None)
    with pytest.raises(UsageError, match="unknown preset 'cifar10'"):
        build_c_command(cifar_folder, tmp_path / "b", preset="cifar10", log=lambda m: None)


def test_non_imagenet_trees_are_not_typed_imagenet_c(folder, cifar_folder, tmp_path):
    from robustbench_x.api import load_factory
    from robustbench_x.registry import get_registry

    from rbx_robustness.commands import build_c_command

    registry = get_registry()
    tiny = build_c_command(folder, tmp_path / "tiny", corruptions=["contrast"], severities=[1], preset="tiny", log=lambda m: None)
    # native resolution: the corrupted images are the source's view, so the folder is the clean set
    assert tiny["entry"] == {"type": "tiny-imagenet-c", "root": str(tmp_path / "tiny"), "clean_root": str(folder)}
    other = build_c_command(cifar_folder, tmp_path / "other", corruptions=["contrast"], severities=[1], log=lambda m: None)
    assert other["entry"]["type"] == "imagefolder-c"  # ImageNet parameters, but not ImageNet images
    for kind, root, benchmark in (("tiny-imagenet-c", tmp_path / "tiny", "tiny-imagenet-c"), ("imagefolder-c", tmp_path / "other", "imagefolder-c")):
        spec = registry.get("datasets", kind)
        ds = load_factory(spec.factory)(name=kind, options={"root": str(root)}, config_file=None)
        assert _benchmark(ds) == benchmark


def test_frost_source_is_in_the_fingerprint_of_a_built_tree(cifar_folder, tmp_path):
    """Other frost photographs -> other provenance -> other fingerprint; resuming with them is refused."""
    import torch

    from rbx_robustness.commands import build_c_command
    from rbx_robustness.engine import corruptions as C
    from rbx_robustness.readers.cifar_c import CifarC

    build_c_command(cifar_folder, tmp_path / "a", corruptions=["frost"], preset="cifar", log=lambda m: None)
    default = C.frost_source()
    assert default.startswith("torch-uncertainty-assets:")
    before = CifarC(tmp_path / "a").fingerprint("c/frost/1")
    C.set_frost_images([torch.full((3, 400, 400), 0.5)])
    try:
        assert C.frost_source().startswith("custom:") and C.frost_source() != default
        with pytest.raises(UsageError, match="other settings \\(frost differ"):
            build_c_command(cifar_folder, tmp_path / "a", corruptions=["frost"], preset="cifar", log=lambda m: None)
        build_c_command(cifar_folder, tmp_path / "b", corruptions=["frost"], preset="cifar", log=lambda m: None)
    finally:
        C.set_frost_images(None)
    assert CifarC(tmp_path / "b").fingerprint("c/frost/1") != before
    assert C.frost_source() == default
