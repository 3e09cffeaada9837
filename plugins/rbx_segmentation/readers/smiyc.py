"""``type: road-anomaly-21`` and ``type: road-obstacle-21`` -- SegmentMeIfYouCan.

Layout (the released ``dataset_AnomalyTrack.zip`` / ``dataset_ObstacleTrack.zip``,
``root`` = the unpacked ``dataset_AnomalyTrack`` or ``dataset_ObstacleTrack``;
SegmentMeIfYouCan/road-anomaly-benchmark ``datasets/tracks.py``)::

    root/images/<frame>.jpg                           (ObstacleTrack: .webp)
    root/labels_masks/<frame>_labels_semantic.png     0 in-distribution / road, 1 anomaly / obstacle, 255 void

Only the frames whose labels are released (the validation frames; the test
labels stay on the benchmark server) form the subset
``anomaly/road-anomaly-21`` or ``anomaly/road-obstacle-21``, under the
``smiyc-anomaly`` / ``smiyc-obstacle`` protocol (pooled pixel metrics and
component metrics with the track's size filters). The label values are kept
as stored. Models pair with it by the ``cityscapes`` label space (the
benchmark scores Cityscapes-trained segmenters).
"""

from __future__ import annotations

from rbx_segmentation.readers.base import SegmentationReader, files, lookup
from rbx_segmentation.readers.cityscapes import CLASSES as CITYSCAPES_CLASSES



class SmiycReader(SegmentationReader):
    classes = CITYSCAPES_CLASSES
    subset = ""
    protocol = ""
    extensions = ("jpg", "webp", "png")
    layout_hint = "root/images/<frame>.<jpg|webp> with root/labels_masks/<frame>_labels_semantic.png"

    def discover(self) -> None:
        images_dir, labels_dir = self.root / "images", self.root / "labels_masks"
        if not images_dir.is_dir() or not labels_dir.is_dir():
            raise self.error(f"{self.root} has no images/ and labels_masks/ folders")
        images = [p for ext in self.extensions for p in files(images_dir, f"*.{ext}")]
        labelled = [p for p in images if (labels_dir / f"{p.stem}_labels_semantic.png").is_file()]
        if images and not labelled:
            raise self.error(f"none of the {len(images)} images in {images_dir} has a label in {labels_dir}", "the test labels are not released: use the validation frames with their labels_masks")
        pairs = self.pair_by_name(labelled, lambda p: labels_dir / f"{p.stem}_labels_semantic.png")
        self.add(self.subset, pairs, lookup({0: 0, 1: 1}), protocol=self.protocol)


class RoadAnomaly21Reader(SmiycReader):
    kind, subset, protocol = "road-anomaly-21", "anomaly/road-anomaly-21", "smiyc-anomaly"


class RoadObstacle21Reader(SmiycReader):
    kind, subset, protocol = "road-obstacle-21", "anomaly/road-obstacle-21", "smiyc-obstacle"


def build_anomaly(name: str, options: dict, config_file: str | None = None) -> RoadAnomaly21Reader:
    return RoadAnomaly21Reader(name, options, config_file)


def build_obstacle(name: str, options: dict, config_file: str | None = None) -> RoadObstacle21Reader:
    return RoadObstacle21Reader(name, options, config_file)
