"""Evaluator of the ``cure-tsd`` suite (``docs/tasks.md#detection``).

For every subset (``id`` and each ``c/<Challenge>/<level>``) it asks the
method for the detections of each frame, matches them one-to-one with the
ground-truth boxes (:func:`rbx_detection.matching.match_frame`, with the
method's ``iou_threshold`` and ``same_class``) and sums the counts:

* metric values (``MetricValue``) for every subset, for each challenge type
  over its levels (``c/<Challenge>/all``), for each level over the challenge
  types (``level/<k>``), over every challenge video (``challenged``) and over
  every frame (``all``); a value that is
  undefined (precision without any detection) is a ``failed`` row saying so;
* the per-frame table: ``sample_id`` (``<video stem>/<frame>``), ``subset``,
  ``video``, ``frame``, ``n_gt``, ``n_det``, ``tp``, ``fp``, ``fn``, from
  which every value can be recomputed and resampled (by frame or by video).
"""

from __future__ import annotations

import numpy as np

from rbx_detection.detectors import BEYOND_FIX, beyond_message
from rbx_detection.matching import match_frame
from robustbench_x.api import load_factory
from robustbench_x.errors import JobError, PluginError
from robustbench_x.evaluation import Evaluation, MetricValue

ALL = "all"


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    dataset, params = ev.dataset, ev.method.params
    for needed in ("ground_truth", "frame_keys"):
        if not hasattr(dataset, needed):
            raise JobError(f"dataset '{dataset.name}' has no {needed}(subset); the detection suite needs a dataset of task 'detection' (docs/tasks.md#detection)")
    beyond = getattr(ev.model, "frames_beyond", lambda d: [])(dataset)
    if beyond:  # scored, these rows would match nothing: recall 0 with no word why (rbx run finds them before any job)
        raise JobError(f"detections file {ev.model.path}, {beyond_message(beyond, dataset.name)}.\n  fix: {BEYOND_FIX}")
    unknown = getattr(ev.model, "unknown_videos", lambda d: [])(dataset)
    if unknown:
        ev.ctx.record("videos in the detections file but not in the dataset", f"{len(unknown)} (e.g. {unknown[0]})")
    columns: dict[str, list] = {k: [] for k in ("sample_id", "subset", "video", "frame", "n_gt", "n_det", "tp", "fp", "fn")}
    for subset in ev.subsets():
        truth, keys = dataset.ground_truth(subset), dataset.frame_keys(subset)
        detections = ev.method.score(ev.ctx, subset).get("detections")
        if detections is None or len(detections) != len(keys):
            got = "nothing" if detections is None else f"{len(detections)} entries"
            raise PluginError(f"method '{ev.method_name}' returned {got} as 'detections' on subset '{subset}', expected one per frame ({len(keys)})")
        for (video, frame), (gt_boxes, gt_signs), det in zip(keys, truth, detections):
            det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
            counts, _ = match_frame(det[:, :4], det[:, 5].astype(np.int64), det[:, 4], gt_boxes, gt_signs, iou_threshold=params["iou_threshold"], same_class=params["same_class"])
            for key, value in zip(("sample_id", "subset", "video", "frame", "n_gt", "n_det", "tp", "fp", "fn"), (f"{video}/{frame:03d}", subset, video, frame, len(gt_signs), len(det), *counts)):
                columns[key].append(value)
    table = {k: np.asarray(v, dtype=object if k in ("sample_id", "subset", "video") else np.int64) for k, v in columns.items()}
    return metric_values(ev.metric_specs, table), table


def groups(subsets: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of every reported group: each subset, ``c/<Challenge>/all``, ``level/<k>``, ``challenged``, ``all``."""
    subsets = np.asarray(subsets, dtype=object)
    out = {s: subsets == s for s in dict.fromkeys(subsets.tolist())}
    conditions = [s.split("/") for s in out if s.startswith("c/")]
    for challenge in dict.fromkeys(c for _, c, _ in conditions):
        out[f"c/{challenge}/{ALL}"] = np.isin(subsets, [f"c/{challenge}/{lv}" for _, c, lv in conditions if c == challenge])
    for level in sorted({int(lv) for _, _, lv in conditions}):
        out[f"level/{level}"] = np.isin(subsets, [f"c/{c}/{lv}" for _, c, lv in conditions if int(lv) == level])
    if conditions:
        out["challenged"] = np.char.startswith(subsets.astype(str), "c/")
    out[ALL] = np.ones(len(subsets), dtype=bool)
    return out


def metric_values(metric_specs, table: dict[str, np.ndarray]) -> list[MetricValue]:
    values = []
    for group, rows in groups(table["subset"]).items():
        counts = {k: table[k][rows] for k in ("tp", "fp", "fn")}
        for spec in metric_specs:
            try:
                values.append(MetricValue(group, spec.name, float(load_factory(spec.fn)(**counts)), spec.higher_is_better, int(rows.sum())))
            except ValueError as exc:
                values.append(MetricValue(group, spec.name, float("nan"), spec.higher_is_better, int(rows.sum()), str(exc)))
    return values
