"""``rbx new-plugin``: write a ready-to-install plugin package.

:func:`create_plugin` writes ``<directory>/<name>/``::

    pyproject.toml              PEP 621; entry point <name> = "rbx_<snake>" in group robustbench_x
    README.md                   what it is, install, rbx run, tests
    rbx_<snake>/__init__.py     the hook returning the spec (no heavy import)
    rbx_<snake>/<kind>.py       a documented implementation that already works
    tests/test_<snake>.py       the conformance kit on the plugin, plus a unit test

The generated package installs with ``pip install -e .`` and its tests pass
as generated (``pip install -e ".[test]" && pytest``); the TODO comments say
what to replace and how to cite the paper and its defaults.

The templates are files shipped as package data, ``robustbench_x/templates/``:
``common/`` (pyproject, README) is copied for every kind, then ``<kind>/``.
File and folder names and contents hold ``{{placeholder}}`` names (``name``,
``package``, ``class``, ``snake``, ``module``, ``kind``, ``description``, and
in the README ``usage``, the kind's ``usage.md.tmpl``); the ``.tmpl`` suffix is
dropped on copy, and keeps pytest and linters away from the template sources.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from robustbench_x.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from importlib.abc import Traversable

__all__ = ["KINDS", "create_plugin", "render", "templates_root", "validate_name", "validate_kind"]

#: Kinds ``rbx new-plugin`` can scaffold, and the implementation module of each.
KINDS = {"method": "method", "dataset": "dataset", "metric": "metric", "model": "model"}

#: One line per kind: the generated distribution's ``description``.
DESCRIPTIONS = {
    "method": "The {{name}} scoring method (OOD detection, failure prediction).",
    "dataset": "The {{name}} dataset type.",
    "metric": "The {{name}} metric.",
    "model": "The {{name}} model.",
}

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_SUFFIX = ".tmpl"
_USAGE = "usage.md" + _SUFFIX

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
    return {"name": name, "snake": snake, "package": package, "class": camel}


def render(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{key}}``; a key without a value is an error, never left in the output."""

    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value (known: {', '.join(sorted(values))})")
        return values[key]

    return _PLACEHOLDER.sub(value, template)


def _template_files(folder: Traversable, parts: tuple[str, ...] = ()):
    """(relative path parts, file) of every template file under ``folder``, sorted."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _template_files(entry, (*parts, entry.name))
        elif entry.name.endswith(_SUFFIX):
            yield (*parts, entry.name), entry


def templates_root() -> Traversable:
    return resources.files("robustbench_x") / "templates"


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
    root = templates_root()
    values |= {"module": KINDS[kind], "kind": kind}
    values["description"] = render(DESCRIPTIONS[kind], values)
    values["usage"] = render((root / kind / _USAGE).read_text(encoding="utf-8"), values)
    files = [*_template_files(root / "common"), *(f for f in _template_files(root / kind) if f[0] != (_USAGE,))]
    for parts, source in files:
        path = target.joinpath(*(render(part, values) for part in parts))
        path = path.with_name(path.name[: -len(_SUFFIX)])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(source.read_text(encoding="utf-8"), values), encoding="utf-8")
    return target
