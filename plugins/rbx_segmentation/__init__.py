"""First-party plugin for semantic segmentation and anomaly segmentation.

The task's contract (datasets, models, method outputs, evaluator, storage) is
``docs/tasks.md`` section "Segmentation". Registers (specs only; nothing heavy
is imported at discovery):

* dataset ``embedded-scenes`` (built in, :mod:`.scenes`): seeded synthetic
  scenes with ``train`` / ``val`` / ``test`` and the anomaly subset
  ``anomaly/unseen-shape`` (SegmentMeIfYouCan encoding);
* the dataset types of :mod:`.readers` (``READER_SPECS``: released layouts of
  Cityscapes, CamVid, PASCAL VOC, StreetHazards, BDD-Anomaly,
  SegmentMeIfYouCan, Fishyscapes Lost & Found);
* the metrics of :mod:`.metrics` (``METRIC_SPECS``).

Capability tokens introduced here: ``anomaly_masks`` (the dataset has
``anomaly/<name>`` subsets with 0 / 1 / 255 masks and an
``anomaly_protocol(subset)`` method) and ``dense_logits`` (the model returns
per-pixel logits ``(B, C, H, W)``).
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec

DATASETS = [
    DatasetSpec(
        "embedded-scenes",
        factory="rbx_segmentation.scenes:build",
        provides={"train_split", "val_split"},
        task="segmentation",
        builtin=True,
        label_space="embedded-scenes",
        summary="seeded synthetic 64×64 scenes: textured squares, discs and triangles on a noisy background; "
        "train / val / test and anomaly/unseen-shape (a speckled cross, SMIYC 0/1/255 masks); no download",
        deviations=("Synthetic stand-in for a street-scene benchmark so the suites run with nothing configured; "
                    "its numbers rank methods on toy scenes, not on Cityscapes or SegmentMeIfYouCan.",),
    ),
]


@hookimpl
def rbx_datasets():
    from rbx_segmentation.readers import READER_SPECS

    return DATASETS + READER_SPECS


@hookimpl
def rbx_metrics():
    from rbx_segmentation.metrics import METRIC_SPECS

    return METRIC_SPECS
