"""Frost photographs: the packaged files mapped to the original indices, the
CIFAR / Tiny shrink, and the frost source in the fingerprints of generated data.

The originals (hendrycks/robustness ``ImageNet-C/create_c/frost1.png ..
frost6.jpg``) are also shipped by ``imagecorruptions`` (``imagecorruptions-imaug``);
the comparisons with them are skipped when it is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from rbx_robustness.engine import corruptions as C  # noqa: E402

# sizes (h, w) of the originals drawn by randint(5): frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg
ORIGINAL_SIZES = [(600, 900), (315, 560), (315, 560), (350, 527), (495, 660)]


def _originals() -> Path:
    ic = pytest.importorskip("imagecorruptions")
    return Path(ic.__file__).parent / "frost"


def _asset(name: str) -> bytes:
    from importlib.resources import files

    return (files("torch_uncertainty_assets.frost") / name).read_bytes()


def _pixels(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def test_default_photos_follow_the_original_indices():
    C.set_frost_images(None)
    assert C.frost_source().startswith("torch-uncertainty-assets:")
    photos = C._scaled_photos(None)
    assert [tuple(p.shape[-2:]) for p in photos] == ORIGINAL_SIZES
    assert C.ASSET_FROST_FILES == ("frost1.jpg", "frost2.jpg", "frost2.jpg", "frost3.jpg", "frost4.jpg")


def test_packaged_photos_against_the_originals():
    """3 byte-identical files, 2 re-encodings with the mean absolute differences the docs state."""
    orig = _originals()
    assert _asset("frost3.jpg") == (orig / "frost4.jpg").read_bytes()
    assert _asset("frost4.jpg") == (orig / "frost5.jpg").read_bytes()
    assert _asset("frost5.jpg") == (orig / "frost6.jpg").read_bytes()  # frost6 is never drawn
    assert np.array_equal(_pixels((orig / "frost2.png").read_bytes()), _pixels((orig / "frost3.png").read_bytes()))
    mad1 = np.abs(_pixels(_asset("frost1.jpg")) - _pixels((orig / "frost1.png").read_bytes())).mean()
    mad2 = np.abs(_pixels(_asset("frost2.jpg")) - _pixels((orig / "frost2.png").read_bytes())).mean()
    assert mad1 == pytest.approx(4.4, abs=0.05) and mad2 == pytest.approx(2.8, abs=0.05)


def test_rbx_frost_dir_selects_the_original_files(monkeypatch, tmp_path):
    orig = _originals()
    monkeypatch.setenv("RBX_FROST_DIR", str(orig))
    C.set_frost_images(None)
    try:
        assert C.frost_source().startswith("RBX_FROST_DIR:")
        assert torch.equal(C._scaled_photos(None)[0].mul(255).round(), torch.from_numpy(_pixels((orig / "frost1.png").read_bytes())).permute(2, 0, 1).float())
        monkeypatch.setenv("RBX_FROST_DIR", str(tmp_path))
        C.set_frost_images(None)
        with pytest.raises(FileNotFoundError, match=r"RBX_FROST_DIR=.* lacks frost1.png.*fix"):
            C.frost_source()
    finally:
        monkeypatch.delenv("RBX_FROST_DIR")
        C.set_frost_images(None)


@pytest.mark.parametrize("scale", [0.2, 0.3])
def test_cifar_and_tiny_shrink_is_cv2_resize(scale):
    """make_cifar_c.py / make_tinyimagenet_c.py: cv2.resize(frost, (0, 0), fx=scale, fy=scale)."""
    cv2 = pytest.importorskip("cv2")
    C.set_frost_images(None)
    for photo, small in zip(C._scaled_photos(None), C._scaled_photos(scale)):
        u8 = photo.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        ref = cv2.resize(u8, (0, 0), fx=scale, fy=scale)
        ours = small.mul(255).round().permute(1, 2, 0).numpy()
        assert ours.shape == ref.shape
        # OpenCV interpolates in 11-bit fixed point: at most one level apart
        assert np.abs(ours - ref.astype(np.float64)).max() <= 1


def test_embedded_dataset_changes_with_the_frost_source():
    from rbx_robustness.embedded import EmbeddedDigitsC

    C.set_frost_images(None)
    a = EmbeddedDigitsC(n_images=4)
    fp, path = a.fingerprint("c/frost/3"), a.cache_path()
    C.set_frost_images([torch.full((3, 300, 300), 0.9)])
    try:
        b = EmbeddedDigitsC(n_images=4)
        assert b.cache_path() != path
        assert b.fingerprint("c/frost/3") != fp
        assert b.fingerprint("c/fog/3") == a.fingerprint("c/fog/3")  # other corruptions are untouched
    finally:
        C.set_frost_images(None)
    assert EmbeddedDigitsC(n_images=4).fingerprint("c/frost/3") == fp
