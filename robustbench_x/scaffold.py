"""``rbx new-plugin``: write a ready-to-install plugin package.

:func:`create_plugin` writes ``<directory>/<name>/``::

    pyproject.toml              PEP 621; entry point <name> = "rbx_<snake>" in group robustbench_x
    README.md                   what it is, install, rbx run, tests
    rbx_<snake>/__init__.py     the hook returning the spec (no heavy import)
    rbx_<snake>/<kind>.py       a documented implementation that already works
    tests/test_<snake>.py       the conformance kit on the plugin, plus a unit test

The generated package installs with ``pip install -e .`` and its tests pass
as generated (``pip install -e ".[test]" && pytest``); the TODO comments say
what to replace and how to cite the paper and its defaults. The templates are
Python strings in this module (no package data), filled by plain
placeholder replacement (``__NAME__``, ``__PACKAGE__``, ``__CLASS__``...).
"""

from __future__ import annotations

import re
from pathlib import Path

from robustbench_x.errors import UsageError

__all__ = ["KINDS", "create_plugin", "validate_name", "validate_kind"]

#: Kinds ``rbx new-plugin`` can scaffold, and the implementation module of each.
KINDS = {"method": "method", "dataset": "dataset", "metric": "metric", "model": "model"}

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def validate_name(name: object) -> str:
    """A plugin name: lower-case words joined by single '-' or '_' (``demo-score``)."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError("the plugin name is empty; give one, e.g. 'demo-score'")
    if not _NAME_RE.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        suggestion = re.sub(r"^[0-9-]+", "", suggestion)
        hint = f" (e.g. '{suggestion}')" if suggestion and _NAME_RE.match(suggestion) else " (e.g. 'demo-score')"
        raise UsageError(
            f"invalid plugin name '{name}': use lower-case letters and digits, starting with a letter, "
            f"with single '-' or '_' between words{hint}. It names the distribution, the entry point, "
            "the component in `rbx list` and (as rbx_<name>) the Python package"
        )
    return name


def validate_kind(kind: object) -> str:
    """``method``, ``dataset``, ``metric`` or ``model`` (plural accepted)."""
    value = str(kind or "").strip().lower()
    value = value[:-1] if value.endswith("s") and value[:-1] in KINDS else value
    if value not in KINDS:
        raise UsageError(f"unknown plugin kind '{kind}': choose one of {', '.join(KINDS)}")
    return value


def _names(name: str) -> dict[str, str]:
    snake = name.replace("-", "_")
    package = snake if snake.startswith("rbx_") else f"rbx_{snake}"
    camel = "".join(part.capitalize() for part in snake.split("_"))
    return {"__NAME__": name, "__SNAKE__": snake, "__PACKAGE__": package, "__CLASS__": camel}


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(key, value)
    return template.lstrip("\n")


def create_plugin(name: str, kind: str, directory: Path | str = ".") -> Path:
    """Write a ``kind`` plugin package called ``name`` under ``directory``; return its folder.

    Raises :class:`~robustbench_x.errors.UsageError` on a malformed name, an
    unknown kind, or a target folder that exists and is not empty.
    """
    name = validate_name(name)
    kind = validate_kind(kind)
    values = _names(name)
    target = Path(directory).expanduser() / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not empty; choose another name or --dir")
    template = _TEMPLATES[kind]
    values["__MODULE__"] = KINDS[kind]
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README_HEAD + template["readme"] + _README_TAIL,
        f"{values['__PACKAGE__']}/__init__.py": template["init"],
        f"{values['__PACKAGE__']}/{KINDS[kind]}.py": template["impl"],
        f"tests/test_{values['__SNAKE__']}.py": template["test"],
    }
    values["__DESCRIPTION__"] = template["description"].replace("__NAME__", name)
    values["__KIND__"] = kind
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(text, values), encoding="utf-8")
    return target


# =============================================================================
# Common files
# =============================================================================

_PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__NAME__"
version = "0.1.0"
description = "__DESCRIPTION__"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["robustbench_x"]

[project.optional-dependencies]
test = ["pytest>=8"]

# robustbench_x finds the plugin through this entry point: `rbx plugins` lists it.
[project.entry-points.robustbench_x]
__NAME__ = "__PACKAGE__"

[tool.setuptools]
packages = ["__PACKAGE__"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_README_HEAD = '''
# __NAME__

__DESCRIPTION__ A `robustbench_x` (`rbx`) __KIND__ plugin.

* `pyproject.toml`: the entry point `__NAME__ = "__PACKAGE__"` in group `robustbench_x`;
* `__PACKAGE__/__init__.py`: the hook, returning the spec (it imports nothing heavy);
* `__PACKAGE__/__MODULE__.py`: the implementation (imported only when a job needs it);
* `tests/test___SNAKE__.py`: robustbench_x's conformance kit on this plugin.

## Install

```bash
pip install -e .          # or: pip install .
rbx plugins               # '__NAME__' is listed, with status ok
```
'''

_README_TAIL = '''
## Test

```bash
pip install -e ".[test]"
pytest
```

`tests/test___SNAKE__.py` runs every check of `robustbench_x.testing` on the
plugin (one test per check, select with `-k`): the spec is well formed, the
entry point is found, importing the plugin does not import torch, and the
runtime rules of its kind (see `robustbench_x/testing/checks.py`). A check
that fails says what to fix. Slow components can run the checks with reduced
parameters through `CHECK_PARAMS`; the spec keeps its defaults.

## Before you publish

* replace every `TODO` (the implementation, the summary, the `paper` field:
  authors, venue, year, and the section / equation / table the definition
  and the default parameters come from);
* keep the plugin's `__init__.py` to specs only: heavy imports belong in the
  implementation module, which the spec names as a lazy `"module:attr"`;
* bump `version` when the definition or the defaults change: the leaderboard
  records it next to every result.
'''

# =============================================================================
# method
# =============================================================================

_METHOD_README = '''
## Use

```bash
rbx list methods                                   # __NAME__, with its distribution and version
rbx run --suite ood --methods msp,__NAME__         # on the embedded default, next to MSP
rbx leaderboard rbx-results --out leaderboards     # leaderboards/ood.md has a __NAME__ row
```

The method declares `outputs={"score", "confidence"}`, so the `ood` and
`failure` suites plan it; add `"probs"` (and return them) for `calibration`.
Scores point one way everywhere: **higher = more in-distribution / more
confident**.
'''

_METHOD_INIT = '''
"""__NAME__: a robustbench_x method plugin.

