"""On-disk JSON cache of Wikimedia look-ups, one file per entry, written atomically.

Layout::

    <cache_dir>/<kind>/<h[:2]>/<h>.json        h = sha1(key, utf-8) hex

with ``kind`` one of ``commons`` (Commons page title -> Wikidata item),
``entity`` (Wikidata item -> "instance of" / "category's main topic" ids and
English label) and ``label`` (Wikidata class item -> English label). Each file
holds one JSON object::

    {"format": 1, "kind": "entity", "key": "Q243",
     "value": {...}, "source": "network" | "dump", "fetched_at": "2025-01-01T00:00:00Z"}

Writes go to ``.<h>.<uuid>.tmp`` in the same directory, are flushed and
fsync'ed, then ``os.replace``'d onto the final name, so an entry is either
absent or complete: a crash loses at most the batch in flight, never a
written entry, and a rerun skips every key that has a file (no duplicates: the
key *is* the file name). Unreadable or mismatching files are treated as
absent and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["JsonCache", "atomic_write_bytes", "CACHE_FORMAT"]

CACHE_FORMAT = 1
KINDS = ("commons", "entity", "label")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (best effort: not every OS allows it)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class JsonCache:
    """Per-entry JSON files under ``root``; see the module docstring."""

    def __init__(self, root, *, log=None):
        self.root = Path(root)
        self.log = log
        self.hits = 0
        self.writes = 0

    def _path(self, kind: str, key: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}; expected one of {KINDS}")
        h = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / kind / h[:2] / f"{h}.json"

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The cached ``value`` of ``key``, or ``None`` if absent (or unreadable)."""
        path = self._path(kind, key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            entry = json.loads(raw)
            if entry.get("format") != CACHE_FORMAT or entry.get("kind") != kind or entry.get("key") != key:
                raise ValueError("entry does not match its key")
            value = entry["value"]
        except (ValueError, KeyError, AttributeError) as exc:
            if self.log:
                self.log(f"hgldv2 cache: ignoring unreadable entry {path}: {exc}")
            return None
        self.hits += 1
        return value

    def put(self, kind: str, key: str, value: dict[str, Any], *, source: str) -> None:
        entry = {
            "format": CACHE_FORMAT,
            "kind": kind,
            "key": key,
            "value": value,
            "source": source,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        data = json.dumps(entry, ensure_ascii=False, sort_keys=True, indent=None).encode("utf-8")
        atomic_write_bytes(self._path(kind, key), data + b"\n")
        self.writes += 1

    def entries(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every readable ``(key, value)`` of ``kind`` (for dumps and audits)."""
        base = self.root / kind
        if not base.is_dir():
            return
        for path in sorted(base.glob("*/*.json")):
            try:
                entry = json.loads(path.read_bytes())
                if entry.get("format") == CACHE_FORMAT and entry.get("kind") == kind:
                    yield entry["key"], entry["value"]
            except (ValueError, KeyError, AttributeError):
                continue

    def to_dump(self) -> dict[str, Any]:
        """The whole cache in the ``dump_json`` format of :func:`build_hgldv2`."""
        return {
            "format": "rbx-hgldv2-dump/1",
            "commons": {k: v for k, v in self.entries("commons")},
            "entities": {k: v for k, v in self.entries("entity")},
            "labels": {k: v for k, v in self.entries("label")},
        }
