"""The cache directory: where it is, and entries that check themselves.

``$RBX_CACHE_DIR`` (else the user cache directory) holds one folder per kind
of entry: ``features/<key>/`` (one backbone pass, see :mod:`robustbench_x.cache`),
``fitted/<method>-<hash>.safetensors`` (fitted method state),
``models/<name>.safetensors`` (weights a model trained on first use), and
whatever a plugin caches there.

Every entry written through this module carries a **manifest written last**:
a directory entry holds ``manifest.json``, a file entry ``X`` has
``X.manifest.json`` beside it. The manifest lists each file's size and SHA-256.
A reader checks the entry before using it; a damaged entry (truncated by a
full disk, half-copied, bit-rotted, or left without a manifest by a killed
writer) is reported by path, removed and rebuilt, with or without ``--force``.

Cost trade-off: the size of every file is checked on every read (a truncated
file, the common damage, is caught at the price of a ``stat``). The SHA-256 is
checked on read for files up to :data:`FULL_CHECK_BYTES`; a larger file
(multi-GB features of a big split) is checked on read by the SHA-256 of
:data:`SAMPLE_BLOCKS` blocks spread over it, and in full only by
``rbx cache verify``: hashing 10 GB at about 1 GB/s on every run would cost
more than the backbone pass it saves. An entry checked once is not checked
again by the same process while its files keep their size and mtime.

Writers hold a per-entry file lock and write under a temporary name
(``.<name>.<random>.tmp``); a temporary entry whose writer died (no process
holds its lock) and that is older than the current run is an orphan, removed
by :func:`clean_orphans`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from robustbench_x.errors import JobError
from robustbench_x.files import TEMPORARY, atomic_write

log = logging.getLogger("robustbench_x.cache")

MANIFEST = "manifest.json"
SIDECAR = ".manifest.json"
FULL_CHECK_BYTES = 256 * 2**20
SAMPLE_BLOCKS = 16
BLOCK = 2**20

_checked: dict[str, tuple] = {}  # entry -> (size, mtime) of its files when it last passed


def cache_root() -> Path:
    root = os.environ.get("RBX_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("robustbench_x"))


# ------------------------------------------------------------------ errors


class DiskFull(JobError):
    """A cache or result write ran out of space; names the path and the space needed."""

    def __init__(self, path: Path, needed: int | None = None) -> None:
        free = _free_bytes(path)
        need = f"needed {human(needed)}" if needed is not None else "needed more"
        super().__init__(
            f"no space left on device writing {path}: {need}, {human(free)} free there.\n"
            "  fix: free space on that filesystem, or point RBX_CACHE_DIR (or --out) at a larger disk"
        )
        self.path, self.needed, self.free = path, needed, free


def is_disk_full(exc: BaseException) -> bool:
    # safetensors and other Rust/C writers report ENOSPC in their message only
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc) or "os error 28" in str(exc)


def reserve(fh, size: int, path: Path) -> None:
    """Allocate ``size`` bytes of ``fh`` on disk now. A memory-mapped file on a
    full disk dies with SIGBUS at the first page it cannot back; allocating
    first turns that into an error here, naming the file and the size."""
    try:
        os.posix_fallocate(fh.fileno(), 0, size)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(path, size) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate: ordinary writes follow
            raise


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def human(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ------------------------------------------------------------------ manifests


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 8 MiB blocks."""
    whole = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * BLOCK):
            whole.update(chunk)
    return whole.hexdigest()


def _digests(path: Path) -> tuple[str, str]:
    """(SHA-256 of the whole file, SHA-256 of its sampled blocks)."""
    return file_sha256(path), _sampled(path)


