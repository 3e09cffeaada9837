"""Segmentation models: the built-in segmenter, torchvision's segmentation
networks from a local checkpoint, and any ``torch.nn.Module`` a plugin gives.

Every one returns per-pixel logits ``(B, C, H, W)`` at the input resolution and
a small per-image feature vector (the spatial mean of the maps its classifier
reads), and provides ``dense_logits`` and ``feature_maps`` (never ``logits``:
classification methods must not pair with a segmenter).

* ``builtin-segmenter``: :mod:`rbx_segmentation.net`'s small encoder-decoder
  with channel dropout. Weights, keyed by the recipe, the train split's
  fingerprint, the seed and the number of classes: **kept** in
  ``rbx_segmentation/weights/`` when ``tools/train_segmenter.py`` wrote them
  there (its ``manifest.json``, tracked, holds the sha256 of the
  ``embedded-scenes`` networks behind the pages: seeds 0, 1000 … 4000 and the
  BatchEnsemble / LP-BNN networks; the files are generated, not tracked),
  checked against their sha256; else **cached** under ``$RBX_CACHE_DIR/models``;
  else **trained** on the evaluated dataset's ``train`` split on first use
  (about 5 s of one CPU thread at 64×64) and cached. Training is deterministic
  on one machine; another CPU may round differently.
  ``members(k)`` trains members with seeds ``seed + 1000·m`` (Deep Ensembles).
  Provides ``dropout``, ``ensemble`` and ``segmenter_recipe`` (a method may
  retrain its architecture as a rank-1 ensemble: BatchEnsemble, LP-BNN).
* ``torchvision-seg:<arch>``: ``fcn_resnet50``, ``fcn_resnet101``,
  ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
  ``deeplabv3_mobilenet_v3_large``, ``lraspp_mobilenet_v3_large``, built with
  ``weights=None, weights_backbone=None`` (nothing is downloaded) and loaded
  from the entry's ``checkpoint:`` (``robustbench_x.api.load_state_dict``:
  safetensors, or PyTorch's loader restricted to weights); ``num_classes:``
  defaults to the dataset's. Input:
  ImageNet mean/std normalisation at the image's own resolution.
* ``segmentation-module``: a datasets.yaml models entry with
  ``arch: "package.module:attr"``, a callable returning an ``nn.Module`` whose
  forward maps ``(B, 3, H, W)`` to logits ``(B, C, H, W)`` (or a dict with
  ``"out"``, as torchvision's), optional ``checkpoint:``. A plugin can also
  return :class:`ModuleSegmenter` from its own ``ModelSpec`` factory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robustbench_x.api import Dataset, Model, cache_root, cached_file, load_factory, load_shipped_weights, load_state_dict
from robustbench_x.errors import ConfigError

__all__ = ["BuiltinSegmenter", "ModuleSegmenter", "build_builtin", "build_torchvision", "build_module", "TORCHVISION_ARCHS"]

MEMBER_STRIDE = 1000
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TORCHVISION_ARCHS = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")


def _state_hash(net: nn.Module, extra: dict) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _normaliser(mean, std):
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def apply(image) -> torch.Tensor:
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return (torch.from_numpy(arr).permute(2, 0, 1) - m) / s

    return apply


class BuiltinSegmenter(Model):
    provides = frozenset({"dense_logits", "feature_maps", "dropout", "ensemble", "segmenter_recipe"})

    def __init__(self, net, fingerprint: str, trainer=None, name: str = "builtin-segmenter") -> None:
        from rbx_segmentation.net import MEAN, STD

        self.net = net.eval()
        self.name = name
        self.num_classes = int(net.head.out_channels)
        self.input_std = (STD,) * 3
        self._transform = _normaliser((MEAN,) * 3, (STD,) * 3)
        self._fingerprint = fingerprint
        self._trainer = trainer

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        return self._transform

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        maps = self.net.maps(x)
        logits = F.interpolate(self.net.head(self.net.drop(maps)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, maps.mean(dim=(2, 3))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.maps(x)

    def fingerprint(self) -> str:
        return self._fingerprint

    def members(self, k: int) -> list[Model]:
        if self._trainer is None:
            raise RuntimeError("this built-in segmenter was built without a trainer; it cannot train ensemble members")
        return [self] + [self._trainer(member=i) for i in range(1, k)]


def weights_key(train_fingerprint: str, seed: int, num_classes: int, kind: str = "plain", members: int = 1) -> str:
    from rbx_segmentation.net import RECIPE, REVISIONS

    payload = {"recipe": RECIPE, "train": train_fingerprint, "seed": int(seed), "classes": int(num_classes), "kind": kind, "members": members}
    if kind in REVISIONS:
        payload["revision"] = REVISIONS[kind]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def shipped_name(dataset: str, kind: str, seed: int) -> str:
    return f"{dataset}-{kind}-seed{seed}.safetensors"


def load_shipped(key: str) -> dict[str, torch.Tensor] | None:
    """The kept state dict for ``key`` after its sha256 check; None when none is there."""
    return load_shipped_weights(MANIFEST, key, regenerate="python tools/train_segmenter.py")


def _train(dataset: Dataset, seed: int, kind: str, members: int):
    from rbx_segmentation.net import RECIPE, train

    source = dataset.samples("train")
    if len(source) < RECIPE["batch_size"]:
        raise ValueError(
            f"dataset '{dataset.name}': its train split has {len(source)} labelled image(s), fewer than one batch of the built-in "
            f"segmenter's recipe ({RECIPE['batch_size']}), so it would not train at all. fix: give a train split of at least "
            f"{RECIPE['batch_size']} images, or evaluate a pretrained segmenter with --models (see `rbx list models`)"
        )
    images = np.stack([np.asarray(source[i][0].convert("RGB")) for i in range(len(source))])
    masks = np.stack([np.asarray(source[i][1]) for i in range(len(source))])
    return train(images, masks, len(dataset.classes), seed, members=members, kind=kind)


def train_into(dataset: Dataset, seed: int, kind: str, members: int, path: Path) -> str:
    """Train and write safetensors to ``path`` (``tools/train_segmenter.py``); returns the weights key."""
    from safetensors.torch import save_file

    net = _train(dataset, seed, kind, members)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return weights_key(dataset.fingerprint("train"), seed, len(dataset.classes), kind, members)


def train_cached(dataset: Dataset, seed: int, *, kind: str = "plain", members: int = 1, log=print):
    """The recipe's network for ``dataset``'s train split: kept weights (``tools/train_segmenter.py``),
    else cached ones, else trained on first use and cached (module docstring)."""
    from safetensors.torch import load_file, save_file

    from rbx_segmentation.net import SegNet

    num_classes = len(dataset.classes)
    key = weights_key(dataset.fingerprint("train"), seed, num_classes, kind, members)
    state = load_shipped(key)
    if state is not None:
        net = SegNet(num_classes, members=members, kind=kind)
        net.load_state_dict(state)
        return net.eval()
    path = cache_root() / "models" / f"segnet-{kind}-{key}.safetensors"
    trained: dict[str, nn.Module] = {}

    def build(tmp) -> None:
        log(f"segmenter ({kind}, seed {seed}): no shipped weights for {dataset.name}; training on its train split, cached as {path.name}")
        trained["net"] = _train(dataset, seed, kind, members)
        save_file({k: v.contiguous() for k, v in trained["net"].state_dict().items()}, str(tmp))

    path, built = cached_file(path, build)
    if built:
        return trained["net"]
    net = SegNet(num_classes, members=members, kind=kind)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def build_builtin(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> BuiltinSegmenter:
    """Factory of ``builtin-segmenter``: trained on the evaluated dataset's train split (module docstring)."""
    if dataset is None or getattr(dataset, "task", None) != "segmentation":
        raise ConfigError("builtin-segmenter is trained on the segmentation dataset it is evaluated on", key="models",
                          fix="pair it with a dataset of task 'segmentation' that has a train split (e.g. embedded-scenes)")
    base = int((options or {}).get("seed", seed))

    def make(member: int = 0) -> BuiltinSegmenter:
        from rbx_segmentation.net import RECIPE

        net = train_cached(dataset, base + MEMBER_STRIDE * member, log=log)
        return BuiltinSegmenter(net, f"segnet-{_state_hash(net, RECIPE)}", trainer=make)

    return make(0)