This module only *lists* the method: it must not import torch (or anything
heavy), so that `rbx list` stays fast (the conformance kit checks it). The
implementation, :mod:`__PACKAGE__.method`, is imported when a job builds the
method from the spec's lazy ``factory``.
"""

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec


@hookimpl
def rbx_methods():
    return [
        MethodSpec(
            name="__NAME__",
            factory="__PACKAGE__.method:__CLASS__",
            # Capability tokens fit()/score() use (robustbench_x.api.CAPABILITIES): "logits",
            # "features", "train_split", "val_split", "linear_head", "input_grad"... Declare
            # exactly what the method touches: the kit runs it on a context that flags any
            # undeclared access (check_method_honours_requires), and the planner skips the
            # method on models and datasets that do not provide every token.
            requires={"features"},
            # What score() returns per sample: the ood suite scores "score", failure
            # "confidence", calibration "probs"; "prediction" is optional.
            outputs={"score", "confidence"},
            # The defaults (the paper's). They are passed to the factory and enter the
            # config hash of every job: changing one recomputes the leaderboard.
            params={"power": 2.0},
            # TODO: one line saying what the score is.
            summary="L_p norm of the penultimate features (higher = more in-distribution)",
            # TODO: cite the definition and where each default comes from, e.g.
            # "Author et al., Venue Year, Sec. 3, Eq. (2); defaults: Table 5".
            paper="",
            # stochastic=True if the method draws random numbers (always from ctx.seed).
        )
    ]
'''

_METHOD_IMPL = '''
"""Implementation of the __NAME__ method.

TODO: replace the feature norm by your method. The contract
(:class:`robustbench_x.api.Method`, checked by ``robustbench_x.testing``):

* ``__init__(**params)`` receives the spec's ``params``; validate them and
  raise ``ValueError`` saying what is allowed;
* ``fit(ctx)`` learns what it needs from ``ctx.outputs("train")`` or
  ``ctx.outputs("val")`` (declare ``train_split`` / ``val_split`` in
  ``requires``); wrap expensive fitting in ``ctx.fitted(build, **key)``, which
  caches the arrays ``build()`` returns;
