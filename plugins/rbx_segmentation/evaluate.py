"""Evaluators of the ``segmentation`` and ``anomaly-segmentation`` suites.

The contract and what is stored are ``docs/tasks.md`` section 7. Both stream
one image at a time: the method's :meth:`score_images` (or its stacked
``score``) is consumed image by image, every metric is a streaming
accumulator of :mod:`rbx_segmentation.metrics`, and the per-pixel arrays are
written into disk-backed memory maps before :meth:`ArrayStore.save` copies
them in 16 MiB chunks; the working set is one image's outputs plus the
accumulators' fixed state.

* ``segmentation`` (subsets ``val`` and ``test``; a subset whose every pixel is
  ignored, as Cityscapes' withheld test labels, is skipped and recorded): mIoU, pixel accuracy (one confusion matrix over every
  non-ignored pixel), pixel ECE / NLL / Brier over every non-ignored pixel
  (the method's ``probs``), pixel AURC (the method's ``score`` against
  ``prediction == target``).
* ``anomaly-segmentation``: anomaly = ``-score``; each ``anomaly/*`` subset is
  scored with :data:`rbx_segmentation.metrics.PROTOCOL_METRICS` of its
  dataset's ``anomaly_protocol(subset)``. SegmentMeIfYouCan's component
  metrics binarise at the pooled best-F1 threshold (a second pass over the
  stored maps), with the track's size filters unless the dataset gives its own
  (``component_size_filters(subset) -> (min predicted, min ground truth)``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from robustbench_x.errors import JobError, PluginError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED

__all__ = ["evaluate_segmentation", "evaluate_anomaly", "stream_outputs", "array_name"]

N_EXAMPLES = 2
EXAMPLE_SIDE = 512
IMAGE_AVERAGED = {"auroc-img": "auroc", "aupr-img": "aupr", "fpr95-img-closest": "fpr95", "fpr95-img-first": "fpr95"}
POOLED = {"ap-pooled": "ap", "fpr95-pooled": "fpr95", "f1-best-pooled": "f1_best"}
COMPONENT = {"siou": "siou", "ppv": "ppv", "mean-f1": "mean_f1"}
TRACK = {"smiyc-anomaly": "anomaly", "smiyc-obstacle": "obstacle"}


def array_name(subset: str, what: str) -> str:
    """``anomaly/unseen-shape`` + ``score`` -> ``anomaly-unseen-shape.score`` (array names are file names)."""
    return f"{subset.replace('/', '-')}.{what}"


def stream_outputs(ev: Evaluation, subset: str) -> Iterator[dict[str, np.ndarray]]:
    """The method's per-image outputs, checked against the masks' shape."""
    labels = ev.ctx.outputs(subset).labels
    n, shape = len(labels), tuple(labels.shape[1:])
    method = ev.method
    if hasattr(method, "score_images"):
        images = method.score_images(ev.ctx, subset)
    else:
        whole = method.score(ev.ctx, subset)
        images = ({k: v[i] for k, v in whole.items()} for i in range(n))
    count = 0
    for out in images:
        for key in ("prediction", "score", "probs"):
            if key not in out:
                raise PluginError(f"method '{ev.method_name}' gave no '{key}' for an image of {subset}; a segmentation method returns prediction, probs and score per pixel (docs/tasks.md, section 7)")
            got = tuple(np.shape(out[key]))
            want = shape if key != "probs" else (ev.ctx.model.num_classes or got[0], *shape)
            if got != want:
                raise PluginError(f"method '{ev.method_name}': '{key}' of image {count} of {subset} has shape {got}, expected {want} (the mask's (H, W))")
        count += 1
        yield out
    if count != n:
        raise PluginError(f"method '{ev.method_name}' scored {count} images of {subset}, which has {n}")


class _DiskArrays:
    """Per-pixel arrays filled image by image, backed by files in a temporary folder."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rbx-seg-")
        self.arrays: dict[str, np.ndarray] = {}

    def new(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        path = Path(self._tmp.name) / f"{len(self.arrays)}.npy"
        self.arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        return self.arrays[name]

    def save(self, ev: Evaluation, sample_ids) -> None:
        for name, array in self.arrays.items():
            array.flush()
            ev.arrays.save(name, array, sample_ids)

    def close(self) -> None:
        self.arrays.clear()
        self._tmp.cleanup()


class _Examples:
    """A few example images of a subset at display resolution (long side at most
    :data:`EXAMPLE_SIDE`), their masks and the method's score maps, for the page's figure:
    the :data:`N_EXAMPLES` images with the most non-background pixels among the first 20."""

    def __init__(self, ev: Evaluation, subset: str, labels, ignore: int) -> None:
        first = np.asarray(labels[: min(20, len(labels))])
        counts = ((first != 0) & (first != ignore)).reshape(len(first), -1).sum(axis=1)
        self.index = sorted(np.argsort(-counts, kind="stable")[:N_EXAMPLES].tolist())
        self.step = max(1, -(-max(first.shape[1:]) // EXAMPLE_SIDE))
        self.ev, self.subset, self.labels = ev, subset, labels
        self.scores: dict[int, np.ndarray] = {}

    def add(self, i: int, score: np.ndarray) -> None:
        if i in self.index:
            self.scores[i] = np.asarray(score, dtype=np.float32)[:: self.step, :: self.step]

    def save(self, ids: list[str]) -> None:
        s, rows = self.step, self.index
        source = self.ev.dataset.samples(self.subset)
        images = np.stack([np.asarray(source[i][0].convert("RGB"))[::s, ::s] for i in rows])
        masks = np.stack([np.asarray(self.labels[i])[::s, ::s] for i in rows]).astype(np.uint8)
        chosen = [ids[i] for i in rows]
        self.ev.arrays.save(array_name(self.subset, "examples"), images, chosen)
        self.ev.arrays.save(array_name(self.subset, "examples-mask"), masks, chosen)
        self.ev.arrays.save(array_name(self.subset, "examples-score"), np.stack([self.scores[i] for i in rows]).astype(np.float16), chosen)


def _value(ev: Evaluation, subset: str, metric: str, n: int, compute) -> MetricValue:
    spec = next(s for s in ev.metric_specs if s.name == metric)
    try:
        return MetricValue(subset, metric, float(compute()), spec.higher_is_better, n)
    except ValueError as exc:
        return MetricValue(subset, metric, float("nan"), spec.higher_is_better, n, UNDEFINED + str(exc))


def _prediction_dtype(num_classes: int):
    return np.uint8 if num_classes <= 255 else np.uint16


def evaluate_segmentation(ev: Evaluation):
    from rbx_segmentation.metrics import CalibrationAccumulator, ConfusionAccumulator, RiskCoverageAccumulator
    from rbx_segmentation.metrics.confusion import confusion_counts

    ev.check_class_count()
    dataset = ev.dataset
    num_classes, ignore = len(dataset.classes), int(getattr(dataset, "ignore_index", 255))
    rows: list[MetricValue] = []
    columns: dict[str, list] = {"sample_id": [], "subset": [], "image-iou": [], "image-pixel-accuracy": []}
    for subset in ev.subsets():
        cached = ev.ctx.outputs(subset)
        labels, ids = cached.labels, [str(s) for s in cached.sample_ids]
        n, (h, w) = len(labels), labels.shape[1:]
        if all((np.asarray(labels[i]) == ignore).all() for i in range(n)):
            ev.ctx.record(f"skipped:{subset}", "every pixel has the ignore label (labels withheld, as Cityscapes' test)")
            continue
        confusion, calibration, risk = ConfusionAccumulator(num_classes, ignore), CalibrationAccumulator(n_bins=15), RiskCoverageAccumulator()
        disk = _DiskArrays()
        try:
            predictions = disk.new(array_name(subset, "prediction"), (n, h, w), _prediction_dtype(num_classes))
            scores = disk.new(array_name(subset, "score"), (n, h, w), np.float16)
            per_image = disk.new(array_name(subset, "confusion"), (n, num_classes, num_classes), np.int64)
            examples = _Examples(ev, subset, labels, ignore)
            for i, out in enumerate(stream_outputs(ev, subset)):
                examples.add(i, out["score"])
                target = np.asarray(labels[i])
                pred = np.asarray(out["prediction"]).astype(np.int64)
                confusion.update(pred, target)
                calibration.update(np.asarray(out["probs"], dtype=np.float32), target, ignore)
                valid = target != ignore
                risk.update(np.asarray(out["score"], dtype=np.float32)[valid], (pred == target)[valid])
                counts = confusion_counts(pred, target, num_classes, ignore)
                per_image[i] = counts
                predictions[i], scores[i] = pred, out["score"]
                columns["image-iou"].append(_image_iou(counts))
                total = counts.sum()
                columns["image-pixel-accuracy"].append(float(np.trace(counts) / total) if total else float("nan"))
            disk.save(ev, ids)
            examples.save(ids)
        finally:
            disk.close()
        columns["sample_id"] += ids
        columns["subset"] += [subset] * n
        cal = {}
        values = {
            "miou": confusion.miou,
            "pixel-accuracy": confusion.pixel_accuracy,
            "pixel-ece": lambda: cal.setdefault("r", calibration.result())["ece"],
            "pixel-nll": lambda: cal.setdefault("r", calibration.result())["nll"],
            "pixel-brier": lambda: cal.setdefault("r", calibration.result())["brier"],
            "pixel-aurc": risk.aurc,
        }
        rows += [_value(ev, subset, spec.name, n, values[spec.name]) for spec in ev.metric_specs if spec.name in values]
    return rows, _columns(columns)


def _image_iou(counts: np.ndarray) -> float:
    """Mean IoU over the classes present in the image's ground truth or prediction."""
    inter = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def _columns(columns: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=object if k in ("sample_id", "subset", "protocol") else np.float64) for k, v in columns.items()}


def evaluate_anomaly(ev: Evaluation):
    from rbx_segmentation.metrics import PROTOCOL_METRICS, ComponentMetrics, ImageAveragedAnomaly, PooledAnomaly
    from rbx_segmentation.metrics.components import TRACK_SIZES

    ev.check_class_count()
    dataset = ev.dataset
    if not hasattr(dataset, "anomaly_protocol"):
        raise JobError(f"dataset '{dataset.name}' has anomaly subsets but no anomaly_protocol(subset); its reader must declare each subset's benchmark convention")
    image_columns = [m for m in IMAGE_AVERAGED if any(s.name == m for s in ev.metric_specs)]
    rows: list[MetricValue] = []
    columns: dict[str, list] = {"sample_id": [], "subset": [], "protocol": [], **{m: [] for m in image_columns}}
    for subset in ev.subsets():
        protocol = dataset.anomaly_protocol(subset)
        if protocol not in PROTOCOL_METRICS:
            raise JobError(f"dataset '{dataset.name}': anomaly_protocol({subset!r}) is {protocol!r}; expected one of {sorted(PROTOCOL_METRICS)}")
        wanted = [m for m in PROTOCOL_METRICS[protocol] if any(s.name == m for s in ev.metric_specs)]
        cached = ev.ctx.outputs(subset)
        labels, ids = cached.labels, [str(s) for s in cached.sample_ids]
        n, (h, w) = len(labels), labels.shape[1:]
        averaged = {rule: ImageAveragedAnomaly(rule) for rule in ("closest", "first") if f"fpr95-img-{rule}" in wanted or ("auroc-img" in wanted and rule == "closest")}
        pooled = PooledAnomaly()
        disk = _DiskArrays()
        try:
            scores = disk.new(array_name(subset, "score"), (n, h, w), np.float16)
            exact = disk.new("anomaly", (n, h, w), np.float32)
            del disk.arrays["anomaly"]  # the float32 maps of the second pass are not stored
            examples = _Examples(ev, subset, labels, 255)
            for i, out in enumerate(stream_outputs(ev, subset)):
                examples.add(i, out["score"])
                anomaly = -np.asarray(out["score"], dtype=np.float32)
                label = np.asarray(labels[i])
                for acc in averaged.values():
                    acc.update(anomaly, label)
                pooled.update(anomaly, label)
                exact[i], scores[i] = anomaly, out["score"]
            values = {}
            for metric in wanted:
                if metric in IMAGE_AVERAGED:
                    acc = averaged["first" if metric.endswith("first") else "closest"]
                    values[metric] = lambda acc=acc, key=IMAGE_AVERAGED[metric]: acc.result()[key]
                elif metric in POOLED:
                    values[metric] = lambda key=POOLED[metric]: pooled.result()[key]
            if any(m in COMPONENT for m in wanted):
                components = _components(dataset, subset, protocol, pooled, exact, labels, ComponentMetrics, TRACK_SIZES)
                for metric in (m for m in wanted if m in COMPONENT):
                    values[metric] = lambda key=COMPONENT[metric]: components()[key]
            rows += [_value(ev, subset, m, n, values[m]) for m in wanted]
            disk.save(ev, ids)
            examples.save(ids)
        finally:
            disk.close()
        columns["sample_id"] += ids
        columns["subset"] += [subset] * n
        columns["protocol"] += [protocol] * n
        for m in image_columns:
            if m in wanted:
                columns[m] += averaged["first" if m.endswith("first") else "closest"].per_image()[IMAGE_AVERAGED[m]].tolist()
            else:
                columns[m] += [float("nan")] * n
    return rows, _columns(columns)


def _components(dataset, subset, protocol, pooled, exact, labels, ComponentMetrics, TRACK_SIZES):
    """A thunk computing the component metrics at the pooled best-F1 threshold (raises ValueError when undefined)."""
    track = TRACK[protocol]
    sizes = dataset.component_size_filters(subset) if hasattr(dataset, "component_size_filters") else TRACK_SIZES[track]
    done: dict[str, dict] = {}

    def compute():
        if "r" not in done:
            threshold = pooled.best_f1_threshold()
            metrics = ComponentMetrics(track, min_pred_size=sizes[0], min_gt_size=sizes[1])
            for i in range(len(exact)):
                metrics.update(exact[i], np.asarray(labels[i]), threshold)
            done["r"] = metrics.result()
        return done["r"]

    return compute
