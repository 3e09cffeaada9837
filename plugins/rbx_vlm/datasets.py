"""ImageNet and the CLIP OOD / domain-generalisation benchmarks (``docs/datasets.md#imagenet``).

``type: imagenet``::

    datasets:
      imagenet:
        type: imagenet
        root: /data/Imagenet          # holds the split folders
        train: train                  # optional: <root>/train/<wnid>/*.JPEG (few-shot CoOp / GalLoP)
        test: val                     # default 'val': <root>/val/<wnid>/*.JPEG, the "id" subset
        val: heldout                  # optional: a labelled held-out wnid tree for methods that fit on a
                                      #   validation split (NOT ImageNet's val folder, which is the test set)
        label_space: imagenet-1k      # pairs the dataset with timm ImageNet models too
        classes: classnames.txt       # optional class names (see below)
        ood_root: /data/ood_data      # optional base of relative ood: folders
        ood:                          # MOS OOD sets (deeplearning-wisc/large_scale_ood), any folder of
          iNaturalist: iNaturalist    #   images searched recursively: iNaturalist/images/*.jpg,
          SUN: SUN                    #   SUN/images/*.jpg, Places/images/*.jpg,
          Places: Places              #   dtd/images/<47 texture folders>/*.jpg (Textures)
          Textures: dtd/images
        dg:                           # shifted ImageNets, keys fix the reader
          imagenet-v2: /data/domains/imagenetv2-matched-frequency-format-val
          imagenet-sketch: /data/domains/sketch
          imagenet-a: /data/domains/imagenet-a
          imagenet-r: /data/domains/imagenet-r

``ood:`` may also be a list of MOS names (``[iNaturalist, SUN, Places, Textures]``),
found under ``ood_root`` in the MOS / MCM / GalLoP layouts (``Textures`` as
``dtd/images``, ``Textures`` or ``dtd``). Hidden files (DTD's stray
``waffled/.directory``) and non-image files are ignored; OOD labels are −1.

Subsets: ``train``, ``val`` (when given), ``id`` (ImageNet val), ``ood/<name>``, ``dg/imagenet-v2``,
``dg/imagenet-sketch``, ``dg/imagenet-a``, ``dg/imagenet-r``. Stand-alone types
``imagenet-v2``, ``imagenet-sketch``, ``imagenet-a``, ``imagenet-r`` (``root:``
= the set's folder) classify over the 1000 standard classes and have the single
subset ``id`` (the core contract: every classification dataset has an ``id``
test set); the ``dg`` suite scores it like the ``dg/*`` subsets, with the mask
for A / R.

Classes. Class order = the sorted wnid folders of the test split (the
standard ImageNet index order when all 1000 are present; the stand-alone types
use the standard 1000). ``dataset.classes`` are the *names* prompts use: from
``classes:`` (CoOp's ``classnames.txt`` lines ``<wnid> <name>``, a JSON
``{wnid: name}``, a JSON ``[[wnid, name], ...]`` or the Keras/PyTorch
``imagenet_class_index.json`` ``{"0": [wnid, name]}``), else the shipped
OpenAI CLIP class names (``imagenet_classes.json``; checked identical to the lists of MCM, GL-MCM and GalLoP
use), else the folder name. ``dataset.wnids`` keeps the wnids.

Readers.
* wnid trees (train, val, Sketch, A, R): ``<folder>/<wnid>/<image>``, labels
  through the wnid (A/R folders are *not* indexed 0..199 as ImageFolder would:
  their labels are ImageNet indices).
* ImageNet-V2 (``imagenetv2-matched-frequency-format-val``): class folders are
  the **integer class indices 0..999** of the standard order, mapped to wnids
  (GalLoP ``imagenetv2.py`` maps ``int(dirname)`` the same way).

200-class masking (ImageNet-A / -R). A 1000-way classifier must restrict its
logits to the set's 200 classes before the argmax (hendrycks' ``eval.py``;
CLIP prompt methods build prompts for those classes only, which is the same
argmax since CLIP class scores are independent). The 200 are the **official
lists**, shipped in ``imagenet_classes.json`` (``imagenet_a``: the classes of
``thousand_k_to_200`` in hendrycks/natural-adv-examples ``eval.py`` @0777070;
``imagenet_r``: ``imagenet_r_wnids`` in hendrycks/imagenet-r ``eval.py``
@3131cac), never the folders found on disk. ``dataset.class_mask(subset)``
returns that boolean mask over ``dataset.classes`` (``None`` for unmasked
subsets); the runner applies it to the cached logits, and every rbx_vlm
method to its ``prediction`` and ``probs``. A tree that lacks some of the 200
classes (a partial download) is still evaluated over the 200 and reported
incomplete: ``dataset.incomplete(subset)`` says which classes are missing
(also a warning, and part of the fingerprint); a class folder outside the 200
is an error.

Fingerprints hash relative paths, sizes, modification times, labels, class
names and the mask (cheap for millions of files, changes whenever a file does).
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
from robustbench_x.api import Dataset, resolve_path
from robustbench_x.sources import FileSource
from robustbench_x.errors import ConfigError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
DG_TYPES = ("imagenet-v2", "imagenet-sketch", "imagenet-a", "imagenet-r")
MASKED = ("imagenet-a", "imagenet-r")
#: Where each MOS OOD set lives under an ood root (MOS README, MCM / GL-MCM, GalLoP layouts).
MOS_LAYOUTS = {
    "iNaturalist": ("iNaturalist",),
    "SUN": ("SUN",),
    "Places": ("Places", "Places365", "places365"),
    "Textures": ("dtd/images", "Textures", "dtd", "textures"),
}
_DATA = Path(__file__).with_name("imagenet_classes.json")


# ----------------------------------------------------------------- shipped data


@functools.lru_cache(maxsize=1)
def _shipped() -> dict:
    return json.loads(_DATA.read_text(encoding="utf-8"))


def standard_classes() -> list[tuple[str, str]]:
    """The 1000 (wnid, CLIP class name) pairs in the standard ImageNet index order."""
    return [(w, n) for w, n in _shipped()["classes"]]


def standard_wnids() -> list[str]:
    return [w for w, _ in standard_classes()]


def official_wnids(kind: str) -> list[str]:
    """The 200 wnids of ImageNet-A (``'imagenet-a'``) or ImageNet-R (``'imagenet-r'``)."""
    return list(_shipped()[kind.replace("-", "_")])


def read_class_names(path: Path) -> dict[str, str]:
    """wnid → name from CoOp's ``classnames.txt`` or a JSON mapping (see module docstring)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "classes" in data and isinstance(data["classes"], list):
            data = data["classes"]
        if isinstance(data, list):
            return {str(w): str(n) for w, n in data}
        out = {}
        for key, value in data.items():
            if isinstance(value, (list, tuple)) and len(value) == 2:
                out[str(value[0])] = str(value[1])
            else:
                out[str(key)] = str(value)
        return out
    out = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2:
            out[parts[0]] = parts[1].strip()
    return out