* ``score(ctx, subset)`` returns a dict of per-sample numpy arrays, one value
  per sample of ``ctx.outputs(subset)``, in that order: ``score`` and
  ``confidence`` (floats, **higher = more in-distribution / more
  confident**), optionally ``probs`` (rows summing to 1) and ``prediction``
  (class indices);
* randomness comes from ``ctx.seed`` only (``ctx.rng()`` is a seeded numpy
  Generator; for torch ``torch.Generator().manual_seed(ctx.seed)``): the same
  seed must give the same outputs;
* bad input fails loudly: raise ``ValueError`` with the problem, or let NaN
  propagate (the runner rejects non-finite outputs), never replace it by a
  plausible number.
"""

from __future__ import annotations

import numpy as np

from robustbench_x.api import Context, Method


class __CLASS__(Method):
    """``score = ||h||_p``, the L_p norm of the penultimate features ``h``.

    Penultimate features tend to be larger for inputs like the training data,
    so a larger norm means more in-distribution (no sign flip needed).
    """

    def __init__(self, power: float = 2.0) -> None:
        if not power > 0:
            raise ValueError(f"__NAME__: power must be > 0, got {power!r}")
        super().__init__(power=power)
        self.power = float(power)

    def fit(self, ctx: Context) -> None:
        # Post-hoc: nothing to learn. TODO: e.g. statistics of ctx.outputs("train").features
        # (then add "train_split" to requires), cached with ctx.fitted(build, **key).
        return None

    def score(self, ctx: Context, subset: str) -> dict[str, np.ndarray]:
        features = np.asarray(ctx.outputs(subset).features, dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(f"__NAME__: expected (N, D) features for subset {subset!r}, got shape {features.shape}")
        norm = np.linalg.norm(features, ord=self.power, axis=1)  # NaN features give NaN: the runner rejects them
        return {"score": norm, "confidence": norm.copy()}
'''

_METHOD_TEST = '''
"""Tests of the __NAME__ plugin: robustbench_x's conformance kit, plus the definition
on a case small enough to check by hand.

Run: pip install -e ".[test]" && pytest
"""

import numpy as np

from robustbench_x.testing import ArrayContext, make_outputs, parametrize_with_checks, specs_of_distribution

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]

#: Reduced parameters for the conformance checks only (the spec keeps its defaults),
#: e.g. {"__NAME__": {"epochs": 2}} for a method that trains.
CHECK_PARAMS = {}


@parametrize_with_checks(specs_of_distribution("__NAME__"), check_params=CHECK_PARAMS)
def test_conformance(spec, check, rbx_embedded):
    check(spec, rbx_embedded)


def test_score_is_the_feature_norm():
    from __PACKAGE__.method import __CLASS__

    ctx = ArrayContext({"id": make_outputs(logits=[[0.0, 1.0], [1.0, 0.0]], features=[[3.0, 4.0], [0.0, 1.0]])})
    out = __CLASS__(power=2.0).score(ctx, "id")
    np.testing.assert_allclose(out["score"], [5.0, 1.0])  # TODO: your method's hand-checked values
'''

# =============================================================================
# dataset
# =============================================================================

_DATASET_README = '''
## Use

The plugin registers the dataset **type** `__NAME__`: folders laid out as
`<root>/<split>/<class>/<image>`, plus OOD folders of images. Name a dataset
of this type in `datasets.yaml` (relative paths are relative to the file):

```yaml
datasets:
  my-data:
    type: __NAME__
    root: /data/my-data
    train: train          # optional: methods that fit on train
    val: val              # optional: temperature scaling, thresholds
    test: test            # the in-distribution test set
    ood:                  # optional: named OOD sets
      noise: /data/noise
```

```bash
rbx datasets verify                                 # opens every subset, decodes an image
rbx run --suite ood --datasets my-data              # the built-in CNN is trained on its train split
```
'''

_DATASET_INIT = '''
"""__NAME__: a robustbench_x dataset-type plugin.

This module only *lists* the type (no heavy import): the implementation,
:mod:`__PACKAGE__.dataset`, is imported when a job builds the dataset.
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec


