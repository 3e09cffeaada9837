"""ConfidNet for segmentation: a per-pixel confidence head trained on the true-class probability.

Corbière, Thome, Bar-Hen, Cord & Pérez, "Addressing Failure Prediction by
Learning Model Confidence", NeurIPS 2019: §3.2 (the target is the true-class
probability ``TCP = p(y* | x)``), §3.3 (the confidence network, trained with
the MSE between ``sigmoid(c)`` and TCP while the classifier stays frozen),
§4.3 (semantic segmentation: CamVid with SegNet). Official code
valeoai/ConfidNet, ``confidnet/models/segnet_selfconfid.py``: five 3×3
convolutions with ReLU between them (64 -> 400 -> 120 -> 64 -> 64 -> 1) on the
last decoder maps, one confidence logit per pixel.

Here the head has the same depth and kernel sizes, with widths scaled to the
built-in segmenter's 16-channel decoder maps (16 -> 64 -> 32 -> 16 -> 16 -> 1),
reads the model's ``feature_maps`` (frozen; computed once per image), and its
output is upsampled bilinearly to the input resolution. Trained on the
``train`` split, as the official code, with Adam (lr 1e-3, batch 16, seeded,
one thread) for :data:`EPOCHS` epochs; ignored pixels carry no loss.
``score = sigmoid(c) - 1``, computed as ``-sigmoid(-c)`` (the confidence
minus 1 without cancellation, same ranking: see :mod:`rbx_segmentation.methods`);
``prediction`` and ``probs`` are the segmenter's.
"""

from __future__ import annotations

import numpy as np

from rbx_segmentation.methods import PixelMethod, softmax

__all__ = ["ConfidNetSeg", "EPOCHS", "WIDTHS", "true_class_probability"]

EPOCHS = 10
WIDTHS = (64, 32, 16, 16)
BATCH = 16
IGNORE = 255


def _head(cin: int):
    from torch import nn

    layers, c = [], cin
    for w in WIDTHS:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
        c = w
    layers.append(nn.Conv2d(c, 1, 3, padding=1))
    return nn.Sequential(*layers)


def _maps_and_logits(ctx, subset):
    import torch

    from robustbench_x.api import torch_threads

    maps, logits, labels = [], [], []
    with torch.no_grad(), torch_threads(1):
        for x, y in ctx.loader(subset, batch_size=BATCH):
            maps.append(ctx.model.feature_maps(x).float())
            logits.append(ctx.model.forward(x)[0].float())
            labels.append(torch.as_tensor(y))
    return torch.cat(maps), torch.cat(logits), torch.cat(labels)


def true_class_probability(logits, labels):
    """ConfidNet's target per pixel, ``softmax(logits)[y*]`` (§3.2); ignored pixels get the
    probability of class 0 and are masked out of the loss."""
    import torch

    return torch.softmax(logits, dim=1).gather(1, labels.clamp(0, logits.shape[1] - 1)[:, None])[:, 0]


class ConfidNetSeg(PixelMethod):
    def __init__(self, epochs: int = EPOCHS, lr: float = 1e-3, **params) -> None:
        super().__init__(epochs=epochs, lr=lr, **params)
        self.epochs, self.lr = int(epochs), float(lr)
        self.head = None

    def fit(self, ctx):
        import torch

        def build():
            import torch.nn.functional as F

            from robustbench_x.api import torch_threads

            maps, logits, labels = _maps_and_logits(ctx, "train")
            tcp_full = true_class_probability(logits, labels)
            valid = labels != IGNORE
            with torch_threads(1):
                torch.manual_seed(ctx.seed)
                generator = torch.Generator().manual_seed(ctx.seed)
                head = _head(maps.shape[1])
                opt = torch.optim.Adam(head.parameters(), lr=self.lr)
                for epoch in range(self.epochs):
                    order = torch.randperm(len(maps), generator=generator)
                    total = 0.0
                    for start in range(0, len(maps), BATCH):
                        idx = order[start : start + BATCH]
                        c = F.interpolate(head(maps[idx]), size=labels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                        err = (torch.sigmoid(c) - tcp_full[idx]) ** 2
                        loss = err[valid[idx]].mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * len(idx)
                ctx.record("confidnet_train_mse", round(total / len(maps), 5))
            return {k: v.detach().numpy() for k, v in head.state_dict().items()}

        state = ctx.fitted(build, epochs=self.epochs, lr=self.lr)
        head = _head(int(state["0.weight"].shape[1]))
        head.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        self.head = head.eval()

    def score_images(self, ctx, subset):
        import torch
        import torch.nn.functional as F

        from robustbench_x.api import torch_threads

        with torch.no_grad(), torch_threads(1):
            for x, _ in ctx.loader(subset, batch_size=BATCH):
                logits = ctx.model.forward(x)[0].float()
                c = F.interpolate(self.head(ctx.model.feature_maps(x).float()), size=logits.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                conf = -torch.sigmoid(-c).numpy()
                for b, lg in enumerate(logits.numpy()):
                    yield {"prediction": lg.argmax(axis=0).astype(np.int64), "probs": softmax(lg).astype(np.float32), "score": conf[b].astype(np.float32)}
