"""The task contract (robustbench_x.evaluation): the array store for extra
per-sample arrays, dense outputs through the feature cache, and an evaluator
of a dense task (a toy segmentation: per-pixel logits, an ignore label)
written against the public API only, as a task plugin would be."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_x.api import Dataset, Method, MetricSpec, Model, Outputs, SuiteSpec
from robustbench_x.errors import PluginError
from robustbench_x.evaluation import ArrayStore, Evaluation, MetricValue
from robustbench_x.testing import ArrayContext

IGNORE = 255


def test_array_store_round_trip_and_sample_ids(tmp_path):
    store = ArrayStore(tmp_path / "job")
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = store.save("pixel_logits", values, ["a", "b"])
    assert path == tmp_path / "job" / "pixel_logits.npz"
    loaded, ids = store.load("pixel_logits")
    np.testing.assert_array_equal(loaded, values)
    assert ids.tolist() == ["a", "b"]
    assert store.names() == ["pixel_logits"]
    assert not list((tmp_path / "job").glob(".*tmp"))  # atomic: no temporary left behind


@pytest.mark.parametrize(
    ("name", "values", "ids", "message"),
    [
        ("x", np.zeros((3, 2)), ["a", "b"], "first axis must have one row per sample"),
        ("x", np.array([{"a": 1}, {"b": 2}], dtype=object), ["a", "b"], "dtype object"),
        ("../escape", np.zeros(2), ["a", "b"], "simple file name"),
        ("", np.zeros(2), ["a", "b"], "simple file name"),
    ],
)
def test_array_store_rejects_what_it_cannot_store_safely(tmp_path, name, values, ids, message):
    with pytest.raises(PluginError, match=message):
        ArrayStore(tmp_path).save(name, values, ids)


class _DenseModel(Model):
    """Per-pixel logits of a 2-class 'segmenter': class 1 where the pixel is bright."""

    name, num_classes = "dense", 2

    def transform(self):
        import torch

        return lambda image: torch.as_tensor(np.asarray(image, dtype=np.float32) / 255.0)[None]

    def forward(self, x):
        import torch

        logits = torch.cat([0.5 - x, x - 0.5], dim=1)  # (B, 2, H, W)
        return logits, logits.mean(dim=(2, 3))


class _MaskSource:
    def __init__(self, images, masks):
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return Image.fromarray(self.images[i]), self.masks[i], f"img{i}"


class _SegDataset(Dataset):
    name, task = "toy-seg", "segmentation"

    def __init__(self, source):
        self.source = source

    def subsets(self):
        return ["id"]

    def samples(self, subset):
        return self.source


def _toy():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (4, 5), dtype=np.uint8) for _ in range(3)]
    masks = [(im > 127).astype(np.int64) for im in images]
    masks[1][0, :] = 1 - masks[1][0, :]  # a wrong row on image 1
    masks[2][:, 0] = IGNORE  # an ignored column on image 2
    return images, masks


def test_the_feature_cache_keeps_dense_logits_and_masks(tmp_path):
    from robustbench_x.cache import compute_outputs

    images, masks = _toy()
    compute_outputs(_DenseModel(), _SegDataset(_MaskSource(images, masks)), "id", tmp_path, batch_size=2)
    logits = np.load(tmp_path / "logits.npy")
    labels = np.load(tmp_path / "labels.npy")
    assert logits.shape == (3, 2, 4, 5) and labels.shape == (3, 4, 5)
    np.testing.assert_array_equal(labels[2], masks[2])
    np.testing.assert_array_equal(logits.argmax(axis=1)[0], images[0] > 127)


class _ArgmaxPixels(Method):
    def score(self, ctx, subset):
        return {"prediction": np.asarray(ctx.outputs(subset).logits).argmax(axis=1)}


def pixel_accuracy_evaluator(ev: Evaluation):
    """What a segmentation plugin's evaluator looks like: per-pixel predictions
    stored through ``ev.arrays``, one per-image value per sample in the columns,
    the dataset value over all non-ignored pixels."""
    rows, columns = [], {"sample_id": [], "subset": [], "pixel_accuracy": []}
    for subset in ev.subsets():
        out = ev.ctx.outputs(subset)
        pred = ev.method.score(ev.ctx, subset)["prediction"]
        labels = np.asarray(out.labels)
        valid = labels != IGNORE
        hits = (pred == labels) & valid
        ev.arrays.save(f"{subset}-prediction", pred.astype(np.int16), out.sample_ids)
        per_image = hits.sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
        columns["sample_id"] += list(out.sample_ids)
        columns["subset"] += [subset] * len(labels)
        columns["pixel_accuracy"] += per_image.tolist()
        spec = ev.metric_specs[0]
        rows.append(MetricValue(subset, spec.name, float(hits.sum() / valid.sum()), spec.higher_is_better, len(labels)))
    return rows, {k: np.asarray(v) for k, v in columns.items()}


def test_a_dense_task_evaluator_needs_nothing_task_specific_from_the_core(tmp_path):
    images, masks = _toy()
    model = _DenseModel()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    from robustbench_x.cache import compute_outputs

    dataset = _SegDataset(_MaskSource(images, masks))
    compute_outputs(model, dataset, "id", cache_dir)
    outputs = Outputs(logits=np.load(cache_dir / "logits.npy"), features=np.load(cache_dir / "features.npy"),
                      labels=np.load(cache_dir / "labels.npy"), sample_ids=np.load(cache_dir / "sample_ids.npy"))
    ctx = ArrayContext({"id": outputs}, dataset=dataset, model=model)
    suite = SuiteSpec("toy-seg", method_output="prediction", metrics=("pixel-accuracy",), headline=("pixel-accuracy",), task="segmentation")
    metric = MetricSpec("pixel-accuracy", "segmentation", "unused:fn", True)
    ev = Evaluation(method=_ArgmaxPixels(), ctx=ctx, suite=suite, metric_specs=[metric], arrays=ArrayStore(tmp_path / "arrays"))
    rows, columns = pixel_accuracy_evaluator(ev)

    # hand count: 20 pixels each; image 1 has 5 wrong pixels, image 2 ignores 4
    assert rows == [MetricValue("id", "pixel-accuracy", (20 + 15 + 16) / (20 + 20 + 16), True, 3)]
    np.testing.assert_allclose(columns["pixel_accuracy"], [1.0, 0.75, 1.0])
    stored, ids = ev.arrays.load("id-prediction")
    assert stored.shape == (3, 4, 5) and ids.tolist() == ["img0", "img1", "img2"]
