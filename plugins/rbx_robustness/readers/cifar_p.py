"""CIFAR-10-P / CIFAR-100-P reader (Hendrycks & Dietterich, ICLR 2019;
hendrycks/robustness ``ImageNet-P/create_p/make_cifar_p.py`` and
``ImageNet-P/cifar-p-eval.py``; ``docs/datasets.md#cifar-p``).

Format
------
One file per perturbation (Google Drive only)::

    <root>/<perturbation>.npy   uint8 (10000, T, 32, 32, 3), HWC, RGB

one sequence of ``T`` frames per CIFAR test image, in test-set order
(``make_cifar_p.py`` iterates ``test_data`` in order). ``T`` is read from the
file: gaussian_noise has 31 frames; ``make_cifar_p.py`` also builds 21-frame
motion_blur and 16-frame translate sequences, so no length is assumed.
Noise sequences start with the clean image. The evaluation list
(``CIFAR_P_TEST``) uses spatter instead of snow.

Labels: the distribution has **no labels file** and ``cifar-p-eval.py`` uses
random ``dummy_targets`` (the metrics ignore labels), so samples are labelled
``-1`` unless the ``labels`` option names a ``.npy`` of the test labels: either
``(10000,)`` or a CIFAR-C ``labels.npy`` ``(50000,)`` (the test labels repeated
5 times; the first 10,000 are used after checking the repetition). That the
CIFAR-C labels are in the same test-set order is [INFERRED] from both
generation scripts iterating the torchvision test set in order.

Views: :meth:`CifarP.sequences` yields ``(frames, label, sequence_id)`` with
``sequence_id = <perturbation>/<i>`` (``i`` the test index); as a Dataset,
subset ``p/<perturbation>`` has one sample per frame, sequence-major, id
``<sequence_id>#<frame>`` (0-based), so logits reshape to ``(10000, T, C)``
for ``flip_probability`` / ``ut5d``. Files are memory-mapped
(``mmap_mode="r"``, ``allow_pickle=False``); one frame is copied per access.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from rbx_robustness.readers._common import (
    DatasetLayoutError,
    check_options,
    fingerprint,
    index,
    require_dir,
    select,
    suggestion,
    unknown_subset,
)
from rbx_robustness.readers._npy import CIFAR10_CLASSES, CIFAR100_CLASSES, LazyArray, open_npy, sample_digest, spaced
from rbx_robustness.readers.imagenet_p import DIFFICULTY_FOLDERS, PERTURBATIONS
from robustbench_x.api import Dataset, SampleSource

VERSION = "cifar-p-reader-v1"
KNOWN = PERTURBATIONS + DIFFICULTY_FOLDERS
N_SEQUENCES = 10000
FRAME_SHAPE = (32, 32, 3)

OPTION_KEYS = frozenset({"root", "labels", "perturbations", "num_classes"})
REQUIRED_KEYS = frozenset({"root"})

FIX_ROOT = (
    "download CIFAR-10-P / CIFAR-100-P (Google Drive links in the hendrycks/robustness README), extract it and "
    "set `root:` to the folder holding <perturbation>.npy (e.g. gaussian_noise.npy)"
)


class NpySequenceSource:
    """Sequences of one perturbation file: ``source[k] -> (frames, label, sequence_id)``."""

    def __init__(self, perturbation: str, array: LazyArray, n: int, length: int, labels: np.ndarray) -> None:
        self.perturbation, self._array, self.n, self.length, self.labels = perturbation, array, n, length, labels

    @property
    def ids(self) -> list[str]:
        return [f"{self.perturbation}/{k}" for k in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        k = index(k, self.n)
        seq = np.array(self._array.array[k])  # (T, 32, 32, 3), one sequence copied
        return [Image.fromarray(f) for f in seq], int(self.labels[k]), f"{self.perturbation}/{k}"

    def __iter__(self) -> Iterator[tuple[list, int, str]]:
        for k in range(self.n):
            yield self[k]


class NpyFrameSource(SampleSource):
    """Frames of all sequences, sequence-major; id ``<perturbation>/<k>#<frame>``."""

    def __init__(self, sequences: NpySequenceSource) -> None:
        self.sequences = sequences
        self.length = sequences.length

    def __len__(self) -> int:
        return self.sequences.n * self.length

    def __getitem__(self, i: int):
        i = index(i, len(self))
        k, j = divmod(i, self.length)
        frame = np.array(self.sequences._array.array[k, j])
        return Image.fromarray(frame), int(self.sequences.labels[k]), f"{self.sequences.perturbation}/{k}#{j}"

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(self.sequences.labels, self.length)


