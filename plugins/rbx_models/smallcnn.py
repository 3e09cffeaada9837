"""The built-in model: a small CNN trained on the dataset it is evaluated on.

It exists so that every suite runs on a fresh machine with no weights to
download. Architecture (ResNet-like head, so that feature-space methods see the
same structure as on a real backbone): three 3×3 conv + BN + ReLU stages
(16, 32, 64 channels, 2×2 max-pool after the second), global average pooling
to 64-d penultimate features, dropout (p = 0.3, for MC Dropout), a linear
classifier. Inputs are grayscale, resized to 8×8 (the resolution of the
embedded digits).

Training: Adam (lr 3e-3), batch 64, 12 epochs, light shift augmentation,
seeded, on one thread; on the embedded digits this takes about 2 s of CPU and
reaches ≈ 99 % test accuracy (seed 0: 98.96 % on the 383 ID test digits). Weights are cached as safetensors under
``$RBX_CACHE_DIR/models`` keyed by (dataset train fingerprint, seed, recipe),
so training happens once per machine; ensembles train one member per seed.
"""

from __future__ import annotations

import hashlib
import json


import numpy as np
import torch
from torch import nn

from robustbench_x.api import Dataset, Model
from robustbench_x.api import cache_root, cached_file

WIDTH = 64
RECIPE = {"arch": "smallcnn-v2", "epochs": 12, "lr": 3e-3, "batch_size": 64, "dropout": 0.3, "size": 8}
MEAN, STD = 0.5, 0.25


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.stages = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, WIDTH, 3, padding=1), nn.BatchNorm2d(WIDTH), nn.ReLU(),
        )  # fmt: skip
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(WIDTH, num_classes)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


class _Features(nn.Module):
    def __init__(self, net: SmallCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def transform(image) -> torch.Tensor:
    """PIL image → normalised 1×8×8 tensor (grayscale, bilinear resize)."""
    from PIL import Image

    img = image.convert("L")
    if img.size != (RECIPE["size"], RECIPE["size"]):
        img = img.resize((RECIPE["size"], RECIPE["size"]), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return (torch.from_numpy(arr)[None] - MEAN) / STD


class BuiltinCNN(Model):
    provides = frozenset({"logits", "features", "linear_head", "input_grad", "grad", "dropout", "ensemble", "feature_maps"})
    input_std = (STD,)

    def __init__(self, net: SmallCNN, fingerprint: str, name: str = "builtin-cnn", trainer=None) -> None:
        self.net = net.eval()
        self.name = name
        self.num_classes = net.fc.out_features
        self._fingerprint = fingerprint
        self._trainer = trainer  # builds further members for ensembles

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        return transform

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net.features(x)
        return self.net.fc(h), h

    def feature_extractor(self) -> nn.Module:
        return _Features(self.net)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.maps(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.fc(features)

    def linear_head(self) -> tuple[np.ndarray, np.ndarray]:
        return self.net.fc.weight.detach().cpu().numpy().copy(), self.net.fc.bias.detach().cpu().numpy().copy()

    def fingerprint(self) -> str:
        return self._fingerprint

    def members(self, k: int) -> list[Model]:
        if self._trainer is None:
            raise RuntimeError("this built-in model was not built with a trainer; cannot train ensemble members")
        return [self] + [self._trainer(member=i) for i in range(1, k)]


def _stack(dataset: Dataset, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    source = dataset.samples(subset)
    xs, ys = [], []
    for i in range(len(source)):
        image, label, _ = source[i]
        xs.append(transform(image))
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def train_smallcnn(dataset: Dataset, seed: int, num_classes: int, log=print) -> SmallCNN:
    """Train the built-in CNN on ``dataset``'s train split, deterministically."""
    x, y = _stack(dataset, "train")
    # One thread: float reductions then happen in one order, so the weights are
    # bit-identical on every machine and executor (and a tiny net gains nothing from more).
    from robustbench_x.api import torch_threads

    with torch_threads(1):
        return _train(x, y, seed, num_classes)


def _train(x: torch.Tensor, y: torch.Tensor, seed: int, num_classes: int) -> SmallCNN:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SmallCNN(num_classes, RECIPE["dropout"])
    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=RECIPE["epochs"])
    bs = RECIPE["batch_size"]
    for _epoch in range(RECIPE["epochs"]):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), bs):
            idx = order[start : start + bs]
            xb = x[idx]
            # One-pixel random shifts: the digits are tiny, so this is the only augmentation that helps.
            shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
            xb = torch.roll(xb, shifts=(shift[0], shift[1]), dims=(2, 3))
            loss = nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


def _weights_hash(net: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def build(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> BuiltinCNN:
    """Factory of the ``builtin-cnn`` model spec: load cached weights or train."""
    from safetensors.torch import load_file, save_file

    if dataset is None:
        raise ValueError("builtin-cnn is trained on the dataset it is evaluated on; a dataset is required")
    num_classes = len(dataset.classes)
    base_seed = int((options or {}).get("seed", seed))

    def make(member: int = 0) -> BuiltinCNN:
        member_seed = base_seed + 1000 * member
        key = hashlib.sha256(
            json.dumps({"recipe": RECIPE, "train": dataset.fingerprint("train"), "seed": member_seed, "classes": num_classes}, sort_keys=True).encode()
        ).hexdigest()[:16]
        path = cache_root() / "models" / f"smallcnn-{key}.safetensors"
        trained: dict[str, SmallCNN] = {}

        def train(tmp) -> None:
            log(f"builtin-cnn: training on {dataset.name} train split (seed {member_seed}), cached as {path.name}")
            trained["net"] = train_smallcnn(dataset, member_seed, num_classes, log)
            save_file({k: v.contiguous() for k, v in trained["net"].state_dict().items()}, str(tmp))

        # cached_file checks the weights against their manifest: damaged ones are reported, removed and retrained.
        path, built = cached_file(path, train)
        if built:
            net = trained["net"]
        else:
            net = SmallCNN(num_classes, RECIPE["dropout"])
            net.load_state_dict(load_file(str(path)))
            log(f"builtin-cnn: loaded cached weights {path.name}")
        net.eval()
        return BuiltinCNN(net, fingerprint=f"smallcnn-{_weights_hash(net)}", name="builtin-cnn", trainer=make)

    return make(0)
