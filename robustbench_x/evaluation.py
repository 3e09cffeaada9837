"""What a suite's evaluator receives from the runner, and the pieces evaluators share.

This module is public: task plugins (retrieval, the robustness suites, and the
next ones: segmentation, attacks) import it. ``docs/tasks.md`` describes the
whole task contract; in short:

* the runner builds the model and the dataset, builds and fits the method,
  then calls the suite's evaluator (``SuiteSpec.evaluator``, default
  :func:`evaluate_classification`) with one :class:`Evaluation`;
* the evaluator returns ``(metric values, per-sample columns)``: a list of
  :class:`MetricValue` (one result row each) and a dict of equal-length 1-D
  arrays (the job's ``scores/`` table; ``sample_id`` and ``subset`` required);
* whatever does not fit one value per sample and column (per-pixel logits, an
  attack's adversarial inputs) goes through :attr:`Evaluation.arrays`, files
  beside ``scores/`` keyed by the job's config hash.

The runner never looks inside the columns or the arrays: a task is what its
plugins agree on, not something the core knows.
"""

from __future__ import annotations

import fnmatch
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robustbench_x.api import Context, Dataset, Method, MetricSpec, Model, Outputs, SuiteSpec, load_factory
from robustbench_x.errors import JobError, PluginError

__all__ = [
    "Evaluation",
    "Evaluator",
    "ArrayStore",
    "MetricValue",
    "suite_subsets",
    "score_subsets",
    "stack_columns",
    "validate_outputs",
    "compute_metrics",
    "evaluate_classification",
    "UNDEFINED",
    "DEFAULT_KINDS",
    "metric_value",
]

#: How a ``MetricValue.error`` begins when the metric has no value on this input (one
#: class present, no relevant item): the job answered; pages say "not applicable".
UNDEFINED = "metric undefined: "


class MetricValue(NamedTuple):
    """One metric value of a job: becomes one result row.

    ``error`` is None when the value stands; otherwise the row is ``failed``
    with this reason (e.g. "metric undefined: only one class") and ``value``
    is NaN. ``n`` is the number of samples (images, queries…) the value is
    computed from.
    """

    subset: str
    metric: str
    value: float
    higher_is_better: bool
    n: int
    error: str | None = None


_ARRAY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class ArrayStore:
    """Extra per-sample arrays of one job, stored beside its ``scores/`` table.

    For outputs that are not one number per sample (a segmentation model's
    per-pixel logits ``(N, C, H, W)``, an attack's perturbations ``(N, 3, H,
    W)``): ``save(name, values, sample_ids)`` writes
    ``<out>/arrays/suite=…/model=…/dataset=…/method=…/<config hash>/<name>.npz``
    holding ``values`` and the ``sample_id`` of each row of its first axis
    (so the rows join the scores table), atomically. Loading never unpickles.
    """

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = None if directory is None else Path(directory)

    def path(self, name: str) -> Path:
        if self.directory is None:
            raise JobError("this evaluation has no array store (the caller passed none); extra per-sample arrays cannot be saved")
        if not _ARRAY_NAME.fullmatch(name):
            raise PluginError(f"array name {name!r} must be a simple file name (letters, digits, '_', '-', '.')")
        return self.directory / f"{name}.npz"

    def save(self, name: str, values: Any, sample_ids: Sequence[str]) -> Path:
        """Write ``values`` (first axis: one row per sample) with their sample ids."""
        array = np.asarray(values)
        ids = np.asarray([str(s) for s in sample_ids])
        if array.ndim == 0 or len(array) != len(ids):
            raise PluginError(f"array '{name}' has shape {array.shape} but {len(ids)} sample ids; its first axis must have one row per sample")
        if array.dtype == object:
            raise PluginError(f"array '{name}' has dtype object; store numbers (or fixed-width strings) so it loads without pickle")
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, values=array, sample_id=ids)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, sample_ids)`` of a saved array."""
        with np.load(self.path(name), allow_pickle=False) as data:
            return data["values"], data["sample_id"]

    def names(self) -> list[str]:
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.npz"))


@dataclass
class Evaluation:
    """Everything a suite's evaluator gets from the runner for one job.

    ``method`` is built and already fitted; ``ctx`` is the method's
    :class:`~robustbench_x.api.Context` (cached outputs, the model, the
    dataset, the seed, ``log`` and ``record``); ``metric_specs`` are the
    suite's metrics in its order; ``arrays`` stores extra per-sample arrays.
    An evaluator is ``evaluate(ev: Evaluation) -> (list[MetricValue],
    dict[str, np.ndarray])``.
    """

    method: Method
    ctx: Context
    suite: SuiteSpec
    metric_specs: list[MetricSpec]
    #: The method's registered name (error messages); default: its class name.
    method_name: str = ""
    arrays: ArrayStore = field(default_factory=lambda: ArrayStore(None))
    #: Where the job runs (``cpu``, ``cuda:0``): for evaluators that compute on tensors.
    device: str = "cpu"
    #: The dataset type that built the dataset (``type:`` in datasets.yaml, or the
    #: built-in dataset's name): evaluators that apply a benchmark's own
    #: convention (ImageNet-C's AlexNet normaliser) read it.
    dataset_type: str | None = None

    def __post_init__(self) -> None:
        self.method_name = self.method_name or type(self.method).__name__
        self.metric_specs = list(self.metric_specs)

    @property
    def model(self) -> Model:
        return self.ctx.model

    @property
    def dataset(self) -> Dataset:
        return self.ctx.dataset

    def subsets(self) -> list[str]:
        """The dataset's subsets this suite evaluates."""
        return suite_subsets(self.dataset, self.suite)

    def check_class_count(self) -> None:
        """For evaluators that read the model's outputs as the dataset's classes: a model
        with another number of outputs (a 10-class checkpoint on a 3-class folder, a
        21-class segmenter on Cityscapes' 19) is an error, not metrics over classes
        that do not exist. The label space alone cannot tell: both carry the one the
        entry declares."""
        # a context without a model or dataset (a test double scoring stored arrays) has nothing to compare
        model, dataset = getattr(self.ctx, "model", None), getattr(self.ctx, "dataset", None)
        outputs, classes = int(getattr(model, "num_classes", 0) or 0), len(getattr(dataset, "classes", None) or [])
        if outputs and classes and outputs != classes:
            raise JobError(
                f"model '{model.name or type(model).__name__}' outputs {outputs} classes but dataset '{dataset.name}' has {classes}; "
                f"fix: give the model entry `num_classes: {classes}` with a checkpoint trained on these classes, or correct the dataset's classes"
            )

    def score_subsets(self) -> dict[str, dict[str, np.ndarray]]:
        """``method.score`` on every subset, validated (:func:`score_subsets`)."""
        return score_subsets(self.method, self.ctx, self.suite, self.method_name)


