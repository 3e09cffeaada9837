"""The feature cache: one backbone pass per (model, subset), shared by every method.

An entry holds the logits, penultimate features, labels and sample ids of one
subset, as ``.npy`` files read back memory-mapped (features of a large split
never need to fit in RAM). Its key hashes the model fingerprint (weights and
transform), the subset's data fingerprint and the cache layout version, so a
changed checkpoint, image or transform can never be served stale.

Writers are safe against each other: a file lock per entry makes a second
process wait for the first instead of recomputing, and the entry directory is
written under a temporary name, sealed with its manifest and renamed into
place, so a reader never sees a half-written entry, even after ``kill -9``.
Every read checks the entry against its manifest (:mod:`robustbench_x.cachedir`):
a damaged one is reported by path, removed and recomputed.

The arrays are allocated on disk before they are memory-mapped: a sparse
mapping on a full disk would kill the process with SIGBUS at the first page it
cannot back; allocated first, a full disk is a failed job naming the path and
the bytes needed, and the temporary entry is removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robustbench_x import cachedir
from robustbench_x.api import Dataset, Model, Outputs
from robustbench_x.cachedir import DiskFull, cache_root, is_disk_full

LAYOUT = "features-v1"
FILES = ("logits", "features", "labels", "sample_ids")


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "features"
        self.hits = 0
        self.misses = 0

    def key(self, model: Model, dataset: Dataset, subset: str) -> str:
        text = "\n".join([LAYOUT, model.fingerprint(), dataset.fingerprint(subset), subset])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, model: Model, dataset: Dataset, subset: str, compute: Callable[[Path], None]) -> Outputs:
        """The cached outputs of ``subset``; on a miss ``compute(directory)``
        writes the four ``.npy`` files into a fresh temporary directory."""
        entry = self.root / self.key(model, dataset, subset)
        if cachedir.check(entry) is None:
            self.hits += 1
            return self._read(entry)
        with cachedir.lock_for(entry):
            problem = cachedir.check(entry)
            if problem is None:  # another process finished it while we waited
                self.hits += 1
                return self._read(entry)
            if entry.exists():
                cachedir.discard(entry, problem)
            self.misses += 1
            self._build(entry, compute)
        return self._read(entry)

    @staticmethod
    def _read(entry: Path) -> Outputs:
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in FILES}
        return Outputs(**arrays)

    @staticmethod
    def _build(entry: Path, compute: Callable[[Path], None]) -> None:
        tmp = entry.parent / f".{entry.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            compute(tmp)
            cachedir.seal_directory(tmp)
            os.rename(tmp, entry)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(Path(exc.filename) if exc.filename else tmp) from exc
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _allocated(path: Path, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A ``.npy`` file of ``shape`` whose blocks are allocated on disk, mapped for writing."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        cachedir.reserve(fh, fh.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize, path)
    return np.lib.format.open_memmap(path, mode="r+")


def compute_outputs(model: Model, dataset: Dataset, subset: str, directory: Path, *, batch_size: int = 256, device: str = "cpu", num_workers: int = 0) -> None:
    """One pass of the backbone over a subset, in dataset order, streamed into
    memory-mapped ``.npy`` files: a 3.75 M-image ImageNet-C split never has
    its features in RAM."""
    import torch
    from torch.utils.data import DataLoader

    source = dataset.samples(subset)
    n = len(source)
    if n == 0:
        raise ValueError(f"subset {subset!r} of dataset {dataset.name!r} is empty")
    loader = DataLoader(_Transformed(source, model.transform()), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits = features = labels = None
    ids: list[str] = []
    at = 0
    # fork_rng: a DataLoader draws from torch's global generator; without it a
    # method's seeded results would depend on whether the cache was warm. The
    # module is put in eval mode for the pass and its modes restored after, so a
    # method that switched dropout on (MC Dropout) keeps it.
    module = _module(model)
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    if module is not None:
        module.eval()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        for x, y, sid in loader:
            lg, ft = model.forward(x.to(device))
            lg, ft, y = lg.float().cpu().numpy(), ft.float().cpu().numpy(), np.asarray(y)
            if logits is None:
                # Shapes after the batch axis are the model's and the dataset's: (C,) for a
                # classifier, (C, H, W) per-pixel logits and (H, W) label masks for segmentation.
                logits = _allocated(directory / "logits.npy", np.float32, (n, *lg.shape[1:]))
                features = _allocated(directory / "features.npy", np.float32, (n, *ft.shape[1:]))
                labels = _allocated(directory / "labels.npy", np.int64, (n, *y.shape[1:]))
            b = len(lg)
            logits[at : at + b], features[at : at + b], labels[at : at + b] = lg, ft, y
            ids.extend(sid)
            at += b
    for m, training in modes:
        m.training = training
    for array in (logits, features, labels):
        array.flush()
    del logits, features, labels
    np.save(directory / "sample_ids.npy", np.array(ids, dtype=str), allow_pickle=False)


def _module(model: Model):
    try:
        return model.module
    except NotImplementedError:
        return None


class _Transformed:
    def __init__(self, source, transform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        image, label, sid = self.source[i]
        # a dense task's label is an array (a segmentation mask); a classifier's an int
        return self.transform(image), label if isinstance(label, np.ndarray) else int(label), str(sid)
