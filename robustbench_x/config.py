"""Loading and validating ``datasets.yaml``.

Where the file comes from, first match wins: ``--config PATH``, ``$RBX_CONFIG``,
``./datasets.yaml``. No file (or a file whose entries are all commented out)
is fine: the built-in datasets and models still serve every suite they can.

Shape::

    datasets:
      <name>:
        type: <dataset type>        # a registered dataset type, e.g. imagefolder
        <option>: <value>           # the keys that type accepts (rbx list datasets)
    models:
      <name>:
        type: <model family>        # e.g. timm
        <option>: <value>

Every problem is a :class:`ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustbench_x.errors import ConfigError, PluginError, UnknownComponent, UsageError
from robustbench_x.options import type_problem

TOP_LEVEL_KEYS = {"datasets", "models"}
MODEL_KEYS = {"type", "arch", "checkpoint", "pretrained", "num_classes", "label_space", "members", "options"}
#: Forms of the models keys (robustbench_x.options); ``pretrained`` is a flag (timm) or a tag (open_clip).
MODEL_TYPES = {"arch": "str", "checkpoint": "path", "pretrained": "bool|str", "num_classes": "int", "label_space": "str", "members": "files"}


@dataclass
class Entry:
    name: str
    type: str
    options: dict[str, Any]


@dataclass
class Config:
    path: Path | None = None
    datasets: dict[str, Entry] = field(default_factory=dict)
    models: dict[str, Entry] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return str(self.path) if self.path else "(no datasets.yaml)"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice in one mapping (PyYAML keeps
    the last one silently, so a second ``cifar10:`` entry would replace the first)."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key]
            raise _DuplicateKey(None, None, f"the key {key!r} is written twice in one mapping, at lines {first.line + 1} and {key_node.start_mark.line + 1}", key_node.start_mark)
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def find_config(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            raise ConfigError("--config names a folder, not a file", file=str(path), fix=f"pass the file itself, e.g. --config {path / 'datasets.yaml'}")
        if not path.is_file():
            raise ConfigError("configuration file not found", file=str(path), fix="pass an existing file to --config")
        return path
    env = os.environ.get("RBX_CONFIG")
    if env:
        path = Path(env)
        if path.is_dir():
            raise ConfigError("$RBX_CONFIG names a folder, not a file", file=str(path), fix=f"point RBX_CONFIG at the file itself, e.g. {path / 'datasets.yaml'}")
        if not path.is_file():
            raise ConfigError("configuration file named by $RBX_CONFIG not found", file=str(path), fix="point RBX_CONFIG at an existing datasets.yaml or unset it")
        return path
    local = Path("datasets.yaml")
    return local if local.is_file() else None


def _suggest(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def load_config(explicit: str | os.PathLike | None = None, registry=None) -> Config:
    """Read and validate the configuration against the registry's dataset types."""
    path = find_config(explicit)
    if path is None:
        return Config()
    file = str(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at line {line} cannot be decoded", file=file,
            fix="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, _DuplicateKey):
            raise ConfigError(str(exc.problem), file=file, fix="keep one of the two (give the other entry its own name if both are wanted)") from None
        raise ConfigError(f"malformed YAML{where}: {getattr(exc, 'problem', exc)}", file=file, fix="fix the YAML syntax (indentation, colons, quotes)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file, fix="check the path and its permissions") from None
    if raw is None:
        return Config(path=path)
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping with 'datasets:' and/or 'models:'", file=file, fix="see the commented examples in the project's datasets.yaml")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"unknown top-level key '{key}'", file=file, key=str(key), fix=f"{_suggest(str(key), TOP_LEVEL_KEYS)}allowed keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    config = Config(path=path)
    for section in ("datasets", "models"):
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"'{section}' must map names to entries", file=file, key=section, fix=f"write '{section}:' followed by indented '<name>: {{type: ...}}' entries")
        for name, entry in entries.items():
            key = f"{section}.{name}"
            if not isinstance(name, str):  # `007:` is the number 7 to YAML, `yes:` is True
                raise ConfigError(f"the name {name!r} is not a string to YAML ({type(name).__name__})", file=file, key=key,
                                  fix="quote the name as you want it stored, e.g. '007':")
            if registry is not None:
                _not_a_builtin(name, section, registry, file)
            if not isinstance(entry, dict):
                raise ConfigError("an entry must be a mapping with at least 'type:'", file=file, key=key, fix=f"write '{name}:' followed by indented 'type: ...' and its options")
            if "type" not in entry:
                raise ConfigError("missing 'type'", file=file, key=key, fix="add 'type: <kind>' (see `rbx list " + section + "`)")
            options = {k: v for k, v in entry.items() if k != "type"}
            parsed = Entry(name=str(name), type=str(entry["type"]), options=options)
            if registry is not None:
                _validate(parsed, section, registry, file)
            getattr(config, section)[str(name)] = parsed
    return config


def _not_a_builtin(name: str, section: str, registry, file: str) -> None:
    """An entry named like a built-in dataset or a registered model would store its results
    under that name, where they would read as the built-in's."""
    kind = "datasets" if section == "datasets" else "models"
    try:
        spec = registry.get(kind, name)
    except UsageError:  # unknown (the usual case), ambiguous or unavailable: no one built-in to shadow
        return
    if kind == "models" or spec.builtin:
        raise ConfigError(f"'{name}' is already a {'built-in dataset' if kind == 'datasets' else 'registered model'}; "
                          "an entry of that name would store its results as if they were that one's", file=file, key=f"{section}.{name}",
                          fix=f"give the entry another name, e.g. '{name}-mine'")


def _validate(entry: Entry, section: str, registry, file: str) -> None:
    key = f"{section}.{entry.name}"
    kind = "datasets" if section == "datasets" else "models"
    try:
        spec = registry.get(kind, entry.type)
    except UnknownComponent as exc:
        raise ConfigError(f"unknown type '{entry.type}'", file=file, key=f"{key}.type", fix=(f"did you mean {exc.suggestions[0]!r}? " if exc.suggestions else "") + f"see `rbx list {kind}`") from None
    if section == "datasets":
        if spec.builtin:
            raise ConfigError(f"'{entry.type}' is a built-in dataset, not a type", file=file, key=f"{key}.type", fix="built-in datasets need no entry; remove it")
        allowed = set(spec.option_keys)
        required = set(spec.required_keys)
    else:
        allowed = set(MODEL_KEYS - {"type"} if spec.option_keys is None else spec.option_keys)
        required = set()
    declared = dict(spec.option_types) if section == "datasets" else {**MODEL_TYPES, **spec.key_types}
    for option in entry.options:
        if option not in allowed:
            fix = f"{_suggest(option, allowed)}allowed keys: {', '.join(sorted(allowed))}" if allowed else f"'{entry.type}' reads no key besides 'type'; remove it"
            raise ConfigError(f"unknown key '{option}' for type '{entry.type}'", file=file, key=f"{key}.{option}", fix=fix)
    for option in sorted(required - set(entry.options)):
        raise ConfigError(f"missing required key '{option}' for type '{entry.type}'", file=file, key=f"{key}.{option}", fix=f"add '{option}: ...' to the entry")
    for option, value in entry.options.items():
        if option in declared:
            try:
                problem = type_problem(option, declared[option], value)
            except ValueError as exc:  # the plugin declared a form that does not exist
                raise PluginError(f"dataset type '{entry.type}' declares option_types[{option!r}] = {declared[option]!r}: {exc}") from None
            if problem:
                raise ConfigError(problem[0], file=file, key=f"{key}.{option}", fix=problem[1])
    if section == "models" and "options" in entry.options:
        _validate_model_options(entry, spec, file, key)


def _validate_model_options(entry: Entry, spec, file: str, key: str) -> None:
    """The entry's ``options:`` mapping, against the family's ``ModelSpec.option_types``."""
    inner = entry.options["options"]
    if not isinstance(inner, dict):
        raise ConfigError(f"expected a mapping, got {inner!r} ({type(inner).__name__})", file=file, key=f"{key}.options", fix="write `options: {name: value}`")
    declared = dict(spec.option_types)
    if not declared:  # the family did not declare its options: passed through unchecked
        return
    for option, value in inner.items():
        if option not in declared:
            raise ConfigError(f"unknown key '{option}' under options: for type '{entry.type}'", file=file, key=f"{key}.options.{option}",
                              fix=f"{_suggest(str(option), set(declared))}allowed keys: {', '.join(sorted(declared))}")
        try:
            problem = type_problem(option, declared[option], value)
        except ValueError as exc:
            raise PluginError(f"model type '{entry.type}' declares option_types[{option!r}] = {declared[option]!r}: {exc}") from None
        if problem:
            raise ConfigError(problem[0], file=file, key=f"{key}.options.{option}", fix=problem[1])


def resolve_path(value: str, config: Config | None) -> Path:
    """Relative paths in datasets.yaml are relative to the file, not the cwd."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and config is not None and config.path is not None:
        path = config.path.parent / path
    return path
