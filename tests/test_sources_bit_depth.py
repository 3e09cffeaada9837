"""16-bit and 32-bit integer grey images decode to their 8-bit values: PIL's
``convert("RGB")`` clips every value above 255, so a 16-bit PNG came out white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustbench_x.sources import decode_image

#: a hand-made gradient: 16-bit value k * 257 is 8-bit k (65535 -> 255); the high byte is
#: kept, as Pillow reads 16-bit RGB PNGs, so 0x80FF is 0x80, not rounded up
GRADIENT = np.concatenate([np.arange(256) * 257, [0x80FF, 0x00FF, 0xFF00]]).reshape(1, -1)
EXPECTED = np.concatenate([np.arange(256), [0x80, 0x00, 0xFF]]).reshape(1, -1)


@pytest.mark.parametrize("dtype, suffix, mode", [("<u2", "png", "I;16"), (">u2", "tif", "I;16B"), ("<i4", "tif", "I")])
def test_a_wide_grey_image_keeps_its_gradient(tmp_path, dtype, suffix, mode):
    path = tmp_path / f"g.{suffix}"
    Image.fromarray(GRADIENT.astype(dtype)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == mode
    image = decode_image(path)
    assert image.mode == "L" and image.size == (GRADIENT.shape[1], 1)
    np.testing.assert_array_equal(np.asarray(image), EXPECTED)


def test_32_bit_values_beyond_16_bits_name_the_file(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(path)
    with pytest.raises(ValueError, match=r"cannot decode image .*wide\.tif: .*\[0, 70000\], beyond 16 bits"):
        decode_image(path)


def test_robustness_and_imagefolder_readers_decode_16_bit_grey(tmp_path):
    from rbx_datasets.imagefolder import build
    from rbx_robustness.readers._common import open_image

    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(GRADIENT.astype(np.uint16)).save(tmp_path / "test" / "a" / "g.png")
    image = build("g", {"root": str(tmp_path), "test": "test"}).samples("id")[0][0]
    np.testing.assert_array_equal(np.asarray(image), EXPECTED)
    rgb = open_image(tmp_path / "test" / "a" / "g.png")
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb)[..., 1], EXPECTED)
