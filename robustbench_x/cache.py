"""The feature cache: one backbone pass per (model, subset), shared by every method.

An entry holds the logits, penultimate features, labels and sample ids of one
subset, as ``.npy`` files read back memory-mapped (features of a large split
never need to fit in RAM). Its key hashes the model fingerprint (weights and
transform), the subset's data fingerprint and the cache layout version, so a
changed checkpoint, image or transform can never be served stale.

Writers are safe against each other: a file lock per entry makes a second
process wait for the first instead of recomputing, and the entry directory is
written under a temporary name and renamed into place, so a reader never sees
a half-written entry, even after ``kill -9``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from filelock import FileLock

from robustbench_x.api import Dataset, Model, Outputs
from robustbench_x.cachedir import cache_root

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
        if (entry / "complete").exists():
            self.hits += 1
            return self._read(entry)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if (entry / "complete").exists():  # another process finished it while we waited
                self.hits += 1
                return self._read(entry)
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
            for name in FILES:
                with open(tmp / f"{name}.npy", "rb+") as fh:
                    os.fsync(fh.fileno())
            (tmp / "complete").write_text("ok")
            if entry.exists():  # a stale, incomplete entry from a killed writer
                shutil.rmtree(entry)
            os.rename(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


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
    logits = features = None
    labels = np.lib.format.open_memmap(directory / "labels.npy", mode="w+", dtype=np.int64, shape=(n,))
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
            lg, ft = lg.float().cpu().numpy(), ft.float().cpu().numpy()
            if logits is None:
                logits = np.lib.format.open_memmap(directory / "logits.npy", mode="w+", dtype=np.float32, shape=(n, lg.shape[1]))
                features = np.lib.format.open_memmap(directory / "features.npy", mode="w+", dtype=np.float32, shape=(n, ft.shape[1]))
            b = len(lg)
            logits[at : at + b], features[at : at + b], labels[at : at + b] = lg, ft, y.numpy()
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
        return self.transform(image), int(label), str(sid)