@hookimpl
def rbx_datasets():
    return [
        DatasetSpec(
            name="__NAME__",
            factory="__PACKAGE__.dataset:build",
            # The datasets.yaml keys the type accepts; any other key is an error naming it.
            option_keys={"root", "train", "val", "test", "ood", "label_space"},
            required_keys={"root", "test"},
            # TODO: one line on the data (source, licence, size).
            summary="<root>/<split>/<class>/<image> folders; OOD sets as folders of images",
        )
    ]
'''

_DATASET_IMPL = '''
"""Implementation of the __NAME__ dataset type.

TODO: adapt the layout to your data. The contract
(:class:`robustbench_x.api.Dataset`, checked by ``robustbench_x.testing``):

* subsets: ``id`` (the in-distribution test set), optionally ``train`` and
  ``val`` (labelled) and ``ood/<name>`` (label ``-1``); none empty;
* ``samples(subset)[i]`` is ``(PIL.Image, int label, str sample_id)``, decoded
  lazily; the order never changes;
* ``fingerprint(subset)`` hashes what identifies the data (here relative
  path, size and mtime of every file): equal while the data is, different as
  soon as a file changes (it keys the feature cache);
* ``provides`` says which roles exist (``train_split``, ``val_split``,
  ``ood_subsets``): the planner uses it to pick the methods that can run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from robustbench_x.api import Dataset, SampleSource
from robustbench_x.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class Files(SampleSource):
    def __init__(self, files: list[Path], labels: list[int], root: Path) -> None:
        self.files, self.labels, self.root = files, labels, root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        try:
            with Image.open(path) as img:
                img.load()
                image = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
        except OSError as exc:
            raise ValueError(f"__NAME__: cannot decode {path}: {exc}; fix: remove or replace the file") from None
        return image, self.labels[i], str(path.relative_to(self.root))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))


class __CLASS__(Dataset):
    task = "classification"

    def __init__(self, name: str, options: dict, config_file: str | None = None) -> None:
        self.name = name
        base = Path(config_file).parent if config_file else Path.cwd()
        root = Path(str(options["root"])).expanduser()
        self.root = root if root.is_absolute() else base / root
        key = f"datasets.{name}"
        if not self.root.is_dir():
            raise ConfigError(f"root does not exist: {self.root}", file=config_file, key=f"{key}.root", fix="point 'root' at the folder holding the split folders")
        self._dirs: dict[str, Path] = {}
        for role, yaml_key in (("id", "test"), ("train", "train"), ("val", "val")):
            if options.get(yaml_key):
                folder = self.root / str(options[yaml_key])
                if not folder.is_dir():
                    raise ConfigError(f"split folder does not exist: {folder}", file=config_file, key=f"{key}.{yaml_key}", fix="create it or correct the key")
                self._dirs[role] = folder
        for ood_name, folder in (options.get("ood") or {}).items():
            path = Path(str(folder)).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_dir():
                raise ConfigError(f"OOD folder does not exist: {path}", file=config_file, key=f"{key}.ood.{ood_name}", fix="point it at a folder of images")
            self._dirs[f"ood/{ood_name}"] = path
        self.classes = sorted(p.name for p in self._dirs["id"].iterdir() if p.is_dir())
        if not self.classes:
            raise ConfigError(f"no class folders under {self._dirs['id']}", file=config_file, key=f"{key}.test", fix="lay the split out as <split>/<class>/<image>")
        roles = set(self._dirs)
        self.provides = frozenset(
            ({"train_split"} if "train" in roles else set())
            | ({"val_split"} if "val" in roles else set())
            | ({"ood_subsets"} if any(r.startswith("ood/") for r in roles) else set())
        )
        self._sources: dict[str, Files] = {}

    def subsets(self) -> list[str]:
        return list(self._dirs)

    def samples(self, subset: str) -> Files:
        if subset not in self._sources:
            folder = self._dirs[subset]
            if subset.startswith("ood/"):
                files = _images(folder)
                labels = [-1] * len(files)
            else:
                index = {c: i for i, c in enumerate(self.classes)}
                files, labels = [], []
                for cls_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                    if cls_dir.name not in index:
                        raise ValueError(f"__NAME__: class folder {cls_dir} is not a class of the test split {self.classes}")
                    found = _images(cls_dir)
                    files += found
                    labels += [index[cls_dir.name]] * len(found)
            if not files:
                raise ValueError(f"__NAME__: no images under {folder}")
            self._sources[subset] = Files(files, labels, folder)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        source = self.samples(subset)
        h = hashlib.sha256(f"__NAME__-v1|{subset}|{','.join(self.classes)}".encode())
        for path, label in zip(source.files, source.labels):
            stat = path.stat()
            h.update(f"{path.relative_to(source.root)}|{stat.st_size}|{stat.st_mtime_ns}|{label}\\n".encode())
        return h.hexdigest()[:16]


def build(name: str, options: dict, config_file: str | None = None) -> __CLASS__:
    return __CLASS__(name, options, config_file)
'''

_DATASET_TEST = '''
"""Tests of the __NAME__ plugin: robustbench_x's conformance kit on a tiny tree.

