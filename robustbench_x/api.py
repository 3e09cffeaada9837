"""The public API a plugin implements: specs (what the registry lists) and the
runtime base classes (what a job builds from a spec's factory).

Two layers, on purpose:

* **Specs** are small frozen records: a name, declared capabilities and a lazy
  ``"module:attr"`` factory. Listing and planning use only specs, so
  ``rbx list`` never imports torch.
* **Runtime objects** (:class:`Model`, :class:`Dataset`, :class:`Method`) are
  built by a job from ``factory`` and may import anything.

Compatibility is data: a method ``requires`` capability tokens; a model and a
dataset ``provides`` them. The planner keeps a (model, dataset, method) job when
``method.requires <= model.provides | dataset.provides`` and records every other
pair as *skipped* with the missing tokens as its reason.

Scores point one way everywhere: **higher = more in-distribution / more
confident**.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch

__all__ = [
    "CAPABILITIES",
    "METHOD_OUTPUTS",
    "MethodSpec",
    "MetricSpec",
    "ModelSpec",
    "DatasetSpec",
    "SuiteSpec",
    "ExecutorSpec",
    "Outputs",
    "Model",
    "Dataset",
    "Method",
    "Context",
    "load_factory",
    "PUBLIC_MODULES",
    "is_public_module",
    "resolve_path",
    "cache_root",
    "cached_file",
    "atomic_write",
    "torch_threads",
    "max_probability_minus_one",
    "DatasetEntry",
    "configured_datasets",
    "load_state_dict",
    "checkpoint_shapes",
    "load_shipped_weights",
]

#: The core modules a plugin may import; everything else under ``robustbench_x``
#: is the harness's own and may change without notice. ``pkg.*`` means the
#: package and its submodules. ``tests/test_import_boundary.py`` enforces it on
#: the first-party plugins; ``docs/tasks.md`` says what each is for.
PUBLIC_MODULES: tuple[str, ...] = (
    "robustbench_x",  # hookimpl, __version__
    "robustbench_x.api",  # specs, base classes, the helpers below
    "robustbench_x.errors",  # the exception hierarchy plugins raise (ConfigError, PluginError, JobError…)
    "robustbench_x.evaluation",  # what a suite's evaluator gets (Evaluation) and shares with the default one
    "robustbench_x.metrics.*",  # the metric families every classification suite uses
    "robustbench_x.pages",  # what a suite's leaderboard page renderer works with (Page, markdown_table…)
    "robustbench_x.sources",  # file-backed sample sources for dataset readers
    "robustbench_x.testing.*",  # test doubles and the conformance kit
)


def is_public_module(module: str) -> bool:
    """Whether a plugin may import ``module`` (see :data:`PUBLIC_MODULES`)."""
    for entry in PUBLIC_MODULES:
        if entry.endswith(".*"):
            package = entry[:-2]
            if module == package or module.startswith(package + "."):
                return True
        elif module == entry:
            return True
    return False

#: Capability tokens. A model or dataset ``provides`` them; a method ``requires`` them.
CAPABILITIES: dict[str, str] = {
    "logits": "model returns class logits",
    "features": "model returns the penultimate features (the input of its last linear layer)",
    "linear_head": "model exposes its last layer as a linear map (W, b) on the features",
    "input_grad": "model is differentiable with respect to its input (ODIN, input preprocessing)",
    "grad": "model parameters are differentiable (gradient-based uncertainty)",
    "dropout": "model has dropout layers that can be switched on at test time (MC Dropout)",
    "ensemble": "model can provide several independently trained members (Deep Ensembles)",
    "vlm": "model is a vision-language model with a text encoder",
    "embeddings": "model returns an embedding for retrieval",
    "feature_maps": "model exposes the spatial maps of its last stage (B, C, H, W); features are their spatial mean",
    "explanation_layer": "model declares the layer gradient-based explanations (Grad-CAM) read: explanation_layer() returns a module whose output is (B, K, H, W)",
    "train_split": "dataset has a labelled training split",
    "val_split": "dataset has a labelled validation split (calibration, thresholds)",
    "ood_subsets": "dataset has at least one out-of-distribution subset",
    "hierarchy": "dataset has hierarchical (N × L) labels for retrieval",
    "domain_shifts": "dataset has shifted test sets of the same classes (dg/<name>: ImageNet-V2, -Sketch, -A, -R)",
    "corruptions": "dataset has corrupted subsets c/<corruption>/<severity> (ImageNet-C layout)",
    "perturbations": "dataset has perturbation sequences p/<perturbation> (ImageNet-P layout)",
    "cure": "dataset has CURE challenge subsets c/<challenge>/<level>",
}

#: What a method may return per sample from :meth:`Method.score`.
METHOD_OUTPUTS = ("score", "confidence", "probs", "prediction", "embedding")

Kind = Literal["method", "dataset", "metric", "model", "suite", "executor"]


def load_factory(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:attr"`` and return the attribute."""
    if ":" not in ref:
        raise ValueError(f"factory reference {ref!r} must look like 'package.module:attribute'")
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _frozen(values: Iterable[str]) -> frozenset[str]:
    # A str is kept as given, not split into its letters: the registry refuses it naming the field.
    return frozenset(values) if _collection(values) else values  # type: ignore[return-value]


