"""``type: bdd-anomaly`` -- BDD-Anomaly (CAOS benchmark): BDD100K segmentation
with train, motorcycle and bicycle held out as anomalies.

Layout (the BDD100K segmentation release ``bdd100k_seg.zip``, ``root`` = ``bdd100k``)::

    root/seg/images/{train,val}/<id>.jpg
    root/seg/labels/{train,val}/<id>_train_id.png     Cityscapes train ids 0..18, 255 void

Split (hendrycks/anomaly-seg ``create_bdd_dataset.py``): an image whose label
contains train, motorcycle or bicycle (train ids 16, 17, 18; the script tests
18, 19, 20 after its +2 shift) goes to the anomaly set, from both ``train``
and ``val``; the other images stay in their split with the 16 remaining
classes (0..15). ``anomaly/bdd-anomaly`` marks those three classes 1 and
every other pixel 0, under the ``streethazards`` protocol. Void pixels count
as in-distribution there, as in the official evaluation: its conversion
(``convert_cityscapes_to_uint``: 255 -> -1, then +2) and its loader's -1
turn void into a "background" class 0, and ``eval_ood.py`` scores every
pixel that is not an anomaly class as in-distribution. Deciding the split
decodes every label once; the result is cached by the labels' paths, sizes
and modification times.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from robustbench_x.api import cache_root, cached_file
from rbx_segmentation.readers.base import IGNORE, Pair, SegmentationReader, files, lookup, read_label

CITYSCAPES_TRAIN_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                            "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus"]
ANOMALY_TRAIN_IDS = (16, 17, 18)


class BddAnomalyReader(SegmentationReader):
    kind = "bdd-anomaly"
    classes = CITYSCAPES_TRAIN_CLASSES
    layout_hint = "root/seg/images/{train,val}/*.jpg with root/seg/labels/{train,val}/*_train_id.png (root = bdd100k)"

    def discover(self) -> None:
        by_split = {}
        for split in ("train", "val"):
            images = files(self.root / "seg" / "images" / split, "*.jpg")
            by_split[split] = self.pair_by_name(images, lambda p: self.root / "seg" / "labels" / split / f"{p.stem}_train_id.png")
        anomalous = self._anomalous([p for pairs in by_split.values() for p in pairs])
        classes = lookup({i: i for i in range(len(CITYSCAPES_TRAIN_CLASSES))})
        for split, pairs in by_split.items():
            self.add(split, [p for p in pairs if str(p.label) not in anomalous], classes)
        held_out = [p for pairs in by_split.values() for p in pairs if str(p.label) in anomalous]
        # void (255) counts as in-distribution, as in the official evaluation (see the module docstring)
        anomaly = lookup({**{i: 0 for i in range(len(CITYSCAPES_TRAIN_CLASSES))}, **{i: 1 for i in ANOMALY_TRAIN_IDS}, IGNORE: 0}, default=IGNORE)
        self.add("anomaly/bdd-anomaly", held_out, anomaly, protocol="streethazards")

    def _anomalous(self, pairs: list[Pair]) -> set[str]:
        """Label files that contain an anomaly class (decoded once, cached by the files' stat)."""
        if not pairs:
            return set()
        h = hashlib.sha256(b"bdd-anomaly-split-v1\n")
        for p in pairs:
            stat = p.label.stat()
            h.update(f"{p.label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())

        def build(tmp):
            held = [str(p.label) for p in pairs if np.isin(read_label(p.label), ANOMALY_TRAIN_IDS).any()]
            tmp.write_text(json.dumps(held))

        path, _ = cached_file(cache_root() / "rbx_segmentation" / f"bdd-anomaly-split-{h.hexdigest()[:16]}.json", build)
        return set(json.loads(path.read_text()))


def build(name: str, options: dict, config_file: str | None = None) -> BddAnomalyReader:
    return BddAnomalyReader(name, options, config_file)
