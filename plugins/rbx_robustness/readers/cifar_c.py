"""CIFAR-10-C / CIFAR-100-C reader (Hendrycks & Dietterich, ICLR 2019;
hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py``; RobustBench
``robustbench/data.py::load_corruptions_cifar``; ``docs/datasets.md#cifar-c``).

Format
------
``CIFAR-10-C.tar`` (Zenodo 2535967) / ``CIFAR-100-C.tar`` (Zenodo 3555552)
extract to a folder with one file per corruption plus the labels::

    <root>/<corruption>.npy   uint8 (50000, 32, 32, 3), HWC, RGB
    <root>/labels.npy         uint8 (50000,), the 10,000 test labels repeated 5 times

``root`` is the ``CIFAR-10-C`` (or ``CIFAR-100-C``) folder itself. The 19
corruptions are the 15 ImageNet-C test corruptions plus ``speckle_noise``,
``gaussian_blur``, ``spatter`` and ``saturate``. Rows are **severity-major**:
rows ``[10000·(s−1), 10000·s)`` are severity ``s``, each the test set in order.
Trees written by ``rbx datasets build-c --preset cifar`` have the same layout
with N source images instead of 10,000 (N = a fifth of ``labels.npy``).

Subsets ``c/<corruption>/<s>`` for ``s`` in 1..5. Sample id
``<corruption>/<s>/<i>`` with ``i`` the CIFAR test-set index (0..9999), so the
same ``i`` is the same source image across corruptions and severities.
Labels come from ``labels.npy``; the class list is CIFAR-10's or CIFAR-100's
fine labels (``num_classes`` option, otherwise 100 when a label ≥ 10 occurs or
the folder is named CIFAR-100-C, else 10). The ``datasets.yaml`` types always
pass ``num_classes`` (10 for ``cifar-c``, 100 for ``cifar100-c``): a label
outside it is an error naming ``labels.npy``, never a silent switch of classes.

Files are opened with ``np.load(mmap_mode="r", allow_pickle=False)``: one
32×32 image is copied per ``__getitem__``; nothing is loaded whole. Shapes and
dtypes are validated from the headers at construction, naming the file on a
mismatch. CIFAR-C is reported unnormalised (no AlexNet baseline, docs/metrics.md#cifar-c-and-cifar-p):
use ``mce(errors, baseline=None)``.
"""

from __future__ import annotations


import numpy as np
from PIL import Image

from rbx_robustness.readers._common import (
    DatasetLayoutError,
    check_options,
    fingerprint,
    index,
    provenance,
    require_dir,
    select,
    suggestion,
    unknown_subset,
)
from rbx_robustness.readers._npy import CIFAR10_CLASSES, CIFAR100_CLASSES, LazyArray, open_npy, sample_digest, spaced
from robustbench_x.api import Dataset, SampleSource
from rbx_robustness.tables import IMAGENET_C_EXTRA, IMAGENET_C_TEST, SEVERITIES

VERSION = "cifar-c-reader-v1"
CORRUPTIONS = IMAGENET_C_TEST + IMAGENET_C_EXTRA
#: Test-set size: rows per severity in the distributed files.
N_PER_SEVERITY = 10000
IMAGE_SHAPE = (32, 32, 3)

OPTION_KEYS = frozenset({"root", "corruptions", "num_classes"})
REQUIRED_KEYS = frozenset({"root"})

FIX_ROOT = (
    "download CIFAR-10-C.tar (Zenodo 2535967) or CIFAR-100-C.tar (Zenodo 3555552), extract it and set `root:` "
    "to the extracted CIFAR-10-C / CIFAR-100-C folder, the one holding labels.npy and <corruption>.npy"
)


