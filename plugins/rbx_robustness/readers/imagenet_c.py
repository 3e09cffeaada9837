"""ImageNet-C reader (Hendrycks & Dietterich, ICLR 2019; hendrycks/robustness
``ImageNet-C/test.py`` and ``ImageNet-C/create_c/make_imagenet_c.py``;
``docs/datasets.md#imagenet-c``).

Format
------
19 corruptions × severities 1..5, each the 50,000 ImageNet val images as
224×224 RGB JPEGs (``Resize(256)``, ``CenterCrop(224)``, corruption, PIL JPEG
quality 85), keeping their val file names, in 1000 wnid folders::

    <root>/<corruption>/<severity>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG

Zenodo record 2235448 ships five tars, one per category:

============  ==============================================================
tar           corruptions
============  ==============================================================
noise.tar     gaussian_noise, shot_noise, impulse_noise
blur.tar      defocus_blur, glass_blur, motion_blur, zoom_blur
weather.tar   frost, snow, fog, brightness
digital.tar   contrast, elastic_transform, pixelate, jpeg_compression
extra.tar     speckle_noise, spatter, gaussian_blur, saturate (validation only)
============  ==============================================================

Extracted trees occur in two layouts (which one a given tar produces is
unverified, docs/datasets.md#imagenet-c), and both are read, even mixed in one root:

* flat: ``<root>/<corruption>/<severity>/<wnid>/*``;
* per category: ``<root>/<category>/<corruption>/<severity>/<wnid>/*`` where
  ``<category>`` is a tar name (``noise``, ``blur``, ``weather``, ``digital``,
  ``extra``). A corruption is accepted under any category folder.

Subsets: ``c/<corruption>/<severity>`` for every corruption and severity folder
present, and ``id`` (the clean val set) when ``clean_root`` is given, in
ImageFolder layout ``<clean_root>/<wnid>/*.JPEG``. Clean images are *not*
resized here: as in the official ``test.py`` the model transform is
responsible (clean: ``Resize(256)`` + ``CenterCrop(224)``; ImageNet-C: already
224×224, ``CenterCrop(224)`` is a no-op).

Labels: the index of the wnid folder in the class list, by default the sorted
wnids found (the standard ImageNet-1k indices when all 1000 are present, as
``ImageFolder`` gives), or the ``classes`` option (a list or a file with one
wnid per line, e.g. ``LOC_synset_mapping.txt``). Sample ids are the path
relative to the corruption's parent folder, ``<corruption>/<severity>/<wnid>/<file>``
(identical for both layouts), and ``<wnid>/<file>`` for ``id``. Sample order is
ImageFolder's: sorted wnid, then sorted file name.

Laziness: constructing the dataset lists only directories; the files of a
subset are listed on its first ``samples()`` call and each image is decoded
on access.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rbx_robustness.readers._common import (
    DatasetLayoutError,
    FileSource,
    check_options,
    fingerprint,
    image_files,
    load_class_list,
    provenance,
    require_dir,
    select,
    subdirs,
    suggestion,
    unknown_subset,
)
from robustbench_x.api import Dataset
from rbx_robustness.tables import IMAGENET_C_EXTRA, IMAGENET_C_TEST, SEVERITIES

VERSION = "imagenet-c-reader-v1"
CORRUPTIONS = IMAGENET_C_TEST + IMAGENET_C_EXTRA

#: Which distributed tar holds which corruption (docs/datasets.md#imagenet-c, pytorch-ood sizes and md5).
TARS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("frost", "snow", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "spatter", "gaussian_blur", "saturate"),
}
TAR_OF = {c: tar for tar, members in TARS.items() for c in members}

OPTION_KEYS = frozenset({"root", "clean_root", "classes", "corruptions"})
REQUIRED_KEYS = frozenset({"root"})

FIX_ROOT = (
    "download noise.tar, blur.tar, weather.tar, digital.tar (and extra.tar) from Zenodo record 2235448, "
    "extract them into one folder and set `root:` to it: it must contain `<corruption>/<1..5>/<wnid>/*.JPEG` "
    "(e.g. `gaussian_noise/3/n01440764/`) or `<category>/<corruption>/...` (e.g. `noise/gaussian_noise/3/`)"
)
FIX_CLEAN = (
    "set `clean_root:` to the ImageNet val set in ImageFolder layout `<wnid>/*.JPEG` "
    "(the raw ILSVRC2012 val tar is flat: sort it into wnid folders first, e.g. with valprep.sh)"
)


def _is_severity(name: str) -> bool:
    return name in {str(s) for s in SEVERITIES}


class ImageNetC(Dataset):
    """ImageNet-C as distributed (see the module docstring for the layout)."""

    task = "classification"
    provides = frozenset()

    def __init__(
        self,
        root,
        *,
        clean_root=None,
        classes=None,
        corruptions=None,
        name: str = "imagenet-c",
        imagenet: bool = True,
    ) -> None:
        """``imagenet``: the tree is ImageNet-C, so fewer than 1000 wnid folders without
        ``classes:`` is worth a warning (not for Tiny-ImageNet-C or another ImageFolder-C tree)."""
        self.name = name
        self.root = require_dir(root, "ImageNet-C", FIX_ROOT)
        found = self._discover(self.root)
        present = [c for c in CORRUPTIONS if c in found]
        if not present:
            raise DatasetLayoutError(f"no ImageNet-C corruption folder under '{self.root}'", key="root", fix=FIX_ROOT)
        self.corruptions = select(corruptions, present, CORRUPTIONS, "corruption", "corruptions", f"'{self.root}'")
        self.corruption_dirs: dict[str, Path] = {c: found[c] for c in self.corruptions}
        self.severity_dirs: dict[tuple[str, int], Path] = {}
        for c in self.corruptions:
            self.severity_dirs.update(self._severities(c, self.corruption_dirs[c]))
        self.clean_root = require_dir(clean_root, "ImageNet clean val (clean_root)", FIX_CLEAN, key="clean_root") if clean_root else None
        if self.clean_root is not None and not subdirs(self.clean_root):
            raise DatasetLayoutError(
                f"clean_root '{self.clean_root}' has no class (wnid) folders", key="clean_root", fix=FIX_CLEAN
            )
        if self.clean_root is not None:
            self._check_clean_root()
        given = load_class_list(classes, "ImageNet-C")
        self.classes = given if given is not None else self._wnids_on_disk()
        if imagenet and given is None and len(self.classes) != 1000:
            warnings.warn(
                f"ImageNet-C at '{self.root}': found {len(self.classes)} wnid folders instead of 1000, so labels are "
                "indices into these sorted wnids, not ImageNet-1k class indices; pass `classes:` (a list or a "
                "LOC_synset_mapping.txt-style file) to fix the label space",
                stacklevel=2,
            )
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self._subset_names = [f"c/{c}/{s}" for (c, s) in self.severity_dirs]
        if self.clean_root is not None:
            self._subset_names.insert(0, "id")
        self._sources: dict[str, FileSource] = {}

    # -- discovery ---------------------------------------------------------------

    @staticmethod
    def _discover(root: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}

        def add(corruption: str, path: Path) -> None:
            if corruption in found:
                raise DatasetLayoutError(
                    f"corruption '{corruption}' appears twice: '{found[corruption]}' and '{path}'",
                    key="root",
                    fix="keep one copy (a root mixes the flat and the per-category layouts of the same tar)",
                )
            found[corruption] = path

        known = list(CORRUPTIONS) + list(TARS)
        for entry in subdirs(root):
            if entry.name in CORRUPTIONS:
                add(entry.name, Path(entry.path))
            elif entry.name in TARS:
                for sub in subdirs(Path(entry.path)):
                    if sub.name not in CORRUPTIONS:
                        raise DatasetLayoutError(
                            f"'{sub.path}' is not an ImageNet-C corruption folder.{suggestion(sub.name, CORRUPTIONS)}",
                            key="root",
                            fix=f"rename or remove it; corruptions are: {', '.join(CORRUPTIONS)}",
                        )
                    add(sub.name, Path(sub.path))
            else:
                raise DatasetLayoutError(
                    f"'{entry.path}' is neither an ImageNet-C corruption nor a category folder.{suggestion(entry.name, known)}",
                    key="root",
                    fix=f"rename or remove it; corruptions: {', '.join(CORRUPTIONS)}; categories (tar names): {', '.join(TARS)}",
                )
        return found

    @staticmethod
    def _severities(corruption: str, path: Path) -> dict[tuple[str, int], Path]:
        out: dict[tuple[str, int], Path] = {}
        for entry in subdirs(path):
            if not _is_severity(entry.name):
                raise DatasetLayoutError(
                    f"'{entry.path}' is not a severity folder: ImageNet-C severities are 1–5",
                    key="root",
                    fix="remove or rename it; the layout is <root>/[<category>/]<corruption>/<1..5>/<wnid>/*.JPEG",
                )
            out[(corruption, int(entry.name))] = Path(entry.path)
        if not out:
            raise DatasetLayoutError(
                f"'{path}' has no severity folders 1–5", key="root", fix="re-extract the tar that holds " + corruption
            )
        return dict(sorted(out.items(), key=lambda kv: kv[0][1]))

    def _check_clean_root(self) -> None:
        """A ``clean_root`` one level too high (the folder of the split folders) shares no class
        folder with the corrupted tree: said here, naming ``clean_root``, not as an empty ``id``
        subset inside the job."""
        corrupted = {e.name for path in self.severity_dirs.values() for e in subdirs(path)}
        clean = [e.name for e in subdirs(self.clean_root)]
        if not corrupted or corrupted & set(clean):
            return
        below = [n for n in clean if corrupted & {e.name for e in subdirs(self.clean_root / n)}]
        if not below:  # other classes than the corrupted tree's: a smaller tree, not a misplaced root
            return
        raise DatasetLayoutError(
            f"clean_root '{self.clean_root}' holds the folders {', '.join(clean[:5])}{', …' if len(clean) > 5 else ''}, none of them a class "
            f"folder of the corrupted tree ({', '.join(sorted(corrupted)[:5])}{', …' if len(corrupted) > 5 else ''})",
            key="clean_root",
            fix=f"set `clean_root:` one level deeper, to its '{below[0]}' folder ({self.clean_root / below[0]})",
        )

    def _wnids_on_disk(self) -> list[str]:
        wnids: set[str] = set()
        for path in self.severity_dirs.values():
            wnids.update(e.name for e in subdirs(path))
        if self.clean_root is not None:
            wnids.update(e.name for e in subdirs(self.clean_root))
        if not wnids:
            raise DatasetLayoutError(
                f"no wnid folders under the severity folders of '{self.root}'", key="root", fix=FIX_ROOT
            )
        return sorted(wnids)

    # -- Dataset API ---------------------------------------------------------------

    def subsets(self) -> list[str]:
        return list(self._subset_names)

    def _folder_of(self, subset: str) -> tuple[Path, str]:
        """The ImageFolder root of a subset and its sample-id prefix."""
        if subset == "id" and self.clean_root is not None:
            return self.clean_root, ""
        parts = subset.split("/")
        if len(parts) == 3 and parts[0] == "c" and _is_severity(parts[2]) and (parts[1], int(parts[2])) in self.severity_dirs:
            return self.severity_dirs[(parts[1], int(parts[2]))], f"{parts[1]}/{parts[2]}/"
        raise unknown_subset(self.name, subset, self._subset_names)

    def samples(self, subset: str) -> FileSource:
        if subset not in self._sources:
            folder, prefix = self._folder_of(subset)
            paths, labels, ids, sizes = [], [], [], []
            for wnid_dir in subdirs(folder):
                label = self.class_index.get(wnid_dir.name)
                if label is None:
                    raise DatasetLayoutError(
                        f"class folder '{wnid_dir.path}' is not in the class list.{suggestion(wnid_dir.name, self.classes)}",
                        key="classes",
                        fix="add its wnid to `classes:` or remove the folder",
                    )
                for f in image_files(Path(wnid_dir.path)):
                    paths.append(f.path)
                    labels.append(label)
                    ids.append(f"{prefix}{wnid_dir.name}/{f.name}")
                    sizes.append(f.stat().st_size)
            if not paths:
                fix = FIX_CLEAN if subset == "id" else "re-extract the tar that holds this corruption"
                raise DatasetLayoutError(f"'{folder}' holds no image in <wnid>/ folders (subset {subset})", key="root", fix=fix)
            self._sources[subset] = FileSource(paths, np.asarray(labels, dtype=np.int64), ids, sizes)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        source = self.samples(subset)
        extra = "\n".join(self.classes).encode() + (provenance(self.root) if subset != "id" else b"")
        return fingerprint(VERSION, subset, source.ids, source.labels, source.sizes, extra)


def build(name: str = "imagenet-c", options: dict | None = None, config_file: str | None = None, imagenet: bool = True) -> ImageNetC:
    """Factory for ``datasets.yaml``: ``root`` (required), ``clean_root``, ``classes``, ``corruptions``;
    ``imagenet`` as :class:`ImageNetC`."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (imagenet-c)", config_file)
    return ImageNetC(
        opts["root"],
        clean_root=opts.get("clean_root"),
        classes=opts.get("classes"),
        corruptions=opts.get("corruptions"),
        name=name,
        imagenet=imagenet,
    )
