"""Write ImageNet-C / CIFAR-C / ImageNet-P layout trees from a stream of source images.

Both builders take an iterable of ``(PIL image, class name, file stem)`` items
(e.g. from an ImageFolder: class = wnid, stem = ``ILSVRC2012_val_00000293``),
are pure functions of their arguments (same inputs and seed -> same files),
write every file atomically (temporary file in the target folder, then
``os.replace``) and are resumable: existing targets are skipped.

Corrupted trees (``build_c``)
    The parameters are those of one published generator, ``preset``
    (:data:`~rbx_robustness.engine.corruptions.PRESETS`: ``imagenet``,
    ``cifar``, ``tiny``).  Images are corrupted at their own resolution unless
    ``resize`` (shorter side, bilinear) and/or ``crop`` (centre) are given;
    ImageNet-C itself was made with ``resize=256, crop=224``.  Floats are cast
    to uint8 as the original did: truncation (``np.uint8(x*255)``), rounding
    for pixelate / JPEG (Pillow outputs).  Images are processed in fixed
    batches of ``batch_size`` in stream order; the generator of batch ``k``
    for (corruption, severity) is seeded from ``(seed, corruption, severity,
    k)``, so an interrupted and resumed build writes the same bytes as an
    uninterrupted one.  Layout by preset:

    ``imagenet`` / ``tiny``: ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG``
        (``fmt="JPEG"``, Pillow ``quality=85, optimize=True`` as both
        published sets) or ``<stem>.png`` (``fmt="png"``, lossless).
    ``cifar``: the CIFAR-10-C / CIFAR-100-C files, ``<out>/<corruption>.npy``
        (uint8, 5 N x 32 x 32 x 3, severity-major) and ``<out>/labels.npy``
        (the N labels repeated 5 times); all five severities, 32 px images.
        Labels are the CIFAR-10 (or CIFAR-100) class indices of the class
        names, or the class names themselves when they are integers.

    ``<out>/rbx-build.json`` records how the tree was made (preset and its
    source file, frost photographs, seed, preprocessing, a digest of the
    engine's code); the readers put it into the dataset fingerprint, and a
    resumed build with other settings is refused.

ImageNet-P (``build_p``)
    ``<out>/<perturbation>/<class>/<stem>.mp4``: H.264 via PyAV (libx264),
    1 frame/s as published (``-r 1``), frames 0..T-1 in order.  Source
    preprocessing as published: ``Resize(256)``, then ``crop=224`` applied
    inside :func:`~rbx_robustness.engine.perturbations.sequence` (before the
    perturbation for pixel-wise ones, after it for geometric ones).  Each
    sequence is seeded from ``(seed, perturbation, class, stem)``.  Frames are
    rounded to uint8 before encoding.  Codec presets (``codec=``):

    ``"lossless"`` (default)  ``libx264rgb``, ``rgb24``, ``qp=0``, preset
        ``fast``: bit-exact RGB frames (H.264 High 4:4:4 Predictive; decoded
        exactly by PyAV/ffmpeg and by OpenCV's ``VideoCapture``, which the
        official ImageNet-P loader uses).  About 0.3-2.7 MB per 31-frame 224
        px sequence (noise sequences are the largest), ~3-10x the published
        size.
    ``"near_lossless"``  ``libx264``, ``yuv444p``, ``qp=0``: lossless in YUV,
        only the 8-bit RGB<->YUV conversion loses (mean 0.4, max 2 levels);
        somewhat smaller, and a plain YUV H.264 stream.
    ``"published"``  the command of ``make_imagenet_p.py`` (``ffmpeg -r 1
        -framerate 1 -i img%01d.png -vcodec libx264 -crf 20 -preset
        veryslow``; noise sequences ``-tune grain`` with the default CRF 23).
        It passes no ``-pix_fmt``, and for RGB PNG input ffmpeg's libx264
        wrapper then picks ``yuv444p`` ("No pixel format specified, yuv444p
        for H.264 encoding chosen"), so this preset uses ``yuv444p``.  Lossy.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .corruptions import CORRUPTIONS, PRESETS, corrupt, frost_source
from .perturbations import PERTURBATIONS, sequence

__all__ = ["build_c", "build_p", "CODEC_PRESETS", "PROVENANCE_FILE", "cifar_label", "engine_digest", "seed_for"]

#: Provenance file of a built corrupted tree (module docstring).
PROVENANCE_FILE = "rbx-build.json"
_ENGINE_FILES = ("corruptions.py", "presets.py", "perturbations.py", "_ops.py")

CODEC_PRESETS = {
    "lossless": {"codec": "libx264rgb", "pix_fmt": "rgb24", "options": {"qp": "0", "preset": "fast"}},
    "near_lossless": {"codec": "libx264", "pix_fmt": "yuv444p", "options": {"qp": "0", "preset": "medium"}},
    "published": {"codec": "libx264", "pix_fmt": "yuv444p", "options": {"crf": "20", "preset": "veryslow"},
                  "noise_options": {"tune": "grain", "preset": "veryslow"}},
}


def seed_for(*parts) -> int:
    """Stable 63-bit seed from a tuple of parts (crc32 of their repr, chained)."""
    h = 0
    for p in parts:
        h = zlib.crc32(repr(p).encode("utf-8"), h)
    return (h * 0x9E3779B97F4A7C15 + len(parts)) % (1 << 63)


def _preprocess(img, resize: int | None, crop: int | None) -> torch.Tensor:
    from PIL import Image
    import torchvision.transforms.functional as TF

    img = img.convert("RGB")
    if resize is not None:
        img = TF.resize(img, resize, interpolation=TF.InterpolationMode.BILINEAR)
    if crop is not None:
        img = TF.center_crop(img, crop)
    arr = np.asarray(img, dtype=np.uint8)
    assert isinstance(img, Image.Image)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _to_uint8(x: torch.Tensor, mode: str = "floor") -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8: ``floor`` truncates like the
    original ``np.uint8(x * 255)``; ``round`` for the Pillow-based corruptions."""
    v = x.clamp(0.0, 1.0) * 255.0
    v = torch.round(v) if mode == "round" else torch.floor(v + 1e-4)
    return v.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _atomic_save_image(arr: np.ndarray, path: Path, fmt: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        im = Image.fromarray(arr)
        if fmt == "JPEG":
            im.save(tmp, format="JPEG", quality=85, optimize=True)
        else:
            im.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _batches(items: Iterable, n: int):
    buf = []
    for it in items:
        buf.append(it)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def engine_digest() -> str:
    """sha256 of the engine's code: generated data changes when it changes."""
    h = hashlib.sha256()
    folder = Path(__file__).parent
    for name in _ENGINE_FILES:
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def cifar_label(name: str) -> int:
    """Label index of a class folder for CIFAR-C files: the CIFAR-10 index of a
    CIFAR-10 class name, else the CIFAR-100 index of a CIFAR-100 fine label,
    else the name itself when it is an integer."""
    from rbx_robustness.readers._npy import CIFAR10_CLASSES, CIFAR100_CLASSES

    for classes in (CIFAR10_CLASSES, CIFAR100_CLASSES):
        if name in classes:
            return list(classes).index(name)
    if name.isdigit():
        return int(name)
    raise ValueError(f"class folder '{name}' is neither a CIFAR-10/100 class name nor an integer label; "
                     "fix: name the class folders after the CIFAR classes (airplane, automobile, ...) or 0..N-1")


def _write_provenance(out: Path, record: dict) -> None:
    path = out / PROVENANCE_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old is not None and old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(f"'{out}' was built with other settings ({', '.join(diff)} differ: {path}); "
                             "fix: write to a new folder, or rebuild with the same options")
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def build_c(source_images_iter: Iterable, out_dir, corruptions: Sequence[str] | None = None,
            severities: Sequence[int] = (1, 2, 3, 4, 5), *, preset: str = "imagenet", fmt: str = "JPEG",
            resize: int | None = None, crop: int | None = None, batch_size: int = 16, seed: int = 0,
            device: str | torch.device = "cpu") -> dict:
    """Write a corrupted tree in the layout of ``preset``; returns ``{"written": n, "skipped": m}``
    (images for the folder layouts, (corruption, image, severity) triples for CIFAR-C).

    ``source_images_iter`` yields ``(PIL image, class name, file stem)``.
    ``corruptions`` defaults to all 19; ``fmt`` is ``"JPEG"`` (published) or
    ``"png"`` (folder layouts only).  See the module docstring.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
    if fmt not in ("JPEG", "png"):
        raise ValueError("fmt must be 'JPEG' or 'png'")
    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    for n in names:
        if n not in CORRUPTIONS:
            raise KeyError(n)
    out = Path(out_dir)
    record = {"engine": engine_digest()[:16], "preset": preset, "parameters": PRESETS[preset].source, "seed": int(seed),
              "resize": resize, "crop": crop, "batch_size": int(batch_size),
              "frost": frost_source() if "frost" in names else None}
    if preset == "cifar":
        if sorted(int(s) for s in severities) != [1, 2, 3, 4, 5]:
            raise ValueError("the CIFAR-C layout stacks all five severities in each file; fix: build severities 1-5")
        _write_provenance(out, record)
        return _build_cifar_c(list(source_images_iter), out, names, resize, crop, batch_size, seed, torch.device(device))
    record["format"] = fmt
    _write_provenance(out, record)
    ext = "JPEG" if fmt == "JPEG" else "png"
    dev = torch.device(device)
    stats = {"written": 0, "skipped": 0}
    for k, items in enumerate(_batches(source_images_iter, batch_size)):
        todo = []
        for name in names:
            for s in severities:
                targets = [out / name / str(s) / cls / f"{stem}.{ext}" for _, cls, stem in items]
                missing = [i for i, t in enumerate(targets) if not t.exists()]
                stats["skipped"] += len(targets) - len(missing)
                if missing:
                    todo.append((name, s, targets, missing))
        if not todo:
            continue
        groups = _same_size_groups([_preprocess(img, resize, crop) for img, _, _ in items])
        for name, s, targets, missing in todo:
            for j, (idx, batch) in enumerate(groups):
                # one group (equal sizes): seeded by batch; several: by batch and group, in stream order
                parts = (seed, name, int(s), k) if len(groups) == 1 else (seed, name, int(s), k, j)
                g = torch.Generator(device=dev).manual_seed(seed_for(*parts))
                y = corrupt(batch.to(dev), name, int(s), g, preset=preset)
                for row, i in enumerate(idx):
                    if i in missing:
                        _atomic_save_image(_to_uint8(y[row], CORRUPTIONS[name].quantize), targets[i], fmt)
                        stats["written"] += 1
    return stats


def _same_size_groups(images: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """Images at their own sizes: stacked per size, groups in order of first appearance."""
    by_shape: dict[tuple, list[int]] = {}
    for i, t in enumerate(images):
        by_shape.setdefault(tuple(t.shape), []).append(i)
    return [(idx, torch.stack([images[i] for i in idx])) for idx in by_shape.values()]


def _build_cifar_c(items: list, out: Path, names: list[str], resize, crop, batch_size: int, seed: int, dev) -> dict:
    size = PRESETS["cifar"].size
    labels = np.array([cifar_label(cls) for _, cls, _ in items], dtype=np.int64)
    stats = {"written": 0, "skipped": 0}
    todo = [n for n in names if not (out / f"{n}.npy").is_file()]
    stats["skipped"] = (len(names) - len(todo)) * len(items) * 5
    x = None
    if todo:
        x = torch.stack([_preprocess(img, resize, crop).mul_(255).round_().to(torch.uint8) for img, _, _ in items])
        if tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"the cifar preset writes {size} px CIFAR-C files but the images are "
                             f"{x.shape[-1]}x{x.shape[-2]}; fix: pass --resize {size} --crop {size}")
    for name in todo:
        arr = np.empty((5 * len(items), size, size, 3), dtype=np.uint8)
        for s in range(1, 6):
            for k in range(0, len(items), batch_size):
                g = torch.Generator(device=dev).manual_seed(seed_for(seed, name, s, k // batch_size))
                y = corrupt(x[k: k + batch_size].to(dev).float().div_(255.0), name, s, g, preset="cifar")
                for i, img in enumerate(y):
                    arr[(s - 1) * len(items) + k + i] = _to_uint8(img, CORRUPTIONS[name].quantize)
        _atomic_save_npy(arr, out / f"{name}.npy")
        stats["written"] += arr.shape[0]
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.int64
    _atomic_save_npy(np.tile(labels, 5).astype(dtype), out / "labels.npy")
    return stats


def _atomic_save_npy(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _encode_mp4(frames: torch.Tensor, path: Path, codec: str, noise: bool) -> None:
    import av

    preset = CODEC_PRESETS[codec]
    opts = dict(preset.get("noise_options", preset["options"]) if noise else preset["options"])
    arr = torch.round(frames.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    t, h, w, _ = arr.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(preset["codec"], rate=1, options=opts)
            stream.width, stream.height = w, h
            stream.pix_fmt = preset["pix_fmt"]
            for fr in arr:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")
                for pkt in stream.encode(vf):
                    container.mux(pkt)
            for pkt in stream.encode():
                container.mux(pkt)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_mp4(path) -> torch.Tensor:
    """Decode an mp4 written by :func:`build_p` (or ImageNet-P) to (T, 3, H, W) float."""
    import av

    with av.open(str(path)) as c:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    return torch.stack(frames).permute(0, 3, 1, 2).float() / 255.0


def build_p(source_images_iter: Iterable, out_dir, perturbations: Sequence[str] | None = None, *,
            resize: int | None = 256, crop: int | None = 224, codec: str = "lossless", seed: int = 0,
            difficulty: int = 1, device: str | torch.device = "cpu") -> dict:
    """Write an ImageNet-P layout tree of mp4 sequences; returns ``{"written", "skipped"}``.

    ``source_images_iter`` yields ``(PIL image, class name, file stem)``;
    ``perturbations`` defaults to all 14; ``codec`` is a key of
    :data:`CODEC_PRESETS`.  With ``difficulty`` 2 or 3 the noise perturbations
    are written to ``<name>_<difficulty>`` folders as in the original script.
    """
    if codec not in CODEC_PRESETS:
        raise ValueError(f"codec must be one of {sorted(CODEC_PRESETS)}")
    names = list(perturbations) if perturbations is not None else list(PERTURBATIONS)
    for n in names:
        if n not in PERTURBATIONS:
            raise KeyError(n)
    out = Path(out_dir)
    dev = torch.device(device)
    stats = {"written": 0, "skipped": 0}
    for img, cls, stem in source_images_iter:
        x = None
        for name in names:
            spec = PERTURBATIONS[name]
            folder = name if (difficulty == 1 or spec.kind != "noise") else f"{name}_{difficulty}"
            target = out / folder / cls / f"{stem}.mp4"
            if target.exists():
                stats["skipped"] += 1
                continue
            if x is None:
                x = _preprocess(img, resize, None).to(dev)
            g = torch.Generator(device=dev).manual_seed(seed_for(seed, name, difficulty, cls, stem))
            frames = sequence(x, name, g, crop=crop, difficulty=difficulty)
            _encode_mp4(frames, target, codec, spec.kind == "noise")
            stats["written"] += 1
    return stats
