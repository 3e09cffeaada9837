"""Every command a message or a page tells the user to run exists.

Commands are collected from the source (string literals of every module under
``robustbench_x/`` and ``plugins/``, the scaffold templates) and from the
README and ``docs/``: a backticked ```rbx …``` or a ``bash`` line starting with
``rbx``. Each command path is walked through the real click tree and run with
``--help``; ``rbx list <kind>`` and ``rbx plugins`` are read-only, so they run
for real. Messages built at run time (``rbx list {kind}s``) are produced by
triggering the errors that print them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from robustbench_x.cli import app
from robustbench_x.errors import UnknownComponent
from robustbench_x.registry import KINDS

ROOT = Path(__file__).resolve().parents[1]
BACKTICKED = re.compile(r"`+(rbx(?: [^`\n]*)?)`+")
PARENTHESISED = re.compile(r"\((rbx [a-z][a-z0-9 -]*)[,)]")
SHELL_LINE = re.compile(r"^\s*(rbx(?: [^#\n]*)?)", re.MULTILINE)
WORD = re.compile(r"[a-z][a-z0-9-]*\Z")
READ_ONLY = {("list",), ("plugins",)}

runner = CliRunner()
tree = typer.main.get_command(app)


def _literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):  # placeholders stay visible as {} and end the command path
            yield "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _commands_in(text: str) -> set[str]:
    shell = "\n".join(re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.DOTALL))
    return {m.strip() for m in BACKTICKED.findall(text) + PARENTHESISED.findall(text) + SHELL_LINE.findall(shell)}


def _collect() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for base in ("robustbench_x", "plugins"):
        for path in sorted((ROOT / base).rglob("*")):
            if path.suffix == ".py":
                texts = list(_literals(path))
            elif path.suffix in {".tmpl", ".md", ".toml"}:
                texts = [path.read_text(encoding="utf-8")]
            else:
                continue
            for text in texts:
                for command in _commands_in(text):
                    found.setdefault(command, set()).add(str(path.relative_to(ROOT)))
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in _commands_in(page.read_text(encoding="utf-8")):
            found.setdefault(command, set()).add(str(page.relative_to(ROOT)))
    return found


def _walk(command: str) -> tuple[tuple[str, ...], list[str]]:
    """The subcommand path a command names and its positional arguments; fails on an unknown subcommand."""
    node = tree  # typer may bundle its own click: look for subcommands by attribute, not by class
    path: list[str] = []
    words = command.split()[1:]
    args: list[str] = []
    for i, word in enumerate(words):
        if not WORD.match(word):
            break
        if hasattr(node, "commands"):
            if word not in node.commands:
                pytest.fail(f"`{command}` names no command: '{' '.join(['rbx', *path, word])}' does not exist (known: {sorted(node.commands)})")
            node = node.commands[word]
            path.append(word)
        else:
            args = [w for w in words[i:] if WORD.match(w)][:1]
            break
    return tuple(path), args


def _check(command: str) -> None:
    path, args = _walk(command)
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0 and "No such command" not in result.output, f"`rbx {' '.join(path)} --help`: {result.output}"
    if path in READ_ONLY:
        result = runner.invoke(app, [*path, *args, "--format", "json"])
        assert result.exit_code == 0, f"`{command}` fails: {result.output}{result.exception or ''}"


HINTS = _collect()


def test_the_walk_finds_the_hints():
    # A collector that silently finds nothing would make every other test here pass.
    assert {"rbx list", "rbx plugins", "rbx list capabilities"} <= set(HINTS)
    assert len(HINTS) > 15


@pytest.mark.parametrize("command", sorted(HINTS))
def test_named_command_exists(command):
    _check(command)


def test_the_walk_catches_an_unknown_command():
    with pytest.raises(pytest.fail.Exception, match="names no command"):
        _walk("rbx lisst methods")
    with pytest.raises(AssertionError):
        _check("rbx list kinds")


def _error_message(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and result.exception is not None, result.output
    return str(result.exception)


@pytest.mark.parametrize(
    "args",
    [
        ["list", "kinds"],
        ["run", "--suite", "nope"],
        ["run", "--suite", "ood", "--methods", "nope"],
        ["run", "--suite", "ood", "--models", "nope"],
        ["run", "--suite", "ood", "--datasets", "nope"],
        ["datasets", "build", "nope", "--gldv2-root", ".", "--out", "."],
    ],
    ids=" ".join,
)
def test_run_time_hints_name_real_commands(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./datasets.yaml
    message = _error_message(args)
    commands = _commands_in(message)
    assert commands, f"the message names no command to run: {message}"
    for command in commands:
        _check(command)


def test_config_hint_names_a_real_command(tmp_path):
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  mine:\n    type: imagefolderr\n    root: .\n", encoding="utf-8")
    message = _error_message(["run", "--suite", "ood", "--config", str(config)])
    assert "datasets.mine.type" in message
    for command in _commands_in(message):
        _check(command)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unknown_component_hint_for_every_kind(kind):
    for command in _commands_in(str(UnknownComponent(kind[:-1], "nope", []))):
        _check(command)
