"""Evaluators of the robustness suites: ``corruption``, ``perturbation``, ``cure``.

A suite names one with ``evaluator="rbx_robustness.evaluate:<fn>"``;
the runner calls it with one :class:`robustbench_x.evaluation.Evaluation`
and stores the returned
``(metric tuples, per-sample columns)``. The metric functions are the suite's
metric specs' ``fn`` (first-party: :mod:`rbx_robustness.metrics`), called with
the keyword arguments documented there; a ``ValueError`` becomes a ``failed``
row "metric undefined: …" and the other metrics stand.

Scoring
-------
Every subset of the suite is scored with
:meth:`robustbench_x.evaluation.Evaluation.score_subsets` (``method.score`` on the cached
outputs, validated). The evaluators never run the model themselves: a
post-hoc method reads the feature cache only, so a (model, dataset) group
runs the backbone once per subset whatever the number of methods. The
method's ``prediction`` (the argmax of the logits when it returns none) is
what is scored; many post-hoc methods share the argmax, and so share their
errors and flip probabilities. ``score`` is requested too (``ctx.wants``) when
the suite computes ``detection-auroc``.

``corruption`` (subsets ``id``, ``c/<corruption>/<severity>``)
    * ``error`` per subset (kind ``classification``, 1 − top-1 accuracy);
    * ``corruption-error`` per corruption (subset ``c/<corruption>``): the
      mean error over its severities; ``ce`` (ImageNet-C only): CE_c
      normalised by AlexNet;
    * on subset ``all``: ``clean-error`` (the error on ``id``, when the
      dataset has it); ``mce-unnormalised``, the mean over the 15 ImageNet-C
      test corruptions of the per-corruption mean error: the CIFAR-C
      convention, emitted on every dataset and never called an mCE; ``mce``
      and ``relative-mce``, AlexNet-normalised, **only on ImageNet-C**
      (``imagenet-c`` type; ``relative-mce`` also needs ``id``, i.e.
      ``clean_root``; without it the row says so). AlexNet's table is for the
      full 50,000-image val set and the 1000 classes. All three need the
      complete grid of the 15 test corruptions × severities 1-5: with any cell
      missing they are ``failed`` rows whose reason lists what is missing (a
      partial set never reports a value under the benchmark's name), while
      ``error`` / ``corruption-error`` / ``ce`` stay available for what is there;
    * ``detection-auroc`` per corrupted subset, when the method returns a
      ``score``: AUROC of the score with the clean ``id`` samples positive and
      the corrupted subset's negative (challenging-condition detection; higher
      score = cleaner, ties ½).

``perturbation`` (subsets ``p/<perturbation>``)
    A subset's samples are the frames of ``m`` sequences, sample id
    ``<sequence id>#<frame>`` (frame 0-based, the ImageNet-P / CIFAR-P readers'
    convention); frames are grouped back into an ``(m, T)`` grid by id (any
    order; each sequence must have frames ``0..T-1`` exactly once, all the
    same ``T``). Per perturbation: ``flip-probability`` of the **method's
    prediction** and ``ut5d`` of the **model's logits** (the cached logits'
    top-5 rankings, ties to the lower class index, as ``rankdata(-logits,
    'ordinal')``: the top-5 distance is a property of the model's ranking and
    does not depend on the method), both with the noise / temporal rule
    (:func:`rbx_robustness.definitions.is_noise`) at difficulty 1; on
    ImageNet-P also ``flip-rate`` / ``t5d`` (÷ AlexNet). On subset ``all``:
    ``mfp-unnormalised`` / ``mut5d-unnormalised`` over the test perturbations
    present (CIFAR-P's list on CIFAR-P, ImageNet-P's otherwise; all present if
    none is), on every dataset; ``mfr`` / ``mt5d`` (÷ AlexNet) only on
    ImageNet-P, from all 10 test perturbations (a ``failed`` row naming the
    missing ones otherwise). uT5D needs ≥ 5 classes (else a
    "metric undefined" row). Classes hidden by a class mask (−inf logits) rank
    last.

``cure`` (subsets ``id``, ``c/<challenge>/<level>``)
    ``accuracy`` and ``error`` per subset; ``challenge-accuracy`` per
    challenge type (subset ``c/<challenge>``, the mean over its levels);
    ``detection-auroc`` per challenge subset as above.

Per-sample columns: those of :func:`robustbench_x.evaluation.stack_columns`
(``sample_id``, ``subset``, ``label``, ``prediction``, ``score``,
``confidence``…); the perturbation suite adds ``sequence``, ``frame``,
``flip`` (1.0 / 0.0 on compared frames, NaN on reference-only frames) and
``top5_distance`` (likewise), from which FP and uT5D are recomputed as the mean
over sequences of the per-sequence means.

Which benchmark a dataset is (for the AlexNet normalisers): its
``robustness_benchmark`` attribute, else the dataset type of the job
(``imagenet-c``, ``imagenet-p``, ``cifar-c``…), else the reader class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from rbx_robustness.definitions import frame_pairs, is_noise, top5_distance, top5_from_logits
from rbx_robustness.tables import CIFAR_P_TEST, IMAGENET_C_TEST, IMAGENET_P_TEST, SEVERITIES

from robustbench_x.api import load_factory
from robustbench_x.errors import JobError, PluginError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED, compute_metrics, stack_columns

__all__ = [
    "evaluate_corruption",
    "evaluate_perturbation",
    "evaluate_cure",
    "benchmark_of",
    "sequence_grid",
    "top5_rankings",
    "ut5d_from_top5",
    "missing_corruptions",
    "unnormalised_corruptions",
    "ALL",
]

#: Subset name of the aggregate rows.
ALL = "all"

#: Dataset type (spec name) -> benchmark, for the normalisers and the perturbation lists.
_BENCHMARK_OF_TYPE = {
    "imagenet-c": "imagenet-c",
    "imagenet-p": "imagenet-p",
    "cifar-c": "cifar-c",
    "cifar100-c": "cifar-c",
    "cifar-p": "cifar-p",
    "cifar100-p": "cifar-p",
    "cure-tsr": "cure-tsr",
    "cure-or": "cure-or",
}
_BENCHMARK_OF_CLASS = {"ImageNetC": "imagenet-c", "ImageNetP": "imagenet-p", "CifarC": "cifar-c", "CifarP": "cifar-p", "CureTSR": "cure-tsr", "CureOR": "cure-or"}

_ROWS = 8192  # logits rows ranked at a time


def benchmark_of(ev: Evaluation) -> str | None:
    """``imagenet-c``, ``imagenet-p``, ``cifar-c``, ``cifar-p``… or None (module docstring)."""
    dataset = ev.dataset
    declared = getattr(dataset, "robustness_benchmark", None)
    if declared:
        return str(declared)
    if ev.dataset_type in _BENCHMARK_OF_TYPE:
        return _BENCHMARK_OF_TYPE[ev.dataset_type]
    return _BENCHMARK_OF_CLASS.get(type(dataset).__name__)


# --------------------------------------------------------------------------- shared rules


def missing_corruptions(c_errors: Iterable[str]) -> str:
    """The cells of the ImageNet-C test grid (15 corruptions x severities 1-5) that
    ``c_errors`` (subset names ``c/<corruption>/<severity>``) lacks, as text
    (``"fog (all severities), snow (severity 3)"``); empty when complete."""
    present = set(c_errors)
    parts = []
    for c in IMAGENET_C_TEST:
        lacking = [s for s in SEVERITIES if f"c/{c}/{s}" not in present]
        if len(lacking) == len(SEVERITIES):
            parts.append(f"{c} (all severities)")
        elif lacking:
            parts.append(f"{c} (severit{'y' if len(lacking) == 1 else 'ies'} {', '.join(str(s) for s in lacking)})")
    return ", ".join(parts)


def unnormalised_corruptions(present: Iterable[str]) -> list[str]:
    """The corruptions an unnormalised mean averages: the ImageNet-C test ones present
    (the extras are for validation, paper App. B), or every present one if none is."""

    present = list(dict.fromkeys(present))
    test = [c for c in IMAGENET_C_TEST if c in present]
    return test or sorted(present)


def ut5d_from_top5(top5, noise: bool, difficulty: int = 1) -> tuple[float, np.ndarray]:
    """uT5D of ``(m, T, k >= 5)`` top-k rankings (best first) and the ``(m, T)`` per-frame
    distances (NaN on frames that are only a reference). Equal to
    :func:`rbx_robustness.definitions.ut5d` of the logits the rankings come from."""

    top = np.asarray(top5)
    if top.ndim != 3 or top.shape[2] < 5:
        raise ValueError(f"top5 must be an (m sequences, T frames, k >= 5) array of rankings, got shape {top.shape}")
    if top.shape[0] == 0:
        raise ValueError("no sequence")
    m, n, k = top.shape
    ref, cur = frame_pairs(n, bool(noise), difficulty)
    d = np.asarray(top5_distance(top[:, ref].reshape(-1, k), top[:, cur].reshape(-1, k)), dtype=np.float64).reshape(m, len(cur))
    per_frame = np.full((m, n), np.nan)
    per_frame[:, cur] = d
    return float(d.mean(axis=1).mean()), per_frame


# --------------------------------------------------------------------------- helpers


class _Rows:
    """Collects metric tuples; calls metric functions with the evaluator's arguments."""

    def __init__(self, metric_specs) -> None:
        self.specs = {s.name: s for s in metric_specs}
        self.rows: list[tuple] = []
        self._fns: dict[str, Callable] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.specs

    def fn(self, name: str) -> Callable:
        if name not in self._fns:
            self._fns[name] = load_factory(self.specs[name].fn)
        return self._fns[name]

    def add(self, name: str, subset: str, n: int, **kwargs: Any) -> float | None:
        """Compute metric ``name`` (if the suite has it) as ``fn(**kwargs)``; a ValueError is a failed row."""
        if name not in self.specs:
            return None
        spec = self.specs[name]
        try:
            value = float(self.fn(name)(**kwargs))
        except ValueError as exc:
            self.rows.append(MetricValue(subset, name, float("nan"), spec.higher_is_better, int(n), UNDEFINED + str(exc)))
            return None
        self.rows.append(MetricValue(subset, name, value, spec.higher_is_better, int(n), None))
        return value

    def fail(self, name: str, subset: str, n: int, reason: str) -> None:
        if name in self.specs:
            self.rows.append(MetricValue(subset, name, float("nan"), self.specs[name].higher_is_better, int(n), UNDEFINED + str(reason)))


