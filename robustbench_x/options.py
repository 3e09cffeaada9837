"""Typed ``datasets.yaml`` options: the small vocabulary a dataset type declares
in :attr:`robustbench_x.api.DatasetSpec.option_types`, and the check that
``load_config`` runs on every entry before any work starts.

A declared type is one of these names, or several joined by ``|`` (the value
may take any of those forms, e.g. ``"path|names"``):

=========  =================================================  ====================
type       the value is                                       example
=========  =================================================  ====================
``str``    a string                                           ``label_space: cifar10``
``int``    an integer (``true`` / ``false`` are not)          ``num_classes: 100``
``bool``   ``true`` or ``false``                              ``pretrained: false``
``path``   a string naming a file or folder                   ``root: /data/cifar10``
``names``  a list of strings                                  ``classes: [cat, dog]``
``files``  a list of strings naming files                     ``members: [a.pt, b.pt]``
``paths``  a mapping from names to paths                      ``ood: {svhn: /data/svhn}``
=========  =================================================  ====================

Only the *form* is checked here (a number where a folder is expected, a single
string where a list is): whether a path exists is checked when the run opens
the dataset, still before any model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ALLOWED = ("str", "int", "bool", "path", "names", "files", "paths")

_EXAMPLES = {
    "str": "a string, e.g. `{key}: name` (quote numbers: `{key}: \"2024\"`)",
    "int": "an integer, e.g. `{key}: 10`",
    "bool": "`{key}: true` or `{key}: false`",
    "path": "a file or folder, e.g. `{key}: /data/folder`",
    "names": "a list, e.g. `{key}: [a, b]`",
    "files": "a list of files, e.g. `{key}: [/data/a.safetensors, /data/b.safetensors]`",
    "paths": "a mapping, e.g. `{key}: {{name: /data/folder}}`",
}


def _is(kind: str, value: Any) -> bool:
    if kind in ("str", "path"):
        return isinstance(value, str) and (kind == "str" or value.strip() != "")
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "names":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "files":
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)
    if kind == "paths":
        return isinstance(value, Mapping) and all(isinstance(v, str) and v.strip() for v in value.values())
    raise ValueError(f"unknown option type {kind!r}; use one of {', '.join(_ALLOWED)}")


def parse(declared: str) -> tuple[str, ...]:
    """``"path|names"`` → ``("path", "names")``; an unknown name is a plugin bug."""
    kinds = tuple(k.strip() for k in declared.split("|"))
    unknown = [k for k in kinds if k not in _ALLOWED]
    if unknown:
        raise ValueError(f"unknown option type {unknown[0]!r} in {declared!r}; use one of {', '.join(_ALLOWED)} (joined by |)")
    return kinds


def type_problem(key: str, declared: str, value: Any) -> tuple[str, str] | None:
    """``(message, fix)`` when ``value`` has none of the declared forms, else None."""
    kinds = parse(declared)
    if any(_is(kind, value) for kind in kinds):
        return None
    shown = f"{value!r} ({type(value).__name__})" if value is not None else "nothing (null)"
    expected = " or ".join(_EXAMPLES[k].split(",")[0] for k in kinds)
    fix = "; or ".join(_EXAMPLES[k].format(key=key) for k in kinds)
    return f"expected {expected}, got {shown}", f"write {fix}"
