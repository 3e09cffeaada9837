"""The content digest of an input file (a checkpoint, a detections file), remembered by its stat.

A job's results are keyed by what produced them. A model's weights are named in
``datasets.yaml`` by a path, and a path says nothing about what is in the
file: a checkpoint retrained and copied over the old one would leave the old
results "done". So the planner keys a job by the SHA-256 of each input file
instead of by its path; moving or re-copying an unchanged file re-runs nothing.

Hashing a checkpoint of a few GB takes seconds, and ``rbx run`` into a
finished store must cost next to nothing, so the digest is remembered in
``<cache>/digests/`` with the file's size and mtime and recomputed only when
either changes (the trade-off ``make`` and DVC make: a file rewritten within
the mtime's resolution with the same size is not noticed). A memo that cannot
be read is recomputed and rewritten; one that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from robustbench_x.cachedir import cache_root, file_sha256
from robustbench_x.files import atomic_write

__all__ = ["file_digest"]

_known: dict[str, tuple[int, int, str]] = {}  # resolved path -> (size, mtime_ns, digest), this process


def file_digest(path: str | os.PathLike) -> str:
    """``sha256:<first 16 hex digits>`` of the file's bytes. Raises OSError if it cannot be read."""
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    known = _known.get(key)
    if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return known[2]
    memo = cache_root() / "digests" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    digest = _remembered(memo, key, stat)
    if digest is None:
        digest = f"sha256:{file_sha256(path)[:16]}"
        try:
            atomic_write(memo, json.dumps({"path": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "digest": digest}))
        except OSError:  # a read-only or full cache only costs the next run a re-hash
            pass
    _known[key] = (stat.st_size, stat.st_mtime_ns, digest)
    return digest


def _remembered(memo: Path, key: str, stat: os.stat_result) -> str | None:
    try:
        entry = json.loads(memo.read_text(encoding="utf-8"))
        if entry["path"] == key and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            digest = entry["digest"]
            if isinstance(digest, str) and digest.startswith("sha256:"):
                return digest
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: recomputed and rewritten
        pass
    return None