Run: pip install -e ".[test]" && pytest
"""

from robustbench_x.testing import parametrize_with_checks, specs_of_distribution, write_imagefolder

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]

#: How the kit builds the type: a callable writing a tiny tree under a temporary
#: folder and returning the datasets.yaml options. write_imagefolder writes
#: <root>/{train,val,test}/<class>/*.png and OOD folders, the layout of this template.
#: TODO: if you change the layout, write a tree of yours here.
CHECK_PARAMS = {"__NAME__": write_imagefolder}


@parametrize_with_checks(specs_of_distribution("__NAME__"), check_params=CHECK_PARAMS)
def test_conformance(spec, check, rbx_embedded):
    check(spec, rbx_embedded)


def test_builds_every_role(tmp_path):
    from __PACKAGE__.dataset import build

    dataset = build("probe", write_imagefolder(tmp_path))
    assert set(dataset.subsets()) == {"id", "train", "val", "ood/noise"}
    assert dataset.provides == {"train_split", "val_split", "ood_subsets"}
    image, label, sample_id = dataset.samples("id")[0]
    assert (label, sample_id) == (0, "a/a0.png")
'''

# =============================================================================
# metric
# =============================================================================

_METRIC_README = '''
## Use

The plugin registers the metric `__NAME__` (kind `ood`: a function of the
scores of the in-distribution test set and of one OOD set) and a suite of the
same name that reports it next to AUROC:

```bash
rbx list metrics                                   # __NAME__
rbx run --suite __NAME__                           # every OOD method on the embedded default
rbx leaderboard rbx-results --out leaderboards     # leaderboards/__NAME__.md
```

To add the metric to another suite, list its name in that suite's `metrics`.
'''

_METRIC_INIT = '''
"""__NAME__: a robustbench_x metric plugin (and a suite that reports it).

This module only *lists* specs (no heavy import): the function lives in
:mod:`__PACKAGE__.metric`, imported when a suite computes it.
"""

from robustbench_x import hookimpl
from robustbench_x.api import MetricSpec, SuiteSpec


@hookimpl
def rbx_metrics():
    return [
        MetricSpec(
            name="__NAME__",
            # How the harness calls fn (by keyword): "ood" fn(score_id=, score_ood=);
            # "failure" fn(confidence=, correct=); "calibration" fn(probs=, labels=);
            # "classification" fn(prediction=, labels=).
            kind="ood",
            fn="__PACKAGE__.metric:__SNAKE__",
            higher_is_better=True,
            scale=100,  # values are fractions; pages show x100
            # TODO: what it measures, and its convention (which class is positive, ties...).
            summary="fraction of OOD rejected when 95% of ID is accepted (TNR at 95% TPR)",
            convention="ID positive; threshold = the ceil(0.95 n)-th largest ID score",
        )
    ]


@hookimpl
def rbx_suites():
    return [
        SuiteSpec(
            name="__NAME__",
            method_output="score",
            metrics=("auroc", "__NAME__"),
            headline=("__NAME__", "auroc"),
            subsets=("id", "ood/*"),
            dataset_requires={"ood_subsets"},
            summary="OOD detection reported with __NAME__",
        )
    ]
'''

_METRIC_IMPL = '''
"""Implementation of the __NAME__ metric.

