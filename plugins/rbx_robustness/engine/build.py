"""Write ImageNet-C / ImageNet-P layout trees from a stream of source images.

Both builders take an iterable of ``(PIL image, class name, file stem)`` items
(e.g. from an ImageFolder: class = wnid, stem = ``ILSVRC2012_val_00000293``),
are pure functions of their arguments (same inputs and seed -> same files),
write every file atomically (temporary file in the target folder, then
``os.replace``) and are resumable: existing targets are skipped.

ImageNet-C (``build_c``)
    ``<out>/<corruption>/<severity>/<class>/<stem>.JPEG`` (``fmt="JPEG"``,
    Pillow ``quality=85, optimize=True`` as published) or ``<stem>.png``
    (``fmt="png"``, lossless).  Source preprocessing as published:
    ``Resize(256)`` + ``CenterCrop(224)`` (set ``resize=None`` / ``crop=None``
    to skip).  Floats are cast to uint8 as the original did: truncation
    (``np.uint8(x*255)``), rounding for pixelate / JPEG (Pillow outputs).  Images are processed in fixed batches of ``batch_size`` in
    stream order; the generator of batch ``k`` for (corruption, severity) is
    seeded from ``(seed, corruption, severity, k)``, so an interrupted and
    resumed build writes the same bytes as an uninterrupted one.

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
    ``"published"``  what ``make_imagenet_p.py`` used: ``yuv420p`` (ffmpeg's
        default for RGB PNG input), preset ``veryslow``, ``crf=20``; noise
        sequences ``tune=grain`` with the default CRF (23).  Lossy (mean abs
        error ~1.8 levels, ~5.5 for noise), like the distributed ImageNet-P.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .corruptions import CORRUPTIONS, corrupt
from .perturbations import PERTURBATIONS, sequence

__all__ = ["build_c", "build_p", "CODEC_PRESETS", "seed_for"]

CODEC_PRESETS = {
    "lossless": {"codec": "libx264rgb", "pix_fmt": "rgb24", "options": {"qp": "0", "preset": "fast"}},
    "near_lossless": {"codec": "libx264", "pix_fmt": "yuv444p", "options": {"qp": "0", "preset": "medium"}},
    "published": {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"crf": "20", "preset": "veryslow"},
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


def build_c(source_images_iter: Iterable, out_dir, corruptions: Sequence[str] | None = None,
            severities: Sequence[int] = (1, 2, 3, 4, 5), *, fmt: str = "JPEG", resize: int | None = 256,
            crop: int | None = 224, batch_size: int = 16, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Write an ImageNet-C layout tree; returns ``{"written": n, "skipped": m}``.

    ``source_images_iter`` yields ``(PIL image, class name, file stem)``.
    ``corruptions`` defaults to all 19; ``fmt`` is ``"JPEG"`` (published) or
    ``"png"``.  See the module docstring for layout, seeding and atomicity.
    """
    if fmt not in ("JPEG", "png"):
        raise ValueError("fmt must be 'JPEG' or 'png'")
    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    for n in names:
        if n not in CORRUPTIONS:
            raise KeyError(n)
    out = Path(out_dir)
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
        batch = torch.stack([_preprocess(img, resize, crop) for img, _, _ in items]).to(dev)
        for name, s, targets, missing in todo:
            g = torch.Generator(device=dev).manual_seed(seed_for(seed, name, int(s), k))
            y = corrupt(batch, name, int(s), g)
            for i in missing:
                _atomic_save_image(_to_uint8(y[i], CORRUPTIONS[name].quantize), targets[i], fmt)
                stats["written"] += 1
    return stats


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