# ----------------------------------------------------------------- sources




def images_under(folder: Path, extensions: tuple[str, ...] = EXTENSIONS) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and directories skipped."""
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).parts
        if p.is_file() and p.suffix.lower() in extensions and not any(part.startswith(".") for part in rel):
            out.append(p)
    return sorted(out)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_wnid_tree(folder: Path, index: dict[str, int], extensions: tuple[str, ...], what: str) -> tuple[list[Path], list[int], list[str]]:
    """``<folder>/<wnid>/<image>`` → files, labels (``index[wnid]``), wnids present."""
    files, labels, present = [], [], []
    for d in _class_dirs(folder):
        if d.name not in index:
            raise ValueError(f"{what}: class folder '{d.name}' in {folder} is not one of the dataset's classes. fix: lay it out as <wnid>/<image> with the test split's wnids")
        found = images_under(d, extensions)
        files += found
        labels += [index[d.name]] * len(found)
        present.append(d.name)
    return files, labels, present


def read_v2_tree(folder: Path, index: dict[str, int], extensions: tuple[str, ...]) -> tuple[list[Path], list[int]]:
    """ImageNet-V2: class folders ``0..999`` are standard class indices, mapped through the wnid."""
    wnids = standard_wnids()
    files, labels = [], []
    dirs = _class_dirs(folder)
    bad = [d.name for d in dirs if not d.name.isdigit() or not 0 <= int(d.name) < len(wnids)]
    if bad:
        raise ValueError(
            f"ImageNet-V2 at {folder}: folders must be integer class indices 0..999 (imagenetv2-matched-frequency-format-val), found {bad[:3]}. "
            "fix: point dg.imagenet-v2 at the extracted imagenetv2-*-format-val folder"
        )
    for d in sorted(dirs, key=lambda p: int(p.name)):
        wnid = wnids[int(d.name)]
        if wnid not in index:
            raise ValueError(f"ImageNet-V2 folder {d.name} is class {wnid}, which is not among the dataset's classes")
        found = images_under(d, extensions)
        files += found
        labels += [index[wnid]] * len(found)
    return files, labels


# ----------------------------------------------------------------- datasets


class _Base(Dataset):
    task = "classification"

    def _setup(self, name: str, options: dict, config_file: str | None) -> None:
        self.name = name
        self._config_file = config_file
        self._file = config_file or "datasets.yaml"
        self._key = f"datasets.{name}"
        self.extensions = tuple(e.lower() for e in options.get("extensions", EXTENSIONS))
        self._names: dict[str, str] = dict(standard_classes())
        if options.get("classes"):
            path = resolve_path(options["classes"], self._config_file)
            if not path.is_file():
                raise ConfigError(f"class-name file not found: {path}", file=self._file, key=f"{self._key}.classes", fix="give CoOp's classnames.txt (<wnid> <name> lines) or a JSON wnid → name mapping")
            self._names.update(read_class_names(path))
        self._dirs: dict[str, Path] = {}
        self._kinds: dict[str, str] = {}
        self._sources: dict[str, FileSource] = {}
        self._masks: dict[str, np.ndarray] = {}
        self._incomplete: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}

    def _set_classes(self, wnids: list[str]) -> None:
        self.wnids = list(wnids)
        self.classes = [self._names.get(w, w.replace("_", " ")) for w in self.wnids]
        self._index = {w: i for i, w in enumerate(self.wnids)}

    def _dir(self, value, key: str, base: Path | None = None) -> Path:
        raw = Path(str(value)).expanduser()
        # ``base`` is already resolved against datasets.yaml: resolving ``base / raw`` again would
        # prefix the config file's folder twice whenever --config is a relative path into another folder
        path = base / raw if base is not None and not raw.is_absolute() else resolve_path(raw, self._config_file)
        if not path.is_dir():
            raise ConfigError(f"{'not a folder but a file' if path.exists() else 'folder does not exist'}: {path}", file=self._file, key=f"{self._key}.{key}", fix="correct the path (relative paths are relative to datasets.yaml)")
        return path

    def subsets(self) -> list[str]:
        return list(self._dirs)

    def class_mask(self, subset: str) -> np.ndarray | None:
        """Boolean mask over ``classes`` that predictions must be restricted to (the
        official 200 of ImageNet-A / -R, whatever the folders present), or None."""
        kind = self._kinds.get(subset)
        if kind not in MASKED:
            return None
        if subset not in self._masks:
            mask = np.zeros(len(self.classes), dtype=bool)
            mask[[self._index[w] for w in official_wnids(kind) if w in self._index]] = True
            self._masks[subset] = mask
        return self._masks[subset]

    def incomplete(self, subset: str) -> str | None:
        """Why an ImageNet-A / -R subset is not the whole official set (missing classes), or None."""
        kind = self._kinds.get(subset)
        if kind not in MASKED:
            return None
        self.samples(subset)
        return self._incomplete.get(subset)

    def _check_official(self, subset: str, kind: str, folder: Path, folders: list[str], with_images: set[str]) -> None:
        official = official_wnids(kind)
        allowed = set(official)
        extra = [w for w in folders if w not in allowed]
        if extra:
            raise ValueError(f"{self.name} {subset}: class folder '{extra[0]}' in {folder} is not one of the 200 {kind} classes "
                             f"(hendrycks' evaluation code). fix: remove it; {kind} holds only its 200 wnid folders")
        missing = [w for w in official if w not in with_images]
        unknown = [w for w in official if w not in self._index]
        if missing or unknown:
            parts = []
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                parts.append(f"{len(missing)} of its 200 classes have no images ({shown})")
            if unknown:
                parts.append(f"{len(unknown)} of the 200 are not among the dataset's classes and cannot be predicted")
            note = f"{kind} at {folder} is incomplete: " + "; ".join(parts) + ". Accuracy is over the 200-class problem on the images present."
            self._incomplete[subset] = note
            warnings.warn(note, stacklevel=3)

    def samples(self, subset: str) -> FileSource:
        if subset not in self._sources:
            if subset not in self._dirs:
                raise KeyError(f"dataset '{self.name}' has no subset '{subset}' (has {self.subsets()})")
            folder, kind = self._dirs[subset], self._kinds[subset]
            if kind == "ood":
                files = images_under(folder, self.extensions)
                labels = [-1] * len(files)
            elif kind == "imagenet-v2":
                files, labels = read_v2_tree(folder, self._index, self.extensions)
            else:
                files, labels, present = read_wnid_tree(folder, self._index, self.extensions, f"{self.name} {subset}")
                if kind in MASKED:
                    self._check_official(subset, kind, folder, present, {self.wnids[label] for label in labels})
            if not files:
                raise ValueError(f"no images under {folder} (extensions {', '.join(self.extensions)})")
            self._sources[subset] = FileSource(files, labels, folder)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            source = self.samples(subset)
            mask = self.class_mask(subset)
            h = hashlib.sha256(f"rbx-vlm-imagenet-v1\n{subset}\n{self._kinds[subset]}\n{'|'.join(self.classes)}\n".encode())
            if mask is not None:
                h.update(np.packbits(mask).tobytes())
                h.update((self.incomplete(subset) or "").encode())
            for path, label in zip(source.files, source.labels):
                stat = path.stat()
                h.update(f"{path.relative_to(source.root)}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
            self._fingerprints[subset] = h.hexdigest()[:16]
        return self._fingerprints[subset]


class ImageNetDataset(_Base):
    """``type: imagenet`` (see the module docstring)."""

    def __init__(self, name: str, options: dict, config_file: str | None = None) -> None:
        self._setup(name, options, config_file)
        root = self._dir(options["root"], "root")
        self.root = root
        test = self._dir(options.get("test", "val"), "test", root)
        wnids = [d.name for d in _class_dirs(test)]
        if not wnids:
            raise ConfigError(f"no class folders under {test}", file=self._file, key=f"{self._key}.test", fix="lay ImageNet val out as val/<wnid>/<image> (e.g. with the valprep.sh script)")
        self._set_classes(wnids)
        self._dirs["id"], self._kinds["id"] = test, "wnid"
        for role in ("train", "val"):
            if options.get(role):
                self._dirs[role], self._kinds[role] = self._dir(options[role], role, root), "wnid"
        ood = options.get("ood") or {}
        ood_root = self._dir(options["ood_root"], "ood_root") if options.get("ood_root") else None
        if isinstance(ood, list):
            ood = {str(n): None for n in ood}
        if not isinstance(ood, dict):
            raise ConfigError("'ood' must map OOD set names to folders, or list MOS names", file=self._file, key=f"{self._key}.ood", fix="write 'ood:' then '<name>: <folder>' lines, or 'ood: [iNaturalist, SUN, Places, Textures]' with 'ood_root:'")
        for ood_name, folder in ood.items():
            self._dirs[f"ood/{ood_name}"] = self._ood_dir(str(ood_name), folder, ood_root)
            self._kinds[f"ood/{ood_name}"] = "ood"
        dg = options.get("dg") or {}
        if not isinstance(dg, dict):
            raise ConfigError("'dg' must map shifted-ImageNet names to folders", file=self._file, key=f"{self._key}.dg", fix=f"keys among {', '.join(DG_TYPES)}")
        for kind, folder in dg.items():
            if kind not in DG_TYPES:
                raise ConfigError(f"unknown dg set '{kind}'", file=self._file, key=f"{self._key}.dg.{kind}", fix=f"use one of {', '.join(DG_TYPES)} (the key picks the reader)")
            self._dirs[f"dg/{kind}"], self._kinds[f"dg/{kind}"] = self._dir(folder, f"dg.{kind}"), kind
        self.provides = frozenset(
            ({"train_split"} if "train" in self._dirs else set()) | ({"val_split"} if "val" in self._dirs else set()) | ({"ood_subsets"} if ood else set())
        )

    def _ood_dir(self, ood_name: str, folder, ood_root: Path | None) -> Path:
        key = f"ood.{ood_name}"
        if folder is not None:
            return self._dir(folder, key, ood_root)
        if ood_root is None:
            raise ConfigError(f"OOD set '{ood_name}' has no folder", file=self._file, key=f"{self._key}.{key}", fix="give '<name>: <folder>' or set 'ood_root:'")
        for candidate in MOS_LAYOUTS.get(ood_name, (ood_name,)):
            if (ood_root / candidate).is_dir():
                return ood_root / candidate
        tried = ", ".join(str(ood_root / c) for c in MOS_LAYOUTS.get(ood_name, (ood_name,)))
        raise ConfigError(f"OOD set '{ood_name}' not found (tried {tried})", file=self._file, key=f"{self._key}.{key}", fix="extract the MOS archive under ood_root or give the folder explicitly")


class ShiftedImageNet(_Base):
    """A stand-alone shifted ImageNet over the 1000 standard classes: its one subset is ``id``
    (the dataset's test set, as the core contract wants every classification dataset to have)."""

    def __init__(self, kind: str, name: str, options: dict, config_file: str | None = None) -> None:
        self._setup(name, options, config_file)
        self._set_classes(standard_wnids())
        self._dirs["id"], self._kinds["id"] = self._dir(options["root"], "root"), kind
        self.provides = frozenset()


def build_imagenet(name: str, options: dict, config_file: str | None = None) -> ImageNetDataset:
    return ImageNetDataset(name, options, config_file)


def build_imagenet_v2(name: str, options: dict, config_file: str | None = None) -> ShiftedImageNet:
    return ShiftedImageNet("imagenet-v2", name, options, config_file)


def build_imagenet_sketch(name: str, options: dict, config_file: str | None = None) -> ShiftedImageNet:
    return ShiftedImageNet("imagenet-sketch", name, options, config_file)


def build_imagenet_a(name: str, options: dict, config_file: str | None = None) -> ShiftedImageNet:
    return ShiftedImageNet("imagenet-a", name, options, config_file)


def build_imagenet_r(name: str, options: dict, config_file: str | None = None) -> ShiftedImageNet:
    return ShiftedImageNet("imagenet-r", name, options, config_file)
