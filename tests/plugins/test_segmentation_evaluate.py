"""The segmentation evaluator on hand-made outputs: metric rows and per-image columns, a
withheld-label subset skipped and recorded, a wrongly shaped output refused with its name."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_x.errors import PluginError
from robustbench_x.evaluation import ArrayStore, Evaluation
from robustbench_x.registry import get_registry

from rbx_segmentation.evaluate import evaluate_segmentation

TARGET = np.array([[0, 0, 1], [1, 1, 255]])  # 5 labelled pixels


class _Source:
    def __len__(self):
        return 1

    def __getitem__(self, i):
        from PIL import Image

        return Image.new("RGB", (3, 2)), TARGET, "img0"


class _Dataset:
    name, task, classes, ignore_index = "toy", "segmentation", ["a", "b"], 255

    def subsets(self):
        return ["val", "test"]

    def samples(self, subset):
        return _Source()


class _Outputs:
    def __init__(self, labels):
        self.labels, self.sample_ids = labels, np.array(["img0"])


class _Ctx:
    seed = 0

    def __init__(self):
        self.dataset, self.recorded = _Dataset(), {}
        self.model = type("M", (), {"num_classes": 2, "name": "toy"})()

    def outputs(self, subset):
        return _Outputs(np.full((1, 2, 3), 255) if subset == "val" else TARGET[None])

    def record(self, key, value):
        self.recorded[key] = value


class _Method:
    def __init__(self, prediction):
        self.prediction = prediction

    def score_images(self, ctx, subset):
        probs = np.stack([self.prediction == 0, self.prediction == 1]).astype(np.float32) * 0.8 + 0.1
        yield {"prediction": self.prediction, "probs": probs, "score": probs.max(axis=0)}


def _evaluate(prediction, tmp_path):
    registry = get_registry()
    suite = registry.get("suites", "segmentation")
    ctx = _Ctx()
    ev = Evaluation(method=_Method(prediction), ctx=ctx, suite=suite, metric_specs=[registry.get("metrics", m) for m in suite.metrics],
                    method_name="toy", arrays=ArrayStore(tmp_path))
    return evaluate_segmentation(ev), ctx


def test_rows_columns_and_a_withheld_subset(tmp_path):
    prediction = np.array([[0, 1, 1], [1, 0, 0]])  # right on 3 of the 5 labelled pixels
    (rows, columns), ctx = _evaluate(prediction, tmp_path)
    values = {r.metric: r.value for r in rows}
    assert {r.subset for r in rows} == {"test"} and "skipped:val" in ctx.recorded
    assert values["pixel-accuracy"] == pytest.approx(3 / 5)
    # hand-worked (the ignored pixel's prediction does not count): rows ground truth, columns prediction
    confusion = np.load(tmp_path / "test.confusion.npz")["values"]
    assert confusion[0].tolist() == [[1, 1], [1, 2]]
    # IoU class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (3 + 3 - 2) = 1/2
    assert values["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert columns["image-iou"].tolist() == pytest.approx([(1 / 3 + 1 / 2) / 2]) and columns["subset"].tolist() == ["test"]


def test_a_wrongly_shaped_output_is_refused_with_the_method_name(tmp_path):
    with pytest.raises(PluginError, match="method 'toy': 'prediction' of image 0 of test has shape"):
        _evaluate(np.zeros((3, 2), dtype=int), tmp_path)
