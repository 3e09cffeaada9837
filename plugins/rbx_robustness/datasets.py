"""Factories of the robustness dataset types: thin wrappers around the readers
(:mod:`rbx_robustness.readers`) that make a ``datasets.yaml`` entry behave like
every other type's:

* ``label_space`` is accepted (the planner reads it to pair models with the
  dataset; the readers do not know it) and dropped before the reader sees the
  options. Defaults (:mod:`rbx_robustness` specs): ``imagenet-1k`` for
  ``imagenet-c`` / ``imagenet-p``, ``cifar10`` for ``cifar-c`` / ``cifar-p``,
  ``cifar100`` for ``cifar100-c`` / ``cifar100-p``;
* relative paths (``root``, ``clean_root``, a ``classes`` file, a ``labels``
  file) are relative to the ``datasets.yaml`` they are written in, as for
  ``imagefolder``;
* ``cifar-c`` / ``cifar-p`` default ``num_classes`` to 10, ``cifar100-c`` /
  ``cifar100-p`` to 100 (the readers' guess from the labels is not used: it
  turned a bad label into CIFAR-100's classes under ``label_space: cifar10``);
* ``tiny-imagenet-c`` and ``imagefolder-c`` read ImageNet-C-layout trees that
  are not ImageNet-C (``robustness_benchmark`` says so: the evaluator reports
  them unnormalised, without AlexNet's baseline).
"""

from __future__ import annotations

from robustbench_x.api import resolve_path

#: Options holding a path (a file or a folder) per reader module.
_PATH_KEYS = {
    "imagenet_c": ("root", "clean_root", "classes"),
    "imagenet_p": ("root", "classes"),
    "cifar_c": ("root",),
    "cifar_p": ("root", "labels"),
    "cure_tsr": ("root",),
    "cure_or": ("root",),
}


def prepare_options(module: str, options: dict | None, config_file: str | None) -> dict:
    """The reader's options: ``label_space`` dropped, relative paths resolved against the config file."""
    opts = dict(options or {})
    opts.pop("label_space", None)
    for key in _PATH_KEYS[module]:
        value = opts.get(key)
        # ``classes`` may also be a list of names: only a string is a path
        if isinstance(value, str) and value:
            resolved = resolve_path(value, config_file)
            if key != "classes" or resolved.exists():
                opts[key] = str(resolved)
    return opts


def _build(module: str, name: str, options: dict | None, config_file: str | None, reader: dict | None = None, **defaults):
    """``defaults``: option defaults of the type; ``reader``: keywords for the reader's ``build``."""
    import importlib

    opts = prepare_options(module, options, config_file)
    for key, value in defaults.items():
        opts.setdefault(key, value)
    return importlib.import_module(f"rbx_robustness.readers.{module}").build(name=name, options=opts, config_file=config_file, **(reader or {}))


def build_imagenet_c(name: str = "imagenet-c", options: dict | None = None, config_file: str | None = None):
    return _build("imagenet_c", name, options, config_file)


def build_tiny_imagenet_c(name: str = "tiny-imagenet-c", options: dict | None = None, config_file: str | None = None):
    dataset = _build("imagenet_c", name, options, config_file, reader={"imagenet": False})
    dataset.robustness_benchmark = "tiny-imagenet-c"  # not ImageNet-C: no AlexNet normalisation
    return dataset


def build_imagefolder_c(name: str = "imagefolder-c", options: dict | None = None, config_file: str | None = None):
    dataset = _build("imagenet_c", name, options, config_file, reader={"imagenet": False})
    dataset.robustness_benchmark = "imagefolder-c"  # not ImageNet-C: no AlexNet normalisation
    return dataset


def build_imagenet_p(name: str = "imagenet-p", options: dict | None = None, config_file: str | None = None):
    return _build("imagenet_p", name, options, config_file)


def build_cifar_c(name: str = "cifar-10-c", options: dict | None = None, config_file: str | None = None):
    # the type says CIFAR-10: a label >= 10 is an error, not a switch to CIFAR-100's classes under label_space cifar10
    return _build("cifar_c", name, options, config_file, num_classes=10)


def build_cifar100_c(name: str = "cifar-100-c", options: dict | None = None, config_file: str | None = None):
    return _build("cifar_c", name, options, config_file, num_classes=100)


def build_cifar_p(name: str = "cifar-10-p", options: dict | None = None, config_file: str | None = None):
    return _build("cifar_p", name, options, config_file, num_classes=10)


def build_cifar100_p(name: str = "cifar-100-p", options: dict | None = None, config_file: str | None = None):
    return _build("cifar_p", name, options, config_file, num_classes=100)


def build_cure_tsr(name: str = "cure-tsr", options: dict | None = None, config_file: str | None = None):
    return _build("cure_tsr", name, options, config_file)


def build_cure_or(name: str = "cure-or", options: dict | None = None, config_file: str | None = None):
    return _build("cure_or", name, options, config_file)
