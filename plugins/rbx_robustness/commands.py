"""Build corrupted trees (ImageNet-C, CIFAR-C, Tiny-ImageNet-C layouts) and ImageNet-P trees from your own images (``rbx datasets build-c`` / ``build-p``).

``build_c_command(source, out, corruptions=None, severities=None, config=None, log=print, preset="imagenet", **options)``
    Corrupts every image of ``source`` with :func:`rbx_robustness.engine.build_c`
    using the parameters of the published generator ``preset``: ``imagenet``
    (224 px) or ``tiny`` (64 px) into ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG``,
    ``cifar`` (32 px) into the CIFAR-C files ``<out>/<corruption>.npy`` + ``labels.npy``.
    The printed ``datasets.yaml`` entry has the type that matches the tree:
    ``imagenet-c`` only for the ``imagenet`` preset on ImageNet images (label
    space ``imagenet-1k``, or every class folder a wnid), ``imagefolder-c``
    for the ``imagenet`` preset on other images, ``tiny-imagenet-c``,
    ``cifar-c`` / ``cifar100-c``; only ``imagenet-c`` gets AlexNet-normalised
    mCE rows.
``build_p_command(source, out, perturbations=None, config=None, log=print, **options)``
    Builds one perturbation sequence per image with
    :func:`rbx_robustness.engine.build_p` into
    ``<out>/<perturbation>/<class>/<stem>.mp4``, the layout the ``imagenet-p``
    reader reads.

``source`` is either a folder in ImageFolder layout (``<source>/<class>/<image>``)
or the name of a dataset in ``datasets.yaml`` (``config``: its path, default
``$RBX_CONFIG`` / ``./datasets.yaml``), whose ``id`` split (an ``imagefolder``
entry's ``test:`` folder) is read. Class folder names and file stems are kept
(ImageNet val: ``<wnid>/ILSVRC2012_val_XXXXXXXX``). ``options`` go to the
engine builder unchanged: ``build_c``: ``fmt`` (``"JPEG"`` as published, or
``"png"``), ``resize`` (shorter side; default none: the images' own size),
``crop`` (centre crop; default none), ``batch_size``, ``seed``, ``device``
(ImageNet-C itself: ``resize=256, crop=224``); ``build_p``: ``resize``,
``crop``, ``codec`` (``"lossless"``, ``"near_lossless"``, ``"published"``),
``seed``, ``difficulty``, ``device``.
Defaults: the 19 corruptions × severities 1..5; the 14 perturbations. Both are
deterministic, atomic per file and resumable (existing files are skipped).

Both return a summary dict: ``written``, ``skipped``, ``images`` (source images
read), ``out`` and ``entry``, a ready ``datasets.yaml`` entry (dict) for the tree
(folder layouts: ``clean_root`` = the source folder when the corrupted images
are the same view of it, i.e. no resize/crop or ImageNet's ``256``/``224``;
``type: imagenet-p`` for sequences), which ``log`` also prints.

Errors are :class:`~robustbench_x.errors.UsageError` (exit code 2) naming what
was wrong: an unknown corruption (with the closest names), a severity outside
1..5, a source that is neither a folder nor a configured dataset, an empty folder.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from robustbench_x.errors import UsageError

__all__ = ["build_c_command", "build_p_command", "source_items"]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _Source:
    """The images to corrupt: ``(PIL image, class name, stem)`` items, listed eagerly, decoded lazily."""

    def __init__(self, entries: list[tuple[Callable[[], Any], str, str]], root: Path | None, label_space: str | None, what: str) -> None:
        self.entries, self.root, self.label_space, self.what = entries, root, label_space, what

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[Any, str, str]]:
        for load, cls, stem in self.entries:
            yield load(), cls, stem


def _check_stems(entries: list[tuple[Any, str, str]], what: str) -> None:
    seen: set[tuple[str, str]] = set()
    for _, cls, stem in entries:
        if (cls, stem) in seen:
            raise UsageError(f"{what}: two images of class '{cls}' have the stem '{stem}' (different extensions?); output files are named <class>/<stem>, so stems must be unique per class")
        seen.add((cls, stem))


def _folder_items(root: Path) -> _Source:
    from rbx_robustness.readers._common import open_image

    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"'{root}' has no class folders; expected an ImageFolder tree <root>/<class>/<image>")
    entries = []
    for cls in classes:
        for f in sorted(p for p in cls.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _IMAGE_EXTENSIONS):
            entries.append((lambda f=f: open_image(f), cls.name, f.stem))
    if not entries:
        raise UsageError(f"no image under the class folders of '{root}' (extensions {', '.join(_IMAGE_EXTENSIONS)})")
    _check_stems(entries, str(root))
    return _Source(entries, root, None, str(root))


def _dataset_items(name: str, config: str | Path | None) -> _Source:
    from robustbench_x.api import configured_datasets

    file, entries = configured_datasets(config)
    if name not in entries:
        known = sorted(entries)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(
            f"'{name}' is neither a folder nor a dataset of {file}.{hint}\n"
            f"  fix: pass an ImageFolder folder (<root>/<class>/<image>) or one of the configured datasets: {', '.join(known) or '(none)'}"
        )
    entry = entries[name]
    dataset = entry.build()
    if "id" not in dataset.subsets():
        raise UsageError(f"dataset '{name}' has no 'id' split to corrupt (it has {dataset.subsets()})")
    source = dataset.samples("id")
    classes = list(getattr(dataset, "classes", []) or [])
    files = getattr(source, "files", None)
    if files is None:
        files = getattr(source, "paths", None)
    labels = getattr(source, "labels", None)
    entries = []
    for i in range(len(source)):
        if files is not None and labels is not None:
            stem, label = Path(str(files[i])).stem, int(labels[i])
        else:
            _, label, sid = source[i]
            stem, label = Path(str(sid)).stem, int(label)
        cls = classes[label] if 0 <= label < len(classes) else str(label)
        entries.append((lambda i=i: source[i][0].convert("RGB"), cls, stem))
    if not entries:
        raise UsageError(f"dataset '{name}': its 'id' split is empty")
    _check_stems(entries, f"dataset '{name}'")
    # an imagefolder's id split is one <class>/<image> tree: it becomes the ImageNet-C clean_root
    root = getattr(source, "root", None)
    root = Path(root) if root is not None and Path(root).is_dir() and entry.type == "imagefolder" else None
    return _Source(entries, root, entry.options.get("label_space"), f"dataset '{name}'")


def source_items(source: str | Path, config: str | Path | None = None) -> _Source:
    """The images of ``source``: an ImageFolder folder, or a configured dataset's ``id`` split."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return _folder_items(path)
    return _dataset_items(str(source), config)


