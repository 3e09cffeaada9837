"""The detection methods: the model's detections, with the matching rule the
evaluator applies to them as parameters (``docs/methods.md#detections-file``).

``score(ctx, subset)`` returns ``{"detections": object array}``, one entry per
frame of the subset: a ``(K, 6)`` float array of ``x1, y1, x2, y2, score,
sign code``: every detection, or those whose score is at least ``min_score``
when one is set (scores may be logits, so no default cut-off).
``iou_threshold`` and ``same_class`` are read by the suite's evaluator
(:mod:`rbx_detection.evaluate`); the defaults (IoU >= 0.5, same sign type,
every detection kept) are ours, as :mod:`rbx_detection.matching` says.
"""

from __future__ import annotations

import numpy as np

from rbx_detection.matching import IOU_THRESHOLD, SAME_CLASS
from robustbench_x.api import Method
from robustbench_x.errors import JobError, PluginError


class Detections(Method):
    def __init__(self, min_score: float | None = None, iou_threshold: float = IOU_THRESHOLD, same_class: bool = SAME_CLASS) -> None:
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise PluginError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        min_score = None if min_score is None else float(min_score)
        super().__init__(min_score=min_score, iou_threshold=float(iou_threshold), same_class=bool(same_class))

    def score(self, ctx, subset: str) -> dict[str, np.ndarray]:
        detect = getattr(ctx.model, "detect", None)
        if detect is None:
            raise JobError(f"model '{ctx.model.name}' has no detect(dataset, subset); use a detector model (`rbx list models`: detections-file, torchvision)")
        frames = detect(ctx.dataset, subset)
        out = np.empty(len(frames), dtype=object)
        for i, (boxes, signs, scores) in enumerate(frames):
            scores = np.asarray(scores, dtype=np.float64)
            keep = np.ones(len(scores), dtype=bool) if self.params["min_score"] is None else scores >= self.params["min_score"]
            out[i] = np.column_stack([np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64), np.asarray(signs, dtype=np.float64)])[keep]
        return {"detections": out}