def _tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values) if _collection(values) else values  # type: ignore[return-value]


def _dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(values) if isinstance(values, Mapping) else values  # type: ignore[return-value]


def _collection(values: Any) -> bool:
    return isinstance(values, Iterable) and not isinstance(values, (str, bytes, Mapping))


@dataclass(frozen=True)
class MethodSpec:
    """A scoring method.

    ``factory(**params)`` returns a :class:`Method`. ``params`` are the default
    hyperparameters; they enter the job's config hash, so changing a default
    recomputes (and changes) the leaderboard. ``outputs`` says which of
    ``score`` (OOD), ``confidence`` (failure), ``probs`` (calibration) and
    ``prediction`` the method returns; a suite only plans methods that produce
    what it scores.
    """

    name: str
    factory: str
    requires: frozenset[str] = field(default_factory=frozenset)
    outputs: frozenset[str] = frozenset({"score"})
    params: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    paper: str = ""
    stochastic: bool = False
    #: Declared departures from the paper or the official release (a CPU budget,
    #: a reconstruction where no official code exists, a stand-in for data that
    #: cannot be shipped, a score direction that contradicts the paper's own
    #: benchmark). Each is one sentence; the leaderboard prints it as a footnote.
    deviations: tuple[str, ...] = ()
    #: Import names of optional packages the method needs (``("pyautoattack",)``)
    #: and how to install them (``install``, e.g. ``pip install 'robustbench_x[attacks]'``).
    #: When one is missing the planner records the job as skipped with that hint.
    packages: tuple[str, ...] = ()
    install: str = ""
    #: ``"module:attr"`` of ``check(params=, dataset=) -> str | None``, run by ``rbx run``
    #: on each configured dataset (opened, no image decoded) before any work: why the
    #: method cannot run on it with these params (fewer classes than it needs, a train
    #: split smaller than its k), or None. A reason skips the job, with that reason;
    #: a dataset named with ``--datasets`` on which nothing can run is refused (exit 2).
    #: Keep it cheap and free of torch imports.
    check: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deviations", _tuple(self.deviations))
        object.__setattr__(self, "packages", _tuple(self.packages))
        object.__setattr__(self, "requires", _frozen(self.requires))
        object.__setattr__(self, "outputs", _frozen(self.outputs))
        object.__setattr__(self, "params", _dict(self.params))


