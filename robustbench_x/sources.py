"""Sample sources for file-backed datasets (public: third-party dataset plugins use them too)."""

from __future__ import annotations

from pathlib import Path

from robustbench_x.api import SampleSource


def eight_bit(img):
    """``img`` as an 8-bit RGB or L image. Grey 16-bit images (PIL modes ``I;16…``, and ``I``,
    as which Pillow opens 16-bit PNGs and TIFFs) keep their high byte, as Pillow reads 16-bit
    RGB PNGs and torchvision's ``to_dtype`` scales uint16 to uint8: ``convert("RGB")`` clips
    every value above 255, so a 16-bit image came out white."""
    if img.mode in ("RGB", "L"):
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):
        import numpy as np
        from PIL import Image

        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"32-bit integer image with values in [{values.min()}, {values.max()}], beyond 16 bits: no 8-bit reading of it is defined")
        return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8), "L")
    return img.convert("RGB")


def decode_image(path: Path):
    """Open and fully decode an image (RGB or L, 8 bits: :func:`eight_bit`), or raise an error that names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            out = eight_bit(img)
            return out.copy() if out is img else out
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}. fix: remove or replace the file") from None


class FileSource(SampleSource):
    """One image file per sample, decoded lazily; labels readable without decoding.

    Sample ids are the paths relative to ``root``.
    """

    def __init__(self, files: list[Path], labels: list[int], root: Path) -> None:
        self.files, self.labels, self.root = files, labels, root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        return decode_image(path), self.labels[i], str(path.relative_to(self.root))
