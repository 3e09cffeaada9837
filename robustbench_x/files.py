"""Atomic file writes: the one way the harness puts a file on disk.

A file is written under a dot-prefixed temporary name in its final directory,
fsynced and renamed, so "the file exists" means "the file is whole": a kill or
a full disk leaves either the previous file or none, and every reader skips
dot-files. The temporary file is removed on any failure.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: The name :func:`atomic_write` gives a file while it writes it, ``.<target>.<uuid4 hex>.tmp``:
#: what a killed writer leaves behind, for the cleaners of the cache and the result store.
TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{32}\.tmp")


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary
    file handle) to ``path`` atomically; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"  # matches TEMPORARY
    try:
        with open(tmp, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
