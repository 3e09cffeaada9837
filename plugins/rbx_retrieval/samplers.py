"""Batch samplers of the rank-loss trainings (index arrays, seeded numpy).

* :func:`m_per_class` (ROADMAP's ``MPerClassSampler``, config
  ``roadmap/config/dataset/sop.yaml``: 128 images, 4 per class): each batch
  draws ``batch_size // m`` classes and ``m`` images of each;
* :func:`hierarchical` (HAPPIER's ``HierarchicalSampler``, pytorch-metric-
  learning's, config ``happier/config/dataset/sop.yaml``: 256 images, 4 per
  class, 2 super-classes per batch): each batch draws ``super_per_batch``
  super-classes (hierarchy column 1) and fills half the batch from each, ``m``
  images per class.

When the train split has fewer classes than a batch asks for (the embedded
digits have 10 digits in 3 shape groups), a batch takes every class
available, so it is smaller than ``batch_size``; a class with fewer than ``m``
images is sampled with replacement (as pytorch-metric-learning does).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["m_per_class", "hierarchical"]


def _take(rng: np.random.Generator, members: np.ndarray, m: int) -> np.ndarray:
    return rng.choice(members, size=m, replace=len(members) < m)


def _groups(keys: np.ndarray, values: np.ndarray) -> dict:
    """``{key: sorted unique values}`` in one sort, instead of a scan of every
    row per batch (H-GLDv2's train split has ~1 M rows)."""
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return {k: v for k, v in zip(keys[starts].tolist(), np.split(values, starts[1:]))}


class _Classes:
    """Each class's sample indices, ascending (what ``np.flatnonzero(labels == c)`` gives)."""

    def __init__(self, labels: np.ndarray) -> None:
        self.members = _groups(labels, np.arange(len(labels)))

    def batch(self, rng: np.random.Generator, classes: np.ndarray, n_classes: int, m: int) -> np.ndarray:
        chosen = rng.choice(classes, size=min(n_classes, len(classes)), replace=False)
        return np.concatenate([_take(rng, self.members[c], m) for c in chosen.tolist()])


def m_per_class(labels: np.ndarray, *, batch_size: int, m: int, n_batches: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_batches`` index arrays, ``m`` samples for each of ``batch_size // m`` classes."""
    labels = np.asarray(labels)
    classes, members = np.unique(labels), _Classes(labels)
    per_batch = max(batch_size // m, 2)
    return [members.batch(rng, classes, per_batch, m) for _ in range(n_batches)]


def hierarchical(
    hierarchy: np.ndarray, *, batch_size: int, m: int, super_per_batch: int, n_batches: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """``n_batches`` index arrays, drawn as they are consumed: ``super_per_batch``
    super-classes (column 1), ``batch_size / super_per_batch`` samples from
    each, ``m`` per finest class."""
    hierarchy = np.asarray(hierarchy)
    fine, coarse = hierarchy[:, 0], hierarchy[:, 1]
    supers = np.unique(coarse)
    classes_of = {k: np.unique(v) for k, v in _groups(coarse, fine).items()}
    members = _Classes(fine)
    per_super = max(batch_size // max(super_per_batch, 1) // m, 1)
    for _ in range(n_batches):
        chosen = rng.choice(supers, size=min(super_per_batch, len(supers)), replace=False)
        yield np.concatenate([members.batch(rng, classes_of[s], per_super, m) for s in chosen.tolist()])
