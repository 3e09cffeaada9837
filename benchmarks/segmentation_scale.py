"""Memory and throughput of the segmentation metrics at Cityscapes scale.

Usage::

    python benchmarks/segmentation_scale.py [--n 500] [--height 1024] [--width 2048] [--classes 19] [--no-tracemalloc]

Streams ``--n`` synthetic images (default 500 of 1024 x 2048 pixels with 19
classes, ~1.05e9 pixels) through every metric of the ``segmentation`` and
``anomaly-segmentation`` suites, one image at a time as an evaluator does:
confusion (mIoU, pixel accuracy), calibration (ECE, NLL, Brier on every
pixel), pixel AURC, image-averaged AUROC / AUPR / FPR95 (the "closest" rule; "first"
costs the same),
SegmentMeIfYouCan pooled AP / FPR95 / best F1, and, in a second pass at the
pooled best-F1 threshold (as the benchmark does), component sIoU / PPV / mean
F1 with the AnomalyTrack size filters.

Each image is generated from its own seed and not kept in memory: per-pixel logits
(classes, H, W) float32 with the target class boosted, an ignore band (sky),
a few anomalous blocks scored with lower confidence (the anomaly score is
1 - max softmax), SMIYC masks. Generation is not timed. The anomaly maps (float16, as
SegmentMeIfYouCan stores them, so every anomaly metric sees float16 scores)
and masks go to a temporary file for the second pass (3 bytes per pixel on
disk, read back with plain reads, deleted at the end).

Prints the pixels per second of each metric family (its update and result
calls only), the peak traced allocation (tracemalloc: numpy buffers
included; the images being generated count too) and the peak resident set
size of the process (``ru_maxrss``). The budget is a peak below 2 GiB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from rbx_segmentation.metrics.calibration import max_and_argmax  # noqa: E402
from rbx_segmentation.metrics import (  # noqa: E402
    CalibrationAccumulator,
    ComponentMetrics,
    ConfusionAccumulator,
    ImageAveragedAnomaly,
    PooledAnomaly,
    RiskCoverageAccumulator,
)

IGNORE = 255


def upsample(a: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour (C, h, w) -> (C, h k, w k) by one broadcast copy (np.repeat is far slower)."""
    c, h, w = a.shape
    return np.ascontiguousarray(np.broadcast_to(a[:, :, None, :, None], (c, h, k, w, k))).reshape(c, h * k, w * k)


