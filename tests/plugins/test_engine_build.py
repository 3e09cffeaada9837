"""build_c / build_p: exact ImageNet-C / ImageNet-P layouts, atomic and resumable writes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Small tensors: one intra-op thread is faster, and far faster on busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from rbx_robustness.engine import build_c, build_p, sequence  # noqa: E402
from rbx_robustness.engine.build import read_mp4  # noqa: E402


@pytest.fixture()
def image_folder(tmp_path):
    """A 3-image ImageFolder: 2 classes, natural-image content, odd sizes."""
    from PIL import Image
    from skimage import data

    root = tmp_path / "val"
    items = [("n01440764", "ILSVRC2012_val_00000293", data.astronaut()),
             ("n01440764", "ILSVRC2012_val_00002138", data.coffee()),
             ("n01443537", "ILSVRC2012_val_00000236", data.chelsea())]
    for cls, stem, arr in items:
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).resize((300, 260)).save(root / cls / f"{stem}.JPEG", quality=95)
    return root


def _iter_folder(root):
    from PIL import Image

    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            with Image.open(f) as im:
                yield im.convert("RGB"), cls_dir.name, f.stem


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_build_c_layout_resume_determinism(image_folder, tmp_path):
    from PIL import Image

    out = tmp_path / "ImageNet-C"
    stats = build_c(_iter_folder(image_folder), out, ["gaussian_noise", "pixelate"], [1, 5], batch_size=2, resize=256, crop=224)
    expected = sorted([
        f"{c}/{s}/{cls}/{stem}.JPEG"
        for c in ("gaussian_noise", "pixelate") for s in (1, 5)
        for cls, stem in (("n01440764", "ILSVRC2012_val_00000293"), ("n01440764", "ILSVRC2012_val_00002138"),
                          ("n01443537", "ILSVRC2012_val_00000236"))] + ["rbx-build.json"])
    assert _files(out) == expected  # exact layout, no temporary files left
    assert stats == {"written": 12, "skipped": 0}
    with Image.open(out / expected[0]) as im:
        assert im.size == (224, 224) and im.format == "JPEG"
    # resumable: nothing to do the second time
    assert build_c(_iter_folder(image_folder), out, ["gaussian_noise", "pixelate"], [1, 5], batch_size=2, resize=256, crop=224) == \
        {"written": 0, "skipped": 12}
    # an interrupted build resumes to identical bytes (fixed batches, per-batch seeds)
    victim = out / "gaussian_noise/5/n01440764/ILSVRC2012_val_00002138.JPEG"
    before = victim.read_bytes()
    victim.unlink()
    stats = build_c(_iter_folder(image_folder), out, ["gaussian_noise", "pixelate"], [1, 5], batch_size=2, resize=256, crop=224)
    assert stats == {"written": 1, "skipped": 11}
    assert victim.read_bytes() == before


def test_build_c_png(image_folder, tmp_path):
    from PIL import Image

    out = tmp_path / "c_png"
    build_c(_iter_folder(image_folder), out, ["contrast"], [3], fmt="png")
    files = _files(out)
    assert files == ["contrast/3/n01440764/ILSVRC2012_val_00000293.png",
                     "contrast/3/n01440764/ILSVRC2012_val_00002138.png",
                     "contrast/3/n01443537/ILSVRC2012_val_00000236.png", "rbx-build.json"]
    with Image.open(out / files[0]) as im:
        assert im.size == (300, 260)  # native resolution unless asked to resize


def test_build_p_layout_lossless_resume(image_folder, tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "ImageNet-P"
    # smaller frames than the published Resize(256) / CenterCrop(224) keep the test fast
    stats = build_p(_iter_folder(image_folder), out, ["translate", "gaussian_noise"], resize=128, crop=112)
    expected = sorted(f"{p}/{cls}/{stem}.mp4" for p in ("translate", "gaussian_noise")
                      for cls, stem in (("n01440764", "ILSVRC2012_val_00000293"),
                                        ("n01440764", "ILSVRC2012_val_00002138"),
                                        ("n01443537", "ILSVRC2012_val_00000236")))
    assert _files(out) == expected
    assert stats == {"written": 6, "skipped": 0}
    frames = read_mp4(out / "translate/n01443537/ILSVRC2012_val_00000236.mp4")
    assert frames.shape == (41, 3, 112, 112)
    noise = read_mp4(out / "gaussian_noise/n01443537/ILSVRC2012_val_00000236.mp4")
    assert noise.shape == (31, 3, 112, 112)
    # lossless preset: decoded frames are exactly the generated frames (rounded to uint8)
    from PIL import Image
    import torchvision.transforms.functional as TF

    with Image.open(image_folder / "n01443537/ILSVRC2012_val_00000236.JPEG") as im:
        x = TF.resize(im.convert("RGB"), 128)
    x = torch.from_numpy(np.asarray(x).copy()).permute(2, 0, 1).float() / 255.0
    seq = sequence(x, "translate", crop=112)
    assert torch.equal(torch.round(frames * 255), torch.round(seq * 255))
    assert torch.equal(noise[0], torch.round(_center(x) * 255) / 255)  # frame 0 is the clean crop
    assert build_p(_iter_folder(image_folder), out, ["translate", "gaussian_noise"], resize=128, crop=112) == \
        {"written": 0, "skipped": 6}


def _center(x):
    from rbx_robustness.engine._ops import center_crop

    return center_crop(x, 112)


def test_build_p_published_codec(image_folder, tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "p_pub"
    one = [next(iter(_iter_folder(image_folder)))]
    build_p(one, out, ["brightness"], codec="published")
    f = out / "brightness/n01440764/ILSVRC2012_val_00000293.mp4"
    frames = read_mp4(f)
    assert frames.shape == (31, 3, 224, 224)
