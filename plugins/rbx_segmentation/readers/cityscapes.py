"""``type: cityscapes`` -- Cityscapes fine annotations, in train ids.

Layout (the released ``leftImg8bit_trainvaltest.zip`` + ``gtFine_trainvaltest.zip``
unpacked into one ``root``; mcordts/cityscapesScripts README "Dataset Structure")::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``labelIds`` (ids 0..33, -1 for the licence plate) become the 19 train ids of
cityscapesScripts ``helpers/labels.py`` (``trainId``); every other id, and
``trainId`` 255 / -1, becomes 255. Subsets ``train``, ``val`` and ``test``
as released (the public ``test`` labels are all void, so ``test`` only
appears with its labels present; scoring it gives no pixel).
"""

from __future__ import annotations

from rbx_segmentation.readers.base import SegmentationReader, files, lookup

CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]

#: labelId -> trainId of cityscapesScripts helpers/labels.py (ids not listed are ignored)
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}



class CityscapesReader(SegmentationReader):
    kind = "cityscapes"
    classes = CLASSES
    layout_hint = "root/leftImg8bit/<split>/<city>/*_leftImg8bit.png and root/gtFine/<split>/<city>/*_gtFine_labelIds.png"

    def discover(self) -> None:
        images_root, labels_root = self.root / "leftImg8bit", self.root / "gtFine"
        if not images_root.is_dir() or not labels_root.is_dir():
            raise self.error(f"{self.root} has no leftImg8bit/ and gtFine/ folders")
        convert = lookup(LABEL_TO_TRAIN)
        for split in ("train", "val", "test"):
            images = files(images_root / split, "*/*_leftImg8bit.png")
            if not images:
                continue
            pairs = self.pair_by_name(images, lambda p: labels_root / split / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
            self.add(split, pairs, convert)


def build(name: str, options: dict, config_file: str | None = None) -> CityscapesReader:
    return CityscapesReader(name, options, config_file)
