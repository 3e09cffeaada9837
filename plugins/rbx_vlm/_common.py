"""Shared pieces of the CLIP methods: class masks, few-shot sampling, training data, budgets."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from robustbench_x.api import max_probability_minus_one

#: Label spaces at least this large are treated as ImageNet-scale for the paper budgets.
IMAGENET_SCALE = 1000
#: From this many classes, the text transformer is gradient-checkpointed while prompts train (memory only).
CHECKPOINT_CLASSES = 100


def class_mask(ctx, subset: str) -> np.ndarray | None:
    """The dataset's restriction of predictions for ``subset`` (ImageNet-A/-R: 200 classes), or None."""
    dataset = getattr(ctx, "dataset", None)
    fn = getattr(dataset, "class_mask", None)
    return None if fn is None else fn(subset)


def restrict(logits: torch.Tensor, mask: np.ndarray | None) -> torch.Tensor:
    """Set the logits of classes outside ``mask`` to −inf (argmax / softmax over the allowed classes)."""
    if mask is None:
        return logits
    keep = torch.as_tensor(np.asarray(mask, dtype=bool), device=logits.device)
    return logits.masked_fill(~keep, float("-inf"))


def classifier_outputs(logits: torch.Tensor, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """``probs = softmax(logits)`` over the allowed classes, its argmax, and its max minus 1 as ``confidence``.

    Minus 1 without cancellation (:func:`robustbench_x.api.max_probability_minus_one`):
    ``τ = 100`` on cosines puts many maxima at exactly 1.0, which would tie them."""
    probs = torch.softmax(restrict(logits.double(), mask), dim=-1).cpu().numpy()
    return {"probs": probs, "prediction": probs.argmax(axis=-1), "confidence": max_probability_minus_one(probs)}


def mcm(cosines: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MCM: ``max_k softmax(s / T)_k`` over the last dimension (higher = in-distribution)."""
    return torch.softmax(cosines.double() / temperature, dim=-1).amax(dim=-1)


def local_mcm(local_cosines: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Local MCM: per-patch softmax over classes, max over patches and classes; ``(B, P, C) → (B,)``."""
    return torch.softmax(local_cosines.double() / temperature, dim=-1).amax(dim=(1, 2))


def source_labels(source) -> np.ndarray:
    labels = getattr(source, "labels", None)
    if labels is None:  # a third-party source without a label list: decode once
        labels = [source[i][1] for i in range(len(source))]
    return np.asarray(labels, dtype=np.int64)


def few_shot_stratified(labels: Sequence[int], shots: int, seed: int) -> np.ndarray:
    """GalLoP's ``create_few_shots_dataset``: ``StratifiedShuffleSplit(train_size=shots·C, random_state=seed)``
    (``C`` = classes present). All samples when ``shots ≤ 0`` or ``shots·C ≥ n``."""
    from sklearn.model_selection import StratifiedShuffleSplit

    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    if shots <= 0 or shots * n_classes >= len(labels):
        return np.arange(len(labels))
    split = StratifiedShuffleSplit(n_splits=1, train_size=shots * n_classes, random_state=seed)
    indices, _ = next(split.split(labels, labels))
    return np.asarray(indices)


def few_shot_per_class(labels: Sequence[int], shots: int, seed: int) -> np.ndarray:
    """Dassl's ``generate_fewshot_dataset`` (CoOp): ``random.sample(items, shots)`` per label, labels in order
    of first appearance, every item of a class smaller than ``shots``; Python's ``random`` seeded with ``seed``."""
    labels = np.asarray(labels)
    if shots <= 0:
        return np.arange(len(labels))
    rng = random.Random(seed)
    tracker: dict[int, list[int]] = {}
    for i, y in enumerate(labels.tolist()):
        tracker.setdefault(int(y), []).append(i)
    out: list[int] = []
    for items in tracker.values():
        out.extend(rng.sample(items, shots) if len(items) >= shots else items)
    return np.asarray(out)


class TrainImages(torch.utils.data.Dataset):
    def __init__(self, source, indices: np.ndarray, labels: np.ndarray, transform) -> None:
        self.source, self.indices, self.labels, self.transform = source, np.asarray(indices), np.asarray(labels), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, _, _ = self.source[int(self.indices[i])]
        return self.transform(image), int(self.labels[self.indices[i]])


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches; the last incomplete batch is dropped when ``n ≥ batch_size``
    (Dassl's ``drop_last=is_train and len(data) >= batch_size``; GalLoP drops it always,
    which only differs when the few-shot set is smaller than one batch)."""
    order = torch.randperm(n, generator=generator)
    drop_last = n >= batch_size
    stop = (n // batch_size) * batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def image_batches(data: TrainImages, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(data[int(i)] for i in index))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def check_budget(budget: str) -> None:
    if budget not in ("cpu", "paper"):
        raise ValueError(f"budget must be 'cpu' or 'paper', got {budget!r}")


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """``CosineAnnealingLR(T_max=epochs)`` at ``epoch`` (eta_min 0)."""
    return base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
