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

    def get(self, model: Model, dataset: Dataset, subset: str, compute: Callable[[], Outputs]) -> Outputs:
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
            outputs = compute()
            self._write(entry, outputs)
        return self._read(entry)

    @staticmethod
    def _read(entry: Path) -> Outputs:
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in FILES}
        return Outputs(**arrays)

    @staticmethod
    def _write(entry: Path, outputs: Outputs) -> None:
        tmp = entry.parent / f".{entry.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            for name in FILES:
                array = np.asarray(getattr(outputs, name))
                if name == "sample_ids":
                    array = array.astype(str)
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, array, allow_pickle=False)
                    fh.flush()
                    os.fsync(fh.fileno())
            (tmp / "complete").write_text("ok")
            if entry.exists():  # a stale, incomplete entry from a killed writer
                shutil.rmtree(entry)
            os.rename(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def compute_outputs(model: Model, dataset: Dataset, subset: str, *, batch_size: int = 256, device: str = "cpu", num_workers: int = 0, progress=None) -> Outputs:
    """One pass of the backbone over a subset, in dataset order."""
    import torch
    from torch.utils.data import DataLoader

    source = dataset.samples(subset)
    loader = DataLoader(_Transformed(source, model.transform()), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits, features, labels, ids = [], [], [], []
    with torch.inference_mode():
        for x, y, sid in loader:
            lg, ft = model.forward(x.to(device))
            logits.append(lg.float().cpu().numpy())
            features.append(ft.float().cpu().numpy())
            labels.append(y.numpy())
            ids.extend(sid)
            if progress is not None:
                progress(len(y))
    if not logits:
        raise ValueError(f"subset {subset!r} of dataset {dataset.name!r} is empty")
    return Outputs(
        logits=np.concatenate(logits),
        features=np.concatenate(features),
        labels=np.concatenate(labels).astype(np.int64),
        sample_ids=np.array(ids, dtype=str),
    )


class _Transformed:
    def __init__(self, source, transform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        image, label, sid = self.source[i]
        return self.transform(image), int(label), str(sid)
