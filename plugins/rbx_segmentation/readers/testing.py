"""Tiny trees in each release's layout, for tests and the conformance kit
(``check_params={type: RELEASE_WRITERS[type]}``): each writer takes a folder
and returns the datasets.yaml options of a dataset built from what it wrote.
Images are 8 x 6 random RGB; labels use the release's file names and stored
encodings (palette PNGs for PASCAL VOC)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

W, H = 8, 6


def write_image(path: Path, fmt: str | None = None, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)


def write_label(path: Path, values, palette: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")
    if palette:
        img = img.convert("P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    img.save(path)


def stripes(*values: int) -> np.ndarray:
    """An (H, W) map whose column j holds ``values[j % len(values)]``."""
    return np.tile(np.array([values[j % len(values)] for j in range(W)]), (H, 1))


def cityscapes(tmp: Path) -> dict:
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        write_image(tmp / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        write_label(tmp / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", stripes(7, 8, 9, 33, 0, 255, 26, 24))
    return {"root": str(tmp)}


def camvid(tmp: Path) -> dict:
    for split in ("train", "val", "test"):
        write_image(tmp / split / "0001TP_006690.png")
        write_label(tmp / f"{split}annot" / "0001TP_006690.png", stripes(0, 3, 10, 11))
    return {"root": str(tmp)}


def pascal_voc(tmp: Path) -> dict:
    root = tmp / "VOCdevkit" / "VOC2012"
    for i, split in (("2007_000032", "train"), ("2007_000033", "val")):
        write_image(root / "JPEGImages" / f"{i}.jpg", fmt="JPEG")
        write_label(root / "SegmentationClass" / f"{i}.png", stripes(0, 1, 20, 255), palette=True)
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"{i}\n")
    return {"root": str(root)}


def streethazards(tmp: Path) -> dict:
    for part, folder, town in (("train", "training", "t1"), ("train", "validation", "t4"), ("test", "test", "t5")):
        write_image(tmp / part / "images" / folder / town / "300.png")
        write_label(tmp / part / "annotations" / folder / town / "300.png", stripes(1, 2, 13, 14, 0, 8, 8, 8))
    return {"root": str(tmp)}


BDD_FRAMES = {("train", "0a0a0b1a-7c39d841"): (0, 13, 255), ("train", "0a0c3694-24b5193a"): (0, 17, 255),
              ("val", "7d2f7975-e0c1c5a7"): (10, 11), ("val", "7d4a9094-0e5c9e5e"): (18, 0)}


def bdd_anomaly(tmp: Path) -> dict:
    root = tmp / "bdd100k"
    for (split, stem), values in BDD_FRAMES.items():
        write_image(root / "seg" / "images" / split / f"{stem}.jpg", fmt="JPEG")
        write_label(root / "seg" / "labels" / split / f"{stem}_train_id.png", stripes(*values))
    return {"root": str(root)}


def _smiyc(folder: str, ext: str) -> Callable[[Path], dict]:
    def write(tmp: Path) -> dict:
        root = tmp / folder
        fmt = "WEBP" if ext == "webp" else "JPEG"
        write_image(root / "images" / f"validation_1.{ext}", fmt=fmt)
        write_label(root / "labels_masks" / "validation_1_labels_semantic.png", stripes(0, 1, 255))
        return {"root": str(root)}

    return write


def fishyscapes_laf(tmp: Path) -> dict:
    frame = "04_Maurener_Weg_8_000000_000030"
    write_image(tmp / "leftImg8bit" / "test" / "04_Maurener_Weg_8" / f"{frame}_leftImg8bit.png")
    write_label(tmp / "fishyscapes_lostandfound" / f"0000_{frame}_labels.png", stripes(0, 1, 255, 0))
    return {"root": str(tmp)}


RELEASE_WRITERS: dict[str, Callable[[Path], dict]] = {
    "cityscapes": cityscapes,
    "camvid": camvid,
    "pascal-voc": pascal_voc,
    "streethazards": streethazards,
    "bdd-anomaly": bdd_anomaly,
    "road-anomaly-21": _smiyc("dataset_AnomalyTrack", "jpg"),
    "road-obstacle-21": _smiyc("dataset_ObstacleTrack", "webp"),
    "fishyscapes-laf": fishyscapes_laf,
}