def synthetic_image(i: int, h: int, w: int, c: int, seed: int):
    """(probs (C, H, W) float32, target (H, W), anomaly score (H, W) float32, SMIYC label (H, W))."""
    rng = np.random.default_rng([seed, i])
    cell = 16
    coarse = rng.integers(0, c, (h // cell, w // cell))
    target = upsample(coarse[None], cell)[0].astype(np.int64)
    logits = upsample(rng.normal(size=(c, h // cell, w // cell)).astype(np.float32), cell)
    boost = rng.normal(2.0, 1.0, size=(h, w)).astype(np.float32)
    np.put_along_axis(logits, target[None], np.take_along_axis(logits, target[None], 0) + boost[None], 0)
    label = np.zeros((h, w), dtype=np.uint8)
    label[: h // 5] = IGNORE
    for _ in range(3):
        y, x = rng.integers(h // 5, h - h // 8), rng.integers(0, w - w // 8)
        dy, dx = rng.integers(h // 40, h // 8), rng.integers(w // 80, w // 8)
        label[y : y + dy, x : x + dx] = 1
    logits[:, label == 1] *= 0.3
    target[: h // 5] = IGNORE
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    anomaly = 1.0 - logits.max(axis=0)
    return logits, target, anomaly, label


def aurc_update(risk, conf, pred, target, valid) -> None:
    risk.update(conf[valid], (pred == target)[valid])


class Timer:
    def __init__(self):
        self.seconds = defaultdict(float)

    def run(self, family, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.seconds[family] += time.perf_counter() - start
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip tracemalloc (it slows numpy allocation a little)")
    args = ap.parse_args(argv)
    h, w, c = args.height, args.width, args.classes
    if not args.no_tracemalloc:
        tracemalloc.start()
    t = Timer()
    confusion = ConfusionAccumulator(c, IGNORE)
    calibration = CalibrationAccumulator()
    risk = RiskCoverageAccumulator()
    closest = ImageAveragedAnomaly("closest")  # the StreetHazards protocol; "first" costs the same
    pooled = PooledAnomaly()
    components = ComponentMetrics("anomaly")
    pixels = h * w * args.n
    wall = time.perf_counter()

    def process(i, probs, target, anomaly, label):
        conf, pred = max_and_argmax(probs.reshape(c, -1))
        conf, pred = conf.reshape(h, w), pred.reshape(h, w)
        valid = target != IGNORE
        t.run("confusion", confusion.update, pred, target)
        t.run("calibration", calibration.update, probs, target, IGNORE)
        t.run("pixel-aurc", aurc_update, risk, conf, pred, target, valid)
        t.run("image-averaged", closest.update, anomaly, label)
        t.run("pooled", pooled.update, anomaly, label)
        if (i + 1) % 25 == 0 or i + 1 == args.n:
            print(f"  pass 1: {i + 1}/{args.n} images, {time.perf_counter() - wall:.0f} s", flush=True)

    # pass 2 needs the anomaly maps again: kept on disk as float16 (as SegmentMeIfYouCan stores
    # anomaly_p), so every anomaly metric sees the same float16 scores and nothing is regenerated
    # (plain reads and writes, not a memory map: mapped pages would count in the RSS)
    store = tempfile.TemporaryDirectory(prefix="rbx-seg-scale-")
    spill = Path(store.name) / "maps.bin"
    frame = h * w * 3  # float16 score + uint8 label
    with open(spill, "wb") as out:
        for i in range(args.n):
            probs, target, anomaly, label = synthetic_image(i, h, w, c, args.seed)
            anomaly = anomaly.astype(np.float16)
            out.write(anomaly.tobytes())
            out.write(label.tobytes())
            process(i, probs, target, anomaly, label)
    results = {
        "confusion": t.run("confusion", lambda: {"miou": confusion.miou(), "pixel_accuracy": confusion.pixel_accuracy()}),
        "calibration": t.run("calibration", calibration.result),
        "pixel-aurc": {"aurc": t.run("pixel-aurc", risk.aurc)},
        "image-averaged": t.run("image-averaged", closest.result),
        "pooled": t.run("pooled", pooled.result),
    }
    threshold = t.run("pooled", pooled.best_f1_threshold)
    for i in range(args.n):
        anomaly = np.fromfile(spill, dtype=np.float16, count=h * w, offset=i * frame).reshape(h, w)
        label = np.fromfile(spill, dtype=np.uint8, count=h * w, offset=i * frame + 2 * h * w).reshape(h, w)
        t.run("components", components.update, anomaly, label, threshold)
        if (i + 1) % 25 == 0 or i + 1 == args.n:
            print(f"  pass 2: {i + 1}/{args.n} images, {time.perf_counter() - wall:.0f} s", flush=True)
    results["components"] = t.run("components", components.result)
    store.cleanup()
    traced = tracemalloc.get_traced_memory()[1] if not args.no_tracemalloc else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(f"\n{args.n} images of {h}x{w}, {c} classes: {pixels:.3g} pixels per pass, wall {time.perf_counter() - wall:.0f} s (generation included)")
    print(f"{'family':<16}{'seconds':>10}{'Mpixel/s':>12}  values")
    for family, values in results.items():
        sec = t.seconds[family]
        shown = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
        print(f"{family:<16}{sec:>10.1f}{pixels / sec / 1e6:>12.1f}  {shown}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process CPU time: {usage.ru_utime + usage.ru_stime:.0f} s (the per-family seconds are wall time; on a shared machine they include waiting)")
    print(f"peak traced allocation: {traced / 2**30:.2f} GiB (tracemalloc)")
    print(f"peak RSS: {rss / 2**30:.2f} GiB (ru_maxrss)")
    budget = 2 * 2**30
    print("memory budget (< 2 GiB):", "OK" if max(rss, traced if traced == traced else 0) < budget else "EXCEEDED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
