"""``timm:<arch>``: any timm classifier.

Weights, first match wins:

1. ``checkpoint:`` in the model's datasets.yaml entry: a ``.safetensors`` file,
   or a PyTorch file read with ``torch.load(..., weights_only=True)`` (never a
   bare unpickle); a ``state_dict`` / ``model`` / ``model_state_dict`` wrapper
   key is unwrapped;
2. ``pretrained: true`` (the default when no checkpoint is given): timm's hub
   weights, downloaded by timm when the hub is reachable;
3. ``pretrained: false``: random initialisation (tests, smoke runs).

``members:`` (a list of checkpoints of the same architecture) makes the model an
ensemble for Deep Ensembles: ``members(k)`` is the evaluated model and the first
``k - 1`` of them. Each member's weights come from its file alone (never the hub).

Features are the pooled pre-logits (``forward_head(pre_logits=True)``), i.e. the
input of the classifier, so ``logits = features @ W.T + b`` holds exactly when
the classifier is a single ``nn.Linear``; ``feature_maps`` are
``forward_features``. The explanation layer (Grad-CAM's target) is the module
of the last entry of timm's ``feature_info`` (``layer4`` of a ResNet,
``stages.3`` of a ConvNeXt), declared only for models whose maps there are
``(B, C, H, W)``: not for token models (ViT: ``num_prefix_tokens``) nor for
channels-last ones (Swin: ``output_fmt == "NHWC"``). The input transform is timm's evaluation transform for
the weights' pretrained config (resize, centre crop, normalisation).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_x.api import Model, checkpoint_shapes, load_state_dict
from robustbench_x.errors import ConfigError


class TimmModel(Model):
    def __init__(self, net: nn.Module, name: str, fingerprint: str) -> None:
        import timm.data

        self.net = net.eval()
        self.name = name
        self.num_classes = int(net.num_classes)
        self._fingerprint = fingerprint
        #: ``members:`` checkpoints and how to build member ``i`` from them (see :func:`build`).
        self.member_files: list[Path] = []
        self.member_factory = None
        config = timm.data.resolve_data_config({}, model=net)
        self._transform = timm.data.create_transform(**config, is_training=False)
        self.input_std = tuple(float(s) for s in config.get("std", (1.0, 1.0, 1.0)))
        classifier = net.get_classifier()
        provides = {"logits", "features", "input_grad", "grad", "feature_maps"}
        if isinstance(classifier, nn.Linear):
            provides.add("linear_head")
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules()):
            provides.add("dropout")
        if self._explanation_module() is not None:
            provides.add("explanation_layer")
        self.provides = frozenset(provides)

    @property
    def module(self) -> nn.Module:
        return self.net

    def transform(self):
        tf = self._transform

        def apply(image):
            return tf(image.convert("RGB"))

        return apply

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        maps = self.net.forward_features(x)
        feats = self.net.forward_head(maps, pre_logits=True)
        return self.net.get_classifier()(feats), feats

    def feature_extractor(self) -> nn.Module:
        net = self.net

        class _Features(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

        return _Features()

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.get_classifier()(features)

    def _explanation_module(self) -> nn.Module | None:
        info = getattr(self.net, "feature_info", None)
        if not info or getattr(self.net, "num_prefix_tokens", None) is not None or getattr(self.net, "output_fmt", "NCHW") != "NCHW":
            return None
        last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
        try:
            return self.net.get_submodule(last["module"])
        except (AttributeError, KeyError):
            return None

    def explanation_layer(self) -> nn.Module | None:
        return self._explanation_module()

    def linear_head(self):
        fc = self.net.get_classifier()
        if not isinstance(fc, nn.Linear):
            raise NotImplementedError(f"{self.name}: classifier is {type(fc).__name__}, not a single linear layer")
        bias = fc.bias.detach().cpu().numpy() if fc.bias is not None else np.zeros(fc.out_features, dtype=np.float32)
        return fc.weight.detach().cpu().numpy().copy(), bias.copy()

    def fingerprint(self) -> str:
        return self._fingerprint

    def members(self, k: int) -> list[Model]:
        """The evaluated model and the first ``k - 1`` checkpoints of the entry's ``members:``."""
        files = self.member_files
        if k - 1 > len(files):
            raise ConfigError(
                f"{self.name}: an ensemble of {k} is this model and {k - 1} others, but the models entry lists "
                f"{len(files)} member checkpoint{'s' if len(files) != 1 else ''}", key="members",
                fix=f"list {k - 1} checkpoints of independently trained networks under `members:` (Deep Ensembles use 5 networks in all)",
            )
        return [self] + [self.member_factory(i) for i in range(k - 1)]


