"""What every segmentation reader shares: (image, label file) pairs decoded
lazily, a label conversion to the task's encoding, configuration errors that
name the file, the key and the fix, and fingerprints over paths, sizes and
modification times (cheap for thousands of files; any change to a file changes
them).

Encodings (the segmentation task contract): class masks hold train ids
``0..C-1`` or ``ignore_index`` (255); anomaly subsets (``anomaly/<name>``)
hold 0 in-distribution, 1 anomaly, 255 void (SegmentMeIfYouCan).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_x.api import Dataset, SampleSource, resolve_path
from robustbench_x.errors import ConfigError
from robustbench_x.sources import decode_image

IGNORE = 255
ANOMALY_PROTOCOLS = ("smiyc-anomaly", "smiyc-obstacle", "streethazards", "fishyscapes")



Convert = Callable[[np.ndarray], np.ndarray]


def read_label(path: Path) -> np.ndarray:
    """The stored values of a label PNG (palette indices for a 'P' image, not colours)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I", "I;16", "1"):
                raise ValueError(f"label image {path} has mode {img.mode}; expected a single-channel or palette PNG of ids")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot decode label image {path}: {exc}. fix: replace the file from the dataset release") from None


def lookup(table: dict[int, int], default: int = IGNORE) -> Convert:
    """A conversion mapping stored ids through ``table`` (others to ``default``)."""
    lut = np.full(65536, default, dtype=np.int64)
    for k, v in table.items():
        lut[k] = v
    return lambda raw: lut[raw.astype(np.int64)]


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path


class MaskSource(SampleSource):
    """``source[i] -> (RGB image, (H, W) int64 mask, sample id)``; sample ids are image paths relative to ``root``."""

    def __init__(self, pairs: list[Pair], root: Path, convert: Convert) -> None:
        self.pairs, self.root, self.convert = pairs, root, convert

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        pair = self.pairs[i]
        image = decode_image(pair.image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        mask = self.convert(read_label(pair.label))
        if mask.shape != (image.height, image.width):
            raise ValueError(f"label {pair.label} is {mask.shape[1]}x{mask.shape[0]} but image {pair.image} is {image.width}x{image.height}; fix: pair each image with its own label file")
        return image, mask, str(pair.image.relative_to(self.root))


class SegmentationReader(Dataset):
    """Base of the readers: subclasses fill ``self._sources`` (and ``self._protocols``) in ``discover``."""

    task = "segmentation"
    ignore_index = IGNORE
    #: the type name (``type:`` in datasets.yaml); enters the fingerprint
    kind = ""

    def __init__(self, name: str, options: dict, config_file: str | None = None) -> None:
        self.name = name
        self.file = str(config_file or "datasets.yaml")
        self.key = f"datasets.{name}"
        if not options.get("root"):
            raise ConfigError("missing 'root'", file=self.file, key=f"{self.key}.root", fix=f"set 'root:' to the folder of the {self.kind} release")
        self.root = resolve_path(options["root"], config_file)
        if not self.root.is_dir():
            raise ConfigError(f"dataset root {'is a file, not a folder' if self.root.exists() else 'does not exist'}: {self.root}", file=self.file, key=f"{self.key}.root", fix=f"point 'root' at the folder of the {self.kind} release ({self.layout_hint})")
        self.options = options
        self._sources: dict[str, MaskSource] = {}
        self._protocols: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}
        self.discover()
        if not self._sources:
            raise ConfigError(f"no labelled image found under {self.root}", file=self.file, key=f"{self.key}.root", fix=f"expected the released layout: {self.layout_hint}")
        provides = {"train_split"} if "train" in self._sources else set()
        provides |= {"val_split"} if "val" in self._sources else set()
        provides |= {"anomaly_masks"} if self._protocols else set()
        self.provides = frozenset(provides)

    #: one line describing the expected layout, for error messages
    layout_hint = ""

    def discover(self) -> None:
        raise NotImplementedError

    def error(self, message: str, fix: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, key=f"{self.key}.root", fix=fix or f"expected the released layout: {self.layout_hint}")

    def add(self, subset: str, pairs: list[Pair], convert: Convert, protocol: str | None = None) -> None:
        if not pairs:
            return
        self._sources[subset] = MaskSource(sorted(pairs, key=lambda p: str(p.image)), self.root, convert)
        if protocol is not None:
            assert protocol in ANOMALY_PROTOCOLS, protocol
            self._protocols[subset] = protocol

    def pair_by_name(self, images: list[Path], label_for: Callable[[Path], Path]) -> list[Pair]:
        """Pair each image with its label file; a missing label is a configuration error naming both."""
        pairs = []
        for image in images:
            label = label_for(image)
            if not label.is_file():
                raise self.error(f"image {image} has no label file {label}", "restore the label file from the release, or remove the image")
            pairs.append(Pair(image, label))
        return pairs

    def subsets(self) -> list[str]:
        return list(self._sources)

    def samples(self, subset: str) -> MaskSource:
        if subset not in self._sources:
            raise KeyError(f"dataset '{self.name}' has no subset {subset!r}; it has {self.subsets()}")
        return self._sources[subset]

    def anomaly_protocol(self, subset: str) -> str:
        """The benchmark convention an anomaly subset is scored with (``docs/metrics.md``)."""
        if subset not in self._protocols:
            raise KeyError(f"{subset!r} is not an anomaly subset of '{self.name}' (anomaly subsets: {sorted(self._protocols)})")
        return self._protocols[subset]

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            source = self.samples(subset)
            h = hashlib.sha256(f"{self.kind}-v1\n{subset}\n{','.join(self.classes)}\n".encode())
            for pair in source.pairs:
                for path in (pair.image, pair.label):
                    stat = path.stat()
                    h.update(f"{path.relative_to(self.root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            self._fingerprints[subset] = h.hexdigest()[:16]
        return self._fingerprints[subset]


def files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