class SeveritySource(SampleSource):
    """One severity of one corruption file: rows ``[start, start + n)``, read lazily."""

    def __init__(self, array: LazyArray, start: int, n: int, labels: np.ndarray, corruption: str, severity: int) -> None:
        self._array, self.start, self.n = array, start, n
        self.labels = labels
        self.corruption, self.severity = corruption, severity

    @property
    def ids(self) -> list[str]:
        return [f"{self.corruption}/{self.severity}/{i}" for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        i = index(i, self.n)
        pixels = np.array(self._array.array[self.start + i])  # copies one image out of the memory map
        return Image.fromarray(pixels), int(self.labels[i]), f"{self.corruption}/{self.severity}/{i}"


class CifarC(Dataset):
    """CIFAR-10-C or CIFAR-100-C as distributed (see the module docstring)."""

    task = "classification"
    provides = frozenset()

    def __init__(
        self,
        root,
        *,
        corruptions=None,
        num_classes: int | None = None,
        name: str = "cifar-10-c",
        n_per_severity: int | None = None,
    ) -> None:
        """``n_per_severity`` is the number of source images (10,000 for the distributed
        CIFAR-10/100-C); by default a fifth of ``labels.npy``'s length, so trees written by
        ``rbx datasets build-c --preset cifar`` from other images read too."""
        self.name = name
        self.root = require_dir(root, "CIFAR-C", FIX_ROOT)
        labels_path = self.root / "labels.npy"
        if not labels_path.is_file():
            nested = [p.name for p in self.root.iterdir() if p.is_dir() and (p / "labels.npy").is_file()]
            fix = f"set `root:` to '{self.root / nested[0]}'" if nested else FIX_ROOT
            raise DatasetLayoutError(f"'{labels_path}' does not exist", key="root", fix=fix)
        labels = open_npy(labels_path)
        if n_per_severity is None:
            n_per_severity = labels.shape[0] // len(SEVERITIES) if labels.ndim == 1 and labels.shape[0] % len(SEVERITIES) == 0 else N_PER_SEVERITY
        self.n = int(n_per_severity)
        total = self.n * len(SEVERITIES)
        if labels.shape != (total,) or labels.dtype.kind not in "iu":
            raise DatasetLayoutError(
                f"'{labels_path}' has dtype {labels.dtype} and shape {labels.shape}; expected integer labels of shape ({total},)",
                key="root",
                fix="use the labels.npy shipped in the same archive as the corruption files",
            )
        labels = np.asarray(labels, dtype=np.int64)
        first = labels[: self.n]
        if not all(np.array_equal(first, labels[k * self.n : (k + 1) * self.n]) for k in range(1, len(SEVERITIES))):
            raise DatasetLayoutError(
                f"'{labels_path}' is not the test labels repeated {len(SEVERITIES)} times (severity-major order)",
                key="root",
                fix="use the labels.npy shipped in the same archive as the corruption files",
            )
        if num_classes is None:
            num_classes = 100 if first.max() >= 10 or "cifar-100" in self.root.name.lower() else 10
        if num_classes not in (10, 100):
            raise DatasetLayoutError(f"num_classes must be 10 or 100, got {num_classes!r}", key="num_classes", fix="set 10 or 100")
        if first.min() < 0 or first.max() >= num_classes:
            raise DatasetLayoutError(
                f"'{labels_path}' holds labels in [{first.min()}, {first.max()}], outside [0, {num_classes})",
                key="root",  # the file under root is wrong, not a key the entry may not even have
                fix="use the labels.npy of the same archive; for CIFAR-100-C use `type: cifar100-c` (or `num_classes: 100`)",
            )
        self.labels = first
        self.classes = list(CIFAR10_CLASSES if num_classes == 10 else CIFAR100_CLASSES)

        present = []
        for f in sorted(self.root.glob("*.npy")):
            if f.stem == "labels":
                continue
            if f.stem not in CORRUPTIONS:
                if corruptions is not None:
                    continue  # an explicit selection ignores other files
                raise DatasetLayoutError(
                    f"'{f}' is not a CIFAR-C corruption file.{suggestion(f.stem, CORRUPTIONS)}",
                    key="root",
                    fix=f"rename or remove it, or list the wanted ones in `corruptions:`; corruptions: {', '.join(CORRUPTIONS)}",
                )
            present.append(f.stem)
        present = [c for c in CORRUPTIONS if c in present]
        if not present:
            raise DatasetLayoutError(f"no <corruption>.npy file in '{self.root}'", key="root", fix=FIX_ROOT)
        self.corruptions = select(corruptions, present, CORRUPTIONS, "corruption", "corruptions", f"'{self.root}'")
        self._arrays: dict[str, LazyArray] = {}
        for c in self.corruptions:
            path = self.root / f"{c}.npy"
            arr = open_npy(path)
            expected = (total, *IMAGE_SHAPE)
            if arr.shape != expected or arr.dtype != np.uint8:
                raise DatasetLayoutError(
                    f"'{path}' has dtype {arr.dtype} and shape {arr.shape}; expected uint8 {expected} "
                    "(5 severities × the test set, severity-major, HWC RGB)",
                    key="root",
                    fix="re-download the archive; the file is truncated or not a CIFAR-C corruption file",
                )
            self._arrays[c] = LazyArray(path)
        self._subset_names = [f"c/{c}/{s}" for c in self.corruptions for s in SEVERITIES]

    def subsets(self) -> list[str]:
        return list(self._subset_names)

    def samples(self, subset: str) -> SeveritySource:
        parts = subset.split("/")
        if subset not in self._subset_names:
            raise unknown_subset(self.name, subset, self._subset_names)
        corruption, severity = parts[1], int(parts[2])
        return SeveritySource(self._arrays[corruption], (severity - 1) * self.n, self.n, self.labels, corruption, severity)

    def fingerprint(self, subset: str) -> str:
        source = self.samples(subset)
        rows = spaced(source.start, source.start + source.n)
        digest = sample_digest(source._array.array, rows, source._array.path)
        return fingerprint(VERSION, subset, source.ids, source.labels, extra=digest + "\n".join(self.classes).encode() + provenance(self.root))


def build(name: str = "cifar-10-c", options: dict | None = None, config_file: str | None = None) -> CifarC:
    """Factory for ``datasets.yaml``: ``root`` (required), ``corruptions``, ``num_classes``."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (cifar-c)", config_file)
    return CifarC(opts["root"], corruptions=opts.get("corruptions"), num_classes=opts.get("num_classes"), name=name)