def _hash_state(net: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def build(arch: str | None = None, options: dict | None = None, dataset=None, seed: int = 0, log=print) -> TimmModel:
    options = dict(options or {})
    if not arch:
        raise ConfigError("a timm model needs an architecture", key="arch", fix="name it timm:<arch> or set 'arch:' in the models entry")
    checkpoint = options.get("checkpoint")
    pretrained = bool(options.get("pretrained", checkpoint is None))
    num_classes = int(options["num_classes"]) if options.get("num_classes") is not None else None
    net = _create(arch, num_classes, pretrained=pretrained and checkpoint is None)
    if checkpoint:
        _load(net, Path(str(checkpoint)).expanduser(), arch, "checkpoint", log)
    model = TimmModel(net, f"timm:{arch}", fingerprint=f"timm-{arch}-{_hash_state(net)}")
    members = [Path(str(m)).expanduser() for m in options.get("members") or []]
    if members:
        model.member_files = members
        model.member_factory = lambda i: _member(arch, num_classes, members[i], i, log)
        model.provides = model.provides | {"ensemble"}
    return model


def check(arch: str | None = None, options: dict | None = None) -> None:
    """Before any work: the architecture exists, and every checkpoint (``checkpoint``,
    ``members``) has its tensors' names and shapes. The network is built on the
    ``meta`` device (no memory, no weights) and compared with the files' headers."""
    options = dict(options or {})
    files = ([("checkpoint", options["checkpoint"])] if options.get("checkpoint") else []) + [
        (f"members[{i}]", m) for i, m in enumerate(options.get("members") or [])]
    if not arch or not files:
        return
    num_classes = int(options["num_classes"]) if options.get("num_classes") is not None else None
    with torch.device("meta"):
        net = _create(arch, num_classes, pretrained=False)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    classifier = getattr(net.get_classifier(), "weight", None)
    head = next((name for name, p in net.named_parameters() if p is classifier), None)
    for key, path in files:
        found = checkpoint_shapes(path, key=key)
        missing = [name for name in expected if name not in found]
        wrong = [name for name in expected if name in found and found[name] != expected[name]]
        if not (missing or wrong):
            continue
        if missing:
            what, fix = f"{len(missing)} of the architecture's tensors are missing from it, e.g. {missing[:3]}", "name the architecture the checkpoint was trained with (arch:)"
        elif wrong == [head] or (head in wrong and len(found[head]) == 2):
            what = f"its classifier has {found[head][0]} outputs, the entry's architecture {expected[head][0]}"
            fix = f"set num_classes: {found[head][0]} (and the label space of the data it was trained on)"
        else:
            shown = [f"{name} {found[name]} vs {expected[name]}" for name in wrong[:2]]
            what, fix = f"{len(wrong)} tensors have other shapes, e.g. {shown}", "name the architecture the checkpoint was trained with (arch:)"
        raise ConfigError(f"the checkpoint does not fit timm:{arch}: {what}", file=str(path), key=key, fix=fix)


def _create(arch: str, num_classes: int | None, *, pretrained: bool) -> nn.Module:
    import timm

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        raise ConfigError(f"timm could not build '{arch}': {exc}", key="arch", fix="check `timm.list_models()`; set 'pretrained: false' or 'checkpoint:' when offline") from None


def _load(net: nn.Module, path: Path, arch: str, key: str, log) -> None:
    if not path.is_file():
        raise ConfigError("checkpoint file not found", file=str(path), key=key, fix="give the path of a .safetensors or .pth file")
    missing, unexpected = net.load_state_dict(load_state_dict(path), strict=False)
    if missing:
        raise ConfigError(f"checkpoint does not fit '{arch}': missing {len(missing)} keys, e.g. {missing[:3]}", file=str(path), key=key, fix="use the architecture the checkpoint was trained with")
    if unexpected:
        log(f"timm:{arch}: ignored {len(unexpected)} unexpected keys of {path.name}")


def _member(arch: str, num_classes: int | None, path: Path, i: int, log) -> TimmModel:
    # A member's weights all come from its file: a hub download would make it the evaluated model's twin.
    net = _create(arch, num_classes, pretrained=False)
    _load(net, path, arch, f"members[{i}]", log)
    return TimmModel(net, f"timm:{arch} member {i + 1}", fingerprint=f"timm-{arch}-{_hash_state(net)}")