def _suggest(name: str, known: Sequence[str], what: str) -> UsageError:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown {what} '{name}'.{hint}\n  known {what}s: {', '.join(known)}")


def _names(requested, known: Sequence[str], what: str) -> list[str] | None:
    if requested is None:
        return None
    if isinstance(requested, str):
        requested = [r for r in requested.split(",") if r]
    out = []
    for name in requested:
        if name not in known:
            raise _suggest(name, known, what)
        out.append(name)
    if not out:
        raise UsageError(f"no {what} selected")
    return out


def _severities(requested) -> list[int]:
    if requested is None:
        return [1, 2, 3, 4, 5]
    if isinstance(requested, str):
        requested = [r for r in requested.split(",") if r]
    out = []
    for s in requested:
        try:
            v = int(s)
        except (TypeError, ValueError):
            raise UsageError(f"severity {s!r} is not an integer 1..5") from None
        if v not in (1, 2, 3, 4, 5):
            raise UsageError(f"severity {v} is outside 1..5")
        out.append(v)
    return out


_WNID = re.compile(r"n\d{8}")


def _c_kind(preset: str, src: _Source, out: Path) -> str:
    """The dataset type of a built corrupted tree (module docstring)."""
    if preset == "cifar":
        import numpy as np

        labels = np.load(out / "labels.npy", allow_pickle=False)
        return "cifar100-c" if labels.max(initial=0) >= 10 or src.label_space == "cifar100" else "cifar-c"
    if preset == "tiny":
        return "tiny-imagenet-c"
    classes = {cls for _, cls, _ in src.entries}
    imagenet = src.label_space == "imagenet-1k" or (src.label_space is None and all(_WNID.fullmatch(c) for c in classes))
    return "imagenet-c" if imagenet else "imagefolder-c"


