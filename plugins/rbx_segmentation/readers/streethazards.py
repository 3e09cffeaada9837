"""``type: streethazards`` -- StreetHazards (CAOS benchmark, Hendrycks et al.).

Layout (``streethazards_train.tar`` and ``streethazards_test.tar`` unpacked into
one ``root``; hendrycks/anomaly-seg ``create_dataset.py``)::

    root/train/images/training/<town>/<n>.png     + root/train/annotations/training/<town>/<n>.png   (t1, t2, t3)
    root/train/images/validation/<town>/<n>.png   + root/train/annotations/validation/<town>/<n>.png (t4)
    root/test/images/test/<town>/<n>.png          + root/test/annotations/test/<town>/<n>.png        (t5, t6)

Annotations hold 1-based ids: 1 "unlabeled", 2..13 the 12 object classes, 14
the anomaly. The official training code subtracts one (``dataset.py``
``segm_transform``) and trains a 13-class head in which "unlabeled" (id 0
after the shift) is a class; the classes here are those 13 (stored id - 1),
stored 0 becomes 255. Subsets: ``train``, ``val``, ``test`` (the anomaly
pixels are 255 there), and ``anomaly/streethazards`` (the test images, 1 on
stored id 14, 0 elsewhere, 255 on stored 0) under the ``streethazards``
protocol (image-averaged metrics, FPR95 at the recall closest to 95 %; the
official ``eval_ood.py`` counts every other pixel, "unlabeled" included, as
in-distribution).
"""

from __future__ import annotations

from rbx_segmentation.readers.base import IGNORE, SegmentationReader, files, lookup

CLASSES = ["unlabeled", "building", "fence", "other", "pedestrian", "pole", "road line", "road", "sidewalk",
           "vegetation", "car", "wall", "traffic sign"]
ANOMALY_ID = 14


class StreetHazardsReader(SegmentationReader):
    kind = "streethazards"
    classes = CLASSES
    layout_hint = "root/train/images/{training,validation}/<town>/*.png, root/test/images/test/<town>/*.png, annotations/ beside images/"

    def discover(self) -> None:
        classes = lookup({stored: stored - 1 for stored in range(1, len(CLASSES) + 1)})
        anomaly = lookup({**{stored: 0 for stored in range(1, ANOMALY_ID)}, ANOMALY_ID: 1}, default=IGNORE)
        splits = (("train", "train", "training"), ("val", "train", "validation"), ("test", "test", "test"))
        for subset, part, folder in splits:
            images = files(self.root / part / "images" / folder, "*/*.png")
            pairs = self.pair_by_name(images, lambda p: self.root / part / "annotations" / folder / p.parent.name / p.name)
            self.add(subset, pairs, classes)
            if subset == "test":
                self.add("anomaly/streethazards", pairs, anomaly, protocol="streethazards")


def build(name: str, options: dict, config_file: str | None = None) -> StreetHazardsReader:
    return StreetHazardsReader(name, options, config_file)
