"""Batched torch building blocks shared by the corruption and perturbation engines.

Every function works on float tensors on any device and never leaves torch
(no PIL / OpenCV / scipy calls). Where a function reproduces the semantics of a
library routine used by the original ImageNet-C/P generators, the docstring
names that routine; the numbers (kernel radii, border rules, rounding) follow
that routine's documented behaviour.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from . import _compiled

# --------------------------------------------------------------------------- CPU threading

# Intra-op threads used by the engine's CPU path (None = leave torch's setting).
# The engine works on cache-sized chunks with many small memory-bound ops; OpenMP
# gains little on them on an idle machine and, on a busy one, every parallel
# region waits for descheduled threads (measured: 20-100x slower with 2 threads
# than with 1 on a loaded 2-core box).  Parallelise across processes instead.
CPU_THREADS: int | None = 1


# Test hook: when True the CPU uses the same kernels as accelerators
# (depthwise conv2d, FFT motion blur) so those code paths are exercised
# without a GPU.
_FORCE_GENERIC_KERNELS = False


def _cpu_kernels(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not _FORCE_GENERIC_KERNELS


class cpu_threads:
    """Context manager: run torch CPU ops with :data:`CPU_THREADS` intra-op
    threads, restoring the previous count (process-global, like torch's own
    setting)."""

    def __init__(self, device):
        self.active = CPU_THREADS is not None and torch.device(device).type == "cpu"

    def __enter__(self):
        if self.active:
            self.prev = torch.get_num_threads()
            if self.prev != CPU_THREADS:
                torch.set_num_threads(CPU_THREADS)
        return self

    def __exit__(self, *exc):
        if self.active and torch.get_num_threads() != self.prev:
            torch.set_num_threads(self.prev)
        return False


# --------------------------------------------------------------------------- random numbers


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) of ``shape`` on ``device``, drawn from ``generator``.

    A generator on another device than the data is allowed: the numbers are
    drawn where the generator lives and moved (pass a generator on the data's
    device to avoid the copy).
    """
    gdev = _gen_device(generator, device)
    return torch.rand(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    gdev = _gen_device(generator, device)
    return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def uniform(shape, low, high, generator, device, dtype=torch.float32) -> torch.Tensor:
    return rand(shape, generator, device, dtype).mul_(high - low).add_(low)


def randint(low, high, shape, generator, device, dtype=torch.int64) -> torch.Tensor:
    """Integers in ``[low, high)`` (numpy ``randint`` convention)."""
    gdev = _gen_device(generator, device)
    return torch.randint(low, high, shape, generator=generator, device=gdev, dtype=dtype).to(device)


def poisson(rates: torch.Tensor, generator) -> torch.Tensor:
    if generator is not None and generator.device != rates.device:
        return torch.poisson(rates.to(generator.device), generator=generator).to(rates.device)
    return torch.poisson(rates, generator=generator)


# Buckets of the inverse-CDF guide table: 2^12 keeps the (256, 4096) int16 table
# (2 MB) cache-friendly while under 2% of the buckets hold a CDF step at lam <= 60.
_POISSON_BUCKET_BITS = 12
_POISSON_BUCKETS = 1 << _POISSON_BUCKET_BITS


@lru_cache(maxsize=16)
def _poisson_level_tables(lam: float, levels: int):
    """CDF rows and guide table of the clipped Poisson law of every 8-bit level.

    Row ``v`` is the law of ``min(Poisson(v / (levels - 1) * lam), kmax)`` with
    ``kmax = ceil(lam)`` (every count >= lam clips to 1 in ``clip(k / lam, 0, 1)``).
    ``cdf[v, j] = P(K <= j)`` for ``j < kmax`` (float64); the inverse CDF at
    ``u`` is ``#{j : cdf[v, j] <= u}``.  ``guide[v, m]`` is that value on the
    whole bucket ``[m / M, (m + 1) / M)`` when it is constant there, else -1."""
    kmax = max(int(math.ceil(lam)), 1)
    rate = torch.arange(levels, dtype=torch.float64).div_(levels - 1).mul_(lam).unsqueeze(1)
    k = torch.arange(kmax, dtype=torch.float64).unsqueeze(0)
    logpmf = k * torch.log(rate) - rate - torch.lgamma(k + 1.0)
    logpmf[0] = torch.where(k[0] == 0, 0.0, -math.inf)  # rate 0: always 0
    cdf = torch.exp(logpmf).cumsum_(1).clamp_(max=1.0).contiguous()
    edges = torch.arange(_POISSON_BUCKETS + 1, dtype=torch.float64).div_(_POISSON_BUCKETS)
    edges = edges.expand(levels, -1).contiguous()
    lo = torch.searchsorted(cdf, edges[:, :-1].contiguous(), right=True)  # inverse CDF at the bucket start
    hi = torch.searchsorted(cdf, edges[:, 1:].contiguous(), right=False)  # its supremum inside the bucket
    guide = torch.where(lo == hi, lo, torch.full_like(lo, -1)).to(torch.int16)
    return cdf, guide.view(-1).contiguous(), kmax


def poisson_levels(levels: torch.Tensor, lam: float, generator) -> torch.Tensor:
    """``clip(Poisson(levels / 255 * lam) / lam, 0, 1)`` for integer 8-bit
    ``levels`` (any shape, float or integer dtype), drawn exactly by inverse-CDF
    sampling: a float32 uniform per element gives the top 24 bits of the
    element's uniform, whose top 12 bits settle its value through the guide
    table for almost every element; the rest (< 2 % at the published rates)
    get 53 more bits from a float64 draw and a binary search of the float64
    CDF.  The law is the published ``np.random.poisson(x * c)`` of an 8-bit
    image (only 256 distinct rates), at a fraction of the cost of a general
    Poisson sampler.  Returns float32."""
    dev = levels.device
    cdf, guide, kmax = _poisson_level_tables(float(lam), 256)
    lv = levels.reshape(-1).to(torch.int32)
    if _cpu_kernels(lv) and _compiled.available():
        # the steps below, the table look-up in one compiled pass; k / lam as the
        # torch tail computes it, tabulated for every count
        values = torch.arange(kmax + 1, dtype=torch.float32).div_(float(lam)).clamp_(0.0, 1.0)
        u = rand(lv.shape, generator, dev)
        out, amb = _compiled.poisson_guide(lv.contiguous(), u, guide, values)
        if amb.numel():
            u = u.index_select(0, amb).double().add_(rand(amb.shape, generator, dev, torch.float64)).mul_(2.0 ** -24)
            _compiled.poisson_refine(lv, amb, u, cdf, values, out)  # the searchsorted below
        return out.view(levels.shape)
    top = rand(lv.shape, generator, dev).mul_(1 << 24).floor_().to(torch.int32)  # 24-bit integer
    idx = (top >> (24 - _POISSON_BUCKET_BITS)).add_(lv.mul(1 << _POISSON_BUCKET_BITS))
    k = guide.to(dev).index_select(0, idx).to(torch.float32)
    amb = (k < 0).nonzero().view(-1)
    if amb.numel():
        u = top.index_select(0, amb).double().add_(rand(amb.shape, generator, dev, torch.float64)).mul_(2.0 ** -24)
        rows = cdf.to(dev).index_select(0, lv.index_select(0, amb))
        k.index_copy_(0, amb, torch.searchsorted(rows, u.unsqueeze(1), right=True).view(-1).to(torch.float32))
    return k.div_(float(lam)).clamp_(0.0, 1.0).view(levels.shape)


# --------------------------------------------------------------------------- padding / borders


def pad_index(n: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source index for every position of a 1-D signal of length ``n`` padded by
    ``before``/``after`` samples.  Works for pads longer than the signal.

    modes (scipy.ndimage names, OpenCV names in brackets):
      ``nearest``  (BORDER_REPLICATE)   a a a | a b c d | d d d
      ``reflect``  (BORDER_REFLECT)     c b a | a b c d | d c b   (half-sample symmetric)
      ``mirror``   (BORDER_REFLECT_101) d c b | a b c d | c b a   (whole-sample symmetric)
      ``wrap``                           b c d | a b c d | a b c
    """
    idx = torch.arange(-before, n + after, device=device)
    if mode == "nearest":
        return idx.clamp_(0, n - 1)
    if mode == "reflect":
        period = 2 * n
        m = torch.remainder(idx, period)
        return torch.where(m >= n, period - 1 - m, m)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(idx)
        period = 2 * n - 2
        m = torch.remainder(idx, period)
        return torch.where(m >= n, period - m, m)
    if mode == "wrap":
        return torch.remainder(idx, n)
    raise ValueError(f"unknown border mode {mode!r}")


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` with a scipy-style border ``mode``
    (``constant`` pads zeros)."""
    if top == bottom == left == right == 0:
        return x
    if mode == "constant":
        return F.pad(x, (left, right, top, bottom))
    h, w = x.shape[-2:]
    if mode == "nearest" and max(top, bottom) <= 4 * h and max(left, right) <= 4 * w and x.dim() == 4:
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    if mode == "mirror" and max(top, bottom) < h and max(left, right) < w and x.dim() == 4:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    ih = pad_index(h, top, bottom, mode, x.device)
    iw = pad_index(w, left, right, mode, x.device)
    return x.index_select(-2, ih).index_select(-1, iw)


# --------------------------------------------------------------------------- linear filters


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter1d weights: radius ``int(truncate*sigma+0.5)``."""
    radius = int(truncate * float(sigma) + 0.5)
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * xs * xs / (float(sigma) ** 2))
    k /= k.sum()
    return k.to(dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _filter_matrix_cpu(n: int, kernel: tuple, mode: str) -> torch.Tensor:
    k = torch.tensor(kernel, dtype=torch.float64)
    r = (len(kernel) - 1) // 2
    src = pad_index(n, r, len(kernel) - 1 - r, mode)  # (n + K - 1,)
    rows = torch.arange(n).unsqueeze(1) + torch.arange(len(kernel)).unsqueeze(0)  # (n, K)
    cols = src[rows]
    m = torch.zeros(n, n, dtype=torch.float64)
    m.scatter_add_(1, cols, k.expand(n, -1).clone())
    return m


def filter_matrix(n: int, kernel: torch.Tensor, mode: str, device, dtype=torch.float32) -> torch.Tensor:
    """Dense (n, n) matrix of a 1-D correlation with ``kernel`` under border
    ``mode`` (exact for kernels longer than the signal, as scipy does)."""
    key = tuple(float(v) for v in kernel.detach().cpu().double())
    return _filter_matrix_cpu(n, key, mode).to(device=device, dtype=dtype)


def _lowrank(m: torch.Tensor, rtol: float = 1e-7):
    u, s, vh = torch.linalg.svd(m.double())
    r = int((s > s[0] * rtol).sum())
    return (u[:, :r] * s[:r]), vh[:r]  # m ~= a @ b


@lru_cache(maxsize=32)
def _gauss_factors_cpu(n: int, sigma: float, truncate: float, mode: str) -> tuple:
    """Factors of the (n, n) filter matrix M, whose product is M: ``(A, B)``
    with ``M ~= A B`` when its numerical rank is under n / 2 (fewer
    multiply-adds), else ``(M,)`` (a truncated wide Gaussian is often full rank)."""
    k = gaussian_kernel1d(sigma, truncate)
    m = _filter_matrix_cpu(n, tuple(float(v) for v in k), mode)
    a, b = _lowrank(m)
    return (a, b) if 2 * a.shape[1] < n else (m,)


def _conv_axis(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """'valid' correlation of the (N, C, H, W) tensor ``x`` along ``dim`` (-1 or -2)
    with the 1-D kernel ``k``.  CPU: a loop of in-cache multiply-adds over the
    taps (much faster than oneDNN's depthwise convolution for these shapes);
    other devices: depthwise ``conv2d``."""
    K = k.numel()
    if _cpu_kernels(x):
        n_out = x.shape[dim] - K + 1
        ks = [float(v) for v in k.detach().cpu().double()]
        out = x.narrow(dim, 0, n_out) * ks[0]
        for i in range(1, K):
            if ks[i] != 0.0:
                out.add_(x.narrow(dim, i, n_out), alpha=ks[i])
        return out
    c = x.shape[1]
    kk = k.to(dtype=x.dtype, device=x.device)
    w = kk.view(1, 1, 1, -1) if dim == -1 else kk.view(1, 1, -1, 1)
    w = w.expand(c, 1, *w.shape[2:]).contiguous()
    return F.conv2d(x, w, groups=c)


def separable_filter(x: torch.Tensor, kh: torch.Tensor | None, kw: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Correlate the last two dims of (N, C, H, W) ``x`` with 1-D kernels (odd
    length, centred), border ``mode`` as in :func:`pad_index`.  Kernels longer
    than 2x the signal use an exact dense-matrix form."""
    n, c, h, w = x.shape
    if (_cpu_kernels(x) and x.dtype == torch.float32 and kh is not None and kw is not None
            and 1 < kh.numel() <= 2 * h and 1 < kw.numel() <= 2 * w and _compiled.available()):
        rh, rw = (kh.numel() - 1) // 2, (kw.numel() - 1) // 2
        return _compiled.separable_filter(
            x, kh.double(), pad_index(h, rh, kh.numel() - 1 - rh, mode),
            kw.double(), pad_index(w, rw, kw.numel() - 1 - rw, mode))
    out = x
    if kh is not None and kh.numel() > 1:
        rh = (kh.numel() - 1) // 2
        if kh.numel() > 2 * h:
            m = filter_matrix(h, kh, mode, x.device, x.dtype)
            out = torch.matmul(m, out)
        else:
            out = _conv_axis(pad2d(out, rh, kh.numel() - 1 - rh, 0, 0, mode), kh, -2)
    if kw is not None and kw.numel() > 1:
        rw = (kw.numel() - 1) // 2
        if kw.numel() > 2 * w:
            m = filter_matrix(w, kw, mode, x.device, x.dtype)
            out = torch.matmul(out, m.T)
        else:
            out = _conv_axis(pad2d(out, 0, 0, rw, kw.numel() - 1 - rw, mode), kw, -1)
    return out.contiguous()


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """``skimage.filters.gaussian`` / ``scipy.ndimage.gaussian_filter`` over the
    last two dims of (N, C, H, W) ``x`` (skimage's defaults: ``mode='nearest'``,
    ``truncate=4``).  Large-sigma filters (kernel longer than the image) use an
    exact low-rank factorisation of the border-aware filter matrix."""
    h, w = x.shape[-2:]
    k = gaussian_kernel1d(sigma, truncate)
    if k.numel() > 64:
        dev, dt = x.device, x.dtype
        y = x
        # M_h X M_w^T, each M as one dense matrix or a low-rank product A B
        for f in reversed(_gauss_factors_cpu(h, float(sigma), float(truncate), mode)):
            y = torch.matmul(f.to(device=dev, dtype=dt), y)
        for f in reversed(_gauss_factors_cpu(w, float(sigma), float(truncate), mode)):
            y = torch.matmul(y, f.to(device=dev, dtype=dt).T)
        return y
    return separable_filter(x, k, k, mode)


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))`` with OpenCV's default border (REFLECT_101)."""
    k = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)
    return separable_filter(x, k, k, "mirror")


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Small dense 2-D correlation (``cv2.filter2D`` semantics: no kernel flip,
    anchor at the kernel centre) with border ``mode``; one kernel for all images."""
    kh, kw = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = pad2d(x, ph, kh - 1 - ph, pw, kw - 1 - pw, mode)
    h, w = x.shape[-2:]
    if _cpu_kernels(x):
        ks = kernel.detach().cpu().double().tolist()
        if x.dtype == torch.float32 and _compiled.available():
            # the loop below in one compiled pass
            taps = [(u, v, ks[u][v]) for u in range(kh) for v in range(kw) if ks[u][v] != 0.0]
            if taps:
                return _compiled.correlate_taps(xp.contiguous(), x.shape, taps)
        out = torch.zeros_like(x)
        for u in range(kh):
            for v in range(kw):
                if ks[u][v] != 0.0:
                    out.add_(xp[..., u: u + h, v: v + w], alpha=ks[u][v])
        return out
    c = x.shape[1]
    wgt = kernel.to(x).view(1, 1, kh, kw).expand(c, 1, kh, kw).contiguous()
    return F.conv2d(xp, wgt, groups=c)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            v = p35
            while v < n:
                v *= 2
            best = min(best, v)
            p35 *= 3
        p5 *= 5
    return best


def fft_correlate(x: torch.Tensor, kernels: torch.Tensor, anchor: tuple[int, int], mode: str,
                  spectra: dict | None = None) -> torch.Tensor:
    """out[b, c, y, x] = sum_{u,v} k[b, u, v] * x_ext[b, c, y + u - ay, x + v - ax]

    with a per-image (or shared, leading dim 1) 2-D kernel ``kernels`` of shape
    (B|1, kh, kw) and ``x_ext`` the border-extended image (``mode`` as in
    :func:`pad_index`).  Computed exactly (up to float rounding) with FFTs on the
    padded image, so wide/arbitrary kernels cost the same as small ones.
    ``spectra``: a dict kept by a caller that applies the same kernels to several
    batches of one size (the kernels' transform is then computed once).
    """
    n, c, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    ay, ax = anchor
    sh, sw = _fast_len(h + kh - 1), _fast_len(w + kw - 1)
    # Border-extend straight to the FFT size: the circular convolution of that
    # size is exact on the outputs kept (they never wrap around), and the
    # transform needs no zero-padded copy.
    xp = pad2d(x, ay, sh - h - ay, ax, sw - w - ax, mode)
    X = torch.fft.rfft2(xp)
    K = spectra.get((sh, sw)) if spectra is not None else None
    if K is None:
        kf = torch.flip(kernels.to(x.dtype), dims=(-2, -1)).unsqueeze(1)  # convolution kernel
        K = torch.fft.rfft2(kf, s=(sh, sw))
        if spectra is not None:
            spectra[(sh, sw)] = K
    X.mul_(K)
    y = torch.fft.irfft2(X, s=(sh, sw))
    return y[..., kh - 1: kh - 1 + h, kw - 1: kw - 1 + w]


# --------------------------------------------------------------------------- ImageMagick motion blur


def motion_blur_taps(radius: float, sigma: float, angles_deg: torch.Tensor):
    """Taps of ImageMagick's ``MotionBlurImage(radius, sigma, angle)`` (used via
    Wand by the original generators): ``width = 2*ceil(radius)+1`` taps with
    one-sided Gaussian weights ``exp(-i^2 / (2 sigma^2))`` (normalised), tap i
    reading the pixel at offset ``(ceil(i*sin(a) - 0.5), ceil(i*cos(a) - 0.5))``
    (rows, cols) with edge-replicating virtual pixels.

    Returns weights (width,) float64 and integer offsets dy, dx of shape (B, width).
    """
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    wts = torch.exp(-(i * i) / (2.0 * sigma * sigma))
    wts = wts / wts.sum()
    a = torch.deg2rad(angles_deg.detach().double().cpu()).unsqueeze(1)
    dy = torch.ceil(i * torch.sin(a) - 0.5).long()
    dx = torch.ceil(i * torch.cos(a) - 0.5).long()
    return wts, dy, dx


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """Per-image ImageMagick-style motion blur of (B, C, H, W) ``x`` with angle
    ``angles_deg[b]`` (degrees), edge-replicated borders.  CPU: sum of shifted
    copies per image (the kernel is a sparse line of taps); other devices: the
    per-image sparse 2-D kernel applied with :func:`fft_correlate`."""
    b, c, h, w = x.shape
    wts, dy, dx = motion_blur_taps(radius, sigma, angles_deg)
    width = wts.numel()
    r = width - 1
    if _cpu_kernels(x):
        xp = pad2d(x, r, r, r, r, "nearest")
        out = torch.empty_like(x)
        wl = wts.tolist()
        dyl, dxl = dy.tolist(), dx.tolist()
        merged = []
        for i in range(b):
            # accumulate taps sharing an offset (large-angle rounding duplicates)
            acc: dict = {}
            for t in range(width):
                key = (dyl[i][t], dxl[i][t])
                acc[key] = acc.get(key, 0.0) + wl[t]
            merged.append(acc)
        if x.dtype == torch.float32 and _compiled.available():
            # the shifted-copy sums below, one compiled pass per output row
            offs = np.zeros((b, width, 2), dtype=np.int64)
            wk = np.zeros((b, width), dtype=np.float32)
            for i, acc in enumerate(merged):
                for t, ((oy, ox), wt) in enumerate(acc.items()):
                    offs[i, t] = (r + oy, r + ox)
                    wk[i, t] = wt
            ntaps = np.array([len(acc) for acc in merged], dtype=np.int64)
            return _compiled.motion_taps(xp, out, offs, wk, ntaps)
        for i, acc in enumerate(merged):
            o = out[i]
            src = xp[i]
            first = True
            for (oy, ox), wt in acc.items():
                sl = src[:, r + oy: r + oy + h, r + ox: r + ox + w]
                if first:
                    torch.mul(sl, wt, out=o)
                    first = False
                else:
                    o.add_(sl, alpha=wt)
        return out
    size = 2 * r + 1
    k = torch.zeros(b, size * size, dtype=torch.float64)
    flat = (dy + r) * size + (dx + r)
    k.scatter_add_(1, flat, wts.expand(b, -1).clone())
    k = k.view(b, size, size).to(device=x.device, dtype=x.dtype)
    return fft_correlate(x, k, (r, r), "nearest")


# --------------------------------------------------------------------------- resampling


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """``clipped_zoom`` of the original generators, per axis: centre-crop
    ``ceil(n / zoom)`` samples, resize them with ``scipy.ndimage.zoom(order=1)``
    (bilinear, corner-aligned, output ``round(crop * zoom)``), then centre-trim
    back to ``n``.  ``x``: (N, C, H, W)."""
    h, w = x.shape[-2:]
    ch, cw = int(math.ceil(h / zoom)), int(math.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    oh, ow = int(round(ch * zoom)), int(round(cw * zoom))
    crop = x[..., top: top + ch, left: left + cw]
    if (oh, ow) == (ch, cw):
        out = crop
    else:
        if x.shape[1] > 1:  # channels-last bilinear kernels are ~2-4x faster on CPU
            crop = crop.contiguous(memory_format=torch.channels_last)
        out = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    th, tw = (oh - h) // 2, (ow - w) // 2
    th, tw = max(th, 0), max(tw, 0)
    out = out[..., th: th + h, tw: tw + w]
    if out.shape[-2:] != (h, w):  # cannot happen for zoom >= 1; keep shapes safe
        out = F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))
    return out


@lru_cache(maxsize=64)
def clipped_zoom_axis(n: int, zoom: float):
    """One axis of :func:`clipped_zoom` as a linear interpolation: for each of
    the ``n`` output samples, the two source indices and the weight of the
    second (``scipy.ndimage.zoom(order=1)`` coordinates, in float64), as numpy
    arrays (int64, int64, float32).  ``zoom >= 1``."""
    import numpy as np

    crop = int(math.ceil(n / zoom))
    first = (n - crop) // 2
    size = int(round(crop * zoom))
    trim = max((size - n) // 2, 0)
    pos = np.arange(trim, trim + n, dtype=np.float64)
    src = pos * ((crop - 1) / (size - 1)) if size > 1 else np.zeros(n)
    i0 = np.minimum(np.floor(src).astype(np.int64), crop - 1)
    i1 = np.minimum(i0 + 1, crop - 1)
    frac = (src - i0).astype(np.float32)
    return i0 + first, i1 + first, frac


@lru_cache(maxsize=64)
def pil_box_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """Resampling matrix (out, in) of Pillow's ``Image.BOX`` filter
    (``precompute_coeffs``: centre ``(i+0.5)*scale``, support ``0.5*max(scale,1)``,
    box(t) = 1 for -0.5 < t <= 0.5, weights normalised)."""
    scale = in_size / out_size
    fscale = max(scale, 1.0)
    support = 0.5 * fscale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        ws = []
        for i in range(lo, hi):
            t = (i - centre + 0.5) / fscale
            ws.append(1.0 if -0.5 < t <= 0.5 else 0.0)
        tot = sum(ws)
        if tot:
            for j, wv in enumerate(ws):
                m[o, lo + j] = wv / tot
    return m


# --------------------------------------------------------------------------- colour


def rgb_to_gray_cv2(x: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(RGB2GRAY)`` weights 0.299, 0.587, 0.114; (B,3,H,W) -> (B,1,H,W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def hsv_value_shift(x: torch.Tensor, shift) -> torch.Tensor:
    """``hsv2rgb(rgb2hsv(x))`` with ``V <- clip(V + shift, 0, 1)`` (skimage), in
    closed form: H and S fixed means every channel scales with V, so
    ``x' = x * V'/V`` (and ``V'`` for black pixels, whose S and H are 0).
    ``shift``: float or (B,) tensor."""
    v = x.amax(dim=1, keepdim=True)
    if torch.is_tensor(shift):
        shift = shift.to(x).view(-1, 1, 1, 1)
    v2 = (v + shift).clamp_(0.0, 1.0)
    ratio = torch.where(v > 0, v2 / v.clamp_min(1e-12), torch.zeros_like(v))
    out = x * ratio
    return torch.where(v > 0, out, v2.expand_as(out))


def hsv_saturation_affine(x: torch.Tensor, mul: float, add: float) -> torch.Tensor:
    """``hsv2rgb(rgb2hsv(x))`` with ``S <- clip(S*mul + add, 0, 1)`` (skimage), in
    closed form: with H and V fixed each channel is ``V - V*S*g_c(H)``, so
    ``x' = V - (S'/S) (V - x)``; grey pixels (S = 0, skimage sets H = 0, i.e.
    red) become ``(V, V(1-S'), V(1-S'))``."""
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    s2 = (s * mul + add).clamp_(0.0, 1.0)
    coloured = v - (s2 / s.clamp_min(1e-12)) * (v - x)
    g = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = v - v * s2 * g
    return torch.where(delta > 0, coloured, grey)


# --------------------------------------------------------------------------- fractal noise


def plasma_fractal(batch: int, mapsize: int, wibbledecay: float, generator, device) -> torch.Tensor:
    """Diamond-square height map of the original ``plasma_fractal`` (start
    wibble 100, divided by ``wibbledecay`` per level, each new point = mean of
    its 4 parents + ``wibble * U(-wibble, wibble)``), normalised to [0, 1].
    Batched: returns (batch, mapsize, mapsize).  The uniform of the point at
    (r, c) is drawn up front at (r, c) of one (batch, mapsize, mapsize) draw,
    so the compiled CPU kernel and the torch levels below consume the same
    numbers."""
    assert mapsize & (mapsize - 1) == 0, "mapsize must be a power of two"
    u = rand((batch, mapsize, mapsize), generator, device)
    if _cpu_kernels(u) and _compiled.available():
        m = _compiled.plasma(u, float(wibbledecay))
    else:
        m = torch.zeros(batch, mapsize, mapsize, device=device, dtype=torch.float32)
        step = mapsize
        wibble = 100.0

        def wibbled(a, r0, c0):
            un = u[:, r0:mapsize:step, c0:mapsize:step]
            return a / 4 + wibble * (un * (2 * wibble) + (-wibble))

        while step >= 2:
            half = step // 2
            # squares
            corner = m[:, 0:mapsize:step, 0:mapsize:step]
            sq = corner + torch.roll(corner, -1, dims=1)
            sq = sq + torch.roll(sq, -1, dims=2)
            m[:, half:mapsize:step, half:mapsize:step] = wibbled(sq, half, half)
            # diamonds
            dr = m[:, half:mapsize:step, half:mapsize:step]
            ul = m[:, 0:mapsize:step, 0:mapsize:step]
            lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
            m[:, 0:mapsize:step, half:mapsize:step] = wibbled(lt, 0, half)
            tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
            m[:, half:mapsize:step, 0:mapsize:step] = wibbled(tt, half, 0)
            step //= 2
            wibble /= wibbledecay
    flat = m.view(batch, -1)
    flat -= flat.amin(dim=1, keepdim=True)
    flat /= flat.amax(dim=1, keepdim=True).clamp_min(1e-12)
    return m


# --------------------------------------------------------------------------- geometry


def sample_bilinear_pixels(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor, padding: str, align_corners: bool = True) -> torch.Tensor:
    """Bilinearly sample (N, C, H, W) ``x`` at pixel-index coordinates
    ``(py, px)`` of shape (N, h, w) (integer = pixel centre) via grid_sample.
    ``padding``: 'zeros', 'border', 'reflection' (grid_sample meanings; with
    ``align_corners=True`` reflection mirrors about the edge pixel centres, i.e.
    OpenCV BORDER_REFLECT_101; with ``False`` about the pixel edges, i.e. scipy
    'reflect')."""
    h, w = x.shape[-2:]
    if align_corners:
        gx = px * (2.0 / max(w - 1, 1)) - 1.0
        gy = py * (2.0 / max(h - 1, 1)) - 1.0
    else:
        gx = (2.0 * px + 1.0) / w - 1.0
        gy = (2.0 * py + 1.0) / h - 1.0
    grid = torch.stack((gx, gy), dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=align_corners)


def warp_homography(x: torch.Tensor, inv: torch.Tensor, *, out_hw=None, convention: str = "cv2", interp: str = "bilinear") -> torch.Tensor:
    """Warp (N, C, H, W) ``x`` with per-image inverse maps ``inv`` (N, 3, 3)
    taking output coordinates to input coordinates, filling 0 outside.

    ``convention='cv2'``: coordinates are pixel indices (cv2.warpAffine /
    warpPerspective, BORDER_CONSTANT 0: out-of-image neighbours read as 0).
    ``convention='pil'``: Pillow ``Image.transform`` semantics: continuous
    coordinates with pixel centres at +0.5, the inverse map applied to
    ``(x+0.5, y+0.5)``; a sample is the fill colour (0) when it lands outside
    ``[0, W) x [0, H)``, otherwise bilinear with edge-clamped neighbours
    (``interp='nearest'``: the pixel containing the point).
    """
    n, c, h, w = x.shape
    oh, ow = out_hw if out_hw is not None else (h, w)
    dev = x.device
    ys, xs = torch.meshgrid(torch.arange(oh, device=dev, dtype=torch.float64),
                            torch.arange(ow, device=dev, dtype=torch.float64), indexing="ij")
    if convention == "pil":
        xs = xs + 0.5
        ys = ys + 0.5
    pts = torch.stack((xs, ys, torch.ones_like(xs)), dim=0).view(3, -1)  # (3, P)
    src = torch.matmul(inv.to(dev, torch.float64), pts)  # (N, 3, P)
    sx = (src[:, 0] / src[:, 2]).view(n, oh, ow)
    sy = (src[:, 1] / src[:, 2]).view(n, oh, ow)
    if convention == "pil":
        inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
        if interp == "nearest":
            ix = sx.floor().clamp(0, w - 1).long()
            iy = sy.floor().clamp(0, h - 1).long()
            flat = (iy * w + ix).view(n, 1, -1).expand(n, c, -1)
            out = x.reshape(n, c, -1).gather(2, flat).view(n, c, oh, ow)
        else:
            out = sample_bilinear_pixels(x, sy - 0.5, sx - 0.5, "border")
        return out * inside.unsqueeze(1).to(x.dtype)
    if interp == "nearest":
        ix = torch.round(sx).long()
        iy = torch.round(sy).long()
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).view(n, 1, -1).expand(n, c, -1)
        out = x.reshape(n, c, -1).gather(2, flat).view(n, c, oh, ow)
        return out * inside.unsqueeze(1).to(x.dtype)
    return sample_bilinear_pixels(x, sy, sx, "zeros")


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """torchvision ``CenterCrop`` offsets: ``round((H - h) / 2)``."""
    if isinstance(size, int):
        size = (size, size)
    h, w = x.shape[-2:]
    th, tw = size
    if th > h or tw > w:
        raise ValueError(f"crop {size} larger than image {(h, w)}")
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return x[..., top: top + th, left: left + tw]