def _want_score(ctx, rows: _Rows) -> None:
    if "detection-auroc" in rows:
        ctx.wants = frozenset(getattr(ctx, "wants", frozenset())) | {"score"}


def _labelled_error(d: dict[str, np.ndarray]) -> float | None:
    labels = d["label"]
    if len(labels) == 0 or (labels < 0).any():
        return None
    return float(np.mean(d["prediction"] != labels))


def _split_subset(subset: str) -> tuple[str, str] | None:
    """``c/<name>/<level>`` -> (name, level)."""
    parts = subset.split("/")
    if len(parts) != 3 or parts[0] != "c" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _detection(rows: _Rows, data: dict[str, dict[str, np.ndarray]], shifted: list[str]) -> None:
    """``detection-auroc`` of ``id`` (positive) vs each shifted subset, when the method scores."""
    if "detection-auroc" not in rows or "id" not in data:
        return
    clean = data["id"]
    for subset in shifted:
        d = data[subset]
        n = len(clean["label"]) + len(d["label"])
        if "score" not in clean or "score" not in d:
            rows.fail("detection-auroc", subset, n, "the method returned no 'score' to separate clean from corrupted samples")
            continue
        rows.add("detection-auroc", subset, n, score_id=clean["score"], score_ood=d["score"])


def _classification(rows: _Rows, data) -> None:
    """Kind ``classification`` metrics (``error``, ``accuracy``) on every subset, via the harness."""
    specs = [s for s in rows.specs.values() if s.kind == "classification"]
    rows.rows.extend(compute_metrics(specs, data))


