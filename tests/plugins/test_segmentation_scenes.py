"""The built-in ``embedded-scenes`` dataset keeps the segmentation contract
(docs/tasks.md, "Segmentation"): deterministic, masks in the documented encodings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rbx_segmentation.scenes import ANOMALY_SUBSET, CLASSES, IGNORE_INDEX, SIZES, build, generate


@pytest.fixture(scope="module")
def scenes():
    return build()


def test_subsets_sizes_and_sample_types(scenes):
    assert scenes.task == "segmentation" and scenes.classes == CLASSES and scenes.ignore_index == 255
    assert scenes.subsets() == ["train", "val", "test", ANOMALY_SUBSET]
    for subset, n in SIZES.items():
        source = scenes.samples(subset)
        assert len(source) == n
        image, mask, sid = source[n - 1]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 64)
        assert mask.dtype == np.int64 and mask.shape == (64, 64)
        assert sid == f"scenes/{subset}/{n - 1}"
    with pytest.raises(KeyError, match="no subset"):
        scenes.samples("id")


def test_generation_is_deterministic():
    a, b = generate("val"), generate.__wrapped__("val")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert build().fingerprint("val") == build().fingerprint("val") != build().fingerprint("test")
    assert not np.array_equal(generate("test").images, a.images)


def test_masks_use_class_ids_or_ignore(scenes):
    for subset in ("train", "val", "test"):
        values = set(np.unique(scenes.samples(subset).masks).tolist())
        assert values == {0, 1, 2, 3, IGNORE_INDEX}, subset


def test_anomaly_masks_use_the_smiyc_encoding(scenes):
    masks = scenes.samples(ANOMALY_SUBSET).masks
    assert set(np.unique(masks).tolist()) == {0, 1, 255}
    # every scene has anomalous and in-distribution pixels (image-averaged metrics need both)
    assert all((m == 1).any() and (m == 0).any() for m in masks)
    assert scenes.anomaly_protocol(ANOMALY_SUBSET) == "smiyc-anomaly"
    with pytest.raises(KeyError):
        scenes.anomaly_protocol("test")


def test_void_pixels_are_object_edges(scenes):
    """255 marks only ambiguous edge pixels: each lies within 2 px of a labelled pixel."""
    masks = scenes.samples("train").masks.astype(np.int64)
    padded = np.pad(masks, ((0, 0), (2, 2), (2, 2)), constant_values=IGNORE_INDEX)
    void = masks == IGNORE_INDEX
    touches_other = np.zeros_like(void)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            touches_other |= padded[:, 2 + dy : 66 + dy, 2 + dx : 66 + dx] != IGNORE_INDEX
    assert void.any() and touches_other[void].all()
    assert void.mean() < 0.05


def test_conformance_kit_checks_dense_masks(monkeypatch):
    """The kit accepts (H, W) integer masks for a dense task and rejects a mask of another size."""
    from robustbench_x.api import DatasetSpec
    from robustbench_x.testing.checks import check_dataset_samples
    from rbx_segmentation import scenes

    spec = DatasetSpec("embedded-scenes", factory="rbx_segmentation.scenes:build", task="segmentation", builtin=True)
    check_dataset_samples(spec)

    class Cropped(scenes.ArraySource):
        def __getitem__(self, i):
            image, mask, sid = super().__getitem__(i)
            return image, mask[:-1], sid

    def broken(name="cropped-scenes", options=None, config_file=None):
        dataset = scenes.EmbeddedScenes(name)
        source = dataset.samples("val")
        dataset._sources.update({s: Cropped(source.images, source.masks, source.ids) for s in scenes.SIZES})
        return dataset

    monkeypatch.setattr(scenes, "build_cropped", broken, raising=False)
    cropped = DatasetSpec("cropped-scenes", factory="rbx_segmentation.scenes:build_cropped", task="segmentation", builtin=True)
    with pytest.raises(AssertionError, match=r"mask shape \(63, 64\) differs"):
        check_dataset_samples(cropped)