class ModuleSegmenter(Model):
    """Any ``nn.Module`` mapping ``(B, 3, H, W)`` to logits ``(B, C, H, W)`` or ``{"out": …}``.

    ``maps`` (optional) returns the maps the classifier reads (``feature_maps``;
    the per-image features are their spatial mean); without it the features
    are the spatial mean of the logits.
    """

    def __init__(self, net: nn.Module, name: str, fingerprint: str, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes: int | None = None, maps=None) -> None:
        self.net = net.eval()
        self.name = name
        self._fingerprint = fingerprint
        self._transform = _normaliser(mean, std)
        self.input_std = tuple(float(s) for s in std)
        self._maps = maps
        self.num_classes = int(num_classes or 0)
        provides = {"dense_logits", "input_grad", "grad"}
        if maps is not None:
            provides.add("feature_maps")
        if any(isinstance(m, (nn.Dropout, nn.Dropout2d)) and m.p > 0 for m in net.modules()):
            provides.add("dropout")
        self.provides = frozenset(provides)

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        return self._transform

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        out = out["out"] if isinstance(out, dict) else out
        if out.dim() != 4:
            raise ValueError(f"{self.name}: the module returned shape {tuple(out.shape)}; a segmenter returns (B, C, H, W) logits")
        return out if out.shape[-2:] == x.shape[-2:] else F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        logits = self._logits(x)
        feats = (self._maps(x) if self._maps is not None else logits).mean(dim=(2, 3))
        return logits, feats

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        if self._maps is None:
            raise NotImplementedError(f"{self.name} exposes no feature maps")
        return self._maps(x)

    def fingerprint(self) -> str:
        return self._fingerprint