@dataclass(frozen=True)
class MetricSpec:
    """A metric: a pure function of per-sample columns.

    ``kind`` fixes how the harness calls ``fn`` (by keyword):

    * ``ood``: ``fn(score_id=..., score_ood=...)`` once per OOD subset;
    * ``failure``: ``fn(confidence=..., correct=...)`` on the ID test subset;
    * ``calibration``: ``fn(probs=..., labels=...)`` on the ID test subset;
    * ``classification``: ``fn(prediction=..., labels=...)`` on every labelled subset;
    * any other kind (``retrieval``, ``robustness``, a new task's) is called by
      its suite's evaluator, with the keywords that evaluator documents.

    ``scale`` is the display factor (100 for percentages, 1000 for the AURC family).
    A function may return one value per sample (a 1-D array, NaN where
    undefined) instead of a number: the value is then their mean, as for
    retrieval's per-query values.

    ``check_cases`` (``"module:attr"``, optional) lets the conformance kit
    check a metric of a kind it does not know: ``attr()`` returns
    ``(perfect kwargs, random kwargs, [(what, bad kwargs), ...])``, a case the
    metric must score better than the random one and inputs it must reject
    with ``ValueError`` (see ``rbx_retrieval.metrics:check_cases``).
    """

    name: str
    kind: str
    fn: str
    higher_is_better: bool
    scale: float = 100.0
    summary: str = ""
    convention: str = ""
    check_cases: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model or a family of models.

    With ``family=True`` the spec's name is a prefix: ``timm:resnet18`` resolves
    to the spec named ``timm`` with ``arch='resnet18'``.
    ``factory(arch=..., options=..., dataset=...)`` returns a :class:`Model`.
    ``label_space=None`` means the model is trained for the dataset it is
    evaluated on (the built-in model); otherwise the model only pairs with
    datasets of the same label space (e.g. ``imagenet-1k``).
    """

    name: str
    factory: str
    provides: frozenset[str] = field(default_factory=frozenset)
    label_space: str | None = None
    family: bool = False
    default: bool = False
    summary: str = ""
    #: Dataset capability tokens the model needs to be built: the built-in CNN
    #: trains on the dataset it evaluates, so it requires ``train_split``. A run
    #: pairing it with a dataset without them stops before any work (exit 2).
    requires: frozenset[str] = field(default_factory=frozenset)
    #: Declared departures from the paper or the official release (a CPU budget,
    #: a reconstruction where no official code exists, a stand-in for data that
    #: cannot be shipped, a score direction that contradicts the paper's own
    #: benchmark). Each is one sentence; the leaderboard prints it as a footnote.
    deviations: tuple[str, ...] = ()
    #: The tasks (``SuiteSpec.task``) whose suites may plan the model; empty: any.
    #: A segmenter says ``{"segmentation"}`` so a classification suite never pairs
    #: it with a classification dataset (its dropout would match MC Dropout).
    tasks: frozenset[str] = field(default_factory=frozenset)
    #: The keys of a ``models:`` entry the family reads, besides ``type`` (of
    #: ``robustbench_x.config.MODEL_KEYS``); None: all of them. A key the family
    #: would ignore is a configuration error, not a silent no-op.
    option_keys: frozenset[str] | None = None
    #: Forms of the keys under the entry's ``options:`` mapping, in the vocabulary
    #: of :mod:`robustbench_x.options`; empty: ``options:`` is not checked. A
    #: ``path`` there is, like ``checkpoint``, resolved against datasets.yaml and
    #: keys the model's results by its content.
    option_types: Mapping[str, str] = field(default_factory=dict)
    #: Forms of the entry's own keys where the family is stricter than
    #: ``robustbench_x.config.MODEL_TYPES`` (timm's ``pretrained`` is a flag, so the
    #: string ``"false"``, which Python reads as true, is refused).
    key_types: Mapping[str, str] = field(default_factory=dict)
    #: ``"module:attr"`` of ``check(arch=, options=)``, run by ``rbx run`` before any
    #: work for every configured model with jobs to do: it raises
    #: :class:`~robustbench_x.errors.ConfigError` for what would fail every job
    #: later (a checkpoint of another architecture or class count), cheaply (compare
    #: :func:`checkpoint_shapes` with the architecture built on the ``meta`` device).
    #: A check with a ``datasets`` parameter also gets ``{name: Dataset}`` of those
    #: jobs (a detections file naming frames its dataset's videos do not have).
    check: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deviations", _tuple(self.deviations))
        object.__setattr__(self, "provides", _frozen(self.provides))
        object.__setattr__(self, "requires", _frozen(self.requires))
        object.__setattr__(self, "tasks", _frozen(self.tasks))
        object.__setattr__(self, "key_types", _dict(self.key_types))
        if self.option_keys is not None:
            object.__setattr__(self, "option_keys", _frozen(self.option_keys))
        object.__setattr__(self, "option_types", _dict(self.option_types))


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset type, or a concrete dataset.

    ``builtin=True`` marks a dataset that needs no configuration (the embedded
    default); otherwise the spec is a *type* that ``datasets.yaml`` entries name
    with ``type:``. ``factory(name=..., options=..., config_file=...)`` returns a
    :class:`Dataset`; ``options`` holds the yaml entry and ``option_keys`` lists
    the keys it accepts (unknown keys are a configuration error).
    ``option_types`` maps each key to its form (``"path"``, ``"names"``,
    ``"path|names"``…, see :mod:`robustbench_x.options`); a value of another form
    is a configuration error naming the file and the key, before any work. The
    factory itself must raise :class:`robustbench_x.errors.ConfigError` for a
    missing root or split: a run opens every configured dataset before it starts.
    """

    name: str
    factory: str
    provides: frozenset[str] = field(default_factory=frozenset)
    task: str = "classification"
    label_space: str | None = None
    builtin: bool = False
    option_keys: frozenset[str] = field(default_factory=frozenset)
    required_keys: frozenset[str] = field(default_factory=frozenset)
    option_types: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    #: Declared departures from the paper or the official release (a CPU budget,
    #: a reconstruction where no official code exists, a stand-in for data that
    #: cannot be shipped, a score direction that contradicts the paper's own
    #: benchmark). Each is one sentence; the leaderboard prints it as a footnote.
    deviations: tuple[str, ...] = ()
    #: Evaluated with pretrained models only: its train split (if any) is there
    #: for methods that fit on a backbone's features, and is far too large to
    #: train a model on. A model that trains on the dataset it evaluates
    #: (``ModelSpec.requires`` holds ``train_split``, e.g. the built-in CNN)
    #: paired with it stops the run before any work (exit 2), naming the fix.
    pretrained_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "deviations", _tuple(self.deviations))
        object.__setattr__(self, "provides", _frozen(self.provides))
        object.__setattr__(self, "option_keys", _frozen(self.option_keys))
        object.__setattr__(self, "required_keys", _frozen(self.required_keys))
        object.__setattr__(self, "option_types", _dict(self.option_types))