#: The type of ``SuiteSpec.evaluator``'s target.
Evaluator = Callable[[Evaluation], tuple[list[MetricValue], dict[str, np.ndarray]]]


def suite_subsets(dataset: Dataset, suite) -> list[str]:
    """The dataset's subsets that match the suite's ``subsets`` patterns, in dataset order."""
    subsets = [s for s in dataset.subsets() if any(fnmatch.fnmatchcase(s, p) for p in suite.subsets)]
    if not subsets:
        raise JobError(f"dataset '{dataset.name}' has no subset matching {list(suite.subsets)}")
    return subsets


def score_subsets(method, ctx: Context, suite, method_name: str) -> dict[str, dict[str, np.ndarray]]:
    """Run ``method.score`` on every subset of the suite and validate each output
    (:func:`validate_outputs`): ``{subset: {column: per-sample array}}``."""
    data: dict[str, dict[str, np.ndarray]] = {}
    for subset in suite_subsets(ctx.dataset, suite):
        cached = ctx.outputs(subset)
        produced = method.score(ctx, subset)
        if "probs" not in ctx.wants and isinstance(produced, dict):
            produced.pop("probs", None)  # N × C per sample: stored only where a metric reads it
        data[subset] = validate_outputs(produced, cached, method_name, subset, suite.method_output)
    return data


