"""``type: pascal-voc`` -- PASCAL VOC 2012 segmentation.

Layout (the released ``VOCtrainval_11-May-2012.tar``, ``root`` = ``VOCdevkit/VOC2012``)::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png        palette PNG: index = class, 255 = border / difficult
    root/ImageSets/Segmentation/{train,val}.txt   one <id> per line

The palette indices are read (not the colours): 0 background, 1..20 the
object classes in the devkit's order, 255 kept as the ignore label.
"""

from __future__ import annotations

import warnings

from rbx_segmentation.readers.base import Pair, SegmentationReader, lookup

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


class VocReader(SegmentationReader):
    kind = "pascal-voc"
    classes = CLASSES
    layout_hint = "root/JPEGImages/*.jpg, root/SegmentationClass/*.png, root/ImageSets/Segmentation/{train,val}.txt (root = VOCdevkit/VOC2012)"

    def discover(self) -> None:
        lists = self.root / "ImageSets" / "Segmentation"
        if not lists.is_dir():
            raise self.error(f"{lists} does not exist")
        convert = lookup({i: i for i in range(len(CLASSES))})
        listed: dict[str, list[str]] = {}
        for split in ("train", "val"):
            listing = lists / f"{split}.txt"
            if not listing.is_file():
                continue
            ids = listed[split] = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            pairs = []
            for i in ids:
                image, label = self.root / "JPEGImages" / f"{i}.jpg", self.root / "SegmentationClass" / f"{i}.png"
                for path in (image, label):
                    if not path.is_file():
                        raise self.error(f"{listing} lists '{i}' but {path} is missing", "restore the file from VOCtrainval_11-May-2012.tar")
                pairs.append(Pair(image, label))
            self.add(split, pairs, convert)
        shared = set(listed.get("train", ())) & set(listed.get("val", ()))
        if shared:
            # a warning, not an error: a deliberate overlap is possible, but val then scores images the segmenter trained on
            warnings.warn(
                f"{lists / 'val.txt'} lists {len(shared)} of its {len(set(listed['val']))} ids in train.txt too (e.g. '{min(shared)}'): "
                "the val scores are on images the built-in segmenter trains on; use the released lists, which do not overlap",
                stacklevel=2,
            )


def build(name: str, options: dict, config_file: str | None = None) -> VocReader:
    return VocReader(name, options, config_file)