TODO: replace the definition by yours. The contract (checked by
``robustbench_x.testing``): a pure function of numpy arrays, called by keyword
with the arguments of its kind; returns one finite float (a fraction in
[0, 1] when the display scale is 100); raises ``ValueError`` on inputs it is
undefined for (empty, NaN, mismatched): the runner then records
"metric undefined" instead of a number. Cite the definition (paper, equation)
in the docstring.
"""

from __future__ import annotations

import math

import numpy as np


def _scores(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"__NAME__: {name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"__NAME__: {name} contains NaN or inf")
    return x


def __SNAKE__(score_id, score_ood) -> float:
    """Fraction of OOD samples scored below the threshold that accepts 95 % of ID samples.

    Threshold: the ceil(0.95 n)-th largest ID score (ID positive, higher = ID);
    OOD samples at or above it are accepted. ``1 - fpr@95tpr``.
    """
    s_id, s_ood = _scores(score_id, "score_id"), _scores(score_ood, "score_ood")
    k = math.ceil(0.95 * s_id.size)
    threshold = np.sort(s_id)[::-1][k - 1]
    return float(np.mean(s_ood < threshold))
'''

_METRIC_TEST = '''
"""Tests of the __NAME__ plugin: robustbench_x's conformance kit, plus the definition
on a case small enough to check by hand.

Run: pip install -e ".[test]" && pytest
"""

import pytest

from robustbench_x.testing import parametrize_with_checks, specs_of_distribution

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]


@parametrize_with_checks(specs_of_distribution("__NAME__"))
def test_conformance(spec, check, rbx_embedded):
    check(spec, rbx_embedded)


def test_hand_checked_case():
    from __PACKAGE__.metric import __SNAKE__

    score_id = [float(i) for i in range(1, 21)]  # threshold: 19th largest = 2.0
    assert __SNAKE__(score_id, [0.0, 1.5, 2.0, 3.0]) == 0.5  # TODO: your metric's values
    with pytest.raises(ValueError):
        __SNAKE__([], [1.0])
'''

# =============================================================================
# model
# =============================================================================

_MODEL_README = '''
## Use

The plugin registers the model `__NAME__`: a random-feature classifier (a
fixed random projection of the pixels, ReLU, and a ridge-regression linear
head fitted on the dataset's train split in milliseconds). It is a working
skeleton: replace it by your network.

```bash
rbx list models                                    # __NAME__
rbx run --suite ood --models __NAME__              # every OOD method on it, embedded default
```
'''

_MODEL_INIT = '''
"""__NAME__: a robustbench_x model plugin.

This module only *lists* the model (no torch import): the implementation,
:mod:`__PACKAGE__.model`, is imported when a job builds it.
"""

from robustbench_x import hookimpl
from robustbench_x.api import ModelSpec


@hookimpl
def rbx_models():
    return [
        ModelSpec(
            name="__NAME__",
            factory="__PACKAGE__.model:build",
            # What the model offers methods (robustbench_x.api.CAPABILITIES); the
            # built model's `provides` must include every token promised here.
            provides={"logits", "features", "linear_head", "input_grad", "grad"},
            # None: trained for the dataset it is evaluated on. A pretrained model names
            # its label space (e.g. "imagenet-1k") and pairs only with such datasets.
            label_space=None,
            # default=True would add it to every `rbx run` without --models.
            summary="random-feature classifier with a ridge head fitted on the train split (TODO: yours)",
        )
    ]
'''

_MODEL_IMPL = '''
"""Implementation of the __NAME__ model.

TODO: replace the random-feature classifier by your network. The contract
(:class:`robustbench_x.api.Model`, checked by ``robustbench_x.testing``):

* ``build(arch=, options=, dataset=, seed=, log=)`` returns the model; the same
  arguments give the same weights (seed everything from ``seed``);
* ``transform()`` maps a PIL image to an input tensor; ``forward(x)`` returns
  ``(logits, features)``, 2-D, in eval mode, ``features`` being the input of
  the last linear layer;
* ``linear_head()`` is that layer as numpy ``(W, b)``:
  ``logits = features @ W.T + b`` (only if ``linear_head`` is provided);
* ``module`` is the whole torch network (for gradient methods);
* ``fingerprint()`` hashes the weights and the transform (it keys the feature cache).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from robustbench_x.api import Dataset, Model


