"""Memory-mapped ``.npy`` access shared by the CIFAR-C and CIFAR-P readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rbx_robustness.readers._common import UndecodableFileError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

#: CIFAR-100 fine label names in label order (alphabetical, as in the ``meta`` file).
CIFAR100_CLASSES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split()
assert len(CIFAR100_CLASSES) == 100


def open_npy(path: Path) -> np.ndarray:
    """``np.load(path, mmap_mode="r", allow_pickle=False)``; a damaged file names itself."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise UndecodableFileError(
            path,
            f"not a readable numeric .npy array ({type(exc).__name__}: {exc})",
            fix="re-download and re-extract the archive; the .npy files must be plain uint8 arrays (no pickles)",
        ) from None


def sample_digest(arr: np.ndarray, rows: np.ndarray, path: Path) -> bytes:
    """A digest of the file size, the array header and a fixed sample of rows.

    Hashing evenly spaced rows (not the whole file) keeps fingerprints cheap;
    the distributed files are immutable, and a different variant or a damaged
    file changes the size, the header or the sampled content.
    """
    h = hashlib.sha256()
    h.update(str((path.stat().st_size, arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr[rows]).tobytes())
    return h.digest()


def spaced(start: int, stop: int, k: int = 256) -> np.ndarray:
    n = stop - start
    return np.unique(np.linspace(start, stop - 1, num=min(n, k)).astype(np.int64)) if n > 0 else np.zeros(0, np.int64)


class LazyArray:
    """Opens a memory map on first use; never pickles the data (DataLoader workers
    re-open the file instead of receiving a copy of the array)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._arr: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = open_npy(self.path)
        return self._arr

    def __getstate__(self):
        return {"path": self.path, "_arr": None}
