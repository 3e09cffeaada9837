"""The built-in 1-Lipschitz classifier ``lipschitz-cnn`` (and the model base shared with the segmenter).

Architecture :func:`rbx_lipschitz.nets.classifier_arch` (three 3×3
convolutions, a 2× pixel unshuffle, two linear layers, GroupSort2
activations), trained with deel-torchlip's orthogonalised layers and the
hinge-KR loss (:mod:`rbx_lipschitz.training`) and evaluated as plain torch
layers. Inputs are grayscale [0, 1] pixels resized to 8 × 8 (no normalisation:
ε is measured in pixel units, and nothing rescales the constant).

The **declared Lipschitz constant** (``lipschitz_constant``, token
``lipschitz``) is :func:`rbx_lipschitz.layers.lipschitz_upper_bound` of the
weights actually evaluated, an upper bound by construction (0.969 for the
weights behind the pages), not the nominal 1 of the training layers.

Weights, in the order they are looked for (as ``builtin-cnn``): kept in
``rbx_lipschitz/weights/`` when ``python tools/train_lipschitz.py`` wrote them
(generated, not tracked; ``manifest.json`` holds their sha256, checked);
cached under ``$RBX_CACHE_DIR/models``; else trained on the evaluated
dataset's train split with deel-torchlip (about 5 s of CPU on the digits,
90 s for the segmenter on the scenes) and cached.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_x.api import Dataset, Model, cache_root, cached_file, load_shipped_weights

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
SIZE = 8
TRANSFORM = {"mode": "L", "size": SIZE, "resize": "bilinear", "scale": "[0, 1]"}


def to_tensor(image, size: int | None, mode: str) -> torch.Tensor:
    """PIL image → ``(C, H, W)`` float tensor in [0, 1] (bilinear resize to ``size`` × ``size`` when given)."""
    from PIL import Image

    img = image.convert(mode)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())


def weights_key(recipe: dict, train_fingerprint: str, seed: int, num_classes: int) -> str:
    payload = {"recipe": recipe, "train": train_fingerprint, "seed": int(seed), "classes": int(num_classes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint_of(prefix: str, state: dict[str, torch.Tensor], transform: dict) -> str:
    h = hashlib.sha256(json.dumps(transform, sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{prefix}-{h.hexdigest()[:16]}"


def load_shipped(key: str) -> dict[str, torch.Tensor] | None:
    """The kept state dict for ``key`` after its sha256 check; None when none is there."""
    return load_shipped_weights(MANIFEST, key, regenerate="python tools/train_lipschitz.py")


def weights_for(name: str, key: str, train, log) -> dict[str, torch.Tensor]:
    """Shipped, else cached, else ``train()`` (then cached) weights for ``key``."""
    from safetensors.torch import load_file, save_file

    state = load_shipped(key)
    if state is not None:
        return state
    path = cache_root() / "models" / f"{name}-{key}.safetensors"
    trained: dict[str, dict] = {}

    def build(tmp) -> None:
        log(f"{name}: no shipped weights for this dataset and seed; training on its train split, cached as {path.name}")
        trained["state"] = train()
        save_file(trained["state"], str(tmp))

    path, built = cached_file(path, build)
    return trained["state"] if built else load_file(str(path))


class LipschitzModel(Model):
    """A plain-torch network with a declared ℓ2 Lipschitz constant (inputs: [0, 1] pixels)."""

    input_std = None

    def __init__(self, name: str, net: nn.Sequential, lipschitz_constant: float, fingerprint: str, size: int | None, mode: str, num_classes: int) -> None:
        self.name = name
        self.net = net.eval()
        self.lipschitz_constant = float(lipschitz_constant)
        self.num_classes = num_classes
        self._fingerprint = fingerprint
        self._size, self._mode = size, mode

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        size, mode = self._size, self._mode
        return lambda image: to_tensor(image, size, mode)

    def fingerprint(self) -> str:
        return self._fingerprint


class LipschitzCNN(LipschitzModel):
    provides = frozenset({"logits", "features", "linear_head", "input_grad", "lipschitz"})

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net[:-1](x)
        return self.net[-1](h), h

    def feature_extractor(self) -> nn.Module:
        return self.net[:-1]

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net[-1](features)

    def linear_head(self) -> tuple[np.ndarray, np.ndarray]:
        last = self.net[-1]
        return last.weight.detach().numpy().copy(), last.bias.detach().numpy().copy()


def recipe_for(dataset: Dataset, seed: int):
    """``(layout, weights key, train())`` of ``lipschitz-cnn`` on ``dataset`` (also used by ``tools/train_lipschitz.py``)."""
    from rbx_lipschitz.nets import classifier_arch
    from rbx_lipschitz.training import CLASSIFIER_RECIPE

    num_classes = len(dataset.classes)
    layout = classifier_arch(1, SIZE, num_classes, CLASSIFIER_RECIPE["width"])
    key = weights_key({**CLASSIFIER_RECIPE, "transform": TRANSFORM}, dataset.fingerprint("train"), seed, num_classes)

    def train() -> dict[str, torch.Tensor]:
        from rbx_lipschitz.training import stack_images, train_classifier

        x, y = stack_images(dataset.samples("train"), SIZE, "L")
        return train_classifier(x, torch.as_tensor(y, dtype=torch.long), layout, seed, num_classes)

    return layout, key, train


def build(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> LipschitzCNN:
    """Factory of the ``lipschitz-cnn`` model spec (module docstring)."""
    from rbx_lipschitz.layers import lipschitz_upper_bound
    from rbx_lipschitz.nets import plain

    if dataset is None:
        raise ValueError("lipschitz-cnn is trained for the dataset it is evaluated on; a dataset is required")
    layout, key, train = recipe_for(dataset, int((options or {}).get("seed", seed)))
    net = plain(layout)
    net.load_state_dict(weights_for("lipschitz-cnn", key, train, log))
    net.eval()
    bound = lipschitz_upper_bound(net, (SIZE, SIZE))
    return LipschitzCNN("lipschitz-cnn", net, bound, fingerprint_of("lipschitz-cnn", net.state_dict(), TRANSFORM), SIZE, "L", len(dataset.classes))