class Net(nn.Module):
    def __init__(self, inputs: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.project = nn.Linear(inputs, width)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class __CLASS__(Model):
    provides = frozenset({"logits", "features", "linear_head", "input_grad", "grad"})

    def __init__(self, net: Net, size: int, name: str = "__NAME__") -> None:
        self.net = net.eval()
        self.size = size
        self.name = name
        self.num_classes = net.head.out_features

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        size = self.size

        def apply(image) -> torch.Tensor:
            img = image.convert("L").resize((size, size))
            return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0 - 0.5)[None]

        return apply

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        h = self.net.features(x)
        return self.net.head(h), h

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.head(features)

    def linear_head(self):
        return self.net.head.weight.detach().cpu().numpy().copy(), self.net.head.bias.detach().cpu().numpy().copy()

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"__NAME__-v1|size={self.size}".encode())
        for key, tensor in sorted(self.net.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def build(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> __CLASS__:
    """Random projection (seeded) + ridge head fitted in closed form on the train split."""
    if dataset is None:
        raise ValueError("__NAME__ is fitted on the dataset it is evaluated on; a dataset is required")
    options = dict(options or {})
    size, width, ridge = int(options.get("size", 8)), int(options.get("width", 256)), float(options.get("ridge", 1e-2))
    num_classes = len(dataset.classes)
    net = Net(size * size, width, num_classes)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        net.project.weight.copy_(torch.randn(net.project.weight.shape, generator=generator) / size)
        net.project.bias.copy_(0.1 * torch.randn(net.project.bias.shape, generator=generator))
    model = __CLASS__(net, size)
    split = "train" if "train" in dataset.subsets() else "id"
    source, tf = dataset.samples(split), model.transform()
    x = torch.stack([tf(source[i][0]) for i in range(len(source))])
    y = torch.tensor([source[i][1] for i in range(len(source))])
    with torch.no_grad():
        h = net.features(x).double()
        hb = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], dim=1)  # bias column
        targets = nn.functional.one_hot(y, num_classes).double()
        solution = torch.linalg.solve(hb.T @ hb + ridge * torch.eye(hb.shape[1], dtype=h.dtype), hb.T @ targets)
        net.head.weight.copy_(solution[:-1].T.float())
        net.head.bias.copy_(solution[-1].float())
    log(f"__NAME__: fitted the head on {len(y)} {split} samples of {dataset.name}")
    return model
'''

_MODEL_TEST = '''
"""Tests of the __NAME__ plugin: robustbench_x's conformance kit (builds the model on
the embedded default dataset).

Run: pip install -e ".[test]" && pytest
"""

from robustbench_x.testing import parametrize_with_checks, specs_of_distribution

pytest_plugins = ["robustbench_x.testing.pytest_plugin"]

#: For a model family (family=True), the architecture and options to check it with:
#: {"__NAME__": {"arch": "small", "options": {...}}}.
CHECK_PARAMS = {}


@parametrize_with_checks(specs_of_distribution("__NAME__"), check_params=CHECK_PARAMS)
def test_conformance(spec, check, rbx_embedded):
    check(spec, rbx_embedded)


def test_classifies_the_embedded_digits(rbx_embedded):
    from __PACKAGE__.model import build

    model = build(dataset=rbx_embedded.dataset, seed=0, log=lambda _m: None)
    import torch

    source, tf = rbx_embedded.dataset.samples("id"), model.transform()
    x = torch.stack([tf(source[i][0]) for i in range(len(source))])
    y = torch.tensor([source[i][1] for i in range(len(source))])
    logits, _ = model.forward(x)
    assert (logits.argmax(1) == y).float().mean() > 0.8  # TODO: your model's expected accuracy
'''

_TEMPLATES = {
    "method": {
        "description": "The __NAME__ scoring method (OOD detection, failure prediction).",
        "readme": _METHOD_README,
        "init": _METHOD_INIT,
        "impl": _METHOD_IMPL,
        "test": _METHOD_TEST,
    },
    "dataset": {
        "description": "The __NAME__ dataset type.",
        "readme": _DATASET_README,
        "init": _DATASET_INIT,
        "impl": _DATASET_IMPL,
        "test": _DATASET_TEST,
    },
    "metric": {
        "description": "The __NAME__ metric.",
        "readme": _METRIC_README,
        "init": _METRIC_INIT,
        "impl": _METRIC_IMPL,
        "test": _METRIC_TEST,
    },
    "model": {
        "description": "The __NAME__ model.",
        "readme": _MODEL_README,
        "init": _MODEL_INIT,
        "impl": _MODEL_IMPL,
        "test": _MODEL_TEST,
    },
}
