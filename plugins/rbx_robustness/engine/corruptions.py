"""Batched ImageNet-C / CIFAR-C / Tiny-ImageNet-C corruptions in pure torch.

The 15 test corruptions and the 4 extra ("validation") corruptions of
Hendrycks & Dietterich, *Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations* (ICLR 2019), at severities 1-5 with the
published parameters of ``ImageNet-C/create_c/make_imagenet_c.py`` in
hendrycks/robustness (commit 8190fe3).  Each entry of :data:`CORRUPTIONS`
carries its per-severity parameter table, the source function it follows and
the ways it departs from that function.

Conventions
-----------
* Input and output: float tensors ``(B, 3, H, W)`` in ``[0, 1]`` on any device
  (CPU or CUDA); the work is done in float32 and the input dtype is restored.
  The original code works on uint8 PIL images and returns floats in 0..255
  that are later cast with ``np.uint8``; this engine returns unquantised
  floats (``build.build_c`` quantises when writing files).  Intermediate
  quantisation steps that are part of an algorithm (glass blur's uint8 cast,
  snow's 8-bit snow layer, spatter's uint8 image processing, JPEG) are kept.
* Randomness comes only from the ``generator`` argument (a ``torch.Generator``;
  ``None`` uses torch's global RNG).  A generator on another device than the
  batch works (numbers are drawn on its device and copied).  Every image of a
  batch gets independent random draws.  The random streams are torch's, so
  outputs are not bit-identical to the numpy-seeded original; deterministic
  corruptions are identical up to float rounding.
* Image size: the parameters are those of one published generator, chosen
  with ``preset=`` (:data:`PRESETS`): ``imagenet`` (224 px,
  ``make_imagenet_c.py``, the default), ``cifar`` (32 px, ``make_cifar_c.py``)
  or ``tiny`` (64 px, ``make_tinyimagenet_c.py``); see :mod:`.presets`.  They
  are applied unchanged (in pixels) at any size; size-dependent loops and crops
  (glass-blur sweep, clipped zoom, frost crop, fog map) follow the image size.
  Fog uses the generator's plasma map size (256 / 32 / 64) when the image fits
  in it and the next power of two above otherwise.

Not pure torch
--------------
* ``pixelate``: on CPU, Pillow's BOX then NEAREST resizes of the uint8 image
  as published (Pillow, or its fixed-point arithmetic compiled); elsewhere
  Pillow's BOX coefficients as matrices, in float.
* ``jpeg_compression``: ``torchvision.io.encode_jpeg`` / ``decode_jpeg``: on
  CPU the libjpeg round trip of Pillow as published (pixel-identical), on CUDA
  nvJPEG when the installed torchvision supports it, else the CPU codec.
  Input is rounded to uint8 first (the original JPEG-encodes the uint8 image).
* Everything else is torch only; on the CPU, optional numba kernels
  (:mod:`._compiled`) replace the steps torch runs slowly on one core (glass
  blur's sweeps, separable filters, zoom sum, plasma map, shot noise's table
  look-up, spatter's OpenCV chain, the pointwise tails), with the same random
  draws and results equal up to float32 summation order.

Frost uses the photographs of the PyPI package ``torch-uncertainty-assets``
(two of the five drawn are JPEG re-encodings of the originals, see
:data:`ASSET_FROST_FILES`), or the original files from ``RBX_FROST_DIR``;
:func:`frost_source` names the source and hashes the photos.  Re-implemented
library parts (see each entry's ``deviations``): ImageMagick motion blur,
spatter's OpenCV chain (Canny, distance transform, histogram equalisation;
exact Euclidean distance instead of OpenCV's 5x5 chamfer approximation).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _compiled, _ops, presets

SOURCE_C = "hendrycks/robustness@8190fe3:ImageNet-C/create_c/make_imagenet_c.py"

__all__ = [
    "CORRUPTIONS",
    "CorruptionSpec",
    "TEST_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "PRESETS",
    "Preset",
    "corrupt",
    "frost_source",
    "set_frost_images",
]


# =========================================================================== helpers


def _uint8_levels_unit_(x: torch.Tensor) -> torch.Tensor:
    """``np.uint8(x * 255) / 255`` for x in [0, 1]: truncation to 8-bit levels,
    in place on the temporary ``x``."""
    if _pointwise_kernels(x):
        return _compiled.levels_unit_(x)  # the line below in one pass
    return x.clamp_(0.0, 1.0).mul_(255.0).add_(1e-4).floor_().div_(255.0)


# =========================================================================== noise


def _pointwise_kernels(x: torch.Tensor) -> bool:
    # the pointwise compiled kernels take contiguous float32 CPU batches
    return _ops._cpu_kernels(x) and x.dtype == torch.float32 and x.is_contiguous() and _compiled.available()


def _gaussian_noise(x, p, g):
    (sigma,) = p
    n = _ops.randn(x.shape, g, x.device)
    if _pointwise_kernels(x):
        return _compiled.noise_apply(x, n, "gaussian", sigma)  # the line below in one pass
    return (x + n.mul_(sigma)).clamp_(0.0, 1.0)


def _shot_noise(x, p, g):
    (lam,) = p
    # The published generator draws from an 8-bit image: 256 rates, sampled
    # exactly (and ~10x faster) from per-level CDF tables.  Other inputs take
    # torch's general Poisson sampler.
    if _pointwise_kernels(x):
        levels = _compiled.u8_levels(x)  # the lines below in one pass
    else:
        levels = x.mul(255.0).round_()
        if not bool((levels.mul(1.0 / 255.0).sub_(x).abs_() <= 1e-6).all()):
            levels = None
    if levels is not None:
        return _ops.poisson_levels(levels, lam, g)
    return _ops.poisson(x * lam, g).div_(lam).clamp_(0.0, 1.0)


def _impulse_noise(x, p, g):
    # skimage.util.random_noise(mode='s&p', amount=a, salt_vs_pepper=0.5): every
    # element (channels independently) is replaced with prob a, by 1 or 0 with
    # prob 1/2 each.  One uniform draw per element encodes both decisions.
    (amount,) = p
    u = _ops.rand(x.shape, g, x.device)
    if _pointwise_kernels(x):
        return _compiled.noise_apply(x, u, "impulse", amount)  # the line below in one pass
    # u < amount/2: pepper (0); amount/2 <= u < amount: salt (1); else unchanged
    return torch.where(u < amount, (u >= amount * 0.5).to(x.dtype), x)


def _speckle_noise(x, p, g):
    (sigma,) = p
    n = _ops.randn(x.shape, g, x.device)
    if _pointwise_kernels(x):
        return _compiled.noise_apply(x, n, "speckle", sigma)  # the lines below in one pass
    n.mul_(sigma)
    return (x + x * n).clamp_(0.0, 1.0)


# =========================================================================== blur


def _gaussian_blur(x, p, g):
    (sigma,) = p
    return _ops.gaussian_filter(x, sigma, mode="nearest").clamp_(0.0, 1.0)


def glass_source_index(h: int, w: int, delta: int, offsets: torch.Tensor) -> torch.Tensor:
    """Source-pixel map of one sweep of the published glass-blur pixel shuffle.

    The original loops ``for h in range(H - d, d, -1): for w in range(W - d, d,
    -1)`` and executes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` with
    ``(h', w') = (h + dy, w + dx)``, ``dx, dy = randint(-d, d)``.  Because
    ``x[h, w]`` is a numpy *view*, that statement is a copy ``x[h, w] <-
    x[h', w']`` and not a swap (pixels get duplicated; the numba port in
    ``imagecorruptions`` behaves the same).  Sequentially, pixel (h, w) thus
    receives the *final* value of (h', w') when (h', w') was visited before it
    (later in raster order and inside the swept region), otherwise the original
    value of (h', w').  That dependency chain is resolved here exactly and in
    parallel by pointer jumping.

    ``offsets``: (B, nh, nw, 2) integer (dy, dx) for the swept positions in
    raster order of ``h = d+1 .. H-d``, ``w = d+1 .. W-d``.
    Returns (B, H*W) long: flat index of the original pixel each output pixel
    copies.
    """
    b = offsets.shape[0]
    dev = offsets.device
    n = h * w
    i32 = torch.int32
    hs = torch.arange(delta + 1, h - delta + 1, device=dev, dtype=i32).view(1, -1, 1)
    ws = torch.arange(delta + 1, w - delta + 1, device=dev, dtype=i32).view(1, 1, -1)
    dy = offsets[..., 0].to(i32)
    dx = offsets[..., 1].to(i32)
    qh = hs + dy  # always inside the image: dy in [-d, d-1]
    qw = ws + dx
    # (h', w') is visited before (h, w) (later in raster order, inside the sweep)
    forward = ((dy > 0) | ((dy == 0) & (dx > 0))) & (qh <= h - delta) & (qw >= delta + 1) & (qw <= w - delta)
    # Node space (flat, int32; index_select is far cheaper than int64 gather):
    # image i owns [2 n i, 2 n (i+1)); local [0, n) = "final value of pixel",
    # [n, 2n) = "original value of pixel" (self-loops).
    base = (torch.arange(b, device=dev, dtype=i32) * (2 * n)).view(b, 1)
    ptr = torch.arange(2 * n, device=dev, dtype=i32).view(1, -1).repeat(b, 1)
    ptr[:, :n] += n
    ptr += base
    q = (qh * w + qw).view(b, -1)
    p = (hs * w + ws).view(-1).to(torch.long)
    ptr[:, p] = torch.where(forward.view(b, -1), q, q + n) + base
    flat = ptr.view(-1)
    # pointer doubling (ptr <- ptr[ptr], in place) until every pointer is terminal
    while bool(((ptr[:, :n] - base) < n).any()):
        ptr[:, :n] = flat.index_select(0, ptr[:, :n].reshape(-1)).view(b, n)
    return ptr[:, :n] - base - n


def _glass_codes(b: int, nh: int, nw: int, delta: int, g, device) -> torch.Tensor:
    """(b, nh, nw) int16 codes ``(dy + d) * 2d + (dx + d)`` of the published
    ``dx, dy = randint(-d, d, size=(2,))``: one uniform draw per pair (half the
    random numbers of two draws, same law)."""
    return _ops.randint(0, 4 * delta * delta, (b, nh, nw), g, device, dtype=torch.int16)


def _glass_offsets(codes: torch.Tensor, delta: int) -> torch.Tensor:
    """Codes of :func:`_glass_codes` -> (..., 2) int8 (dy, dx)."""
    n = 2 * delta
    return torch.stack((torch.div(codes, n, rounding_mode="floor"), torch.remainder(codes, n)), dim=-1).sub_(delta).to(torch.int8)


def _glass_blur(x, p, g):
    sigma, delta, iters = p
    b, c, h, w = x.shape
    n = h * w
    y = _ops.gaussian_filter(x, sigma, mode="nearest")
    if y.data_ptr() == x.data_ptr():  # a one-tap kernel returns x itself: never write into the input
        y = y.clone()
    y = _uint8_levels_unit_(y)  # np.uint8(gaussian(x) * 255)
    nh, nw = max(h - 2 * delta, 0), max(w - 2 * delta, 0)
    codes = [_glass_codes(b, nh, nw, delta, g, x.device) for _ in range(int(iters))]
    if codes and _ops._cpu_kernels(x) and _compiled.available():
        # the published sequential sweeps, compiled: cheaper than pointer jumping on one core
        y = y.contiguous()
        _compiled.glass_sweeps(y, torch.stack(codes), delta)
    elif codes:
        rows = (torch.arange(b, device=x.device, dtype=torch.int32) * n).view(b, 1)
        src = glass_source_index(h, w, delta, _glass_offsets(codes[0], delta))
        for code in codes[1:]:
            # sweep k+1 reads the output of sweep k: compose the source maps
            s = glass_source_index(h, w, delta, _glass_offsets(code, delta))
            src = src.view(-1).index_select(0, (s + rows).view(-1)).view(b, n)
        flat = y.permute(0, 2, 3, 1).reshape(b * n, c)
        y = flat.index_select(0, (src + rows).view(-1)).view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
    return _ops.gaussian_filter(y, sigma, mode="nearest").clamp_(0.0, 1.0)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The original ``disk()``: aliased disk on a 17x17 grid (radius <= 8) or
    (2r+1)^2 grid, normalised, then ``cv2.GaussianBlur`` with a 3x3 (r <= 8) or
    5x5 Gaussian of sigma ``alias_blur`` (OpenCV default border REFLECT_101)."""
    if radius <= 8:
        L = torch.arange(-8, 9, dtype=torch.float64)
        ksize = 3
    else:
        r = int(radius)
        L = torch.arange(-r, r + 1, dtype=torch.float64)
        ksize = 5
    Y, X = torch.meshgrid(L, L, indexing="ij")
    d = ((X ** 2 + Y ** 2) <= radius ** 2).to(torch.float64)
    d /= d.sum()
    i = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    gk = torch.exp(-(i * i) / (2 * alias_blur ** 2))
    gk /= gk.sum()
    return _ops.separable_filter(d.view(1, 1, *d.shape), gk, gk, "mirror")[0, 0]


# Disk kernels with at most this many taps are applied by direct summation on the
# CPU (compiled): cheaper than the FFT up to ~150 taps at 224 px (ImageNet-C
# severities 1-2 have 29 and 89).
_DEFOCUS_DIRECT_TAPS = 120


def _defocus_blur(x, p, g):
    radius, alias = p
    k = disk_kernel(radius, alias)
    r = (k.shape[0] - 1) // 2
    if _ops._cpu_kernels(x) and x.dtype == torch.float32 and _compiled.available():
        # Taps under 2^-40 of the kernel's sum (the anti-aliasing Gaussian's tails,
        # ~1e-22 at alias_blur 0.1) move no float32 output: dropped.
        sparse = torch.where(k > k.sum() * 2.0 ** -40, k, torch.zeros_like(k))
        if int((sparse != 0).sum()) <= _DEFOCUS_DIRECT_TAPS:
            return _ops.correlate2d(x, sparse, "mirror").clamp_(0.0, 1.0)
    k = k.to(device=x.device, dtype=x.dtype).unsqueeze(0)
    # cv2.filter2D (correlation, anchor centre, BORDER_REFLECT_101) per channel
    if _ops._cpu_kernels(x) and x.shape[0] > 1 and x.shape[-2] * x.shape[-1] >= 128 * 128:
        # large images one by one on the CPU: one image's FFT buffers stay in cache (the
        # same numbers; measured ~1.5x faster on a 224 px chunk while other work runs)
        out = torch.empty_like(x)
        spectra: dict = {}
        for o, xi in zip(out, x.split(1)):
            o.copy_(_ops.fft_correlate(xi, k, (r, r), "mirror", spectra)[0])
        return out.clamp_(0.0, 1.0)
    return _ops.fft_correlate(x, k, (r, r), "mirror").clamp_(0.0, 1.0)


def _motion_blur(x, p, g):
    radius, sigma = p
    angles = _ops.uniform((x.shape[0],), -45.0, 45.0, g, x.device, torch.float64)
    return _ops.motion_blur(x, radius, sigma, angles).clamp_(0.0, 1.0)


def _zoom_blur(x, p, g):
    zooms = p[0]
    h, w = x.shape[-2:]
    if _ops._cpu_kernels(x) and _compiled.available() and min(zooms) >= 1.0:
        # all zooms in one compiled pass per image (the torch path below makes
        # one resampled copy per zoom)
        ax = [[_ops.clipped_zoom_axis(n, float(z)) for z in zooms] for n in (h, w)]
        rows, cols = ([np.ascontiguousarray(np.stack(t)) for t in zip(*a)] for a in ax)
        return _compiled.zoom_sum(x, rows, cols).div_(len(zooms) + 1).clamp_(0.0, 1.0)
    xc = x.contiguous(memory_format=torch.channels_last)
    acc = xc.clone()
    for z in zooms:
        acc += _ops.clipped_zoom(xc, float(z))
    return acc.div_(len(zooms) + 1).clamp_(0.0, 1.0).contiguous()


# =========================================================================== weather


def snow_layer(b: int, h: int, w: int, loc: float, scale: float, zoom: float, threshold: float, g, device) -> torch.Tensor:
    """Un-blurred snow layer of the original: N(loc, scale) noise, clipped zoom,
    values below ``threshold`` zeroed, stored as an 8-bit greyscale image
    (``np.uint8(clip(.)*255)``).  Returns (b, 1, h, w) float in [0, 1]."""
    layer = _ops.randn((b, 1, h, w), g, device).mul_(scale).add_(loc)
    layer = _ops.clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    return _uint8_levels_unit_(layer)


def snow_blur(layer: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """Wand/ImageMagick motion blur of the 8-bit snow layer, re-encoded as
    8-bit (rounded)."""
    out = _ops.motion_blur(layer, radius, sigma, angles_deg)
    return torch.round(out.clamp(0.0, 1.0) * 255.0) / 255.0


def snow_composite(x: torch.Tensor, blurred: torch.Tensor, blend: float) -> torch.Tensor:
    if (_ops._cpu_kernels(x) and _compiled.available() and x.dtype == blurred.dtype == torch.float32
            and blurred.shape[1] == 1 and x.shape[1] == 3):
        return _compiled.snow_composite(x, blurred, blend)  # the lines below in one pass
    grey = _ops.rgb_to_gray_cv2(x)
    base = blend * x + (1.0 - blend) * torch.maximum(x, grey * 1.5 + 0.5)
    return (base + blurred + torch.flip(blurred, dims=(-2, -1))).clamp_(0.0, 1.0)


def _snow(x, p, g):
    loc, scale, zoom, thr, radius, sigma, blend = p
    b, _, h, w = x.shape
    layer = snow_layer(b, h, w, loc, scale, zoom, thr, g, x.device)
    angles = _ops.uniform((b,), -135.0, -45.0, g, x.device, torch.float64)
    return snow_composite(x, snow_blur(layer, radius, sigma, angles), blend)


# The photographs the published generators draw from: ``randint(5)`` over
# ``[frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg, frost6.jpg]``
# (make_imagenet_c.py, make_cifar_c.py, make_tinyimagenet_c.py), so frost6.jpg
# is never used.  They ship in the PyPI package ``torch-uncertainty-assets``
# (Apache-2.0) as ``frost/frost1.jpg .. frost5.jpg``; measured against the files
# of hendrycks/robustness: its frost3/4/5.jpg are byte-identical to the
# originals frost4/5/6.jpg, its frost1.jpg is a JPEG re-encoding of frost1.png
# (mean absolute difference 4.4 grey levels) and its frost2.jpg one of
# frost2.png, which is pixel-identical to frost3.png (2.8 levels).  Original
# index -> packaged file:
ORIGINAL_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
ASSET_FROST_FILES = ("frost1.jpg", "frost2.jpg", "frost2.jpg", "frost3.jpg", "frost4.jpg")

_FROST: dict = {}  # "source" -> str, "photos" -> list of (3, h, w) tensors, ("scaled", f) -> list


def _digest(chunks) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def _read_photo(data: bytes) -> torch.Tensor:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as pil:  # cv2.imread(IMREAD_COLOR) also drops alpha
        arr = np.array(pil.convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).contiguous()


def _load_default_frost() -> None:
    d = os.environ.get("RBX_FROST_DIR")
    if d:
        paths = [Path(d) / n for n in ORIGINAL_FROST_FILES]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"RBX_FROST_DIR={d} lacks {', '.join(missing)}; fix: point it at a folder "
                                    f"holding the original {', '.join(ORIGINAL_FROST_FILES)} or unset it")
        blobs = [p.read_bytes() for p in paths]
        source = f"RBX_FROST_DIR:{_digest(blobs)}"
    else:
        try:
            from importlib.resources import files

            folder = files("torch_uncertainty_assets.frost")
            blobs = [(folder / n).read_bytes() for n in ASSET_FROST_FILES]
        except (ModuleNotFoundError, FileNotFoundError) as e:
            raise ModuleNotFoundError(
                "the frost corruption needs the frost photographs of the package torch-uncertainty-assets "
                f"({e}); fix: pip install torch-uncertainty-assets, or set RBX_FROST_DIR to a folder holding "
                f"{', '.join(ORIGINAL_FROST_FILES)}") from None
        source = f"torch-uncertainty-assets:{_digest(blobs)}"
    _FROST.update(source=source, photos=[_read_photo(b) for b in blobs])


def set_frost_images(images: Sequence | None) -> None:
    """Use other frost photographs than the default ones.

    ``images``: paths, PIL images, uint8 HWC arrays or float (3, h, w) tensors
    in [0, 1], drawn from as the originals are (uniform index, random crop);
    ``None`` restores the default: the folder ``RBX_FROST_DIR`` (holding the
    original ``frost1.png .. frost5.jpg``) when set, else the photographs of
    ``torch-uncertainty-assets`` (see :data:`ASSET_FROST_FILES`).
    """
    _FROST.clear()
    if images is None:
        return
    out = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            im = _read_photo(Path(im).read_bytes())
        elif not torch.is_tensor(im):
            arr = np.array(im.convert("RGB")) if hasattr(im, "convert") else np.array(im)
            im = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
        out.append(im.float().contiguous())
    source = "custom:" + _digest(t.mul(255).round().to(torch.uint8).numpy().tobytes() for t in out)
    _FROST.update(source=source, photos=out)


def frost_source() -> str:
    """Where the frost photographs come from, with a hash of their content
    (``torch-uncertainty-assets:<sha>``, ``RBX_FROST_DIR:<sha>`` or
    ``custom:<sha>``): part of the fingerprint of data generated with frost."""
    if "source" not in _FROST:
        _load_default_frost()
    return _FROST["source"]


def _scaled_photos(scale: float | None) -> list[torch.Tensor]:
    """The photographs, shrunk as ``cv2.resize(frost, (0, 0), fx=scale, fy=scale)``
    (bilinear, half-pixel centres, replicated border, output side
    ``round(side * scale)``, 8-bit output) for the CIFAR / Tiny generators."""
    frost_source()
    if scale is None:
        return _FROST["photos"]
    key = ("scaled", float(scale))
    if key not in _FROST:
        out = []
        for ph in _FROST["photos"]:
            fh, fw = ph.shape[-2:]
            oh, ow = int(round(fh * scale)), int(round(fw * scale))
            py = ((torch.arange(oh, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_(0, fh - 1)
            px = ((torch.arange(ow, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_(0, fw - 1)
            yy, xx = torch.meshgrid(py, px, indexing="ij")
            small = _ops.sample_bilinear_pixels(ph[None], yy[None], xx[None], "border")[0]
            out.append(torch.round(small.clamp(0.0, 1.0) * 255.0) / 255.0)
        _FROST[key] = out
    return _FROST[key]


def _frost_crops(imgs: list[torch.Tensor], b, h, w, g, device):
    """Published sampling: photo ``randint(len)``, crop offsets ``randint(0, fh - h)``,
    ``randint(0, fw - w)``; a photo too small for the image (only above the
    published sizes) is first upscaled (bilinear) to cover it."""
    idx = _ops.randint(0, len(imgs), (b,), g, "cpu").tolist()
    out = []
    for i in idx:
        fr = imgs[i]
        fh, fw = fr.shape[-2:]
        if fh <= h or fw <= w:
            s = max((h + 1) / fh, (w + 1) / fw)
            fr = F.interpolate(fr[None], size=(math.ceil(fh * s), math.ceil(fw * s)), mode="bilinear", align_corners=False)[0]
            fh, fw = fr.shape[-2:]
        y0 = int(_ops.randint(0, fh - h, (1,), g, "cpu"))
        x0 = int(_ops.randint(0, fw - w, (1,), g, "cpu"))
        out.append(fr[:, y0: y0 + h, x0: x0 + w])
    return torch.stack(out).to(device)


def _frost(x, p, g, photo_scale: float | None = None):
    a, bw = p
    b, _, h, w = x.shape
    tex = _frost_crops(_scaled_photos(photo_scale), b, h, w, g, x.device)
    return (a * x + bw * tex).clamp_(0.0, 1.0)


def _fog(x, p, g, mapsize: int = 256):
    strength, decay = p
    b, _, h, w = x.shape
    size = max(h, w)
    # the map is cropped to the image: grow it (next power of two) when the image is larger
    msize = mapsize if size <= mapsize else 1 << (size - 1).bit_length()
    fractal = _ops.plasma_fractal(b, msize, decay, g, x.device)
    if _pointwise_kernels(x):
        return _compiled.fog_mix(x, fractal, strength)  # the lines below in one pass
    fractal = fractal[:, :h, :w].unsqueeze(1)
    maxv = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + strength * fractal) * maxv / (maxv + strength)).clamp_(0.0, 1.0)


def _brightness(x, p, g):
    (c,) = p
    if _pointwise_kernels(x):
        return _compiled.hsv_affine(x, False, 1.0, c)  # the line below in one pass
    return _ops.hsv_value_shift(x, c).clamp_(0.0, 1.0)


# ---------------------------------------------------------------- spatter (OpenCV chain)


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """OpenCV ``Canny(img, low, high)`` (aperture 3, L1 gradient) on uint8-valued
    float images (B, 1, H, W): Sobel with replicated borders, |gx|+|gy|,
    non-maximum suppression along 4 quantised directions (tan 22.5 deg tests,
    ``m > prev && m >= next``; diagonals strict), hysteresis with 8-connectivity.
    Returns a bool edge map."""
    if _ops._cpu_kernels(img) and _compiled.available() and img.dtype == torch.float32:
        return _compiled.canny(img, low, high)
    xp = _ops.pad2d(img, 1, 1, 1, 1, "nearest")
    h, w = img.shape[-2:]
    sm_v = xp[..., 0:h, :] + 2.0 * xp[..., 1:h + 1, :] + xp[..., 2:h + 2, :]  # (.., h, w+2)
    gx = sm_v[..., 2:w + 2] - sm_v[..., 0:w]
    sm_h = xp[..., 0:w] + 2.0 * xp[..., 1:w + 1] + xp[..., 2:w + 2]  # (.., h+2, w)
    gy = sm_h[..., 2:h + 2, :] - sm_h[..., 0:h, :]
    mag = gx.abs() + gy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # OpenCV keeps zero magnitude outside the image
    c = mp[..., 1:-1, 1:-1]
    left, right = mp[..., 1:-1, :-2], mp[..., 1:-1, 2:]
    up, down = mp[..., :-2, 1:-1], mp[..., 2:, 1:-1]
    ul, ur = mp[..., :-2, :-2], mp[..., :-2, 2:]
    dl, dr = mp[..., 2:, :-2], mp[..., 2:, 2:]
    ax, ay = gx.abs(), gy.abs()
    tg22 = ax * 0.4142135623730950488
    tg67 = tg22 + ax * 2.0
    horiz = ay < tg22
    vert = ay > tg67
    same_sign = (gx * gy) >= 0  # s = +1: compare (x-1, y-1) and (x+1, y+1)
    diag_ok = torch.where(same_sign, (c > ul) & (c > dr), (c > ur) & (c > dl))
    nms = torch.where(horiz, (c > left) & (c >= right), torch.where(vert, (c > up) & (c >= down), diag_ok))
    cand = nms & (mag > low)
    edges = cand & (mag > high)
    while True:
        grown = cand & _dilate3(edges)
        if bool((grown != edges).any()):
            edges = grown
        else:
            return edges


def _dilate3(m: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation (8-connectivity) of a bool (B, 1, H, W) map."""
    r = m.clone()
    r[..., 1:, :] |= m[..., :-1, :]
    r[..., :-1, :] |= m[..., 1:, :]
    out = r.clone()
    out[..., :, 1:] |= r[..., :, :-1]
    out[..., :, :-1] |= r[..., :, 1:]
    return out


def _edt_truncated(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """Exact Euclidean distance of every pixel to the nearest edge pixel,
    truncated at ``cap`` (cv2.distanceTransform(DIST_L2) on ``255 - edges``
    followed by THRESH_TRUNC at ``cap``; OpenCV's 5x5 mask is a chamfer
    approximation, exact distances are used here).  (B, 1, H, W) -> float."""
    if _ops._cpu_kernels(edges) and _compiled.available():
        return _compiled.edt_truncated(edges, cap)
    b, _, h, w = edges.shape
    e = edges[:, 0]
    big = float(cap + 1)
    idx = torch.arange(w, device=e.device, dtype=torch.float32).expand(b, h, w)
    neg = torch.full_like(idx, -1e6)
    left = torch.cummax(torch.where(e, idx, neg), dim=-1).values
    right = -torch.flip(torch.cummax(torch.flip(torch.where(e, -idx, neg), dims=(-1,)), dim=-1).values, dims=(-1,))
    row = torch.minimum(idx - left, right - idx).clamp_(max=big)
    g2 = row * row
    d2 = g2.clone()
    for k in range(1, cap + 1):
        if k >= h:
            break
        kk = float(k * k)
        d2[:, k:] = torch.minimum(d2[:, k:], g2[:, :-k] + kk)
        d2[:, :-k] = torch.minimum(d2[:, :-k], g2[:, k:] + kk)
    return torch.sqrt(d2).clamp_(max=float(cap)).unsqueeze(1)


def _equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """OpenCV ``equalizeHist`` per image on uint8-valued floats (B, 1, H, W):
    ``lut[i] = round((cdf(i) - hist[i0]) * 255 / (N - hist[i0]))`` with ``i0``
    the first non-empty bin (``lut[i0] = 0``); constant images stay constant."""
    if _ops._cpu_kernels(img) and _compiled.available() and img.dtype == torch.float32:
        return _compiled.equalize_hist(img)  # the lines below in one pass
    b = img.shape[0]
    v = img.view(b, -1).long().clamp_(0, 255)
    n = v.shape[1]
    hist = torch.zeros(b, 256, device=img.device, dtype=torch.long)
    hist.scatter_add_(1, v, torch.ones_like(v))
    first = (hist > 0).float().argmax(dim=1, keepdim=True)
    h0 = hist.gather(1, first)
    cdf = torch.cumsum(hist, dim=1)
    scale = 255.0 / (n - h0).clamp_min(1).float()
    lut = torch.round((cdf - h0).float() * scale).clamp_(0, 255)
    lut = torch.where(torch.arange(256, device=img.device).view(1, -1) <= first, torch.zeros_like(lut), lut)
    const = h0.view(-1) == n
    lut = torch.where(const.view(-1, 1), first.float().expand(-1, 256), lut)
    return lut.gather(1, v).view_as(img)


_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


def spatter_water_mask(liquid: torch.Tensor, intensity: float) -> torch.Tensor:
    """Water branch of the original ``spatter`` (severities 1-3, and every frame
    of the ImageNet-P spatter sequence).  ``liquid``: (B, 1, H, W) thresholded
    liquid layer in [0, 1].  Returns the additive mask ``m`` (B, 1, H, W).

    Chain (OpenCV semantics re-implemented in torch): ``L = uint8(liquid*255)``;
    ``dist = 255 - Canny(L, 50, 150)``; distance transform, truncated at 20;
    3x3 box blur -> uint8 (truncate); equalizeHist; filter2D with the emboss
    kernel [[-2,-1,0],[-1,1,1],[0,1,2]] to uint8 (rounded, saturated); 3x3 box
    blur (uint8, rounded); ``m = L * dist / max(L * dist) * intensity``.
    """
    L = torch.floor(liquid.clamp(0.0, 1.0) * 255.0 + 1e-4)
    edges = _canny(L, 50.0, 150.0)
    dist = _edt_truncated(edges, 20)
    dist = torch.floor(_ops.box_blur3(dist) + 1e-4)
    dist = _equalize_hist(dist)
    dist = torch.round(_ops.correlate2d(dist, _EMBOSS.to(dist.device), "mirror")).clamp_(0.0, 255.0)
    dist = torch.round(_ops.box_blur3(dist))
    m = L * dist
    m = m / m.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return m * intensity


_WATER_RGB = torch.tensor([175.0, 238.0, 238.0]) / 255.0  # pale turquoise
_MUD_RGB = torch.tensor([63.0, 42.0, 20.0]) / 255.0  # mud brown


def _spatter(x, p, g):
    loc, scale, sigma, thr, intensity, mud = p
    b, _, h, w = x.shape
    liquid = _ops.randn((b, 1, h, w), g, x.device).mul_(scale).add_(loc)
    liquid = _ops.gaussian_filter(liquid, sigma, mode="nearest")
    liquid = torch.where(liquid < thr, torch.zeros_like(liquid), liquid)
    if not mud:
        m = spatter_water_mask(liquid, intensity)
        if _pointwise_kernels(x):
            return _compiled.spatter_mix(x, m, _WATER_RGB, False)  # the line below in one pass
        return (x + m * _WATER_RGB.to(x).view(1, 3, 1, 1)).clamp_(0.0, 1.0)
    m = (liquid > thr).to(x.dtype)
    m = _ops.gaussian_filter(m, intensity, mode="nearest")
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    if _pointwise_kernels(x):
        return _compiled.spatter_mix(x, m, _MUD_RGB, True)  # the line below in one pass
    return (x * (1.0 - m) + _MUD_RGB.to(x).view(1, 3, 1, 1) * m).clamp_(0.0, 1.0)


# =========================================================================== digital


def _contrast(x, p, g):
    (c,) = p
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * c + means).clamp_(0.0, 1.0)


def _saturate(x, p, g):
    mul, add = p
    if _pointwise_kernels(x):
        return _compiled.hsv_affine(x, True, mul, add)  # the line below in one pass
    return _ops.hsv_saturation_affine(x, mul, add).clamp_(0.0, 1.0)


def _to_hwc_u8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 (rounded), contiguous."""
    # on the HWC view (elementwise ops keep its strides: no float transpose, and none
    # at all for channels-last input), in place after one copy, transposed as uint8
    return x.permute(0, 2, 3, 1).mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8).contiguous().numpy()


def _from_hwc_u8(arrs, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).to(device=like.device, dtype=like.dtype).mul_(1.0 / 255.0)


def _jpeg_compression(x, p, g):
    (quality,) = p
    # libjpeg(-turbo) through torchvision.io on (C, H, W) uint8: on the CPU the
    # same codec, settings and bytes as Pillow's round trip (the published
    # encoder; checked pixel-identical) without Pillow's HWC layout, so the only
    # extra work is the float <-> uint8 conversion; on CUDA nvJPEG when the
    # installed torchvision supports it, else the CPU codec.
    import warnings

    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = quantize_u8(x, "round")
    # channels-last input (e.g. a numpy HWC batch seen through permute) is handed
    # to the codec without any transpose: it wants HWC rows
    imgs = list(u8.unbind(0))
    dev = x.device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to TorchCodec
        try:
            dec = decode_jpeg(encode_jpeg(imgs, quality=int(quality)), device=dev)
        except (RuntimeError, TypeError, NotImplementedError):  # e.g. no nvJPEG: the CPU codec
            cpu = [i.cpu() for i in imgs]
            dec = decode_jpeg(encode_jpeg(cpu, quality=int(quality)))
    out = torch.empty_like(x, device=dev)
    for o, d in zip(out, dec):
        o.copy_(d)
    return out if x.dtype == torch.uint8 else out.mul_(1.0 / 255.0)


@lru_cache(maxsize=64)
def _nearest_index(n: int, size: int) -> torch.Tensor:
    """Source pixel of each output pixel of Pillow's NEAREST resize from ``n`` to
    ``size`` samples (the published upsampling), read off Pillow itself."""
    from PIL import Image

    row = Image.fromarray(np.arange(n, dtype=np.int32)[None, :], mode="I")
    return torch.from_numpy(np.asarray(row.resize((size, 1), Image.NEAREST))[0].astype(np.int64))


@lru_cache(maxsize=64)
def _pil_box_taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's 8-bit BOX taps from ``n`` to ``size`` samples: source indices and
    ``normalize_coeffs_8bpc`` integer weights ``int(0.5 + k * 2**22)``, (size, taps)
    int32 (unused taps: weight 0)."""
    m = _ops.pil_box_matrix(n, size).numpy()
    taps = max(int((m[o] > 0).sum()) for o in range(size))
    idx = np.zeros((size, taps), np.int32)
    wts = np.zeros((size, taps), np.int32)
    for o in range(size):
        nz = np.flatnonzero(m[o] > 0)
        idx[o, :] = nz[0]
        idx[o, :len(nz)] = nz
        wts[o, :len(nz)] = (0.5 + m[o, nz] * (1 << 22)).astype(np.int32)
    return idx, wts


def _pixelate(x, p, g):
    (c,) = p
    b, ch, h, w = x.shape
    nh, nw = int(h * c), int(w * c)
    uh, uw = _nearest_index(nh, h), _nearest_index(nw, w)
    if _ops._cpu_kernels(x) and _compiled.available() and nh > 0 and nw > 0:
        # Pillow's 8-bit BOX and NEAREST resizes, compiled, on the whole batch at once
        u8 = quantize_u8(x, "round").permute(0, 2, 3, 1).contiguous()
        out = torch.empty((b, h, w, ch), dtype=torch.uint8)
        _compiled.pil_box_nearest(u8.numpy(), out.numpy(), _pil_box_taps(w, nw), _pil_box_taps(h, nh),
                                  uh.numpy(), uw.numpy())
        out = out.permute(0, 3, 1, 2)
        return out if x.dtype == torch.uint8 else out.to(x.dtype).mul_(1.0 / 255.0)
    if _ops._cpu_kernels(x):
        # Pillow's BOX downsampling on the uint8 image then its NEAREST upsampling,
        # as published.  Image by image, so float input is converted in cache;
        # uint8 input stays uint8, and channels-last input (e.g. a numpy HWC batch
        # seen through permute) is used without transposes.
        from PIL import Image

        out = torch.empty_like(x)
        for o, a in zip(out, x):
            u8 = quantize_u8(a, "round").permute(1, 2, 0).contiguous().numpy()
            small = Image.fromarray(u8).resize((nw, nh), Image.BOX)
            # np.array, not asarray: PIL's buffer is read-only and torch warns on wrapping it (a 150 kB copy).
            o.permute(1, 2, 0).copy_(torch.from_numpy(np.array(small.resize((w, h), Image.NEAREST))))
        return out if x.dtype == torch.uint8 else out.mul_(1.0 / 255.0)
    dh = _ops.pil_box_matrix(h, nh).to(x)
    dw = _ops.pil_box_matrix(w, nw).to(x)
    small = torch.matmul(torch.matmul(dh, x), dw.T)
    return small.index_select(2, uh.to(x.device)).index_select(3, uw.to(x.device)).clamp_(0.0, 1.0)


def _elastic_transform(x, p, g):
    alpha, sigma, affine = p
    b, c, h, w = x.shape
    dev = x.device
    # random affine from 3 jittered control points (cv2.getAffineTransform) and
    # cv2.warpAffine(..., INTER_LINEAR, BORDER_REFLECT_101)
    cy, cx = float(h // 2), float(w // 2)
    s = float(min(h, w) // 3)
    pts1 = torch.tensor([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=torch.float64, device=dev)
    pts2 = pts1 + _ops.uniform((b, 3, 2), -affine, affine, g, dev, torch.float64)
    A = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64, device=dev)], dim=1)  # (3, 3)
    M = torch.linalg.solve(A, pts2).transpose(1, 2)  # (b, 2, 3): M @ [x, y, 1] = p2
    full = torch.cat([M, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=dev).expand(b, 1, 3)], dim=1)
    inv = torch.linalg.inv(full)
    # source coordinates inv @ (x, y, 1) as outer sums (an affine map is separable)
    xs = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w)
    ys = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1)
    # smooth random displacement field (skimage gaussian, mode='reflect', truncate=3)
    fields = _ops.uniform((b, 2, h, w), -1.0, 1.0, g, dev)
    if sigma > 0:  # sigma 0 (CIFAR severity 1) is scipy's identity filter
        fields = _ops.gaussian_filter(fields, sigma, mode="reflect", truncate=3.0)
    if _ops._cpu_kernels(x) and _compiled.available() and x.dtype == torch.float32 and c == 3:
        # the lines below, compiled, without the coordinate grids
        return _compiled.elastic(x, inv, fields, alpha)
    fields = fields * alpha
    dx, dy = fields[:, 0], fields[:, 1]
    a = inv.reshape(b, 9, 1, 1)
    sx = (a[:, 0] * xs + a[:, 2]) + a[:, 1] * ys
    sy = (a[:, 3] * xs + a[:, 5]) + a[:, 4] * ys
    warped = _ops.sample_bilinear_pixels(x, sy, sx, "reflection", align_corners=True)
    # scipy map_coordinates(order=1, mode='reflect') at (y + dy, x + dx)
    py = ys.to(x.dtype) + dy
    px = xs.to(x.dtype) + dx
    return _ops.sample_bilinear_pixels(warped, py, px, "reflection", align_corners=False).clamp_(0.0, 1.0)


# =========================================================================== registry


@dataclass(frozen=True)
class CorruptionSpec:
    """One ImageNet-C corruption: name, category, split, per-severity parameters."""

    name: str
    category: str  # noise | blur | weather | digital
    split: str  # "test" (the 15 of ImageNet-C) or "extra" (the 4 validation ones)
    param_names: tuple[str, ...]
    severities: tuple  # 5 tuples, severity 1..5, in the published order
    fn: Callable = field(repr=False)
    stochastic: bool = True
    source: str = ""
    deviations: str = ""
    # How the published pipeline turned the output into uint8: "floor" for the
    # numpy corruptions (np.uint8 of a float in 0..255), "round" where the
    # corruption returns a Pillow image (pixelate, jpeg_compression).
    quantize: str = "floor"
    # Runs image by image through Pillow on the CPU (pixelate, JPEG): takes the
    # batch in any memory layout, unchunked.
    pillow_on_cpu: bool = False

    def params(self, severity: int) -> tuple:
        if severity not in (1, 2, 3, 4, 5):
            raise ValueError(f"severity must be 1..5, got {severity}")
        return self.severities[severity - 1]


def _src(func: str) -> str:
    return f"{SOURCE_C}::{func}"


_ZOOMS = tuple(
    tuple(float(v) for v in np.arange(1, stop, step))
    for stop, step in ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
)

_SPECS = [
    CorruptionSpec("gaussian_noise", "noise", "test", ("sigma",),
                   ((0.08,), (0.12,), (0.18,), (0.26,), (0.38,)), _gaussian_noise,
                   source=_src("gaussian_noise"), deviations="none (torch RNG)"),
    CorruptionSpec("shot_noise", "noise", "test", ("photons",),
                   ((60,), (25,), (12,), (5,), (3,)), _shot_noise,
                   source=_src("shot_noise"), deviations="none (torch RNG)"),
    CorruptionSpec("impulse_noise", "noise", "test", ("amount",),
                   ((0.03,), (0.06,), (0.09,), (0.17,), (0.27,)), _impulse_noise,
                   source=_src("impulse_noise"),
                   deviations="none: skimage s&p distribution (per element, salt:pepper 1:1) from one uniform draw"),
    CorruptionSpec("defocus_blur", "blur", "test", ("radius", "alias_blur"),
                   ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)), _defocus_blur,
                   stochastic=False, source=_src("defocus_blur"),
                   deviations="none: same anti-aliased disk kernel and REFLECT_101 border; FFT convolution "
                              "(on CPU with numba, disks of <= 120 taps by direct summation)"),
    CorruptionSpec("glass_blur", "blur", "test", ("sigma", "max_delta", "iterations"),
                   ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)), _glass_blur,
                   source=_src("glass_blur"),
                   deviations="none: the sequential pixel sweep (whose numpy 'swap' is really a copy) is "
                              "resolved exactly in parallel by pointer jumping; sweep bounds follow H, W"),
    CorruptionSpec("motion_blur", "blur", "test", ("radius", "sigma"),
                   ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), _motion_blur,
                   source=_src("motion_blur"),
                   deviations="ImageMagick MotionBlurImage (via Wand) re-implemented: same one-sided Gaussian "
                              "taps and rounded offsets, edge-replicated border, angle U(-45, 45); "
                              "no 8-bit/Q16 quantisation of the output"),
    CorruptionSpec("zoom_blur", "blur", "test", ("zooms",),
                   tuple((z,) for z in _ZOOMS), _zoom_blur, stochastic=False,
                   source=_src("zoom_blur"),
                   deviations="none: zoom lists are the exact np.arange values (12/16/11/13/11 zooms incl. 1.0); "
                              "clipped_zoom per axis for non-square images"),
    CorruptionSpec("snow", "weather", "test",
                   ("loc", "scale", "zoom", "threshold", "blur_radius", "blur_sigma", "blend"),
                   ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                    (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)), _snow,
                   source=_src("snow"),
                   deviations="Wand motion blur of the snow layer replaced by the re-implemented ImageMagick "
                              "kernel (angle U(-135, -45)), 8-bit snow layer kept"),
    CorruptionSpec("frost", "weather", "test", ("image_weight", "frost_weight"),
                   ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)), _frost,
                   source=_src("frost"),
                   deviations="the photographs of torch-uncertainty-assets: 3 of the 5 drawn are the original "
                              "files, frost1.png and frost2.png/frost3.png are JPEG re-encodings (mean abs "
                              "difference 4.4 and 2.8 grey levels); RBX_FROST_DIR selects the original files"),
    CorruptionSpec("fog", "weather", "test", ("strength", "wibbledecay"),
                   ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)), _fog,
                   source=_src("fog"),
                   deviations="none (same diamond-square plasma, 256 map for images up to 256 px)"),
    CorruptionSpec("brightness", "weather", "test", ("value_shift",),
                   ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,)), _brightness, stochastic=False,
                   source=_src("brightness"),
                   deviations="none: HSV value shift in closed form (identical to skimage rgb2hsv/hsv2rgb)"),
    CorruptionSpec("contrast", "digital", "test", ("factor",),
                   ((0.4,), (0.3,), (0.2,), (0.1,), (0.05,)), _contrast, stochastic=False,
                   source=_src("contrast"), deviations="none"),
    CorruptionSpec("elastic_transform", "digital", "test", ("alpha", "sigma", "affine"),
                   ((244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                    (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                    (244 * 0.12, 244 * 0.01, 244 * 0.02)), _elastic_transform,
                   source=_src("elastic_transform"),
                   deviations="published ImageNet-C version (random affine + smoothed displacement; the '244' "
                              "constants kept as published), not the different imagecorruptions variant; "
                              "bilinear sampling in float (OpenCV uses 1/32-pixel fixed point); control points "
                              "in (x, y) order for non-square images"),
    CorruptionSpec("pixelate", "digital", "test", ("factor",),
                   ((0.6,), (0.5,), (0.4,), (0.3,), (0.25,)), _pixelate, stochastic=False, quantize="round",
                   pillow_on_cpu=True,
                   source=_src("pixelate"),
                   deviations="none on CPU (Pillow BOX resampling of the uint8 image, as published); on other "
                              "devices Pillow's BOX coefficients in float, without its uint8 rounding between the passes"),
    CorruptionSpec("jpeg_compression", "digital", "test", ("quality",),
                   ((25,), (18,), (15,), (10,), (7,)), _jpeg_compression, stochastic=False, quantize="round",
                   pillow_on_cpu=True,
                   source=_src("jpeg_compression"),
                   deviations="none on CPU (libjpeg through torchvision.io, pixel-identical to Pillow's round "
                              "trip as published); on GPU nvJPEG through torchvision.io when available"),
    CorruptionSpec("speckle_noise", "noise", "extra", ("sigma",),
                   ((0.15,), (0.2,), (0.35,), (0.45,), (0.6,)), _speckle_noise,
                   source=_src("speckle_noise"), deviations="none (torch RNG)"),
    CorruptionSpec("gaussian_blur", "blur", "extra", ("sigma",),
                   ((1,), (2,), (3,), (4,), (6,)), _gaussian_blur, stochastic=False,
                   source=_src("gaussian_blur"),
                   deviations="none: skimage gaussian (truncate 4, mode 'nearest')"),
    CorruptionSpec("spatter", "weather", "extra", ("loc", "scale", "sigma", "threshold", "intensity", "mud"),
                   ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                    (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)), _spatter,
                   source=_src("spatter"),
                   deviations="water branch (sev 1-3): OpenCV Canny / distanceTransform / equalizeHist / "
                              "filter2D chain re-implemented in torch, with an exact Euclidean distance instead "
                              "of the 5x5 chamfer approximation; mud branch (sev 4-5) exact"),
    CorruptionSpec("saturate", "digital", "extra", ("s_mul", "s_add"),
                   ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)), _saturate, stochastic=False,
                   source=_src("saturate"),
                   deviations="none: HSV saturation change in closed form (identical to skimage)"),
]

CORRUPTIONS: dict[str, CorruptionSpec] = {s.name: s for s in _SPECS}
TEST_CORRUPTIONS = tuple(s.name for s in _SPECS if s.split == "test")
EXTRA_CORRUPTIONS = tuple(s.name for s in _SPECS if s.split == "extra")


@dataclass(frozen=True)
class Preset:
    """The parameters of one published generator (:mod:`.presets`): the image
    side it was written for, its per-corruption severity tables and the
    keyword options of the corruption functions that differ between generators."""

    name: str
    size: int
    source: str
    tables: dict = field(repr=False)
    options: dict = field(default_factory=dict, repr=False)

    def params(self, name: str, severity: int) -> tuple:
        if severity not in (1, 2, 3, 4, 5):
            raise ValueError(f"severity must be 1..5, got {severity}")
        return self.tables[name][severity - 1]


PRESETS: dict[str, Preset] = {
    "imagenet": Preset("imagenet", 224, SOURCE_C, {s.name: s.severities for s in _SPECS}),
    "cifar": Preset("cifar", 32, presets.SOURCE_CIFAR, presets.CIFAR_TABLE, presets.CIFAR_OPTIONS),
    "tiny": Preset("tiny", 64, presets.SOURCE_TINY, presets.TINY_TABLE, presets.TINY_OPTIONS),
}


CPU_CHUNK_PIXELS = 4 * 224 * 224


def corrupt(batch: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None,
            preset: str = "imagenet") -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1-5) to a batch, with the
    parameters of generator ``preset`` (:data:`PRESETS`: ``imagenet`` 224 px,
    ``cifar`` 32 px, ``tiny`` 64 px; applied unchanged, in pixels, at any size).

    ``batch``: (B, 3, H, W) or (3, H, W) tensor, any device: float in [0, 1],
    or uint8 (0..255).  Returns a tensor of the same shape, dtype and device:
    float in [0, 1], or for uint8 input uint8 quantised as the published
    pipeline did (:attr:`CorruptionSpec.quantize`; pixelate and JPEG then stay
    in uint8 on the CPU, as the published Pillow code does).
    On CPU the batch is processed in chunks of ``CPU_CHUNK_PIXELS`` pixels with
    ``_ops.CPU_THREADS`` (default 1) intra-op threads.
    """
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    spec = CORRUPTIONS[name]
    params = PRESETS[preset].params(name, int(severity))
    options = PRESETS[preset].options.get(name, {})
    single = batch.dim() == 3
    x = batch.unsqueeze(0) if single else batch
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) or (3, H, W), got {tuple(batch.shape)}")
    dtype = x.dtype
    if not (dtype.is_floating_point or dtype == torch.uint8):
        raise TypeError(f"corrupt() expects a float tensor in [0, 1] or a uint8 tensor, got {dtype}")
    with torch.no_grad(), _ops.cpu_threads(x.device):
        if x.device.type == "cpu" and spec.pillow_on_cpu and _ops._cpu_kernels(x):
            # uint8 in, uint8 out (Pillow / libjpeg work on uint8): no float round trip
            out = spec.fn(x if dtype == torch.uint8 else x.to(torch.float32), params, generator, **options)
            out = out if dtype == torch.uint8 else out.to(dtype)
        else:
            def run(c):
                # float32, (B, 3, H, W)-contiguous: one pass for uint8 / channels-last input
                c = c.to(torch.float32, memory_format=torch.contiguous_format)
                if dtype == torch.uint8:
                    y = spec.fn(c.mul_(1.0 / 255.0), params, generator, **options)
                    # y is this chunk's temporary (c is a float copy of the uint8 input)
                    return quantize_u8(y, spec.quantize, inplace=True)
                return spec.fn(c, params, generator, **options).to(dtype)

            if x.device.type == "cpu" and x.shape[0] > 1:
                # CPU: work on cache-sized chunks (a few 224x224 images): the ops are
                # memory-bound and large temporaries thrash the cache / allocator.
                per = max(1, CPU_CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
                out = torch.empty(x.shape, dtype=dtype)
                for i, c in zip(range(0, x.shape[0], per), x.split(per)):
                    out[i: i + c.shape[0]] = run(c)
            else:
                out = run(x)
    return out[0] if single else out


def quantize_u8(x: torch.Tensor, mode: str = "floor", inplace: bool = False) -> torch.Tensor:
    """Float [0, 1] -> uint8 as the published pipeline did: ``floor`` truncates
    like ``np.uint8(x * 255)`` (the numpy corruptions), ``round`` for the
    Pillow-based ones; uint8 input is returned as is.  ``inplace``: use ``x``
    as the scratch buffer (one pass less)."""
    if x.dtype == torch.uint8:
        return x
    if _ops._cpu_kernels(x) and x.dtype == torch.float32 and _compiled.available():
        # the steps below in one pass (a strided x, e.g. a crop of an FFT buffer, copied first)
        return _compiled.unit_to_u8(x.contiguous(), mode)
    v = x.mul_(255.0) if inplace else x.mul(255.0)
    # the uint8 cast truncates: clamping to [0, 255] first makes it a floor
    v = v.round_() if mode == "round" else v.add_(1e-4)
    return v.clamp_(0.0, 255.0).to(torch.uint8)
