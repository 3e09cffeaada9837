"""The form of every spec field, checked when the registry collects a spec.

A spec is a plain record a plugin fills in by hand, so a wrong type would
otherwise be listed as "ok" and break late or silently: ``requires="features"``
read as the tokens a, e, f, r, s, t, u, ``stochastic="no"`` is truthy, a
``scale`` of ``"100"`` crashes the leaderboard, ``params`` holding an
``object()`` change the job's config hash on every run. The form is read from
the dataclass annotations, so a field added to a spec is checked without a new
rule here. The registry fails the plugin with these problems, and the
conformance kit's ``check_spec_well_formed`` reports the same ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

#: Fields holding a lazy ``"package.module:attribute"`` reference.
REFERENCE_FIELDS = frozenset({"factory", "fn", "evaluator", "renderer", "check", "check_cases"})
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REFERENCE = re.compile(rf"{_DOTTED}:{_DOTTED}")

_COLLECTIONS = {"frozenset[str]": ("{", "}"), "tuple[str, ...]": ("(", ",)")}


def spec_kind(spec: Any) -> str:
    """``method``, ``metric``…: the kind of a spec, from its class name."""
    return type(spec).__name__.removesuffix("Spec").lower()


def spec_problems(spec: Any) -> list[str]:
    """Every field of ``spec`` whose value does not have the annotated form,
    each as ``<field>=<value> <what is wrong>; fix: <fix>``."""
    problems = []
    for f in dataclasses.fields(spec):
        if f.name == "name":  # the registry's name rule covers it
            continue
        value = getattr(spec, f.name)
        problem = _problem(f.name, str(f.type), value)
        if problem:
            problems.append(f"{f.name}={_short(value)} {problem}")
    return problems


def _problem(name: str, annotation: str, value: Any) -> str | None:
    optional = annotation.endswith(" | None")
    if optional and value is None:
        return None
    form = annotation.removesuffix(" | None")
    if name in REFERENCE_FIELDS:
        if isinstance(value, str) and REFERENCE.fullmatch(value):
            return None
        example = value.rsplit(".", 1) if isinstance(value, str) and "." in value and ":" not in value else None
        fix = f"{name}={':'.join(example)!r}" if example else f"{name}='my_plugin.module:attribute'"
        return f"is not a 'package.module:attribute' reference (imported when first used); fix: {fix}"
    if form == "str":
        return None if isinstance(value, str) else f"is a {type(value).__name__}, not a str; fix: {name}={str(value or '')!r}"
    if form == "bool":
        return None if isinstance(value, bool) else f"is a {type(value).__name__}, not a bool (True or False); fix: {name}=True or {name}=False"
    if form == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return None
        return f"is not a positive finite number; fix: a number, e.g. {name}=100.0"
    if form in _COLLECTIONS:
        left, right = _COLLECTIONS[form]
        if isinstance(value, str):
            return f"is a str, which would be read as its letters; fix: {name}={left}{value!r}{right}"
        if isinstance(value, (frozenset, set, tuple, list)) and all(isinstance(v, str) for v in value):
            return None
        return f"is not a collection of str; fix: {name}={left}'a'{right}, each item a str"
    if form == "Mapping[str, str]":
        if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return None
        return f"is not a mapping of str to str; fix: {name}={{'key': 'form'}}"
    if form == "Mapping[str, Any]":
        if not isinstance(value, Mapping):
            return f"is a {type(value).__name__}, not a mapping; fix: {name}={{'key': value}}"
        where = _not_json(value, name)
        if where:
            return (
                f"holds {where}, which is not a JSON value (the parameters are hashed as JSON to key the job's "
                "results: a value without one stable JSON form makes every run a new configuration); "
                "fix: use dict, list, str, int, finite float, bool or None"
            )
    return None


def _not_json(value: Any, path: str) -> str | None:
    """Where in ``value`` something is not a JSON value (None: nowhere)."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}={value!r}"
    if isinstance(value, (list, tuple)):  # a tuple is written as a list, stably
        return next((w for i, v in enumerate(value) if (w := _not_json(v, f"{path}[{i}]"))), None)
    if isinstance(value, Mapping):
        for key, v in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} of {path}"
            where = _not_json(v, f"{path}[{key!r}]")
            if where:
                return where
        return None
    return f"{path}={_short(value)} (of type {type(value).__name__})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
