"""``type: hgldv2``: H-GLDv2 hierarchical landmark retrieval from the GLDv2 images
and the files written by :func:`~rbx_retrieval.hgldv2.build_hgldv2`.

datasets.yaml::

    datasets:
      hgldv2:
        type: hgldv2
        root: /data/gldv2              # holds the image trees test/ and index/ (and train/)
        hierarchy_dir: /data/hgldv2    # `rbx datasets build hgldv2 --out` (manifest.json, *.parquet)
        split: all                     # optional: queries all | public | private (GLDv2 Usage)
        query_dir: test                # optional: query image folder under root (default test)
        gallery_dir: index             # optional: gallery image folder under root (default index)
        train: train                   # optional: the train image folder under root; adds the train subset
        label_space: imagenet-1k       # optional: pairs it with models of that label space (timm:...)

Relative paths are relative to datasets.yaml (``root``, ``hierarchy_dir``) or
to ``root`` (the image folders).

Subsets (SupRank ``gldv2.py`` protocol, ``docs/datasets.md#hgldv2``, ``docs/metrics.md#retrieval``):

* ``query``: the GLDv2 **test** images of ``query.parquet``: non-ignored rows
  of ``retrieval_solution_v2.1.csv``, labelled with the landmark of their first
  listed index image; ``split: public`` / ``private`` keeps only that
  ``Usage`` (GLDv2 reports the two separately), ``all`` keeps both;
* ``gallery``: the GLDv2 **index** images of ``index.parquet``;
* ``train``, only with the ``train`` option: the GLDv2 **train** images of
  ``train.parquet`` (``train_clean.csv``), for methods that fit on the
  backbone's features of a train split (the rank-loss heads). The entry then
  provides ``train_split``.

Rows whose landmark has no hierarchy are left out (SupRank ``remove_nan=True``,
as :func:`~rbx_retrieval.hgldv2.load_hgldv2_labels`). Order = the Parquet
files' order (the GLDv2 CSVs' order). Sample id = the 16-hex GLDv2 image id;
sample label = ``landmark_id``; ``hierarchy(subset)`` = ``(N, 3)`` int64
``[landmark_id, supercategory_id, natural_or_human_made_id]`` (column 0
finest). Id spaces: query and gallery share every column (index landmark
ids). The train split's column 0 is a **train** landmark id, a different id
space from the index ids (GLDv2 README), so a train label says nothing about a
gallery label of the same number; columns 1 and 2 are shared by all three
subsets (the builder numbers super-categories over train and index
together). A method may compare train labels only with train labels.

Images: ``<root>/<query_dir|gallery_dir|train>/<a>/<b>/<c>/<id>.jpg`` with
``a, b, c`` the first three characters of the id (``docs/datasets.md#hgldv2``),
decoded lazily with Pillow to RGB. The fingerprint hashes the hierarchy files'
content hash (from the manifest), the selected ids and labels, and every
image's size and modification time (not its bytes); it is also where missing
images are found, before any forward pass, with an error naming them.

Models: evaluate H-GLDv2 with a pretrained backbone (e.g. ``--models
timm:resnet50`` with ``label_space: imagenet-1k`` in the entry). The type is
declared ``pretrained_only``: a model that trains on the evaluated dataset's
train split (the built-in CNN) is refused before any work, with or without
the ``train`` option.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from robustbench_x.api import Dataset, SampleSource, resolve_path
from robustbench_x.errors import ConfigError
from robustbench_x.sources import eight_bit

__all__ = ["HGLDv2Dataset", "HGLDv2Source", "build", "image_path", "OPTION_KEYS", "REQUIRED_KEYS"]

VERSION = "hgldv2-dataset-v1"
OPTION_KEYS = frozenset({"root", "hierarchy_dir", "split", "query_dir", "gallery_dir", "train", "label_space"})
REQUIRED_KEYS = frozenset({"root", "hierarchy_dir"})
SPLITS = {"all": None, "public": "Public", "private": "Private"}
#: subset -> (parquet split written by the builder, default image folder, folder option)
SUBSETS = {"query": ("query", "test", "query_dir"), "gallery": ("index", "index", "gallery_dir")}
#: The opt-in subset: present only when the entry names its folder.
TRAIN = ("train", "train", "train")
LEVEL_NAMES = ("landmark", "supercategory", "natural_or_human_made")


def image_path(folder: Path, image_id: str) -> Path:
    """``<folder>/<a>/<b>/<c>/<id>.jpg`` (GLDv2 layout)."""
    return Path(folder) / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


class HGLDv2Source(SampleSource):
    def __init__(self, folder: Path, ids: list[str], labels: np.ndarray) -> None:
        self.folder, self.ids, self.labels = Path(folder), ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, i: int) -> Path:
        return image_path(self.folder, self.ids[i])

    def __getitem__(self, i: int):
        path = self.path(i)
        try:
            with Image.open(path) as img:
                img.load()
                image = eight_bit(img).convert("RGB") if img.mode != "RGB" else img.copy()
        except FileNotFoundError:
            raise ValueError(
                f"GLDv2 image not found: {path}. fix: extract the GLDv2 image shards so that images sit at "
                f"{self.folder}/<a>/<b>/<c>/<id>.jpg"
            ) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot decode image {path}: {exc}. fix: re-download or replace the file") from None
        return image, int(self.labels[i]), self.ids[i]


class HGLDv2Dataset(Dataset):
    task = "retrieval"
    provides = frozenset({"hierarchy"})
    level_names = LEVEL_NAMES

    def __init__(self, name: str, options: dict, config_file: str | None = None) -> None:
        self.name = name
        file = config_file or "datasets.yaml"
        key = f"datasets.{name}"
        for option in sorted(REQUIRED_KEYS - set(options)):
            raise ConfigError(f"missing required key '{option}' for type 'hgldv2'", file=file, key=f"{key}.{option}", fix=f"add '{option}: ...' to the entry")
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise ConfigError(f"unknown key '{unknown[0]}' for type 'hgldv2'", file=file, key=f"{key}.{unknown[0]}", fix=f"allowed keys: {', '.join(sorted(OPTION_KEYS))}")
        self.root = resolve_path(str(options["root"]), config_file)
        if not self.root.is_dir():
            raise ConfigError(f"GLDv2 image root {'is a file, not a folder' if self.root.exists() else 'does not exist'}: {self.root}", file=file, key=f"{key}.root", fix="point 'root' at the folder holding the test/ and index/ image trees")
        self.subset_files = dict(SUBSETS)
        if options.get("train"):
            self.subset_files["train"] = TRAIN
        self.hierarchy_dir = resolve_path(str(options["hierarchy_dir"]), config_file)
        self.manifest = self._read_manifest(file, f"{key}.hierarchy_dir")
        split = str(options.get("split", "all")).strip().lower()
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{options.get('split')}'", file=file, key=f"{key}.split", fix="use all, public or private (GLDv2 retrieval Usage)")
        self.split = split
        self.provides = frozenset({"hierarchy"} | ({"train_split"} if "train" in self.subset_files else set()))
        self.folders: dict[str, Path] = {}
        for subset, (_, default, option) in self.subset_files.items():
            rel = str(options.get(option, default))
            folder = Path(rel) if Path(rel).is_absolute() else self.root / rel
            if not folder.is_dir():
                raise ConfigError(f"{subset} image folder does not exist: {folder}", file=file, key=f"{key}.{option}", fix=f"extract the GLDv2 {default} images there or set '{option}' (relative to root {self.root})")
            self.folders[subset] = folder
        self._fingerprints: dict[str, str] = {}
        self._tables: dict[str, tuple[list[str], np.ndarray]] = {}

    # ------------------------------------------------------------------ files
    def _read_manifest(self, file: str, key: str) -> dict:
        from .build import MANIFEST_FORMAT, SCHEMA_VERSION

        fix = "run `rbx datasets build hgldv2 --gldv2-root DIR --out DIR` and point 'hierarchy_dir' at its --out"
        if not self.hierarchy_dir.is_dir():
            raise ConfigError(f"H-GLDv2 hierarchy folder does not exist: {self.hierarchy_dir}", file=file, key=key, fix=fix)
        path = self.hierarchy_dir / "manifest.json"
        if not path.is_file():
            raise ConfigError(f"{path} not found: the H-GLDv2 build did not complete there", file=file, key=key, fix=fix)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", file=file, key=key, fix=fix) from None
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("schema") != SCHEMA_VERSION:
            raise ConfigError(
                f"{path} has format {manifest.get('format')!r} / schema {manifest.get('schema')!r}; this reader needs {MANIFEST_FORMAT!r} / {SCHEMA_VERSION!r}",
                file=file, key=key, fix="rebuild the hierarchy files with this version: " + fix,
            )
        for split in [parquet for parquet, _, _ in self.subset_files.values()]:
            if not (self.hierarchy_dir / f"{split}.parquet").is_file():
                raise ConfigError(f"{self.hierarchy_dir / f'{split}.parquet'} not found", file=file, key=key, fix=fix)
        return manifest

    def _table(self, subset: str) -> tuple[list[str], np.ndarray]:
        """``(ids, (N, 3) labels)`` of a subset, read once (train only when asked: 1.58 M rows)."""
        if subset not in self._tables:
            import pyarrow.parquet as pq

            from .build import load_hgldv2_labels

            ids, labels = load_hgldv2_labels(self.hierarchy_dir, self.subset_files[subset][0])
            ids = [str(i) for i in ids]
            usage = SPLITS[self.split]
            if subset == "query" and usage is not None:
                table = pq.read_table(self.hierarchy_dir / "query.parquet", columns=["id", "usage"]).to_pydict()
                of = dict(zip(table["id"], table["usage"]))
                keep = np.array([of.get(i) == usage for i in ids], dtype=bool)
                ids = [i for i, k in zip(ids, keep) if k]
                labels = labels[keep]
            self._tables[subset] = (ids, np.ascontiguousarray(labels, dtype=np.int64))
        return self._tables[subset]

    # ------------------------------------------------------------------ Dataset
    @property
    def classes(self) -> list[str]:  # type: ignore[override]
        """The landmarks (index id space) present in the gallery or the queries (train ids are another space)."""
        ids = np.unique(np.concatenate([self._table(s)[1][:, 0] for s in SUBSETS]))
        return [str(i) for i in ids]

    def subsets(self) -> list[str]:
        return list(self.subset_files)

    def _check(self, subset: str) -> None:
        if subset not in self.subset_files:
            hint = {
                "train": " To fit methods on a train split's features, add 'train: train' (the GLDv2 train image folder "
                "under root) to the entry; evaluate H-GLDv2 with a pretrained model (e.g. --models timm:resnet50 and "
                "'label_space: imagenet-1k' in the entry).",
                "val": " GLDv2 has no validation split.",
            }.get(subset, "")
            raise KeyError(f"hgldv2 dataset '{self.name}' has no subset {subset!r}; it has {self.subsets()}.{hint}")

    def samples(self, subset: str) -> HGLDv2Source:
        self._check(subset)
        ids, labels = self._table(subset)
        return HGLDv2Source(self.folders[subset], ids, labels[:, 0])

    def hierarchy(self, subset: str) -> np.ndarray:
        """``(N, 3)`` int64 ``[landmark_id, supercategory_id, natural_or_human_made_id]`` in sample order
        (``train``: column 0 in the train landmark id space, module docstring)."""
        self._check(subset)
        return self._table(subset)[1].copy()

    def fingerprint(self, subset: str) -> str:
        self._check(subset)
        if subset not in self._fingerprints:
            ids, labels = self._table(subset)
            split = self.subset_files[subset][0]
            h = hashlib.sha256(VERSION.encode())
            # `split:` filters the queries only; leaving it out of the train key keeps the costly train features cached across it
            usage = None if subset == "train" else self.split
            h.update(json.dumps([subset, usage, self.manifest.get("outputs", {}).get(f"{split}.parquet", {}).get("sha256")]).encode())
            h.update(np.ascontiguousarray(labels).tobytes())
            missing: list[Path] = []
            folder = self.folders[subset]
            for image_id in ids:
                path = image_path(folder, image_id)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    missing.append(path)
                    continue
                h.update(f"{image_id}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            if missing:
                shown = ", ".join(str(p) for p in missing[:3])
                raise ValueError(
                    f"hgldv2 dataset '{self.name}': {len(missing)} of {len(ids)} {subset} images are missing, e.g. {shown}. "
                    f"fix: extract the GLDv2 image shards under {folder} (<a>/<b>/<c>/<id>.jpg)"
                    + (" or remove 'train' from the entry (the train subset is optional)" if subset == "train" else "")
                )
            self._fingerprints[subset] = h.hexdigest()[:16]
        return self._fingerprints[subset]


def build(name: str, options: dict | None = None, config_file: str | None = None) -> HGLDv2Dataset:
    return HGLDv2Dataset(name, dict(options or {}), config_file)