def stack_columns(data: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-subset columns → one table's columns, with a ``subset`` column."""
    columns: dict[str, list] = {}
    for subset, cols in data.items():
        for name, values in cols.items():
            columns.setdefault(name, []).append(values)
        columns.setdefault("subset", []).append(np.full(len(cols["label"]), subset, dtype=object))
    return {k: np.concatenate(v) for k, v in columns.items()}


def evaluate_classification(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The default evaluator (suites without ``evaluator``): score every subset,
    then every metric by its kind (:func:`compute_metrics`)."""
    ev.check_class_count()
    data = ev.score_subsets()
    return compute_metrics(ev.metric_specs, data), stack_columns(data)


def validate_outputs(produced: Any, cached: Outputs, method: str, subset: str, needed: str) -> dict[str, np.ndarray]:
    """Check a method's per-sample outputs: keys, length, dtype, finiteness."""
    n = len(cached)
    if not isinstance(produced, dict):
        raise PluginError(f"method '{method}' returned {type(produced).__name__} for subset '{subset}'; expected a dict of arrays keyed by score/confidence/probs/prediction")
    if needed not in produced:
        raise PluginError(f"method '{method}' returned no '{needed}' for subset '{subset}' (it returned {sorted(produced)}); the suite scores '{needed}'")
    out: dict[str, np.ndarray] = {}
    for key, values in produced.items():
        array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
        expected = (n, cached.logits.shape[1]) if key == "probs" else (n,)
        if array.shape != expected:
            raise PluginError(f"method '{method}' returned '{key}' of shape {array.shape} for subset '{subset}'; expected {expected} (one value per sample)")
        if key == "prediction":
            out[key] = _predicted_classes(array, cached.logits.shape[1], method, subset)
            continue
        if array.dtype.kind not in "fiub":
            raise PluginError(f"method '{method}' returned '{key}' of dtype {array.dtype} for subset '{subset}'; expected numbers")
        array = array.astype(np.float64)
        bad = ~np.isfinite(array)
        if bad.any():
            raise PluginError(
                f"method '{method}' returned {int(bad.sum())} non-finite value(s) (NaN/inf) in '{key}' for subset '{subset}' of {n} samples; "
                "fix the method (e.g. clamp logarithms, guard divisions) so every score is finite"
            )
        out[key] = array
    out.setdefault("prediction", np.asarray(cached.logits).argmax(axis=1).astype(np.int64))
    out["label"] = np.asarray(cached.labels, dtype=np.int64)
    out["sample_id"] = np.asarray(cached.sample_ids).astype(str).astype(object)
    return out


def _predicted_classes(array: np.ndarray, num_classes: int, method: str, subset: str) -> np.ndarray:
    """Class indices in [0, num_classes): integers, or floats holding integers.
    A cast alone would turn NaN into -2**63 and let class 999 score 0 % "ok"."""
    where = f"method '{method}' returned 'prediction' for subset '{subset}'"
    if array.dtype.kind not in "iuf":
        raise PluginError(f"{where} of dtype {array.dtype}; expected class indices (integers)")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            first = array[bad][0]
            raise PluginError(f"{where} with {int(bad.sum())} value(s) that are not class indices (e.g. {first}); return integers in [0, {num_classes})")
    classes = array.astype(np.int64)
    out_of_range = (classes < 0) | (classes >= num_classes)
    if out_of_range.any():
        raise PluginError(
            f"{where} with {int(out_of_range.sum())} class index(es) outside [0, {num_classes}) (e.g. {int(classes[out_of_range][0])}); "
            "return the index of the predicted class among the model's classes"
        )
    return classes


def compute_metrics(metric_specs, data: dict[str, dict[str, np.ndarray]]) -> list[MetricValue]:
    """(subset, metric, value, higher_is_better, n, error) for every metric the data supports.

    A metric that is undefined on the data (e.g. failure AUROC when every
    prediction is correct) gets a ``failed`` row with the reason; the job's
    other metrics stand.
    """
    results = []
    ood = [s for s in data if s.startswith("ood/")]
    labelled = [s for s in data if not s.startswith("ood/")]
    for spec in metric_specs:
        fn = load_factory(spec.fn)
        calls: list[tuple[str, dict, int]] = []
        if spec.kind == "ood":
            if "id" not in data:
                continue
            for s in ood:
                calls.append((s, {"score_id": data["id"]["score"], "score_ood": data[s]["score"]}, len(data["id"]["score"]) + len(data[s]["score"])))
        else:
            for s in labelled:
                d = data[s]
                if spec.kind == "failure" and "confidence" in d:
                    calls.append((s, {"confidence": d["confidence"], "correct": d["prediction"] == d["label"]}, len(d["label"])))
                elif spec.kind == "calibration" and "probs" in d:
                    calls.append((s, {"probs": d["probs"], "labels": d["label"]}, len(d["label"])))
                elif spec.kind == "classification":
                    calls.append((s, {"prediction": d["prediction"], "labels": d["label"]}, len(d["label"])))
        for subset, kwargs, n in calls:
            try:
                value, error = metric_value(spec, fn(**kwargs))
            except ValueError as exc:
                value, error = float("nan"), UNDEFINED + str(exc)
            results.append(MetricValue(subset, spec.name, value, spec.higher_is_better, n, error))
    return results


#: The metric kinds :func:`compute_metrics` calls; a suite with another kind needs its own evaluator.
DEFAULT_KINDS = frozenset({"ood", "failure", "calibration", "classification"})


def metric_value(spec, returned) -> tuple[float, str | None]:
    """``(value, error)`` of what a metric function returned: a number, or one value
    per sample (a 1-D array, NaN where undefined) whose mean is the metric. A NaN is
    the metric saying it is undefined; anything else that is not a finite number
    (None, a string, inf, a 2-D array) is an error of the metric, on its own row:
    the job's other metrics stand."""
    where = f"metric '{spec.name}' ({spec.fn}) returned"
    array = None if isinstance(returned, (str, bytes)) or returned is None else np.asarray(returned)
    if array is None or array.dtype.kind not in "iuf" or array.ndim > 1:
        shown = repr(returned) if array is None or array.size <= 3 else f"an array of shape {array.shape}"
        return float("nan"), f"{where} {shown[:80]}; a metric returns a float, or a 1-D array of per-sample values"
    if array.ndim == 1:
        defined = array[~np.isnan(array)]
        if not len(defined):
            return float("nan"), UNDEFINED + f"'{spec.name}' is undefined on every sample"
        value = float(np.mean(defined))
    else:
        value = float(array)
    if np.isnan(value):
        return value, UNDEFINED + f"'{spec.name}' returned NaN"
    if np.isinf(value):
        return float("nan"), f"{where} {value}; a metric's value is finite (raise ValueError where it is undefined)"
    return value, None