@dataclass(frozen=True)
class SuiteSpec:
    """A kind of evaluation.

    ``method_output`` is the per-sample column the suite's metrics consume;
    ``subsets`` are fnmatch patterns over a dataset's subsets; ``metrics`` are
    computed and stored, ``headline`` ones are shown on the leaderboard page.
    ``dataset_requires`` lists what a dataset must provide to take part.
    ``evaluator`` (``"module:attr"``, optional) replaces the default
    per-subset evaluation for tasks that need another shape (retrieval ranks
    a gallery; robustness suites aggregate over corruptions): it is called
    with one :class:`robustbench_x.evaluation.Evaluation` (method, context,
    suite, metric specs, a store for extra per-sample arrays) and returns
    ``(metric values, per-sample columns)`` like
    :func:`robustbench_x.evaluation.evaluate_classification`. ``task`` names
    what the suite's datasets, models and methods agree on (``docs/tasks.md``).
    """

    name: str
    method_output: str
    metrics: tuple[str, ...]
    headline: tuple[str, ...]
    subsets: tuple[str, ...] = ("id",)
    dataset_requires: frozenset[str] = field(default_factory=frozenset)
    task: str = "classification"
    plots: tuple[str, ...] = ()
    summary: str = ""
    evaluator: str | None = None
    #: ``"module:attr"`` of a page renderer that replaces the default
    #: methods × subsets tables for this suite (robustness suites show
    #: corruptions as rows and severity curves): called as ``render(page)`` with a
    #: :class:`robustbench_x.pages.Page`, it returns the page body's Markdown lines.
    renderer: str | None = None
    #: The methods a run of this suite plans when ``--methods`` is not given
    #: (empty: every method that outputs ``method_output``). For a suite whose
    #: evaluation is costly per method (attacks), so the default run stays within
    #: its budget; any other compatible method still runs with ``--methods``.
    default_methods: tuple[str, ...] = ()
    #: Models this suite evaluates, beside the default ones, when ``--models`` is
    #: not given: a suite whose methods need what the default model lacks (a
    #: certified suite needs a declared Lipschitz constant) names a model that has it.
    default_models: tuple[str, ...] = ()
    #: How a dataset comes to provide ``dataset_requires`` (which types have it,
    #: which datasets.yaml key gives it): the ``fix:`` of the refusal of a dataset
    #: named with ``--datasets`` that lacks it.
    dataset_hint: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_methods", _tuple(self.default_methods))
        object.__setattr__(self, "default_models", _tuple(self.default_models))
        object.__setattr__(self, "dataset_requires", _frozen(self.dataset_requires))
        object.__setattr__(self, "metrics", _tuple(self.metrics))
        object.__setattr__(self, "headline", _tuple(self.headline))
        object.__setattr__(self, "subsets", _tuple(self.subsets))


