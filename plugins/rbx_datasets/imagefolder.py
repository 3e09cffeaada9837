"""``type: imagefolder``: datasets laid out as ``<root>/<split>/<class>/<image>``.

Roles come from datasets.yaml::

    datasets:
      my-cifar10:
        type: imagefolder
        root: /data/cifar10          # relative paths are relative to datasets.yaml
        train: train                 # optional: enables methods that fit on train
        val: val                     # optional: temperature scaling, ReAct threshold
        test: test                   # required: the in-distribution test set ("id")
        ood:                         # optional: named OOD sets (any folder of images,
          svhn: /data/svhn/test      #   searched recursively; labels are ignored)
          textures: /data/dtd/images
        label_space: cifar10         # optional: pairs the dataset with models of that label space

Classes are the sorted sub-folder names of the test split (or ``classes:``);
train/val must use the same names. Images are decoded lazily with Pillow; a
file that cannot be decoded raises an error naming the file. The fingerprint
hashes relative paths, sizes and modification times (not the bytes), which is
cheap for millions of files and changes whenever a file does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from robustbench_x.api import Dataset, resolve_path
from robustbench_x.sources import FileSource
from robustbench_x.errors import ConfigError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")




def _images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."))


class ImageFolderDataset(Dataset):
    task = "classification"

    def __init__(self, name: str, options: dict, config_file: str | None = None) -> None:
        self.name = name
        file = config_file or "datasets.yaml"
        key = f"datasets.{name}"
        self.root = resolve_path(options["root"], config_file)
        if not self.root.is_dir():
            what = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise ConfigError(f"dataset root {what}: {self.root}", file=file, key=f"{key}.root", fix="point 'root' at the folder that holds the split folders")
        self.extensions = tuple(e.lower() for e in options.get("extensions", EXTENSIONS))
        splits = {"id": options["test"]}
        for role in ("train", "val"):
            if options.get(role):
                splits[role] = options[role]
        self._dirs: dict[str, Path] = {}
        for role, rel in splits.items():
            folder = resolve_path(str(Path(self.root) / rel) if not Path(str(rel)).is_absolute() else rel, None)
            if not folder.is_dir():
                yaml_key = "test" if role == "id" else role
                raise ConfigError(f"split folder does not exist: {folder}", file=file, key=f"{key}.{yaml_key}", fix=f"create it or correct '{yaml_key}' (relative to root {self.root})")
            self._dirs[role] = folder
        ood = options.get("ood") or {}
        if not isinstance(ood, dict):
            raise ConfigError("'ood' must map OOD set names to folders", file=file, key=f"{key}.ood", fix="write 'ood:' then indented '<name>: <folder>' lines")
        for ood_name, folder in ood.items():
            path = resolve_path(folder, config_file)
            if not path.is_dir():
                raise ConfigError(f"OOD folder does not exist: {path}", file=file, key=f"{key}.ood.{ood_name}", fix="point it at a folder of images")
            self._dirs[f"ood/{ood_name}"] = path
        classes = options.get("classes") or sorted(p.name for p in self._dirs["id"].iterdir() if p.is_dir())
        if not classes:
            raise ConfigError(f"no class folders under {self._dirs['id']}", file=file, key=f"{key}.test", fix="lay the split out as <split>/<class>/<image>")
        if not options.get("classes") and set(classes) <= SPLIT_NAMES:
            test = self._dirs["id"]
            # in the entry's own terms: a relative root is relative to datasets.yaml, not to the cwd
            written = str(options["test"]) if Path(str(options["test"])).is_absolute() else os.path.normpath(Path(str(options["root"])) / str(options["test"]))
            layout = ", ".join(f"{role}: {name}" for role, name in (("test", "test"), ("train", "train"), ("val", "val")) if name in classes)
            raise ConfigError(
                f"the class folders of the test split {test} are {', '.join(classes)}: split folders, one level too high",
                file=file, key=f"{key}.test", fix=f"set `root: {written}` with {layout or 'its split folders'} (the layout is <root>/<split>/<class>/<image>)",
            )
        _check_distinct(self._dirs, file, key)
        self.classes = list(classes)
        self.provides = frozenset({"train_split"} if "train" in self._dirs else set()) | ({"val_split"} if "val" in self._dirs else set()) | ({"ood_subsets"} if ood else set())
        self._sources: dict[str, FileSource] = {}
        self._fingerprints: dict[str, str] = {}

    def subsets(self) -> list[str]:
        return list(self._dirs)

    def samples(self, subset: str) -> FileSource:
        if subset not in self._sources:
            folder = self._dirs[subset]
            if subset.startswith("ood/"):
                files = _images(folder, self.extensions)
                labels = [-1] * len(files)
            else:
                index = {c: i for i, c in enumerate(self.classes)}
                files, labels = [], []
                for cls_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                    if cls_dir.name not in index:
                        raise ValueError(f"{cls_dir}: class '{cls_dir.name}' is not among the test split's classes {self.classes[:5]}... fix: use the same class folders in every split")
                    found = _images(cls_dir, self.extensions)
                    files += found
                    labels += [index[cls_dir.name]] * len(found)
            if not files:
                raise ValueError(f"no images under {folder} (extensions {', '.join(self.extensions)})")
            self._sources[subset] = FileSource(files, labels, folder)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            self._fingerprints[subset] = self._hash(subset)
        return self._fingerprints[subset]

    def _hash(self, subset: str) -> str:
        source = self.samples(subset)
        h = hashlib.sha256(f"imagefolder-v1\n{subset}\n{','.join(self.classes)}".encode())
        for path, label in zip(source.files, source.labels):
            stat = path.stat()
            h.update(f"{path.relative_to(source.root)}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
        return h.hexdigest()[:16]


#: folder names that are splits, not classes: a test split whose class folders are all among them is one level too high
SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})


def _yaml_key(role: str) -> str:
    return "test" if role == "id" else role.replace("/", ".")


def _check_distinct(dirs: dict[str, Path], file: str, key: str) -> None:
    """One folder serving two roles (train and test, or an OOD set and the test split)
    scores a model on images it was fitted on, or calls in-distribution images OOD."""
    seen: list[tuple[str, Path]] = []
    for role, folder in dirs.items():
        real = folder.resolve()
        for other, other_real in seen:
            if real == other_real or other_real in real.parents or real in other_real.parents:
                how = "the same folder" if real == other_real else "nested folders"
                raise ConfigError(
                    f"'{key}.{_yaml_key(other)}' and '{key}.{_yaml_key(role)}' are {how} ({other_real}"
                    + (f", {real})" if real != other_real else ")") + ": their images would serve both roles",
                    file=file, key=f"{key}.{_yaml_key(role)}", fix=f"give '{_yaml_key(role)}' its own folder, or remove it",
                )
        seen.append((role, real))


def build(name: str, options: dict, config_file: str | None = None) -> ImageFolderDataset:
    return ImageFolderDataset(name, options, config_file)
