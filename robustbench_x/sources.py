"""Sample sources for file-backed datasets (public: third-party dataset plugins use them too)."""

from __future__ import annotations

from pathlib import Path

from robustbench_x.api import SampleSource


def decode_image(path: Path):
    """Open and fully decode an image (RGB or L), or raise an error that names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
    except (UnidentifiedImageError, OSError) as exc:
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
