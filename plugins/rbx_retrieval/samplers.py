"""Batch samplers of the rank-loss trainings (index arrays, seeded numpy).

* :func:`hierarchical` (pytorch-metric-learning's ``HierarchicalSampler``,
  which both papers' SOP configs use: ``happier/config/dataset/sop.yaml``,
  256 images, 4 per class, 2 super-classes per batch, 5 batches per pair;
  ``roadmap/config/dataset/sop.yaml``, 128 images, 10 per pair): an epoch is
  ``batches_per_pair`` batches for every pair of super-classes (hierarchy
  column 1), shuffled; a batch fills half from each of its two super-classes,
  ``m`` images per class.
* :func:`m_per_class` (ROADMAP's ``MPerClassSampler``, which its CUB and
  iNaturalist configs use: ``roadmap/samplers/m_per_class_sampler.py``,
  adapted there from Smooth-AP's ``datasets.py``): an epoch draws every image
  at most once, ``m`` at a time per class, ``batch_size / m`` classes a batch.

When the train split has fewer classes than a batch asks for (the embedded
digits have 10 digits in 3 shape groups), a batch takes every class
available, so it is smaller than ``batch_size``. ROADMAP's own
``MPerClassSampler`` would then form no batch at all. In :func:`hierarchical`
a class with fewer than ``m`` images is sampled with replacement (as
pytorch-metric-learning does); :func:`m_per_class` skips it, as ROADMAP's does.

Both are called one epoch at a time (``epochs=1``) by the trainings, which
step their schedulers between epochs; the random stream is the same as one
call for every epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

__all__ = ["hierarchical", "m_per_class", "SAMPLERS"]


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


def hierarchical(
    hierarchy: np.ndarray, *, batch_size: int, m: int, batches_per_pair: int, epochs: int, rng: np.random.Generator,
    super_per_batch: int = 2,
) -> Iterator[np.ndarray]:
    """pytorch-metric-learning's ``HierarchicalSampler``, epoch after epoch,
    drawn as consumed: an epoch gives every combination of ``super_per_batch``
    super-classes (hierarchy column 1) ``batches_per_pair`` batches, in a
    shuffled order; a batch takes ``batch_size / super_per_batch`` images from
    each of its super-classes, ``m`` of each of its classes in a random order."""
    hierarchy = np.asarray(hierarchy)
    fine, coarse = hierarchy[:, 0], hierarchy[:, 1]
    supers = np.unique(coarse).tolist()
    pairs = list(itertools.combinations(supers, min(super_per_batch, len(supers))))
    plan = [pair for pair in pairs for _ in range(batches_per_pair)]
    classes_of = {k: np.unique(v) for k, v in _groups(coarse, fine).items()}
    members = _Classes(fine)
    per_super = max(batch_size // max(super_per_batch, 1) // m, 1)
    for _ in range(epochs):
        for i in rng.permutation(len(plan)).tolist():
            yield np.concatenate([members.batch(rng, classes_of[s], per_super, m) for s in plan[i]])


def m_per_class(
    hierarchy: np.ndarray, *, batch_size: int, m: int, epochs: int, rng: np.random.Generator, **_unused
) -> Iterator[np.ndarray]:
    """ROADMAP's ``MPerClassSampler`` (finest labels, hierarchy column 0), epoch
    after epoch. An epoch shuffles each class's images and the class order,
    then makes passes over the classes in that order: a pass gives each class
    that still has ``m`` unused images one chunk of ``m`` until the batch holds
    ``batch_size / m`` classes (capped at the number of classes, see the module
    docstring); the epoch ends at the first pass that cannot fill a batch. The
    batches are shuffled, as are the images within each. Like the official
    sampler, each pass starts again from the first class, so the classes early
    in an epoch's order give more batches. The other hierarchy levels and
    ``batches_per_pair`` are ignored (accepted so the two samplers share a call)."""
    fine = np.asarray(hierarchy)[:, 0]
    members = _Classes(fine).members
    per_batch = min(max(batch_size // m, 1), len(members))
    for _ in range(epochs):
        pools = {c: rng.permutation(v) for c, v in members.items()}
        order = rng.permutation(np.asarray(list(members))).tolist()
        used = dict.fromkeys(pools, 0)
        batches = []
        while True:
            chunks = []
            for c in order:
                if len(chunks) == per_batch:
                    break
                if len(pools[c]) - used[c] >= m:
                    chunks.append(pools[c][used[c] : used[c] + m])
                    used[c] += m
            if len(chunks) < per_batch:
                break
            batch = np.concatenate(chunks)
            rng.shuffle(batch)
            batches.append(batch)
        for i in rng.permutation(len(batches)).tolist():
            yield batches[i]


#: The ``sampler`` values of :class:`rbx_retrieval.heads.RankLossHead`.
SAMPLERS = {"hierarchical": hierarchical, "m-per-class": m_per_class}
