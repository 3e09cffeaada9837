"""The built-in CNN's training recipe, deterministic on one machine.

Used by ``tools/train_builtin.py`` (which writes the weights the manifest in
:mod:`rbx_models.weights` lists) and by :func:`rbx_models.smallcnn.build`
whenever no kept weights fit the train split (a fresh clone, a user's
``imagefolder``, another seed).

Recipe (:data:`rbx_models.smallcnn.RECIPE`): Adam (lr 3e-3), batch 64,
12 epochs, cosine learning-rate decay, one-pixel random shifts, seeded
(``torch.manual_seed(seed)`` for the initialisation, a separate generator for
the data order and the shifts), on one thread. On one machine two runs give
bit-identical weights; another CPU may pick other float kernels and give
slightly different ones, which is why the embedded default's weights are
shipped rather than trained where they are used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robustbench_x.api import Dataset

__all__ = ["stack_split", "train_smallcnn", "train_on_arrays"]


def stack_split(dataset: Dataset, subset: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of ``subset`` through the built-in transform: ``(N, 1, 8, 8)`` inputs, ``(N,)`` labels."""
    from rbx_models.smallcnn import transform

    source = dataset.samples(subset)
    xs, ys = [], []
    for i in range(len(source)):
        image, label, _ = source[i]
        xs.append(transform(image))
        ys.append(label)
    return torch.stack(xs), torch.tensor(np.asarray(ys), dtype=torch.long)


def train_smallcnn(dataset: Dataset, seed: int, num_classes: int, epochs: int | None = None):
    """Train the built-in CNN on ``dataset``'s train split, deterministically."""
    x, y = stack_split(dataset, "train")
    return train_on_arrays(x, y, seed, num_classes, epochs)


def train_on_arrays(x: torch.Tensor, y: torch.Tensor, seed: int, num_classes: int, epochs: int | None = None):
    from rbx_models.smallcnn import RECIPE, SmallCNN
    from robustbench_x.api import torch_threads

    epochs = RECIPE["epochs"] if epochs is None else int(epochs)
    # One thread: float reductions then happen in one order, so two runs on one machine agree bit for bit.
    with torch_threads(1):
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = SmallCNN(num_classes, RECIPE["dropout"])
        opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=RECIPE["epochs"])
        bs = RECIPE["batch_size"]
        for _epoch in range(epochs):
            net.train()
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), bs):
                idx = order[start : start + bs]
                # One-pixel random shifts: the digits are tiny, so this is the only augmentation that helps.
                shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
                xb = torch.roll(x[idx], shifts=(shift[0], shift[1]), dims=(2, 3))
                loss = nn.functional.cross_entropy(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    return net.eval()
