"""Shared pieces of the robustness readers: errors, lazy image sources,
class lists, option checking and fingerprints.

Nothing here reads image data eagerly: a :class:`FileSource` holds paths and
decodes one file per ``__getitem__``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_x.api import SampleSource
from robustbench_x.errors import ConfigError, JobError

#: Extensions torchvision's ``ImageFolder`` accepts (``IMG_EXTENSIONS``), lower case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetLayoutError(ConfigError):
    """The dataset on disk is missing or not in the distributed layout.

    The message names the offending path and says how to fix it.
    """


class UndecodableFileError(JobError):
    """A sample file exists but cannot be decoded (truncated download, wrong format)."""

    def __init__(self, path: os.PathLike | str, reason: str, fix: str | None = None) -> None:
        self.path = str(path)
        text = f"cannot decode {self.path}: {reason}"
        text += f"\n  fix: {fix}" if fix else "\n  fix: re-download or re-extract this file; it is damaged or not in the expected format"
        super().__init__(text)


def suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def require_dir(path: os.PathLike | str | None, what: str, fix: str, key: str = "root") -> Path:
    """``path`` (the option ``key``) as a ``Path`` if it is an existing directory; a clear error otherwise."""
    if path is None or str(path) == "":
        raise DatasetLayoutError(f"{what}: no root directory given", key=key, fix=fix)
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetLayoutError(f"{what} root '{p}' does not exist", key=key, fix=fix)
    if not p.is_dir():
        raise DatasetLayoutError(f"{what} root '{p}' is a file, not a directory", key=key, fix=fix)
    return p


def subdirs(path: Path) -> list[os.DirEntry]:
    """Visible sub-directories of ``path`` sorted by name (hidden entries ignored)."""
    with os.scandir(path) as it:
        return sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def image_files(path: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[os.DirEntry]:
    """Image files directly in ``path`` sorted by name (ImageFolder order)."""
    with os.scandir(path) as it:
        return sorted(
            (e for e in it if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(tuple(extensions))),
            key=lambda e: e.name,
        )


def open_image(path: os.PathLike | str):
    """Decode ``path`` with PIL and convert to RGB (torchvision ``pil_loader``; a 16-bit image through
    :func:`robustbench_x.sources.eight_bit`, which ``convert("RGB")`` alone turns white)."""
    from PIL import Image, UnidentifiedImageError

    from robustbench_x.sources import eight_bit

    try:
        with open(path, "rb") as f:
            with Image.open(f) as img:
                img.load()
                return eight_bit(img).convert("RGB")
    except FileNotFoundError:
        raise UndecodableFileError(path, "the file no longer exists", fix="the dataset changed after it was listed; rebuild the dataset") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UndecodableFileError(path, f"{type(exc).__name__}: {exc}") from None


class FileSource(SampleSource):
    """Samples stored one image file each; decoded lazily, one per ``__getitem__``.

    ``paths``, ``labels`` and ``ids`` are parallel; ``sizes`` (bytes) feed the
    fingerprint; ``fields`` optionally holds parsed per-sample metadata.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        ids: Sequence[str],
        sizes: Sequence[int] | None = None,
        fields: Sequence[Any] | None = None,
    ) -> None:
        if not (len(paths) == len(labels) == len(ids)):
            raise ValueError("paths, labels and ids must have the same length")
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.ids = list(ids)
        self.sizes = list(sizes) if sizes is not None else None
        self.fields = list(fields) if fields is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        i = index(i, len(self))
        return open_image(self.paths[i]), int(self.labels[i]), self.ids[i]


def index(i, n: int) -> int:
    """A Python int in ``[0, n)`` from ``i`` (negative indices count from the end)."""
    try:
        i = int(i)
    except (TypeError, ValueError):
        raise TypeError(f"sample index must be an integer, got {i!r}") from None
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"sample index out of range for a subset of {n} samples")
    return i


def load_class_list(classes: Any, what: str) -> list[str] | None:
    """A class list from a sequence of names or from a text file.

    A file holds one class per line; only the first whitespace-separated token
    is kept, so ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``)
    works as is. The class index is the position in the list.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        p = Path(classes).expanduser()
        if not p.is_file():
            raise DatasetLayoutError(
                f"{what}: class list file '{p}' does not exist",
                key="classes",
                fix="give a text file with one class (wnid) per line, or a list of names",
            )
        names = [line.split()[0] for line in p.read_text().splitlines() if line.strip()]
    else:
        names = [str(c) for c in classes]
    if not names:
        raise DatasetLayoutError(f"{what}: the class list is empty", key="classes", fix="list the classes in label order")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DatasetLayoutError(f"{what}: the class list repeats {dup}", key="classes", fix="list each class once")
    return names


def check_options(options: Mapping[str, Any] | None, allowed: Iterable[str], required: Iterable[str], what: str, config_file=None) -> dict:
    opts = dict(options or {})
    opts.pop("type", None)  # the datasets.yaml entry names its type
    allowed = set(allowed)
    for key in opts:
        if key not in allowed:
            raise ConfigError(
                f"unknown option for {what}.{suggestion(key, allowed)}",
                file=str(config_file) if config_file else None,
                key=key,
                fix=f"accepted options: {', '.join(sorted(allowed))}",
            )
    for key in required:
        if opts.get(key) in (None, ""):
            raise ConfigError(
                f"{what} needs option '{key}'", file=str(config_file) if config_file else None, key=key, fix=f"add `{key}:` to the entry"
            )
    return opts


def select(requested: Iterable[str] | None, present: Sequence[str], known: Sequence[str], what: str, key: str, where: str) -> list[str]:
    """Validate a user selection of corruption / perturbation names."""
    if requested is None:
        return list(present)
    if isinstance(requested, str):
        requested = [requested]
    out = []
    for name in requested:
        if name not in known:
            raise DatasetLayoutError(
                f"unknown {what} '{name}'.{suggestion(name, known)}",
                key=key,
                fix=f"known {what}s: {', '.join(known)}",
            )
        if name not in present:
            raise DatasetLayoutError(
                f"{what} '{name}' is not under {where}",
                key=key,
                fix=f"present: {', '.join(present) or '(none)'}; download/extract it or drop it from `{key}:`",
            )
        out.append(name)
    return out


def fingerprint(version: str, subset: str, ids: Sequence[str], labels: np.ndarray, sizes: Sequence[int] | None = None, extra: bytes = b"") -> str:
    """sha256 over the reader version, subset name, sample ids, labels and file sizes."""
    h = hashlib.sha256(version.encode())
    h.update(b"\0" + subset.encode() + b"\0")
    h.update("\n".join(ids).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if sizes is not None:
        h.update(np.asarray(sizes, dtype=np.int64).tobytes())
    h.update(extra)
    return h.hexdigest()[:16]


def provenance(root: Path) -> bytes:
    """The ``rbx-build.json`` a tree built by ``rbx datasets build-c`` carries (preset,
    frost photographs, seed, engine digest), for the fingerprint; empty otherwise."""
    path = Path(root) / "rbx-build.json"
    return path.read_bytes() if path.is_file() else b""


def unknown_subset(dataset: str, subset: str, known: Sequence[str]) -> KeyError:
    return KeyError(f"{dataset} has no subset {subset!r}.{suggestion(subset, known)} It has {list(known)}")