@dataclass(frozen=True)
class ExecutorSpec:
    """A way to run job groups. ``factory(**options)`` returns an object with
    ``run(groups, run_group) -> Iterator[outcome]``.

    ``options`` names the ``rbx run`` options the executor reads (``workers``,
    ``devices``, ``job_timeout``, ``ray_address``, ``ray_gpus``); one given on
    the command line that it does not read is a usage error, so
    ``--ray-address`` without ``--executor ray`` cannot run everything locally
    unnoticed. None: every option is passed and none refused."""

    name: str
    factory: str
    summary: str = ""
    options: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.options is not None:
            object.__setattr__(self, "options", _frozen(self.options))


# --------------------------------------------------------------------------
# Runtime objects
# --------------------------------------------------------------------------


@dataclass
class Outputs:
    """What the backbone produced for one subset, in dataset order.

    Arrays may be memory-mapped. ``features`` are the inputs of the model's
    last linear layer; ``labels`` are ``-1`` for unlabelled samples. The first
    axis is the sample; the rest is the task's: ``(N, C)`` logits and ``(N,)``
    labels for classification, ``(N, C, H, W)`` per-pixel logits and
    ``(N, H, W)`` label masks for a dense task (``docs/tasks.md``).
    """

    logits: "np.ndarray"
    features: "np.ndarray"
    labels: "np.ndarray"
    sample_ids: "np.ndarray"

    def __len__(self) -> int:
        return len(self.labels)


