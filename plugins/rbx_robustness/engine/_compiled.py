"""Optional numba kernels for the CPU path of inherently serial steps.

numba is not a dependency of robustbench_x (the reference package
``imagecorruptions-imaug`` of the test extra brings it); when it is missing, or
``RBX_ENGINE_NUMBA=0``, :data:`AVAILABLE` is False and the callers use their
pure-torch algorithms, which give identical results (tested).  Kernels are
compiled on first use and cached on disk by numba.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _numba():
    if os.environ.get("RBX_ENGINE_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def available() -> bool:
    return _numba() is not None


@lru_cache(maxsize=1)
def _kernels():
    nb = _numba()

    @nb.njit(cache=True, nogil=True)
    def glass_sweeps(y, offsets, delta):  # pragma: no cover - compiled
        # y (B, C, H, W) float32, in place; offsets (S, B, nh, nw, 2) int8 (dy, dx) for
        # the swept positions in raster order.  The published loop: y[h, w] <- y[h + dy,
        # w + dx] (a copy, see corruptions.glass_source_index), h and w descending.
        bsz, ch, h, w = y.shape
        for s in range(offsets.shape[0]):
            for b in range(bsz):
                for hh in range(h - delta, delta, -1):
                    for ww in range(w - delta, delta, -1):
                        sy = hh + offsets[s, b, hh - delta - 1, ww - delta - 1, 0]
                        sx = ww + offsets[s, b, hh - delta - 1, ww - delta - 1, 1]
                        for c in range(ch):
                            y[b, c, hh, ww] = y[b, c, sy, sx]

    @nb.njit(cache=True, nogil=True)
    def separable(x, out, kh, ih, kw, iw):  # pragma: no cover - compiled
        # out[p, i, j] = sum_u kh[u] sum_v kw[v] x[p, ih[i + u], iw[j + v]]: the vertical
        # pass into a row buffer, then the horizontal one, taps accumulated in order.
        planes, h, w = x.shape
        nkh, nkw = kh.shape[0], kw.shape[0]
        row = np.empty(iw.shape[0], dtype=np.float32)
        tmp = np.empty(w, dtype=np.float32)
        for p in range(planes):
            for i in range(h):
                r = x[p, ih[i]]
                k0 = kh[0]
                for j in range(w):
                    tmp[j] = r[j] * k0
                for u in range(1, nkh):
                    r = x[p, ih[i + u]]
                    ku = kh[u]
                    for j in range(w):
                        tmp[j] += r[j] * ku
                for j in range(iw.shape[0]):
                    row[j] = tmp[iw[j]]
                o = out[p, i]
                k0 = kw[0]
                for j in range(w):
                    o[j] = row[j] * k0
                for v in range(1, nkw):
                    kv = kw[v]
                    for j in range(w):
                        o[j] += row[j + v] * kv

    return glass_sweeps, separable


def glass_sweeps(y: torch.Tensor, offsets: torch.Tensor, delta: int) -> None:
    """Run the published glass-blur sweeps in place on (B, C, H, W) float32 ``y``
    (contiguous, CPU).  ``offsets``: (S, B, nh, nw, 2) integer (dy, dx), sweep-major."""
    _kernels()[0](y.numpy(), np.ascontiguousarray(offsets.to(torch.int8).numpy()), delta)


def separable_filter(x: torch.Tensor, kh: torch.Tensor, ih: torch.Tensor, kw: torch.Tensor, iw: torch.Tensor) -> torch.Tensor:
    """Separable correlation of (N, C, H, W) float32 CPU ``x``: taps ``kh``/``kw``,
    border-extended source indices ``ih`` (H + len(kh) - 1) / ``iw``."""
    n, c, h, w = x.shape
    xs = x.contiguous().view(n * c, h, w)
    out = torch.empty_like(xs)
    f32 = np.float32
    _kernels()[1](xs.numpy(), out.numpy(), kh.numpy().astype(f32), ih.numpy().astype(np.int64),
                  kw.numpy().astype(f32), iw.numpy().astype(np.int64))
    return out.view(n, c, h, w)