def _sampled(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    starts = sorted({min(max(size - BLOCK, 0), i * size // SAMPLE_BLOCKS) for i in range(SAMPLE_BLOCKS)} | {max(size - BLOCK, 0)})
    with open(path, "rb") as fh:
        for start in starts:
            fh.seek(start)
            digest.update(fh.read(BLOCK))
    return digest.hexdigest()


def _manifest_path(entry: Path) -> Path:
    return entry / MANIFEST if entry.is_dir() else entry.with_name(entry.name + SIDECAR)


def _describe_files(files: list[Path]) -> dict:
    out = {}
    for f in files:
        whole, sampled = _digests(f)
        out[f.name] = {"size": f.stat().st_size, "sha256": whole, "sampled_sha256": sampled}
    return {"format": 1, "files": out}


def _write_json_atomic(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data))


def seal_directory(directory: Path) -> None:
    """Write ``directory``'s manifest (last: it marks the entry complete)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    for f in files:
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    _write_json_atomic(directory / MANIFEST, _describe_files(files))


def check(entry: Path, *, full: bool = False) -> str | None:
    """Why ``entry`` (a file or directory) cannot be used, or None when it is sound."""
    manifest = _manifest_path(entry)
    if not entry.exists():
        return "missing"
    try:
        described = json.loads(manifest.read_text())["files"]
    except FileNotFoundError:
        return f"no manifest ({manifest.name}): written by an older rbx or by a writer that was killed"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest {manifest}: {exc}"
    base = entry if entry.is_dir() else entry.parent
    stats = {}
    for name, meta in described.items():
        path = base / name
        try:
            st = path.stat()
        except FileNotFoundError:
            return f"{name} is missing"
        if st.st_size != meta["size"]:
            return f"{name} has {st.st_size} bytes, expected {meta['size']} (truncated or overwritten)"
        stats[name] = (st.st_size, st.st_mtime_ns)
    signature = tuple(sorted(stats.items()))
    if not full and _checked.get(str(entry)) == signature:
        return None
    for name, meta in described.items():
        path = base / name
        if full or meta["size"] <= FULL_CHECK_BYTES:
            actual, expected = _digests(path)[0], meta["sha256"]
        else:
            actual, expected = _sampled(path), meta["sampled_sha256"]
        if actual != expected:
            return f"{name} does not match its checksum (corrupted)"
    _checked[str(entry)] = signature
    return None


def discard(entry: Path, problem: str) -> None:
    """Report a damaged entry by path and remove it (with its manifest)."""
    log.warning("unusable cache entry %s: %s; removed, recomputing", entry, problem)
    remove(entry)


def remove(entry: Path) -> None:
    _checked.pop(str(entry), None)
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        sidecar = entry.with_name(entry.name + SIDECAR)
        for path in (entry, sidecar):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def lock_for(entry: Path):
    from filelock import FileLock

    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(entry) + ".lock")


# ------------------------------------------------------------------ file entries


def cached_file(path: Path, build: Callable[[Path], None], *, stale_before: float | None = None, quiet: bool = False) -> tuple[Path, bool]:
    """Make ``path`` a sound cache file; return ``(path, built)``.

    A sound entry is reused (``built`` False). A missing or damaged one
    (reported by path and removed) is rebuilt: ``build(tmp)`` writes the file
    at ``tmp``, which is then renamed to ``path`` and sealed with its manifest,
    under a lock so that concurrent processes build it once. With
    ``stale_before`` (a time stamp), an entry sealed before it is rebuilt too,
    and one sealed after it is reused: ``rbx run --force`` refits method state
    once per run, however many processes share it. Any model or plugin can
    cache its files this way; ``rbx cache verify`` checks them all. ``quiet``
    rebuilds a damaged entry without a warning: for renders (bootstrap
    replicates, figures) that cost a second to recompute and change no result.
    """
    path = Path(path)

    def problem_with() -> str | None:
        problem = check(path)
        if problem is None and stale_before is not None and _manifest_path(path).stat().st_mtime < stale_before:
            return "stale"
        return problem

    if problem_with() is None:
        return path, False
    with lock_for(path):
        problem = problem_with()
        if problem is None:  # another process built it while we waited
            return path, False
        if problem == "stale":  # asked for, not damage: no warning
            remove(path)
        elif quiet:
            remove(path)
        elif path.exists() or _manifest_path(path).exists():
            discard(path, problem)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            build(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            manifest = _describe_files([tmp])
            manifest["files"] = {path.name: manifest["files"][tmp.name]}
            os.replace(tmp, path)
            _write_json_atomic(path.with_name(path.name + SIDECAR), manifest)
        except BaseException as exc:
            remove(path)
            if isinstance(exc, Exception) and is_disk_full(exc) and not isinstance(exc, DiskFull):
                raise DiskFull(path) from exc
            raise
        finally:
            if tmp.exists():
                tmp.unlink()
    return path, True


def cached_bytes(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of a sealed render cache entry (:func:`cached_file`, ``quiet``), made by
    ``make()`` when missing or damaged; a cache that cannot be written only costs time."""
    made: list[bytes] = []

    def build(tmp: Path) -> None:
        made.append(make())
        tmp.write_bytes(made[0])

    try:
        path, _ = cached_file(path, build, quiet=True)
        return made[0] if made else path.read_bytes()
    except OSError:  # read-only or full: what was made is still the answer
        return made[0] if made else make()


# ------------------------------------------------------------------ the whole cache


#: The categories this module writes: every entry in them carries a manifest, so one without
#: is damaged (a killed writer) or left by an older rbx. Other folders belong to plugins or to
#: self-checking memos (``digests``), which check what they read themselves.
SEALED = ("features", "fitted", "models", "bootstrap", "figures")


@dataclass
class Entry:
    path: Path
    category: str
    size: int
    verifiable: bool


def entries(root: Path | None = None) -> Iterator[Entry]:
    """Every entry under the cache root: ``<root>/<category>/<entry>``."""
    root = root or cache_root()
    if not root.is_dir():
        return
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(category.iterdir()):
            name = path.name
            if name.startswith(".") or name.endswith((".lock", SIDECAR)):
                continue
            verifiable = _manifest_path(path).exists()
            yield Entry(path, category.name, _size(path), verifiable)


def orphans(root: Path | None = None, older_than: float | None = None) -> list[Path]:
    """Temporary entries (``.<name>.<random>.tmp``) whose writer is gone:
    older than ``older_than`` and with no process holding the entry's lock."""
    from filelock import FileLock, Timeout

    root = root or cache_root()
    older_than = time.time() if older_than is None else older_than
    found = []
    if not root.is_dir():
        return found
    for category in (p for p in root.iterdir() if p.is_dir()):
        for path in category.iterdir():
            # Only names this module writes: a library's own temporary file in the same folder
            # (safetensors writes `.tmpXXXXXX` before renaming) belongs to a writer we cannot see.
            match = TEMPORARY.fullmatch(path.name)
            if match is None or _mtime(path) >= older_than:
                continue
            lock = FileLock(str(category / match["target"]) + ".lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a live writer
            try:
                found.append(path)
            finally:
                lock.release()
    return found


def clean_orphans(root: Path | None = None, older_than: float | None = None) -> list[Path]:
    removed = []
    for path in orphans(root, older_than):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d orphaned temporary cache entr%s", len(removed), "y" if len(removed) == 1 else "ies")
    return removed


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size + _sidecar_size(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sidecar_size(path: Path) -> int:
    sidecar = path.with_name(path.name + SIDECAR)
    return sidecar.stat().st_size if sidecar.exists() else 0


def _mtime(path: Path) -> float:
    """Newest mtime of a file or of a directory and its files (a writer touches them)."""
    try:
        if path.is_dir():
            return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))])
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