class Model:
    """Runtime model. Subclasses wrap a ``torch.nn.Module``.

    ``forward(x)`` takes a batch already transformed by ``transform`` and
    returns ``(logits, features)``, float tensors with the batch first, in
    eval mode: ``(B, C)`` and ``(B, D)`` for a classifier; a dense model
    returns ``(B, C, H, W)`` per-pixel logits. The feature cache stores
    whatever shape comes back.
    """

    name: str = ""
    provides: frozenset[str] = frozenset()
    num_classes: int = 0
    #: Per-channel std of the input normalisation (ODIN divides its step by it), or None.
    input_std: tuple[float, ...] | None = None

    @property
    def module(self) -> "torch.nn.Module":
        """The whole network from input to logits (for gradient methods)."""
        raise NotImplementedError

    def transform(self) -> Callable[[Any], "torch.Tensor"]:
        """Per-sample transform from a PIL image to an input tensor."""
        raise NotImplementedError

    def forward(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        raise NotImplementedError

    def feature_extractor(self) -> "torch.nn.Module":
        """The network from input to penultimate features (what ``head`` consumes)."""
        raise NotImplementedError

    def feature_maps(self, x: "torch.Tensor") -> "torch.Tensor":
        """Last-stage maps ``(B, C, H, W)`` whose spatial mean is the features (``feature_maps``)."""
        raise NotImplementedError

    def head(self, features: "torch.Tensor") -> "torch.Tensor":
        """Logits from penultimate features (the last layer alone)."""
        raise NotImplementedError

    def explanation_layer(self) -> "torch.nn.Module | None":
        """The submodule of :attr:`module` whose output, a ``(B, K, H, W)``
        activation, gradient-based explanations such as Grad-CAM weigh
        (``explanation_layer``); None (the default) when the model declares none."""
        return None

    def linear_head(self) -> tuple["np.ndarray", "np.ndarray"]:
        """``(W, b)`` of the last layer, ``logits = features @ W.T + b``."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of the weights and of the transform: keys the feature cache."""
        raise NotImplementedError

    def members(self, k: int) -> list["Model"]:
        """``k`` independently trained members (seeds), for ensembles (``ensemble``);
        the first member is this model."""
        raise NotImplementedError


class Dataset:
    """Runtime dataset: named subsets of (PIL image, label, sample id).

    Subset names: ``train``, ``val``, ``id`` (the in-distribution test set),
    ``ood/<name>``, ``c/<corruption>/<severity>``.
    """

    name: str = ""
    task: str = "classification"
    classes: list[str] = []
    provides: frozenset[str] = frozenset()

    def subsets(self) -> list[str]:
        raise NotImplementedError

    def samples(self, subset: str) -> "SampleSource":
        raise NotImplementedError

    def fingerprint(self, subset: str) -> str:
        raise NotImplementedError

    def class_mask(self, subset: str) -> "np.ndarray | None":
        """Boolean mask of the classes a subset is evaluated over (ImageNet-A/-R
        use 200 of the 1000 classes), or None for all. The runner hides the
        other classes' logits (set to -inf) before any method sees them."""
        return None


class SampleSource:
    """A sized, indexable source: ``source[i] -> (PIL.Image, label, sample_id)``.

    ``label`` is an int for classification, or a numpy array for a dense task
    (an ``(H, W)`` int mask, with the dataset's ignore label where no class
    is given); anything else a task needs per sample (a hierarchy, boxes) is a
    method of the dataset that the task's evaluator reads."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[Any, int, str]:  # pragma: no cover - interface
        raise NotImplementedError


class Context:
    """What a method sees while it fits and scores. Built by the runner.

    * ``outputs(subset)``: cached logits/features/labels (no forward pass);
    * ``model`` / ``loader(subset)``: only for methods that require
      ``input_grad``, ``grad``, ``dropout`` or ``ensemble``;
    * ``seed``: seed everything random from it (``rng()`` is a numpy Generator);
    * ``fitted(key, build)``: cache of fitted state by config hash;
    * ``wants``: the outputs the suite consumes; a method may skip computing
      the others (an N × C probability matrix for an OOD suite, say).
    """

    seed: int = 0
    wants: frozenset[str] = frozenset(METHOD_OUTPUTS)
    num_classes: int = 0
    dataset: Dataset
    model: Model

    def outputs(self, subset: str) -> Outputs:
        raise NotImplementedError

    def loader(self, subset: str, batch_size: int = 128) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
        raise NotImplementedError

    def rng(self) -> "np.random.Generator":
        raise NotImplementedError

    def fitted(self, build: Callable[[], dict[str, "np.ndarray"]], *, shared: bool = False, **key: Any) -> dict[str, "np.ndarray"]:
        """Return ``build()``'s arrays, cached on disk by the model, the train /
        val data, the seed and ``key``. By default the job's method name and
        parameters are part of the cache key too; ``shared=True`` drops them,
        so several methods that fit the same component (HEAT's single-energy
        variants and their composition) train it once. With ``shared=True``
        ``key`` must name everything the state depends on, ``method=`` first."""
        raise NotImplementedError

    def log(self, message: str) -> None:
        raise NotImplementedError

    def record(self, key: str, value: float | int | str) -> None:
        """Store a diagnostic of this job (ConfidNet's chosen epoch, HEAT's
        residual share). Diagnostics are kept with the job's result rows
        (column ``diagnostics``, a JSON object) and shown in the method's
        footnote on the leaderboard page. ``value`` is a number or a string
        (a numpy scalar is unwrapped). What a ``fitted`` build records is
        stored with the fitted state and recorded again when the state is
        reused, so a cached fit reports the same diagnostics."""
        raise NotImplementedError


class Method:
    """Base class of every scoring method.

    A method is built as ``factory(**params)``; ``fit(ctx)`` learns what it
    needs (a no-op for post-hoc scores) and ``score(ctx, subset)`` returns a
    dict of 1-D arrays (``probs`` is 2-D) of the subset's length, keys among
    ``score``, ``confidence``, ``probs``, ``prediction``. Higher score /
    confidence means more in-distribution / more confident.
    """

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, ctx: Context) -> None:
        """Learn state from ``ctx`` (train / val splits). Default: nothing."""

    def score(self, ctx: Context, subset: str) -> dict[str, "np.ndarray"]:
        raise NotImplementedError


# --------------------------------------------------------------------------
# Helpers for plugins (thin, stable entry points into the harness)
# --------------------------------------------------------------------------


def resolve_path(value: str | os.PathLike, config_file: str | os.PathLike | None = None) -> Path:
    """A path written in datasets.yaml: ``~`` expanded, a relative path taken
    relative to the configuration file (``config_file``, as a dataset factory
    receives it), not to the working directory."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and config_file:
        path = Path(config_file).parent / path
    return path


def cache_root() -> Path:
    """Where the harness caches things (``$RBX_CACHE_DIR``, else the user cache
    directory); a plugin caches its own derived data (trained weights,
    generated datasets) below it."""
    from robustbench_x.cachedir import cache_root as root

    return root()


def atomic_write(path: str | os.PathLike, content: "str | bytes | Callable[[Any], None]") -> Path:
    """Write a file whole or not at all: ``content`` (text, bytes, or a function
    writing to a binary file handle) goes to a dot-prefixed temporary name
    beside ``path``, is fsynced and renamed; a kill or a full disk never leaves a
    partial file."""
    from robustbench_x.files import atomic_write as write

    return write(path, content)


def cached_file(path: str | os.PathLike, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Make ``path`` (under :func:`cache_root`) a sound cache file: reuse it, or
    rebuild a missing or damaged one with ``build(tmp_path)``, atomically and
    under a lock, sealed with a manifest that ``rbx cache verify`` checks.
    Returns ``(path, built)``."""
    from robustbench_x.cachedir import cached_file as cached

    return cached(path, build)


#: Keys under which training scripts commonly wrap a state dict.
_STATE_WRAPPERS = ("state_dict", "model", "model_state_dict")


def load_state_dict(path: str | os.PathLike, *, key: str = "checkpoint") -> "dict[str, torch.Tensor]":
    """A user's weights file as a state dict, read without unpickling code:
    safetensors, or ``torch.load(path, weights_only=True)``. A ``state_dict`` /
    ``model`` / ``model_state_dict`` wrapper and DataParallel's ``module.``
    prefix are removed. Anything else (a pickled module, a TorchScript archive)
    is a :class:`~robustbench_x.errors.ConfigError` naming the file and ``key``
    (the option that named it)."""
    return _read_state(Path(path), key, mmap=False)


def checkpoint_shapes(path: str | os.PathLike, *, key: str = "checkpoint") -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a weights file, keyed as :func:`load_state_dict` keys them,
    read without loading the tensors (the safetensors header; a memory-mapped
    ``torch.load``): a model family's ``ModelSpec.check`` compares them with its
    architecture before any work. Errors as :func:`load_state_dict`."""
    return {name: tuple(shape) for name, shape in _read_state(Path(path), key, mmap=True).items()}


def _read_state(path: Path, key: str, *, mmap: bool) -> dict:
    """A state dict (``mmap=False``) or its shapes (``mmap=True``), unwrapped."""
    from robustbench_x.errors import ConfigError

    fix = ("save the model's state_dict (as .safetensors, or with torch.save(model.state_dict(), ...)); "
           "pickled modules and TorchScript archives are not read")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            if not mmap:
                return _unwrapped(load_file(str(path)), path, key)
            with safe_open(str(path), framework="pt") as fh:
                return _unwrapped({name: fh.get_slice(name).get_shape() for name in fh.keys()}, path, key)
        except Exception as exc:  # safetensors' own error type: a truncated or foreign file
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"cannot read {path} as safetensors ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                              file=str(path), key=key, fix="give a complete .safetensors file (it may be truncated or another format)") from None
    import torch

    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:  # mmap needs the zip format; an old-format file is read whole
            if not mmap or "mmap" not in str(exc):
                raise
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"cannot read {path} as weights: refused by torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            file=str(path),
            key=key,
            fix=fix,
        ) from None
    for wrapper in _STATE_WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = _unwrapped(state, path, key)
    return {name: tuple(getattr(value, "shape", ())) for name, value in state.items()} if mmap else state


def _unwrapped(state, path: Path, key: str) -> dict:
    from robustbench_x.errors import ConfigError

    if not isinstance(state, dict) or not state:
        raise ConfigError(f"{path}: expected a state dict, found {type(state).__name__}", file=str(path), key=key,
                          fix="save model.state_dict()")
    if all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_shipped_weights(manifest: str | os.PathLike, key: str, *, regenerate: str) -> "dict[str, torch.Tensor] | None":
    """The state dict a plugin keeps for ``key``: ``manifest`` (JSON, a
    ``weights`` list of ``{"file", "key", "sha256"}`` entries, files beside it)
    names the file, whose sha256 is checked before it is read. None when no
    entry has ``key``, there is no manifest, or the file is absent: weight
    files are generated (``regenerate``), not tracked, so a fresh clone trains
    at first use and caches. A present file that does not match raises, naming
    it and the fix (delete it, or ``regenerate``)."""
    import hashlib
    import json

    from safetensors.torch import load

    manifest = Path(manifest)
    entries = json.loads(manifest.read_text())["weights"] if manifest.is_file() else []
    entry = next((e for e in entries if e["key"] == key), None)
    if entry is None:
        return None
    path = manifest.parent / entry["file"]
    fix = f"delete it (the model then trains at first use), or regenerate the weights with `{regenerate}`"
    if not path.is_file():
        return None
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{path}: sha256 {digest[:16]}… does not match {manifest.name} ({entry['sha256'][:16]}…); the file is damaged or stale: {fix}")
    return load(data)


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the setting.

    Small CPU fits (a head, a 2-layer network) are faster on one thread on a
    busy machine and, with a fixed count, reduce floats in one order, so the
    fitted weights are the same on every machine and executor."""
    from robustbench_x.threads import torch_threads as threads

    with threads(n):
        yield


def max_probability_minus_one(probs: "np.ndarray", axis: int = -1) -> "np.ndarray":
    """``max p − 1`` along ``axis`` in float64, computed as minus the sum of the other probabilities.

    A confident prediction's maximum probability rounds to exactly 1.0 (float32
    from a logit margin of about 17 nats, float64 from about 37), so ranking by
    it ties samples the exact value orders. The non-maximal entries of a softmax
    (``exp(z_j − max z) / S``) keep full relative precision down to the
    smallest floats, and so does their sum: this is the exact maximum's order,
    shifted by a constant (``docs/methods.md#msp``)."""
    import numpy as np

    rest = np.array(probs, dtype=np.float64, copy=True)
    np.put_along_axis(rest, np.expand_dims(rest.argmax(axis=axis), axis), 0.0, axis=axis)
    return -rest.sum(axis=axis)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset configured in datasets.yaml: its name, ``type:`` and options."""

    name: str
    type: str
    options: Mapping[str, Any]
    config_file: str | None

    def build(self) -> "Dataset":
        """The runtime dataset, built as a job builds it."""
        from robustbench_x.registry import get_registry

        spec = get_registry().get("datasets", self.type)
        return load_factory(spec.factory)(name=self.name, options=dict(self.options), config_file=self.config_file)


def configured_datasets(config: str | os.PathLike | None = None) -> tuple[str, dict[str, DatasetEntry]]:
    """``(file, {name: entry})`` of the datasets configured in ``config`` (else
    ``$RBX_CONFIG`` or ./datasets.yaml), validated against the registered
    dataset types; ``file`` is ``"(no datasets.yaml)"`` when there is none.
    Raises :class:`~robustbench_x.errors.ConfigError` on a malformed file."""
    from robustbench_x.config import load_config
    from robustbench_x.registry import get_registry

    cfg = load_config(config, get_registry())
    path = str(cfg.path) if cfg.path else None
    return cfg.file, {name: DatasetEntry(name, e.type, dict(e.options), path) for name, e in cfg.datasets.items()}
