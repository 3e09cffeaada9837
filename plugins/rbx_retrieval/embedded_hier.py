"""``embedded-digits-hier``: the embedded hierarchical-retrieval benchmark.

Built, like ``embedded-digits``, only from data shipped inside installed
packages (scikit-learn's 1,797 handwritten 8×8 digits, all ten classes; the
loading code is :mod:`rbx_datasets.embedded`'s), so ``rbx run --suite
retrieval`` works on a fresh machine with no download.

Hierarchy (``L = 2`` levels, column 0 the finest, ``docs/datasets.md#hierarchical-labels``):

======  ==========  ===================================================
level   name        values
======  ==========  ===================================================
0       ``digit``   the digit 0–9 (= the sample label)
1       ``shape``   a fixed, hand-chosen grouping by dominant stroke shape:
                    ``loops`` = {0, 6, 8, 9} (a closed loop) → id 0,
                    ``strokes`` = {1, 4, 7} (straight strokes) → id 1,
                    ``curves`` = {2, 3, 5} (open curves) → id 2
======  ==========  ===================================================

The grouping is fixed here (:data:`DIGIT_GROUP`), not learned; it is a tree
(each digit has exactly one group), so two digits share 2 levels when they are
the same digit, 1 when they are different digits of the same shape group, 0
otherwise (HAPPIER's shared-level count, ``docs/metrics.md#ranking-and-shared-levels``).

Subsets (disjoint, split **per digit** with the fixed seed :data:`SPLIT_SEED`;
the run's seed never changes the data):

* ``train`` 50 % of each digit: labels = digit (classes ``"0"``…``"9"``); the
  built-in CNN trains on it;
* ``gallery`` 30 % (the items ranked);
* ``query`` the remaining 20 % (the queries), so no query is in the gallery.

That is 896 / 535 / 366 images (each digit ≈ 90 / 54 / 37). Sample ids are ``digits/<index in load_digits>``,
as in ``embedded-digits``. ``hierarchy(subset)`` returns the ``(N, 2)`` int64
labels ``[digit, shape group]``; sample labels are the digit.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np

from robustbench_x.api import Dataset

__all__ = ["EmbeddedDigitsHier", "build", "DIGIT_GROUP", "GROUP_NAMES", "LEVEL_NAMES", "SPLIT_SEED", "SPLIT_FRACTIONS"]

VERSION = "embedded-digits-hier-v1"
SPLIT_SEED = 20240611
#: Fraction of each digit's images in train and gallery; the rest are queries.
SPLIT_FRACTIONS = {"train": 0.5, "gallery": 0.3}
LEVEL_NAMES = ("digit", "shape")
GROUP_NAMES = ("loops", "strokes", "curves")
#: Level 1 of the hierarchy: digit -> shape group id (index into GROUP_NAMES).
DIGIT_GROUP = {0: 0, 6: 0, 8: 0, 9: 0, 1: 1, 4: 1, 7: 1, 2: 2, 3: 2, 5: 2}
SUBSETS = ("train", "gallery", "query")


class EmbeddedDigitsHier(Dataset):
    name = "embedded-digits-hier"
    task = "retrieval"
    classes = [str(d) for d in range(10)]
    provides = frozenset({"train_split", "hierarchy"})
    level_names = LEVEL_NAMES
    group_names = GROUP_NAMES

    def __init__(self, name: str = "embedded-digits-hier") -> None:
        self.name = name
        self._fingerprints: dict[str, str] = {}

    @cached_property
    def _subsets(self):
        from rbx_datasets.embedded import ArraySource, _digits_uint8

        images, labels = _digits_uint8()
        rng = np.random.default_rng(SPLIT_SEED)
        index = np.arange(len(labels))
        parts: dict[str, list[np.ndarray]] = {s: [] for s in SUBSETS}
        for digit in range(10):
            members = rng.permutation(index[labels == digit])
            n_train = int(SPLIT_FRACTIONS["train"] * len(members))
            n_gallery = int(SPLIT_FRACTIONS["gallery"] * len(members))
            parts["train"].append(members[:n_train])
            parts["gallery"].append(members[n_train : n_train + n_gallery])
            parts["query"].append(members[n_train + n_gallery :])
        out = {}
        for subset, chunks in parts.items():
            idx = np.sort(np.concatenate(chunks))
            out[subset] = ArraySource(images[idx], labels[idx], [f"digits/{i}" for i in idx])
        return out

    def subsets(self) -> list[str]:
        return list(SUBSETS)

    def samples(self, subset: str):
        try:
            return self._subsets[subset]
        except KeyError:
            raise KeyError(f"{self.name} has no subset {subset!r}; it has {list(SUBSETS)}") from None

    def hierarchy(self, subset: str) -> np.ndarray:
        """``(N, 2)`` int64 labels ``[digit, shape group]`` in sample order (column 0 finest)."""
        digits = np.asarray(self.samples(subset).labels, dtype=np.int64)
        groups = np.array([DIGIT_GROUP[int(d)] for d in digits], dtype=np.int64)
        return np.stack([digits, groups], axis=1)

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            source = self.samples(subset)
            h = hashlib.sha256(VERSION.encode())
            h.update(subset.encode())
            h.update(np.ascontiguousarray(source.images).tobytes())
            h.update(np.ascontiguousarray(self.hierarchy(subset)).tobytes())
            self._fingerprints[subset] = h.hexdigest()[:16]
        return self._fingerprints[subset]


def build(name: str = "embedded-digits-hier", options: dict | None = None, config_file: str | None = None) -> EmbeddedDigitsHier:
    return EmbeddedDigitsHier(name)