def _entry(kind: str, out: Path, src: _Source, same_view: bool = True) -> dict:
    entry: dict[str, Any] = {"type": kind, "root": str(out)}
    if kind in ("imagenet-c", "imagefolder-c", "tiny-imagenet-c") and src.root is not None and same_view:
        entry["clean_root"] = str(src.root)
    if src.label_space:
        entry["label_space"] = src.label_space
    return entry


def _say_entry(log: Callable[[str], None], entry: dict, name: str) -> None:
    lines = ["datasets.yaml entry for it:", "datasets:", f"  {name}:"] + [f"    {k}: {v}" for k, v in entry.items()]
    log("\n".join(lines))


def build_c_command(
    source: str | Path,
    out: str | Path,
    corruptions: Sequence[str] | str | None = None,
    severities: Sequence[int] | str | None = None,
    config: str | Path | None = None,
    log: Callable[[str], None] = print,
    preset: str = "imagenet",
    **options: Any,
) -> dict:
    """Write a corrupted tree of ``source``'s images under ``out`` (module docstring)."""
    from rbx_robustness.engine import CORRUPTIONS, PRESETS
    from rbx_robustness.engine.build import build_c

    if preset not in PRESETS:
        raise _suggest(preset, list(PRESETS), "preset")
    names = _names(corruptions, list(CORRUPTIONS), "corruption")
    levels = _severities(severities)
    if preset == "cifar" and levels != [1, 2, 3, 4, 5]:
        raise UsageError("--preset cifar writes CIFAR-C files, which hold all five severities; fix: drop --severities")
    src = source_items(source, config)
    out = Path(out).expanduser()
    n_names = len(names) if names else len(CORRUPTIONS)
    log(f"{preset} preset ({PRESETS[preset].source}): {len(src)} images of {src.what} x {n_names} corruptions x {len(levels)} severities -> {out}")
    try:
        stats = build_c(iter(src), out, names, levels, preset=preset, **options)
    except ValueError as exc:  # images of the wrong size, class names, a tree built with other settings
        raise UsageError(str(exc)) from None
    view = (options.get("resize"), options.get("crop"))
    same_view = view == (None, None) or (preset == "imagenet" and view == (256, 224))
    entry = _entry(_c_kind(preset, src, out), out, src, same_view)
    log(f"{entry['type']}: wrote {stats['written']} images, {stats['skipped']} already present")
    if not same_view and src.root is not None:
        log("no clean_root: the corrupted images are resized/cropped views of the source; the clean ones would not match")
    _say_entry(log, entry, f"{out.name}")
    return {**stats, "images": len(src), "out": str(out), "entry": entry}


def build_p_command(
    source: str | Path,
    out: str | Path,
    perturbations: Sequence[str] | str | None = None,
    config: str | Path | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict:
    """Write an ImageNet-P tree (one sequence per image of ``source``) under ``out`` (module docstring)."""
    from rbx_robustness.engine import PERTURBATIONS
    from rbx_robustness.engine.build import build_p

    names = _names(perturbations, list(PERTURBATIONS), "perturbation")
    src = source_items(source, config)
    out = Path(out).expanduser()
    n_names = len(names) if names else len(PERTURBATIONS)
    log(f"imagenet-p: {len(src)} images of {src.what} x {n_names} perturbations -> {out}")
    stats = build_p(iter(src), out, names, **options)
    entry = _entry("imagenet-p", out, src)
    log(f"imagenet-p: wrote {stats['written']} sequences, {stats['skipped']} already present")
    _say_entry(log, entry, f"{out.name}")
    return {**stats, "images": len(src), "out": str(out), "entry": entry}
