"""The built-in model: a small CNN, trained at first use on the dataset it evaluates.

It exists so that every suite runs on a fresh machine with no weights to
download. Architecture (ResNet-like head, so that feature-space methods see the
same structure as on a real backbone): three 3×3 conv + BN + ReLU stages
(16, 32, 64 channels, 2×2 max-pool after the second), global average pooling
to 64-d penultimate features, dropout (p = 0.3, for MC Dropout), a linear
classifier. Inputs are grayscale, resized to 8×8 (the resolution of the
embedded digits).

Weights, in the order they are looked for:

1. **Kept** (``rbx_models/weights/``, listed in its ``manifest.json``): the
   manifest records the sha256 of the networks behind the committed pages, the
   embedded digits 0–5 (``embedded-digits`` and its ``-c`` / ``-p`` variants,
   which share its train split) for seeds 0, 1000, 2000, 3000 and 4000 (the
   evaluated model at seed 0 and the four other members of a ``K = 5`` Deep
   Ensemble), and the ten digits of ``embedded-digits-hier`` for seed 0.
   Weight files are generated, not tracked: ``tools/train_builtin.py`` writes
   them into the folder, and a file present there is read with safetensors
   after its sha256 is checked against the manifest.
2. **Cached**: weights trained earlier on this machine, under
   ``$RBX_CACHE_DIR/models``, checked against their cache manifest (damaged
   ones are reported, removed and retrained).
3. **Trained at first use** on the evaluated dataset's train split, with the
   same recipe (:mod:`rbx_models.training`; about 2 s of CPU on the digits),
   then cached. This happens for any dataset or seed without kept weights (on a
   fresh clone, the embedded ones too: where the manifest was made, the same
   bits as its files):
   a user's ``imagefolder`` dataset (``label_space=None``: the model is
   always trained for the dataset it is evaluated on, never reused across
   label spaces), or ``--seeds 1``; never on a ``pretrained_only`` dataset
   (H-GLDv2, whose train split is 1.58 M images: the planner refuses the
   pairing before any work, because ``requires`` holds ``train_split``).
   Such weights are deterministic on one machine but may differ in the last
   bits on another CPU, so their
   fingerprint (and the cells built on them) can differ between machines.

Which weights apply is decided by a key hashing the recipe, the train split's
fingerprint, the seed and the number of classes: kept weights are used
exactly when the train split they were trained on is the one being evaluated.
The fingerprint hashes the weights and the input transform.

Recipe (Adam, lr 3e-3, batch 64, 12 epochs, one-pixel shifts, seeded, one
thread): on the embedded digits the seed-0 model is 98.96 % accurate
on the 383 ID test digits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_x.api import Dataset, Model
from robustbench_x.api import cache_root, cached_file, load_shipped_weights

WIDTH = 64
RECIPE = {"arch": "smallcnn-v2", "epochs": 12, "lr": 3e-3, "batch_size": 64, "dropout": 0.3, "size": 8}
MEAN, STD = 0.5, 0.25
#: What :func:`transform` does; part of the fingerprint (same weights, another transform = another model).
TRANSFORM = {"mode": "L", "size": RECIPE["size"], "resize": "bilinear", "mean": MEAN, "std": STD}
#: Ensemble members ``m`` train with seed ``seed + MEMBER_STRIDE * m``.
MEMBER_STRIDE = 1000
WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


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
    provides = frozenset({"logits", "features", "linear_head", "input_grad", "grad", "dropout", "ensemble", "feature_maps", "explanation_layer"})
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

    def explanation_layer(self) -> nn.Module:
        # the last conv stage after its ReLU (64 × 4 × 4 on 8 × 8 digits), as Grad-CAM takes a ResNet's layer4
        return self.net.stages

    def linear_head(self) -> tuple[np.ndarray, np.ndarray]:
        return self.net.fc.weight.detach().cpu().numpy().copy(), self.net.fc.bias.detach().cpu().numpy().copy()

    def fingerprint(self) -> str:
        return self._fingerprint

    def members(self, k: int) -> list[Model]:
        if self._trainer is None:
            raise RuntimeError("this built-in model was not built with a trainer; cannot train ensemble members")
        return [self] + [self._trainer(member=i) for i in range(1, k)]


def weights_key(train_fingerprint: str, seed: int, num_classes: int) -> str:
    """What identifies one set of weights: recipe, train split, seed, number of classes."""
    payload = {"recipe": RECIPE, "train": train_fingerprint, "seed": int(seed), "classes": int(num_classes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint_of(state: dict[str, torch.Tensor]) -> str:
    """``smallcnn-<hash of the weights and the input transform>``."""
    h = hashlib.sha256(json.dumps(TRANSFORM, sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"smallcnn-{h.hexdigest()[:16]}"


def shipped_manifest() -> dict:
    if not MANIFEST.is_file():
        return {"weights": []}
    return json.loads(MANIFEST.read_text())


def load_shipped(key: str) -> dict[str, torch.Tensor] | None:
    """The kept state dict for ``key`` after its sha256 check; None when none is there."""
    return load_shipped_weights(MANIFEST, key, regenerate="python tools/train_builtin.py")


def _why_not_shipped(dataset: Dataset) -> str:
    """Say so when weights ship for this dataset's name but for other training data (another scikit-learn's digits?)."""
    made_for = {e["train_fingerprint"] for e in shipped_manifest()["weights"] if e["dataset"] == dataset.name}
    train = dataset.fingerprint("train")
    if made_for and train not in made_for:
        return f": the shipped ones were trained on train split {sorted(made_for)[0]}, this one is {train}, so cells will not match the committed pages"
    return ""


def build(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> BuiltinCNN:
    """Factory of the ``builtin-cnn`` model spec: shipped weights, else cached, else trained (module docstring)."""
    from safetensors.torch import load_file, save_file

    if dataset is None:
        raise ValueError("builtin-cnn is trained for the dataset it is evaluated on; a dataset is required")
    num_classes = len(dataset.classes)
    base_seed = int((options or {}).get("seed", seed))

    def make(member: int = 0) -> BuiltinCNN:
        member_seed = base_seed + MEMBER_STRIDE * member
        key = weights_key(dataset.fingerprint("train"), member_seed, num_classes)
        state = load_shipped(key)
        if state is not None:
            net = SmallCNN(num_classes, RECIPE["dropout"])
            net.load_state_dict(state)
            return BuiltinCNN(net.eval(), fingerprint=fingerprint_of(net.state_dict()), name="builtin-cnn", trainer=make)
        path = cache_root() / "models" / f"smallcnn-{key}.safetensors"
        trained: dict[str, SmallCNN] = {}

        def train(tmp) -> None:
            from rbx_models.training import train_smallcnn

            log(f"builtin-cnn: no shipped weights for {dataset.name} (seed {member_seed}){_why_not_shipped(dataset)}; training on its train split, cached as {path.name}")
            trained["net"] = train_smallcnn(dataset, member_seed, num_classes)
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
        return BuiltinCNN(net, fingerprint=fingerprint_of(net.state_dict()), name="builtin-cnn", trainer=make)

    return make(0)
