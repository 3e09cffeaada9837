"""Offline test helpers: a tiny open_clip model with random weights and tiny
trees in the distributed ImageNet / MOS / shifted-ImageNet layouts.

Nothing is downloaded. The tiny model (``rbx-tiny-clip``: 32 px images,
4 px patches → 64 patches, a 2-block width-32 ViT, a 1-block width-32 text
transformer, 16-d embeddings) keeps CLIP's tokenizer and 77-token context, so
prompt construction is exercised exactly as on ViT-B/16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 4, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_NAME = "rbx-tiny-clip"
#: Three real wnids (standard indices 0, 1, 6: tench, in neither ImageNet-A nor -R; goldfish, in
#: ImageNet-R; stingray, in both).
WNIDS = ("n01440764", "n01443537", "n01498041")
#: Their indices in the standard 1000-class order (ImageNet-V2 folder names).
STANDARD_INDEX = (0, 1, 6)
COLOURS = ((220, 40, 40), (40, 200, 60), (40, 60, 220))


def save_tiny_clip(folder: Path, seed: int = 0, quick_gelu: bool = False) -> tuple[Path, Path]:
    """Write ``<folder>/rbx-tiny-clip.json`` and random weights ``tiny-clip.safetensors``; return both paths."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{TINY_NAME}.json"
    config.write_text(json.dumps(dict(TINY_CONFIG, quick_gelu=quick_gelu)))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    from rbx_vlm.model import _create

    net = _create(TINY_NAME, None, quick_gelu)
    weights = folder / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    return config, weights


def _image(path: Path, colour, rng: np.random.Generator, size: int = 40) -> None:
    from PIL import Image

    base = np.asarray(colour, dtype=np.float64)[None, None, :]
    arr = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _noise(path: Path, rng: np.random.Generator, size: int = 40) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def make_imagenet_tree(root: Path, *, train: int = 6, val: int = 3, ood: int = 4, seed: int = 0) -> dict[str, Path]:
    """Tiny trees in the distributed layouts; returns the folders by role.

    ``Imagenet/{train,val}/<wnid>/*.JPEG``; ``ood_data/iNaturalist/images/*.jpg``,
    ``ood_data/dtd/images/<texture>/*.jpg`` (+ DTD's stray ``waffled/.directory``);
    ``domains/imagenetv2-matched-frequency-format-val/<0|1|6>/*.jpeg``,
    ``domains/sketch/<wnid>/*.JPEG``, ``domains/imagenet-a/<stingray>/*.jpg``,
    ``domains/imagenet-r/<goldfish, stingray>/*.jpg``: partial A and R trees
    (the classes of the official 200 among the three).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    paths = {
        "imagenet": root / "Imagenet",
        "ood_root": root / "ood_data",
        "v2": root / "domains" / "imagenetv2-matched-frequency-format-val",
        "sketch": root / "domains" / "sketch",
        "a": root / "domains" / "imagenet-a",
        "r": root / "domains" / "imagenet-r",
    }
    for c, (wnid, colour) in enumerate(zip(WNIDS, COLOURS)):
        for i in range(train):
            _image(paths["imagenet"] / "train" / wnid / f"{wnid}_{i}.JPEG", colour, rng)
        for i in range(val):
            _image(paths["imagenet"] / "val" / wnid / f"ILSVRC2012_val_{c}{i:04d}.JPEG", colour, rng)
            _image(paths["v2"] / str(STANDARD_INDEX[c]) / f"{c}{i:03d}.jpeg", colour, rng)
            _image(paths["sketch"] / wnid / f"sketch_{i}.JPEG", colour, rng)
        for i in range(val):  # A and R hold 200 of the 1000 classes: here stingray / goldfish and stingray
            if c == 2:
                _image(paths["a"] / wnid / f"a_{i}.jpg", colour, rng)
            if c != 0:
                _image(paths["r"] / wnid / f"art_{i}.jpg", colour, rng)
    for i in range(ood):
        _noise(paths["ood_root"] / "iNaturalist" / "images" / f"{i:05d}.jpg", rng)
        _noise(paths["ood_root"] / "dtd" / "images" / ("banded" if i % 2 else "waffled") / f"tex_{i}.jpg", rng)
    stray = paths["ood_root"] / "dtd" / "images" / "waffled" / ".directory"
    stray.write_text("[Dolphin]\n")
    return paths


def write_config(path: Path, tree: dict[str, Path], config: Path, weights: Path) -> Path:
    """A datasets.yaml with the tiny model and an ``imagenet`` entry using every reader."""
    import yaml

    data = {
        "models": {"tiny-clip": {"type": "openclip", "arch": str(config), "checkpoint": str(weights)}},
        "datasets": {
            "tiny-imagenet": {
                "type": "imagenet",
                "root": str(tree["imagenet"]),
                "train": "train",
                "test": "val",
                "label_space": "imagenet-1k",
                "ood_root": str(tree["ood_root"]),
                "ood": ["iNaturalist", "Textures"],
                "dg": {
                    "imagenet-v2": str(tree["v2"]),
                    "imagenet-sketch": str(tree["sketch"]),
                    "imagenet-a": str(tree["a"]),
                    "imagenet-r": str(tree["r"]),
                },
            }
        },
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