def _load_into(net: nn.Module, checkpoint, what: str, log) -> None:
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what}: checkpoint file not found", file=str(path), key="checkpoint",
                          fix="give the path of a .safetensors or .pth state dict in the model's datasets.yaml entry")
    missing, unexpected = net.load_state_dict(load_state_dict(path), strict=False)
    missing = [k for k in missing if not k.startswith("aux_classifier.")]
    if missing:
        raise ConfigError(f"{what}: the checkpoint does not fit: missing {len(missing)} keys, e.g. {missing[:3]}", file=str(path), key="checkpoint",
                          fix="use the architecture (and num_classes) the checkpoint was trained with")
    if unexpected:
        log(f"{what}: ignored {len(unexpected)} unexpected checkpoint keys, e.g. {unexpected[:3]}")


def build_torchvision(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> ModuleSegmenter:
    """Factory of ``torchvision-seg:<arch>`` (module docstring): never downloads."""
    import torchvision.models.segmentation as tvs

    options = dict(options or {})
    if arch not in TORCHVISION_ARCHS:
        raise ConfigError(f"unknown torchvision segmentation architecture {arch!r}", key="arch", fix=f"use one of {', '.join(TORCHVISION_ARCHS)}")
    if not options.get("checkpoint"):
        raise ConfigError(f"torchvision-seg:{arch} needs local weights (nothing is downloaded)", key="checkpoint",
                          fix=f"add a models entry with 'type: torchvision-seg', 'arch: {arch}' and 'checkpoint: <file>' to datasets.yaml")
    num_classes = int(options.get("num_classes") or (len(dataset.classes) if dataset is not None else 21))
    net = getattr(tvs, arch)(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=None)
    _load_into(net, options["checkpoint"], f"torchvision-seg:{arch}", log)
    key = "high" if arch.startswith("lraspp") else "out"
    return ModuleSegmenter(net, f"torchvision-seg:{arch}", f"tvseg-{arch}-{_state_hash(net, {'arch': arch})}",
                           num_classes=num_classes, maps=lambda x: net.backbone(x)[key])


def build_module(arch: str | None = None, options: dict | None = None, dataset: Dataset | None = None, seed: int = 0, log=print) -> ModuleSegmenter:
    """Factory of ``segmentation-module``: ``arch: "package.module:attr"`` builds the ``nn.Module``."""
    options = dict(options or {})
    if not arch or ":" not in str(arch):
        raise ConfigError("a segmentation-module entry names the callable that builds the network", key="arch",
                          fix="set 'arch: \"package.module:attr\"' (a function returning an nn.Module)")
    try:
        net = load_factory(str(arch))()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {arch!r}: {exc}", key="arch", fix="install the package that defines it, or fix the name") from None
    if options.get("checkpoint"):
        _load_into(net, options["checkpoint"], str(arch), log)
    num_classes = options.get("num_classes") or (len(dataset.classes) if dataset is not None else None)
    return ModuleSegmenter(net, f"module:{arch}", f"module-{_state_hash(net, {'arch': arch})}", num_classes=num_classes)
