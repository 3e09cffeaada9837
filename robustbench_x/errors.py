"""Every error the harness raises on purpose.

    RbxError
     ├── UsageError            bad command line or configuration (exit code 2)
     │    ├── ConfigError      datasets.yaml / --config problems; names file, key and fix
     │    ├── UnknownComponent a name that no plugin registered; suggests the closest
     │    ├── PluginUnavailable the name belongs to a plugin that failed to load
     │    └── AmbiguousComponent two plugins registered the name; says how to pick one
     ├── PluginError           a plugin broke its contract (bad spec, bad output)
     └── JobError              a job failed; becomes a ``failed`` row, never a crash

Messages quote what was wrong and say how to fix it: they are shown to users
verbatim, without a traceback unless ``--debug``.
"""

from __future__ import annotations

import difflib


class RbxError(Exception):
    """Base class of every deliberate robustbench_x error."""


class UsageError(RbxError):
    """The command line or the configuration is wrong; the CLI exits with 2."""


class ConfigError(UsageError):
    """A configuration file is malformed; the message names the file, the key and the fix."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        parts = []
        if file:
            parts.append(f"{file}")
        if key:
            parts.append(f"key '{key}'")
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)
        self.message, self.file, self.key, self.fix = message, file, key, fix


class UnknownComponent(UsageError):
    """A model, dataset, method, metric or suite name that nothing registered."""

    def __init__(self, kind: str, name: str, known: list[str], fix: str | None = None):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(sorted(known)) if known else "(none registered)"
        # `rbx list <kind>s` exists only for registry kinds; other names (a build target, a kind) bring their own command.
        super().__init__(f"unknown {kind} '{name}'.{hint}\n  known {kind}s: {listing}\n  fix: see {fix or f'`rbx list {kind}s`'}")
        self.kind, self.name, self.suggestions = kind, name, close


class PluginUnavailable(UsageError):
    """A name that probably belongs to a plugin which failed to import."""

    def __init__(self, kind: str, name: str, failures: list[tuple[str, str, str]]):
        lines = "\n".join(f"  plugin '{ep}' ({dist}) failed to load: {err}" for ep, dist, err in failures)
        super().__init__(
            f"{kind} '{name}' is unavailable: a plugin that may provide it failed to load.\n{lines}\n"
            "  fix: `rbx plugins` shows every plugin and its error; repair or reinstall the plugin."
        )


class AmbiguousComponent(UsageError):
    """A name registered by more than one plugin: the user must say which one."""

    def __init__(self, kind: str, name: str, providers: list[tuple[str, str]]):
        lines = "\n".join(f"  {qualified}  (from {origin})" for qualified, origin in providers)
        super().__init__(
            f"{kind} '{name}' is registered by {len(providers)} plugins:\n{lines}\n"
            f"  fix: name the one you mean, e.g. `{providers[0][0]}`, or disable a plugin with "
            "RBX_DISABLE_PLUGINS=<entry-point name> (`rbx plugins` lists them)"
        )
        self.kind, self.name, self.providers = kind, name, providers


class PluginError(RbxError):
    """A plugin broke the contract (malformed spec, output of the wrong shape, NaN...)."""


class JobError(RbxError):
    """A job could not complete; recorded as a ``failed`` row with this message."""


def did_you_mean(name: str, known: list[str]) -> list[str]:
    return difflib.get_close_matches(name, known, n=3, cutoff=0.5)
