"""Peak memory and throughput of the ``segmentation`` and ``anomaly-segmentation``
evaluators (``rbx_segmentation.evaluate``) on synthetic per-pixel outputs.

    python benchmarks/segmentation_evaluator.py --images 8 --height 1024 --width 2048 --classes 19

A stand-in method yields, one image at a time, seeded random logits turned into
``prediction`` / ``probs`` / ``score``; the evaluators stream them through the
metric accumulators and write the per-pixel arrays to disk-backed maps, as in a
run. Prints the peak resident memory of the process (``ru_maxrss``), the
memory before the evaluation, and pixels per second for each evaluator. The
bound stated in docs/tasks.md (section 7) is about ``4·(3C + 8)·H·W`` bytes
plus a constant, whatever the number of images.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


class _Source:
    def __init__(self, n, h, w):
        self.n, self.h, self.w = n, h, w

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        from PIL import Image

        return Image.new("RGB", (self.w, self.h)), None, f"img{i}"


class _Dataset:
    name, task = "synthetic", "segmentation"

    def __init__(self, n, h, w, c, subset):
        self.classes, self.ignore_index, self._subset = [str(i) for i in range(c)], 255, subset
        self.source = _Source(n, h, w)

    def subsets(self):
        return [self._subset]

    def samples(self, subset):
        return self.source

    def anomaly_protocol(self, subset):
        return "smiyc-anomaly"


class _Outputs:
    def __init__(self, labels):
        self.labels, self.sample_ids = labels, np.array([f"img{i}" for i in range(len(labels))])


class _Ctx:
    def __init__(self, dataset, labels, num_classes):
        self.dataset, self._labels, self.seed = dataset, labels, 0
        self.model = type("M", (), {"num_classes": num_classes, "name": "synthetic"})()

    def outputs(self, subset):
        return _Outputs(self._labels)


class _Method:
    def __init__(self, c, h, w, n):
        self.c, self.h, self.w, self.n = c, h, w, n

    def score_images(self, ctx, subset):
        rng = np.random.default_rng(0)
        for _ in range(self.n):
            logits = rng.standard_normal((self.c, self.h, self.w), dtype=np.float32)
            logits -= logits.max(axis=0, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=0, keepdims=True)
            yield {"prediction": probs.argmax(axis=0), "probs": probs, "score": probs.max(axis=0)}


def _labels(path, n, h, w, c, anomaly):
    labels = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(n, h, w))
    rng = np.random.default_rng(1)
    for i in range(n):
        labels[i] = rng.integers(0, 2 if anomaly else c, (h, w))
        labels[i, :8] = 255
    labels.flush()
    return np.load(path, mmap_mode="r")


def main() -> None:
    from robustbench_x.api import SuiteSpec
    from robustbench_x.evaluation import ArrayStore, Evaluation
    from robustbench_x.registry import get_registry
    from rbx_segmentation.evaluate import evaluate_anomaly, evaluate_segmentation

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--classes", type=int, default=19)
    a = p.parse_args()
    registry = get_registry()
    n, h, w, c = a.images, a.height, a.width, a.classes
    with tempfile.TemporaryDirectory() as tmp:
        for suite, subset, evaluator in (("segmentation", "test", evaluate_segmentation), ("anomaly-segmentation", "anomaly/x", evaluate_anomaly)):
            spec: SuiteSpec = registry.get("suites", suite)
            labels = _labels(Path(tmp) / f"{suite}.npy", n, h, w, c, suite != "segmentation")
            dataset = _Dataset(n, h, w, c, subset)
            ev = Evaluation(method=_Method(c, h, w, n), ctx=_Ctx(dataset, labels, c), suite=spec,
                            metric_specs=[registry.get("metrics", m) for m in spec.metrics], method_name="synthetic",
                            arrays=ArrayStore(Path(tmp) / suite))
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            evaluator(ev)
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{suite}: {n} images of {h}×{w}, {c} classes: {n * h * w / seconds / 1e6:.2f} Mpixel/s "
                  f"(including the stand-in method's softmax), peak RSS {peak:.0f} MiB (before: {before:.0f} MiB)")


if __name__ == "__main__":
    main()