class CifarP(Dataset):
    """CIFAR-10-P or CIFAR-100-P as distributed (see the module docstring)."""

    task = "classification"
    provides = frozenset()

    def __init__(
        self,
        root,
        *,
        labels=None,
        perturbations=None,
        num_classes: int | None = None,
        name: str = "cifar-10-p",
        n_sequences: int = N_SEQUENCES,
    ) -> None:
        """``n_sequences`` is the test-set size (10,000; change it only for synthetic test files)."""
        self.name = name
        self.root = require_dir(root, "CIFAR-P", FIX_ROOT)
        self.n = int(n_sequences)
        present = []
        for f in sorted(self.root.glob("*.npy")):
            if f.stem not in KNOWN:
                if perturbations is not None or f.stem == "labels":
                    continue
                raise DatasetLayoutError(
                    f"'{f}' is not a CIFAR-P perturbation file.{suggestion(f.stem, KNOWN)}",
                    key="root",
                    fix=f"rename or remove it, or list the wanted ones in `perturbations:`; perturbations: {', '.join(PERTURBATIONS)}",
                )
            present.append(f.stem)
        present = [p for p in KNOWN if p in present]
        if not present:
            raise DatasetLayoutError(f"no <perturbation>.npy file in '{self.root}'", key="root", fix=FIX_ROOT)
        self.perturbations = select(perturbations, present, KNOWN, "perturbation", "perturbations", f"'{self.root}'")

        self.labels = self._labels(labels)
        known_labels = self.labels[self.labels >= 0]
        if num_classes is None:
            big = (known_labels.size and known_labels.max() >= 10) or "cifar-100" in self.root.name.lower()
            num_classes = 100 if big else 10
        if num_classes not in (10, 100):
            raise DatasetLayoutError(f"num_classes must be 10 or 100, got {num_classes!r}", key="num_classes", fix="set 10 or 100")
        if known_labels.size and known_labels.max() >= num_classes:
            raise DatasetLayoutError(
                f"'{Path(labels).expanduser()}' holds labels up to {known_labels.max()}, outside [0, {num_classes})", key="labels",
                fix="give the test labels of the same CIFAR; for CIFAR-100-P use `type: cifar100-p` (or `num_classes: 100`)",
            )
        self.classes = list(CIFAR10_CLASSES if num_classes == 10 else CIFAR100_CLASSES)

        self._sources: dict[str, NpySequenceSource] = {}
        for p in self.perturbations:
            path = self.root / f"{p}.npy"
            arr = open_npy(path)
            if arr.ndim != 5 or arr.shape[0] != self.n or arr.shape[2:] != FRAME_SHAPE or arr.dtype != np.uint8 or arr.shape[1] < 2:
                raise DatasetLayoutError(
                    f"'{path}' has dtype {arr.dtype} and shape {arr.shape}; expected uint8 ({self.n}, T, 32, 32, 3) with T ≥ 2",
                    key="root",
                    fix="re-download the file; it is truncated or not a CIFAR-P sequence file",
                )
            self._sources[p] = NpySequenceSource(p, LazyArray(path), self.n, int(arr.shape[1]), self.labels)

    def _labels(self, labels) -> np.ndarray:
        if labels is None:
            return np.full(self.n, -1, dtype=np.int64)
        path = Path(labels).expanduser()
        if not path.is_file():
            raise DatasetLayoutError(
                f"labels file '{path}' does not exist", key="labels", fix="give a .npy of the test labels, e.g. CIFAR-10-C/labels.npy"
            )
        arr = open_npy(path)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.shape[0] % self.n or arr.shape[0] // self.n not in (1, 5):
            raise DatasetLayoutError(
                f"'{path}' has dtype {arr.dtype} and shape {arr.shape}; expected integer labels of shape ({self.n},) "
                f"or ({5 * self.n},) (a CIFAR-C labels.npy)",
                key="labels",
                fix="give the CIFAR test labels in test-set order",
            )
        arr = np.asarray(arr, dtype=np.int64)
        first = arr[: self.n]
        for k in range(1, arr.shape[0] // self.n):
            if not np.array_equal(first, arr[k * self.n : (k + 1) * self.n]):
                raise DatasetLayoutError(
                    f"'{path}' is not the test labels repeated {arr.shape[0] // self.n} times",
                    key="labels",
                    fix="give a CIFAR-C labels.npy or a (10000,) array of test labels",
                )
        if first.min() < 0:
            raise DatasetLayoutError(f"'{path}' holds negative labels", key="labels", fix="give class indices")
        return first

    def sequence_source(self, perturbation: str) -> NpySequenceSource:
        if perturbation not in self._sources:
            raise KeyError(
                f"{self.name} has no perturbation {perturbation!r}.{suggestion(perturbation, self.perturbations)} It has {self.perturbations}"
            )
        return self._sources[perturbation]

    def sequence_length(self, perturbation: str) -> int:
        """Frames per sequence of ``perturbation``, from the file's shape."""
        return self.sequence_source(perturbation).length

    def sequences(self, perturbation: str) -> Iterator[tuple[list, int, str]]:
        """Yield ``(frames, label, sequence_id)`` for every sequence of ``perturbation``."""
        yield from self.sequence_source(perturbation)

    def subsets(self) -> list[str]:
        return [f"p/{p}" for p in self.perturbations]

    def samples(self, subset: str) -> NpyFrameSource:
        if not subset.startswith("p/") or subset[2:] not in self._sources:
            raise unknown_subset(self.name, subset, self.subsets())
        return NpyFrameSource(self._sources[subset[2:]])

    def fingerprint(self, subset: str) -> str:
        seqs = self.samples(subset).sequences
        digest = sample_digest(seqs._array.array, spaced(0, seqs.n), seqs._array.path)
        return fingerprint(VERSION, subset, seqs.ids, seqs.labels, extra=digest + "\n".join(self.classes).encode())


def build(name: str = "cifar-10-p", options: dict | None = None, config_file: str | None = None) -> CifarP:
    """Factory for ``datasets.yaml``: ``root`` (required), ``labels``, ``perturbations``, ``num_classes``."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (cifar-p)", config_file)
    return CifarP(
        opts["root"],
        labels=opts.get("labels"),
        perturbations=opts.get("perturbations"),
        num_classes=opts.get("num_classes"),
        name=name,
    )
