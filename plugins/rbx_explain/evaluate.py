"""The evaluator of the ``explanation`` suite (explanation uncertainty).

For every subset of the suite (``id``, ``shift/*``) it asks the method for
its per-image ``explanation_iou`` and ``explanation_snr`` (validated like any
per-sample output: one finite value per image) and computes every metric of
kind ``"explanation"`` (:mod:`rbx_explain.metrics`) with
``fn(iou=, snr=, correct=)``, ``correct`` being the model's argmax against the
label (a new-class image, label -1, is always wrong). A metric returning
per-image values gets their mean over the images where it is defined (the
correct / incorrect groups), with ``n`` counting those; a group with no image
gives a ``failed`` row "metric undefined: …", as does an AUROC when every
prediction is right.

Per-image table: ``sample_id``, ``subset``, ``label``, ``prediction``,
``confidence`` and one column per per-image metric, named after it
(``iou@0.1``, ``snr``), so the leaderboard's bootstrap resamples them.

Maps: when the method keeps them (``method.maps(subset)``, as ``voice``
does), they are saved with ``ev.arrays.save`` as ``explanation.<subset>`` and
``uncertainty.<subset>`` (``/`` in the subset written ``_``), ``(M, H, W)``
float32 with the images' sample ids, for inspection; and ``examples.<subset>``,
``(K, H, W, 3)`` uint8, the images of up to :data:`EXAMPLES` of them (the
wrong predictions first, then right ones spread over the subset) resized to
the maps' size, for the page's grid.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.api import load_factory
from robustbench_x.errors import PluginError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED

__all__ = ["evaluate", "array_name", "PER_IMAGE", "EXAMPLES", "pick_examples"]

#: Images per subset saved for the page's grid (half wrong predictions where there are enough).
EXAMPLES = 8

#: Method outputs → the per-image metric columns of the table.
PER_IMAGE = {"explanation_iou": "iou@0.1", "explanation_snr": "snr"}


def array_name(kind: str, subset: str) -> str:
    """``explanation.id``, ``uncertainty.shift_covariate``: the saved map arrays' names."""
    return f"{kind}.{subset.replace('/', '_')}"


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    data = ev.score_subsets()
    for subset, cols in data.items():
        missing = [k for k in PER_IMAGE if k not in cols]
        if missing:
            raise PluginError(f"method '{ev.method_name}' returned no {missing} for subset '{subset}'; the explanation suite needs the per-image IoU and SNR of each explanation and its uncertainty map")
    values: list[MetricValue] = []
    for spec in ev.metric_specs:
        if spec.kind != "explanation":
            raise PluginError(f"metric '{spec.name}' has kind '{spec.kind}'; the explanation evaluator computes kind 'explanation' only")
        fn = load_factory(spec.fn)
        for subset, cols in data.items():
            correct = cols["prediction"] == cols["label"]
            n = len(correct)
            try:
                out = fn(iou=cols["explanation_iou"], snr=cols["explanation_snr"], correct=correct)
            except ValueError as exc:
                values.append(MetricValue(subset, spec.name, float("nan"), spec.higher_is_better, n, UNDEFINED + str(exc)))
                continue
            out = np.asarray(out, dtype=np.float64)
            if out.ndim == 1:
                defined = np.isfinite(out)
                if not defined.any():
                    values.append(MetricValue(subset, spec.name, float("nan"), spec.higher_is_better, n, UNDEFINED + "no image in this group"))
                    continue
                values.append(MetricValue(subset, spec.name, float(out[defined].mean()), spec.higher_is_better, int(defined.sum()), None))
            else:
                values.append(MetricValue(subset, spec.name, float(out), spec.higher_is_better, n, None))
    _save_maps(ev, data)
    columns: dict[str, list[np.ndarray]] = {}
    for subset, cols in data.items():
        n = len(cols["label"])
        table = {"sample_id": cols["sample_id"], "subset": np.full(n, subset, dtype=object), "label": cols["label"], "prediction": cols["prediction"]}
        if "confidence" in cols:
            table["confidence"] = cols["confidence"]
        table.update({PER_IMAGE[k]: cols[k] for k in PER_IMAGE})
        for key, value in table.items():
            columns.setdefault(key, []).append(value)
    return values, {k: np.concatenate(v) for k, v in columns.items()}


def _save_maps(ev: Evaluation, data: dict[str, dict[str, np.ndarray]]) -> None:
    maps = getattr(ev.method, "maps", None)
    if not callable(maps):
        return
    for subset, cols in data.items():
        kept = maps(subset)
        if not kept:
            continue
        ids = cols["sample_id"][kept["index"]]
        for kind in ("explanation", "uncertainty"):
            ev.arrays.save(array_name(kind, subset), kept[kind], ids)
        correct = (cols["prediction"] == cols["label"])[kept["index"]]
        rows = pick_examples(correct, EXAMPLES)
        size = kept["explanation"].shape[1:]
        source = ev.dataset.samples(subset)
        images = np.stack([_rgb(source[int(kept["index"][r])][0], size) for r in rows])
        ev.arrays.save(array_name("examples", subset), images, ids[rows])


def pick_examples(correct: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` row indices: up to ``k // 2`` wrong predictions, the rest right ones, each
    group evenly spaced over the subset, in subset order."""
    wrong, right = np.flatnonzero(~correct), np.flatnonzero(correct)

    def spread(rows: np.ndarray, m: int) -> np.ndarray:
        return rows[np.unique(np.linspace(0, len(rows) - 1, m).round().astype(int))] if m and len(rows) else rows[:0]

    n_wrong = min(len(wrong), max(k // 2, k - len(right)))
    chosen = np.concatenate([spread(wrong, n_wrong), spread(right, min(len(right), k - n_wrong))])
    return np.sort(chosen)


def _rgb(image, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = image.convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