# --------------------------------------------------------------------------- corruption


def evaluate_corruption(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The ``corruption`` suite's evaluator (module docstring)."""
    ev.check_class_count()
    ctx = ev.ctx
    rows = _Rows(ev.metric_specs)
    _want_score(ctx, rows)
    data = ev.score_subsets()
    corrupted = [s for s in data if _split_subset(s)]
    if not corrupted:
        raise JobError(f"dataset '{ctx.dataset.name}' has no corrupted subset c/<corruption>/<severity> (it has {list(data)})")
    _classification(rows, data)

    errors: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for subset in (["id"] if "id" in data else []) + corrupted:
        error = _labelled_error(data[subset])
        if error is not None:
            errors[subset], sizes[subset] = error, len(data[subset]["label"])
    c_errors = {s: e for s, e in errors.items() if s != "id"}
    bench = benchmark_of(ev)

    groups: dict[str, list[str]] = {}
    for subset in c_errors:
        groups.setdefault(_split_subset(subset)[0], []).append(subset)
    for corruption, members in groups.items():
        n = sum(sizes[s] for s in members)
        rows.add("corruption-error", f"c/{corruption}", n, errors=c_errors, corruption=corruption)
        if bench == "imagenet-c":
            rows.add("ce", f"c/{corruption}", n, errors=c_errors, corruption=corruption)

    n15 = sum(sizes.get(f"c/{c}/{s}", 0) for c in IMAGENET_C_TEST for s in SEVERITIES)
    missing = missing_corruptions(c_errors)
    incomplete = (f"needs all {len(IMAGENET_C_TEST)} ImageNet-C test corruptions x severities 1-5; missing {missing}; "
                  "the per-corruption values are reported") if missing else None
    if c_errors:
        if incomplete:
            rows.fail("mce-unnormalised", ALL, n15, incomplete)
        else:
            rows.add("mce-unnormalised", ALL, n15, errors=c_errors)
    clean = errors.get("id")
    if clean is not None:
        rows.add("clean-error", ALL, sizes["id"], errors=errors, clean_error=clean)
    if bench == "imagenet-c":
        if incomplete:
            rows.fail("mce", ALL, n15, incomplete)
            rows.fail("relative-mce", ALL, n15, incomplete)
        else:
            rows.add("mce", ALL, n15, errors=c_errors)
            if clean is None:
                rows.fail("relative-mce", ALL, n15, "relative mCE needs the clean error: the dataset has no 'id' subset (ImageNet-C: set `clean_root:` to the val set)")
            else:
                rows.add("relative-mce", ALL, n15 + sizes["id"], errors=c_errors, clean_error=clean)
    _detection(rows, data, corrupted)
    return rows.rows, stack_columns(data)


# --------------------------------------------------------------------------- perturbation


def sequence_grid(sample_ids) -> tuple[np.ndarray, list[str]]:
    """``(m, T)`` row indices of the frames of each sequence, and the sequence ids (first-seen order).

    Sample ids are ``<sequence id>#<frame>`` with frames ``0..T-1``; raises
    :class:`~robustbench_x.errors.PluginError` naming the offending id otherwise.
    """
    ids = [str(s) for s in np.asarray(sample_ids)]
    order: dict[str, dict[int, int]] = {}
    for row, sid in enumerate(ids):
        seq, sep, frame = sid.rpartition("#")
        if not sep or not seq or not frame.isdigit():
            raise PluginError(f"sample id {sid!r} is not '<sequence id>#<frame>'; perturbation subsets hold the frames of sequences (e.g. 'translate/n01440764/ILSVRC2012_val_00000293#7')")
        frames = order.setdefault(seq, {})
        j = int(frame)
        if j in frames:
            raise PluginError(f"frame {j} of sequence {seq!r} occurs twice (sample id {sid!r})")
        frames[j] = row
    if not order:
        raise PluginError("no frame to group into sequences")
    lengths = {len(f) for f in order.values()}
    if len(lengths) != 1:
        raise PluginError(f"sequences have different lengths {sorted(lengths)}; every sequence of a perturbation must have the same number of frames")
    t = lengths.pop()
    grid = np.empty((len(order), t), dtype=np.int64)
    for k, (seq, frames) in enumerate(order.items()):
        if set(frames) != set(range(t)):
            raise PluginError(f"sequence {seq!r} has frames {sorted(frames)[:5]}…; expected 0..{t - 1}")
        grid[k] = [frames[j] for j in range(t)]
    return grid, list(order)


def top5_rankings(logits) -> np.ndarray:
    """``(N, 5)`` top-5 classes of every row of ``logits`` (memory-mapped is fine), in blocks;
    ``-inf`` (classes hidden by a mask) ranks last."""

    n = len(logits)
    out = np.empty((n, 5), dtype=np.int64)
    for start in range(0, n, _ROWS):
        block = np.asarray(logits[start : start + _ROWS], dtype=np.float64)
        if np.isneginf(block).any():
            block = np.where(np.isneginf(block), np.finfo(np.float64).min, block)
        out[start : start + len(block)] = top5_from_logits(block)
    return out


def _perturbation_lists(bench: str | None, present: list[str]) -> list[str]:

    names = CIFAR_P_TEST if bench == "cifar-p" else IMAGENET_P_TEST
    used = [p for p in names if p in present]
    return used or list(present)


def evaluate_perturbation(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The ``perturbation`` suite's evaluator (module docstring)."""
    ev.check_class_count()
    from rbx_robustness.definitions import is_noise

    ctx = ev.ctx
    rows = _Rows(ev.metric_specs)
    data = ev.score_subsets()
    bench = benchmark_of(ev)
    fps: dict[str, float] = {}
    ut5ds: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for subset, d in data.items():
        if not subset.startswith("p/"):
            continue
        name = subset[2:]
        noise = is_noise(name)
        grid, seq_ids = sequence_grid(d["sample_id"])
        m, t = grid.shape
        n = len(d["label"])
        sizes[name] = n
        predictions = d["prediction"][grid]
        value = rows.add("flip-probability", subset, n, predictions=predictions, perturbation=name)
        if value is not None:
            fps[name] = value
        if bench == "imagenet-p":
            rows.add("flip-rate", subset, n, predictions=predictions, perturbation=name)

        # per-frame columns: which sequence and frame, flips and top-5 distances of compared frames
        sequence = np.empty(n, dtype=object)
        frame = np.empty(n, dtype=np.int64)
        for k in range(m):
            sequence[grid[k]] = seq_ids[k]
            frame[grid[k]] = np.arange(t)
        flip = np.full(n, np.nan)
        distance = np.full(n, np.nan)
        try:
            ref, cur = frame_pairs(t, noise)
            flip[grid[:, cur].ravel()] = (predictions[:, cur] != predictions[:, ref]).astype(np.float64).ravel()
        except ValueError:
            pass
        if any(k in rows for k in ("ut5d", "t5d", "mt5d", "mut5d-unnormalised")):
            logits = ctx.outputs(subset).logits
            if logits.shape[1] < 5:
                rows.fail("ut5d", subset, n, f"the top-5 distance needs at least 5 classes, the model has {logits.shape[1]}")
                if bench == "imagenet-p":
                    rows.fail("t5d", subset, n, f"the top-5 distance needs at least 5 classes, the model has {logits.shape[1]}")
            else:
                top5 = top5_rankings(logits)[grid]
                value = rows.add("ut5d", subset, n, top5=top5, perturbation=name)
                if value is not None:
                    ut5ds[name] = value
                    _, per_frame = ut5d_from_top5(top5, noise)
                    distance[grid.ravel()] = per_frame.ravel()
                if bench == "imagenet-p":
                    rows.add("t5d", subset, n, top5=top5, perturbation=name)
        d.update(sequence=sequence, frame=frame, flip=flip, top5_distance=distance)

    present = list(sizes)
    used = _perturbation_lists(bench, present)
    n_used = sum(sizes[p] for p in used)
    if fps:
        rows.add("mfp-unnormalised", ALL, n_used, values=fps, perturbations=[p for p in used if p in fps] or None)
    if ut5ds:
        rows.add("mut5d-unnormalised", ALL, n_used, values=ut5ds, perturbations=[p for p in used if p in ut5ds] or None)
    if bench == "imagenet-p":
        n10 = sum(sizes.get(p, 0) for p in IMAGENET_P_TEST)
        lacking = [p for p in IMAGENET_P_TEST if p not in present]
        if lacking:
            reason = (f"needs all {len(IMAGENET_P_TEST)} ImageNet-P test perturbations; missing {', '.join(lacking)}; "
                      "the per-perturbation values are reported")
            rows.fail("mfr", ALL, n10, reason)
            rows.fail("mt5d", ALL, n10, reason)
        else:
            rows.add("mfr", ALL, n10, values=fps)
            rows.add("mt5d", ALL, n10, values=ut5ds)
    return rows.rows, stack_columns(data)


# --------------------------------------------------------------------------- CURE


def evaluate_cure(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The ``cure`` suite's evaluator (module docstring)."""
    ev.check_class_count()
    ctx = ev.ctx
    rows = _Rows(ev.metric_specs)
    _want_score(ctx, rows)
    data = ev.score_subsets()
    _classification(rows, data)
    challenged = [s for s in data if _split_subset(s)]
    accuracies: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for subset in challenged:
        error = _labelled_error(data[subset])
        if error is not None:
            accuracies[subset], sizes[subset] = 1.0 - error, len(data[subset]["label"])
    groups: dict[str, list[str]] = {}
    for subset in accuracies:
        groups.setdefault(_split_subset(subset)[0], []).append(subset)
    for challenge, members in groups.items():
        rows.add("challenge-accuracy", f"c/{challenge}", sum(sizes[s] for s in members), accuracies=accuracies, challenge=challenge)
    _detection(rows, data, challenged)
    return rows.rows, stack_columns(data)
