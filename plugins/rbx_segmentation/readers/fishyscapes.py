"""``type: fishyscapes-laf`` -- Fishyscapes Lost & Found (the public validation set).

Layout: the Fishyscapes labels (``fishyscapes_lostandfound.zip``) and the
Lost & Found images (``leftImg8bit.zip``) unpacked into one ``root``::

    root/fishyscapes_lostandfound/<nnnn>_<laf frame>_labels.png     0 in-distribution, 1 anomaly, 255 void
    root/leftImg8bit/{train,test}/<scene>/<laf frame>_leftImg8bit.png

A label ``0000_04_Maurener_Weg_8_000000_000030_labels.png`` belongs to
``04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_leftImg8bit.png`` in
Lost & Found's ``train`` or ``test`` split (the pairing of pytorch-ood's
``FishyScapes LostAndFound`` loader; 100 frames). One subset,
``anomaly/fishyscapes-laf``, under the ``fishyscapes`` protocol (AP and FPR95
over the pooled pixels). Label space ``cityscapes``.
"""

from __future__ import annotations

from pathlib import Path

from rbx_segmentation.readers.base import Pair, SegmentationReader, files, lookup
from rbx_segmentation.readers.cityscapes import CLASSES as CITYSCAPES_CLASSES



class FishyscapesLafReader(SegmentationReader):
    kind = "fishyscapes-laf"
    classes = CITYSCAPES_CLASSES
    layout_hint = "root/fishyscapes_lostandfound/*_labels.png with root/leftImg8bit/{train,test}/<scene>/*_leftImg8bit.png"

    def discover(self) -> None:
        labels = files(self.root / "fishyscapes_lostandfound", "*_labels.png")
        if not labels:
            raise self.error(f"no *_labels.png in {self.root / 'fishyscapes_lostandfound'}")
        pairs = [Pair(self._image_of(label), label) for label in labels]
        self.add("anomaly/fishyscapes-laf", pairs, lookup({0: 0, 1: 1}), protocol="fishyscapes")

    def _image_of(self, label: Path) -> Path:
        frame = label.name.split("_", 1)[1].removesuffix("_labels.png")  # drop the "<nnnn>_" index
        scene = "_".join(frame.split("_")[:-2])
        for split in ("train", "test"):
            image = self.root / "leftImg8bit" / split / scene / f"{frame}_leftImg8bit.png"
            if image.is_file():
                return image
        raise self.error(f"label {label} has no image {frame}_leftImg8bit.png under {self.root / 'leftImg8bit'}/{{train,test}}/{scene}/",
                         "unpack Lost & Found's leftImg8bit.zip into root")


def build(name: str, options: dict, config_file: str | None = None) -> FishyscapesLafReader:
    return FishyscapesLafReader(name, options, config_file)
