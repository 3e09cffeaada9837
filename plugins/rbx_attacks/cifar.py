"""CIFAR-10 and CIFAR-100 from their binary releases (Krizhevsky, "Learning
Multiple Layers of Features from Tiny Images", 2009; www.cs.toronto.edu/~kriz/cifar.html,
``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz``), the datasets of
RobustBench's CIFAR protocol (:mod:`rbx_attacks.protocol`).

Record layout: CIFAR-10 one label byte then 3,072 pixel bytes (1,024 red,
1,024 green, 1,024 blue, rows top to bottom); CIFAR-100 a coarse and a fine
label byte, then the same pixels (the fine label is the class, as in
RobustBench's ``load_cifar100``). Files: CIFAR-10 ``test_batch.bin`` (the
``id`` subset, 10,000 images) and ``data_batch_1.bin`` … ``data_batch_5.bin``
(``train``); CIFAR-100 ``test.bin`` and ``train.bin``; all are required (the
built-in CNN trains on the train split). ``root`` is the folder
holding them (``cifar-10-batches-bin``, ``cifar-100-binary``) or its parent.
The binary release, not the Python one, because the Python release is pickled.
Sample ids are ``<subset>/<index>`` (``id/00042``: the 43rd test image).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from robustbench_x.api import Dataset, SampleSource, resolve_path
from robustbench_x.errors import ConfigError

_LAYOUT = {
    "cifar10": {"folder": "cifar-10-batches-bin", "id": ["test_batch.bin"], "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                "labels": 1, "names": "batches.meta.txt", "classes": 10, "archive": "cifar-10-binary.tar.gz"},
    "cifar100": {"folder": "cifar-100-binary", "id": ["test.bin"], "train": ["train.bin"], "labels": 2, "names": "fine_label_names.txt",
                 "classes": 100, "archive": "cifar-100-binary.tar.gz"},
}
_PIXELS = 3072


class _Records(SampleSource):
    def __init__(self, files: list[Path], n_labels: int, subset: str) -> None:
        size = n_labels + _PIXELS
        arrays = []
        for f in files:
            raw = np.memmap(f, dtype=np.uint8, mode="r")
            if raw.size % size:
                raise ValueError(f"{f}: {raw.size} bytes is not a whole number of {size}-byte CIFAR records")
            arrays.append(raw.reshape(-1, size))
        self.records = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        self.n_labels, self.subset = n_labels, subset
        self.labels = self.records[:, n_labels - 1].astype(np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        from PIL import Image

        pixels = np.asarray(self.records[i, self.n_labels:]).reshape(3, 32, 32).transpose(1, 2, 0)
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB"), int(self.labels[i]), f"{self.subset}/{i:05d}"


class CifarDataset(Dataset):
    def __init__(self, name: str, kind: str, root: Path, file: str | None) -> None:
        layout = _LAYOUT[kind]
        if not root.is_dir():
            raise ConfigError(f"dataset root {'is a file, not a folder' if root.exists() else 'does not exist'}: {root}", file=file,
                              key=f"datasets.{name}.root", fix=f"point root at the folder extracted from {layout['archive']} (the binary release)")
        if (root / layout["folder"]).is_dir():
            root = root / layout["folder"]
        self.name, self.root, self._layout = name, root, layout
        missing = [f for f in layout["id"] + layout["train"] if not (root / f).is_file()]
        if missing:
            raise ConfigError(f"{root / missing[0]} does not exist", file=file, key=f"datasets.{name}.root",
                              fix=f"extract {layout['archive']} (the binary release) and point root at the folder holding {missing[0]}")
        self._subsets = ["id", "train"]
        names = root / layout["names"]
        self.classes = [c for c in names.read_text().split() if c] if names.is_file() else [str(i) for i in range(layout["classes"])]
        self.provides = frozenset({"attack_protocol", "train_split"})
        self._sources: dict[str, _Records] = {}
        for subset in self._subsets:
            self._check(subset, file)

    def _check(self, subset: str, file: str | None) -> None:
        """A damaged file or a label byte outside the classes stops the run before any work
        (a label of 12 in CIFAR-10 scored as a wrong prediction, silently)."""
        key, fix = f"datasets.{self.name}.root", f"re-extract {self._layout['archive']} (the binary release)"
        try:
            source = self.samples(subset)
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=key, fix=fix) from None
        n = self._layout["classes"]
        bad = np.flatnonzero(source.labels >= n)
        if bad.size:
            i = int(bad[0])
            sizes = np.cumsum([len(np.memmap(self.root / f, dtype=np.uint8, mode="r")) // (source.n_labels + _PIXELS) for f in self._layout[subset]])
            k = int(np.searchsorted(sizes, i, side="right"))
            where = self.root / self._layout[subset][k]
            raise ConfigError(f"{where}: record {i - (int(sizes[k - 1]) if k else 0)} has label {int(source.labels[i])}, outside [0, {n}) "
                              f"({bad.size} such record(s)); this is not the {self._layout['archive']} release", file=file, key=key, fix=fix)

    def subsets(self) -> list[str]:
        return list(self._subsets)

    def samples(self, subset: str) -> _Records:
        if subset not in self._subsets:
            raise KeyError(f"dataset '{self.name}' has no subset '{subset}' (it has {', '.join(self._subsets)})")
        if subset not in self._sources:
            self._sources[subset] = _Records([self.root / f for f in self._layout[subset]], self._layout["labels"], subset)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        h = hashlib.sha256(f"cifar-binary-v1\n{subset}\n".encode())
        for f in self._layout[subset]:
            h.update(hashlib.sha256((self.root / f).read_bytes()).digest())
        return h.hexdigest()[:16]


def build_cifar10(name: str, options: dict, config_file: str | None = None) -> CifarDataset:
    return CifarDataset(name, "cifar10", resolve_path(options["root"], config_file), config_file)


def build_cifar100(name: str, options: dict, config_file: str | None = None) -> CifarDataset:
    return CifarDataset(name, "cifar100", resolve_path(options["root"], config_file), config_file)
