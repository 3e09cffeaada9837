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
    def glass_sweeps(y, codes, offs, delta, w):  # pragma: no cover - compiled
        # y (B, H*W, C) float32 channels-last (a pixel's channels share a cache line), in
        # place; codes (S, B, nh, nw) int16 for the swept positions in raster order,
        # offs[code] the flat offset of its (dy, dx) (a table: no integer division per
        # pixel).  The published loop: y[h, w] <- y[h + dy, w + dx] (a copy, see
        # corruptions.glass_source_index), h and w descending.
        bsz, n, ch = y.shape
        h = n // w
        for s in range(codes.shape[0]):
            for b in range(bsz):
                yb = y[b]
                cb = codes[s, b]
                for hh in range(h - delta, delta, -1):
                    crow = cb[hh - delta - 1]
                    for ww in range(w - delta, delta, -1):
                        t = hh * w + ww
                        # unsigned indices (all >= 0): no negative-index wraparound checks
                        src = np.uintp(t + offs[np.uintp(crow[ww - delta - 1])])
                        tt = np.uintp(t)
                        for c in range(ch):
                            yb[tt, c] = yb[src, c]

    @nb.njit(cache=True, nogil=True)
    def separable(x, out, kh, ih, kw, iw):  # pragma: no cover - compiled
        # out[p, i, j] = sum_u kh[u] sum_v kw[v] x[p, ih[i + u], iw[j + v]]: the vertical
        # pass into a row buffer, then the horizontal one, taps accumulated in order
        # (eight, four or two per pass over the row: the partial sums stay in registers;
        # written out in each pass and in motion_taps: a shared inlined helper measured
        # 15-25% slower).
        planes, h, w = x.shape
        nkh, nkw = kh.shape[0], kw.shape[0]
        row = np.empty(iw.shape[0], dtype=np.float32)
        tmp = np.empty(w, dtype=np.float32)
        for p in range(planes):
            xp = x[p]
            for i in range(h):
                r = xp[ih[i]]
                k0 = kh[0]
                for j in range(w):
                    tmp[j] = r[j] * k0
                u = 1
                while u + 8 <= nkh:
                    r0, r1, r2, r3 = xp[ih[i + u]], xp[ih[i + u + 1]], xp[ih[i + u + 2]], xp[ih[i + u + 3]]
                    r4, r5, r6, r7 = xp[ih[i + u + 4]], xp[ih[i + u + 5]], xp[ih[i + u + 6]], xp[ih[i + u + 7]]
                    k0, k1, k2, k3 = kh[u], kh[u + 1], kh[u + 2], kh[u + 3]
                    k4, k5, k6, k7 = kh[u + 4], kh[u + 5], kh[u + 6], kh[u + 7]
                    for j in range(w):
                        tmp[j] = (((((((tmp[j] + r0[j] * k0) + r1[j] * k1) + r2[j] * k2) + r3[j] * k3)
                            + r4[j] * k4) + r5[j] * k5) + r6[j] * k6) + r7[j] * k7
                    u += 8
                while u + 4 <= nkh:
                    r0, r1, r2, r3 = xp[ih[i + u]], xp[ih[i + u + 1]], xp[ih[i + u + 2]], xp[ih[i + u + 3]]
                    k0, k1, k2, k3 = kh[u], kh[u + 1], kh[u + 2], kh[u + 3]
                    for j in range(w):
                        tmp[j] = (((tmp[j] + r0[j] * k0) + r1[j] * k1) + r2[j] * k2) + r3[j] * k3
                    u += 4
                while u + 2 <= nkh:
                    r0, r1 = xp[ih[i + u]], xp[ih[i + u + 1]]
                    k0, k1 = kh[u], kh[u + 1]
                    for j in range(w):
                        tmp[j] = (tmp[j] + r0[j] * k0) + r1[j] * k1
                    u += 2
                while u < nkh:
                    r = xp[ih[i + u]]
                    ku = kh[u]
                    for j in range(w):
                        tmp[j] += r[j] * ku
                    u += 1
                for j in range(iw.shape[0]):
                    row[j] = tmp[iw[j]]
                o = out[p, i]
                k0 = kw[0]
                for j in range(w):
                    o[j] = row[j] * k0
                v = 1
                while v + 8 <= nkw:
                    # sliced: no wraparound check on j + v, the loop vectorises
                    r0, r1, r2, r3 = row[v:v + w], row[v + 1:v + 1 + w], row[v + 2:v + 2 + w], row[v + 3:v + 3 + w]
                    r4, r5, r6, r7 = row[v + 4:v + 4 + w], row[v + 5:v + 5 + w], row[v + 6:v + 6 + w], row[v + 7:v + 7 + w]
                    k0, k1, k2, k3 = kw[v], kw[v + 1], kw[v + 2], kw[v + 3]
                    k4, k5, k6, k7 = kw[v + 4], kw[v + 5], kw[v + 6], kw[v + 7]
                    for j in range(w):
                        o[j] = (((((((o[j] + r0[j] * k0) + r1[j] * k1) + r2[j] * k2) + r3[j] * k3)
                          + r4[j] * k4) + r5[j] * k5) + r6[j] * k6) + r7[j] * k7
                    v += 8
                while v + 4 <= nkw:
                    r0, r1, r2, r3 = row[v:v + w], row[v + 1:v + 1 + w], row[v + 2:v + 2 + w], row[v + 3:v + 3 + w]
                    k0, k1, k2, k3 = kw[v], kw[v + 1], kw[v + 2], kw[v + 3]
                    for j in range(w):
                        o[j] = (((o[j] + r0[j] * k0) + r1[j] * k1) + r2[j] * k2) + r3[j] * k3
                    v += 4
                while v + 2 <= nkw:
                    r0, r1 = row[v:v + w], row[v + 1:v + 1 + w]
                    k0, k1 = kw[v], kw[v + 1]
                    for j in range(w):
                        o[j] = (o[j] + r0[j] * k0) + r1[j] * k1
                    v += 2
                while v < nkw:
                    kv = kw[v]
                    rv = row[v:v + w]
                    for j in range(w):
                        o[j] += rv[j] * kv
                    v += 1

    @nb.njit(cache=True, nogil=True)
    def zoom_sum(x, out, r0, r1, rf, c0, c1, cf, identity, rlo, rhi):  # pragma: no cover - compiled
        # out[p] += sum_z bilinear(x[p]) at rows (r0, r1, rf)[z] and columns (c0, c1, cf)[z]:
        # per zoom, the horizontal interpolation (a gather) of the source rows the zoom
        # reads (rlo..rhi: its crop, ~1/zoom of the image) into a buffer, then the
        # vertical one (it vectorises) added to the output rows.  identity[z]: zoom z is
        # the identity (zoom 1: every weight 0), which adds x itself.
        planes, h, w = x.shape
        hb = np.empty((h, w), dtype=np.float32)
        for p in range(planes):
            xp = x[p]
            op = out[p]
            for z in range(r0.shape[0]):
                if identity[z]:
                    for i in range(h):
                        a = xp[i]
                        o = op[i]
                        for j in range(w):
                            o[j] += a[j]
                    continue
                c0z, c1z, cfz = c0[z], c1[z], cf[z]
                r0z, r1z, rfz = r0[z], r1[z], rf[z]
                r = rlo[z]
                while r + 3 <= rhi[z]:
                    # four rows per pass: the column indices and weights are loaded once
                    sa, sb, sc, sd = xp[r], xp[r + 1], xp[r + 2], xp[r + 3]
                    ta, tb, tc, td = hb[r], hb[r + 1], hb[r + 2], hb[r + 3]
                    for j in range(w):
                        k0, k1, g = c0z[j], c1z[j], cfz[j]
                        u = sa[k0]
                        ta[j] = u + g * (sa[k1] - u)
                        u = sb[k0]
                        tb[j] = u + g * (sb[k1] - u)
                        u = sc[k0]
                        tc[j] = u + g * (sc[k1] - u)
                        u = sd[k0]
                        td[j] = u + g * (sd[k1] - u)
                    r += 4
                while r <= rhi[z]:
                    src = xp[r]
                    t = hb[r]
                    for j in range(w):
                        u = src[c0z[j]]
                        t[j] = u + cfz[j] * (src[c1z[j]] - u)
                    r += 1
                for i in range(h):
                    a = hb[r0z[i]]
                    b = hb[r1z[i]]
                    f = rfz[i]
                    o = op[i]
                    for j in range(w):
                        o[j] += a[j] + f * (b[j] - a[j])

    @nb.njit(cache=True, nogil=True, inline="always")
    def clip8(ss):  # pragma: no cover - compiled
        v = ss >> 22
        return 0 if ss <= 0 else (255 if v > 255 else v)

    @nb.njit(cache=True, nogil=True)
    def pil_box_nearest(x, out, hx, hk, vx, vk, uy, ux):  # pragma: no cover - compiled
        # x (B, H, W*3) uint8 RGB rows -> out (B, H', W'*3): Pillow's 8-bit BOX resampling
        # (ResampleHorizontal then ResampleVertical: 22-bit fixed-point taps, half added,
        # clip8) to (nh, nw), then NEAREST up to (H', W') by the index maps uy, ux.
        bsz, h, _ = x.shape
        nw, nh = hx.shape[0], vx.shape[0]
        tmp = np.empty((h, nw * 3), dtype=np.uint8)
        small = np.empty((nh, nw * 3), dtype=np.uint8)
        acc = np.empty(nw * 3, dtype=np.int32)
        half = np.int32(1 << 21)
        for b in range(bsz):
            for i in range(h):
                row = x[b, i]
                trow = tmp[i]
                for j in range(nw):
                    a0 = half
                    a1 = half
                    a2 = half
                    for t in range(hx.shape[1]):
                        s0 = hx[j, t] * 3
                        k = hk[j, t]
                        a0 += np.int32(row[s0]) * k
                        a1 += np.int32(row[s0 + 1]) * k
                        a2 += np.int32(row[s0 + 2]) * k
                    trow[j * 3] = clip8(a0)
                    trow[j * 3 + 1] = clip8(a1)
                    trow[j * 3 + 2] = clip8(a2)
            for i in range(nh):
                acc[:] = half
                for t in range(vx.shape[1]):
                    src = tmp[vx[i, t]]
                    k = vk[i, t]
                    for j in range(nw * 3):
                        acc[j] += np.int32(src[j]) * k
                srow = small[i]
                for j in range(nw * 3):
                    srow[j] = clip8(acc[j])
            for i in range(uy.shape[0]):
                dst = out[b, i]
                if i > 0 and uy[i] == uy[i - 1]:
                    prev = out[b, i - 1]
                    for j in range(dst.shape[0]):
                        dst[j] = prev[j]
                else:
                    src = small[uy[i]]
                    for j in range(ux.shape[0]):
                        s0 = ux[j] * 3
                        dst[j * 3] = src[s0]
                        dst[j * 3 + 1] = src[s0 + 1]
                        dst[j * 3 + 2] = src[s0 + 2]

    @nb.njit(cache=True, nogil=True)
    def plasma(u, m, wibbledecay):  # pragma: no cover - compiled
        # ops.plasma_fractal's torch levels point by point, in float32 and in the
        # same order of operations (sums of the rolled grids, a / 4 + w * (u * 2w - w));
        # the rolls' wrap-around as a test on the last row / column (no integer modulo)
        bsz, size, _ = u.shape
        f = np.float32
        for b in range(bsz):
            mb = m[b]
            ub = u[b]
            step = size
            wibble = 100.0
            while step >= 2:
                half = step // 2
                n = size // step
                last = (n - 1) * step
                w32, two_w, neg_w = f(wibble), f(2 * wibble), f(-wibble)
                for i in range(n):
                    r = i * step
                    r1 = r + step if i + 1 < n else 0
                    mr, mr1, mo, uo = mb[r], mb[r1], mb[r + half], ub[r + half]
                    for j in range(n):
                        c = j * step
                        c1 = c + step if j + 1 < n else 0
                        a = (mr[c] + mr1[c]) + (mr[c1] + mr1[c1])
                        mo[c + half] = a / f(4) + w32 * (uo[c + half] * two_w + neg_w)
                for i in range(n):
                    r = i * step
                    rp = r - step if i > 0 else last
                    mr, mdr, mdp, ur = mb[r], mb[r + half], mb[rp + half], ub[r]
                    for j in range(n):
                        c = j * step
                        cn = c + step if j + 1 < n else 0
                        dr = mdr[c + half]
                        a = ((dr + mdp[c + half]) + mr[c]) + mr[cn]
                        mr[c + half] = a / f(4) + w32 * (ur[c + half] * two_w + neg_w)
                for i in range(n):
                    r = i * step
                    rn = r + step if i + 1 < n else 0
                    mr, mrn, mh, uh = mb[r], mb[rn], mb[r + half], ub[r + half]
                    for j in range(n):
                        c = j * step
                        cp = c - step if j > 0 else last
                        dr = mh[c + half]
                        a = ((dr + mh[cp + half]) + mr[c]) + mrn[c]
                        mh[c] = a / f(4) + w32 * (uh[c] * two_w + neg_w)
                step //= 2
                wibble /= wibbledecay

    @nb.njit(cache=True, nogil=True, inline="always")
    def reflect_clip(v, twice_low, twice_high, size):  # pragma: no cover - compiled
        # grid_sample's reflect_coordinates then clip_coordinates (padding 'reflection')
        lo = twice_low / 2.0
        span = (twice_high - twice_low) / 2.0
        if lo <= v <= lo + span:  # inside: the reflection is the identity
            return min(float(size - 1), max(v, 0.0))
        v = abs(v - lo)
        extra = v % span
        if int(np.floor(v / span)) % 2 == 0:
            v = extra + lo
        else:
            v = span - extra + lo
        return min(float(size - 1), max(v, 0.0))

    @nb.njit(cache=True, nogil=True, inline="always")
    def bilinear3(s0, s1, s2, d0, d1, d2, j, sy, sx, h, w):  # pragma: no cover - compiled
        # d_c[j] = bilinear sample of the flat (H*W) planes s_c at (sy, sx), both >= 0
        f = np.float32
        y0 = int(sy)  # sy, sx >= 0 after the clip: truncation is the floor
        x0 = int(sx)
        fy = f(sy - y0)
        fx = f(sx - x0)
        y1 = min(y0 + 1, h - 1)
        x1 = min(x0 + 1, w - 1)
        w00 = (f(1) - fx) * (f(1) - fy)
        w01 = fx * (f(1) - fy)
        w10 = (f(1) - fx) * fy
        w11 = fx * fy
        # unsigned flat indices: no negative-index wraparound checks on the 12 loads
        p00, p01 = np.uintp(y0 * w + x0), np.uintp(y0 * w + x1)
        p10, p11 = np.uintp(y1 * w + x0), np.uintp(y1 * w + x1)
        jj = np.uintp(j)
        d0[jj] = ((s0[p00] * w00 + s0[p01] * w01) + s0[p10] * w10) + s0[p11] * w11
        d1[jj] = ((s1[p00] * w00 + s1[p01] * w01) + s1[p10] * w10) + s1[p11] * w11
        d2[jj] = ((s2[p00] * w00 + s2[p01] * w01) + s2[p10] * w10) + s2[p11] * w11

    @nb.njit(cache=True, nogil=True)
    def elastic(x, out, warped, inv, fields, alpha, h, w):  # pragma: no cover - compiled
        # Per image (planes flat, (B, 3, H*W)): warped = bilinear(x) at inv @ (j, i, 1),
        # reflected about the edge pixel centres; out = bilinear(warped) at (i + dy,
        # j + dx), reflected about the pixel edges (grid_sample's 'reflection' with
        # align_corners True, then False; taps summed in grid_sample's order), clipped
        # to [0, 1]; (dx, dy) = alpha * fields[b, 0 / 1].
        f = np.float32
        for b in range(x.shape[0]):
            a = inv[b]
            s0, s1, s2 = x[b, 0], x[b, 1], x[b, 2]
            for i in range(h):
                bx = a[0, 2] + a[0, 1] * i
                by = a[1, 2] + a[1, 1] * i
                o = i * w
                d0, d1, d2 = warped[0, o:o + w], warped[1, o:o + w], warped[2, o:o + w]
                for j in range(w):
                    sx = reflect_clip(a[0, 0] * j + bx, 0.0, 2.0 * (w - 1), w)
                    sy = reflect_clip(a[1, 0] * j + by, 0.0, 2.0 * (h - 1), h)
                    bilinear3(s0, s1, s2, d0, d1, d2, j, sy, sx, h, w)
            s0, s1, s2 = warped[0], warped[1], warped[2]
            zero, one = f(0.0), f(1.0)
            for i in range(h):
                o = i * w
                d0, d1, d2 = out[b, 0, o:o + w], out[b, 1, o:o + w], out[b, 2, o:o + w]
                fy_, fx_ = fields[b, 1, i], fields[b, 0, i]
                fi = f(i)
                for j in range(w):
                    # displacement = field * alpha (float32, as the torch path)
                    sy = reflect_clip(fi + fy_[j] * alpha, -1.0, 2.0 * h - 1.0, h)
                    sx = reflect_clip(f(j) + fx_[j] * alpha, -1.0, 2.0 * w - 1.0, w)
                    bilinear3(s0, s1, s2, d0, d1, d2, j, sy, sx, h, w)
                for j in range(w):  # the corruption's clip to [0, 1]
                    d0[j] = min(max(d0[j], zero), one)
                    d1[j] = min(max(d1[j], zero), one)
                    d2[j] = min(max(d2[j], zero), one)

    @nb.njit(cache=True, nogil=True)
    def canny(img, low, high, out):  # pragma: no cover - compiled
        # corruptions._canny image by image: Sobel (replicated border), L1 magnitude,
        # 4-direction non-maximum suppression (zero magnitude outside), then
        # hysteresis as a flood fill from the strong pixels through the candidates
        # (8-connectivity: the fixpoint of the torch dilation loop).  Sobel and
        # suppression run row by row without branches (the loops vectorise); the
        # values are integers, exact in float32 in any order.
        bsz, h, w = img.shape
        f = np.float32
        mag = np.zeros((h + 2, w + 2), dtype=np.float32)
        gxs = np.empty((h, w), dtype=np.float32)
        gys = np.empty((h, w), dtype=np.float32)
        cand = np.zeros((h, w), dtype=np.bool_)
        pad = np.empty((3, w + 2), dtype=np.float32)
        stack = np.empty(h * w, dtype=np.int64)
        t22 = f(0.4142135623730950488)
        two, flow, fhigh = f(2.0), f(low), f(high)
        for b in range(bsz):
            x = img[b]
            for i in range(h):
                rows = (max(i - 1, 0), i, min(i + 1, h - 1))
                for k in range(3):  # the three rows, replicated one pixel left and right
                    src = x[rows[k]]
                    pk = pad[k]
                    pk[1:w + 1] = src
                    pk[0] = src[0]
                    pk[w + 1] = src[w - 1]
                pm, p0, pp = pad[0], pad[1], pad[2]
                gxr, gyr = gxs[i], gys[i]
                mr = mag[i + 1, 1:w + 1]
                for j in range(w):
                    gx = (pm[j + 2] + two * p0[j + 2] + pp[j + 2]) - (pm[j] + two * p0[j] + pp[j])
                    gy = (pp[j] + two * pp[j + 1] + pp[j + 2]) - (pm[j] + two * pm[j + 1] + pm[j + 2])
                    gxr[j] = gx
                    gyr[j] = gy
                    mr[j] = abs(gx) + abs(gy)
            o = out[b]
            for i in range(h):
                up, mid, dn = mag[i], mag[i + 1], mag[i + 2]
                gxr, gyr = gxs[i], gys[i]
                cr, orow = cand[i], o[i]
                for j in range(w):
                    c = mid[j + 1]
                    gx, gy = gxr[j], gyr[j]
                    ax, ay = abs(gx), abs(gy)
                    tg22 = ax * t22
                    tg67 = tg22 + ax * two
                    k_h = (c > mid[j]) & (c >= mid[j + 2])
                    k_v = (c > up[j + 1]) & (c >= dn[j + 1])
                    k_d = (c > up[j]) & (c > dn[j + 2])
                    k_a = (c > up[j + 2]) & (c > dn[j])
                    keep = k_h if ay < tg22 else (k_v if ay > tg67 else (k_d if gx * gy >= 0 else k_a))
                    ca = keep & (c > flow)
                    cr[j] = ca
                    orow[j] = ca & (c > fhigh)
            n = 0
            for i in range(h):
                orow = o[i]
                for j in range(w):
                    if orow[j]:
                        stack[n] = i * w + j
                        n += 1
            while n > 0:
                n -= 1
                i, j = stack[n] // w, stack[n] % w
                for u in range(max(i - 1, 0), min(i + 2, h)):
                    for v in range(max(j - 1, 0), min(j + 2, w)):
                        if cand[u, v] and not o[u, v]:
                            o[u, v] = True
                            stack[n] = u * w + v
                            n += 1

    @nb.njit(cache=True, nogil=True)
    def edt_truncated(edges, cap, out):  # pragma: no cover - compiled
        # corruptions._edt_truncated image by image: the distance to the nearest edge
        # along the row (capped at cap + 1), then the minimum over rows within cap:
        # squared distances (the caller takes torch's square root, as the torch path).
        bsz, h, w = edges.shape
        f = np.float32
        big = f(cap + 1)
        g2 = np.empty((h, w), dtype=np.float32)
        for b in range(bsz):
            e = edges[b]
            for i in range(h):
                last = -1
                for j in range(w):
                    if e[i, j]:
                        last = j
                    g2[i, j] = min(f(j - last), big) if last >= 0 else big
                last = -1
                for j in range(w - 1, -1, -1):
                    if e[i, j]:
                        last = j
                    if last >= 0:
                        g2[i, j] = min(g2[i, j], f(last - j))
                for j in range(w):
                    g2[i, j] = g2[i, j] * g2[i, j]
            o = out[b]
            for i in range(h):
                d = o[i]
                gi = g2[i]
                # more: some d[j] > k^2, i.e. rows k away can still lower a distance
                # (a branch-free flag: it vectorises, a float max does not)
                more = False
                for j in range(w):
                    d[j] = gi[j]
                    more |= gi[j] > f(1)
                for k in range(1, min(cap, h - 1) + 1):
                    if not more:
                        break
                    kk = f(k * k)
                    kn = f((k + 1) * (k + 1))
                    more = False
                    if i - k >= 0:
                        r = g2[i - k]
                        for j in range(w):
                            v = r[j] + kk
                            d[j] = v if v < d[j] else d[j]
                    if i + k < h:
                        r = g2[i + k]
                        for j in range(w):
                            v = r[j] + kk
                            dj = v if v < d[j] else d[j]
                            d[j] = dj
                            more |= dj > kn
                    else:
                        for j in range(w):
                            more |= d[j] > kn

    @nb.njit(cache=True, nogil=True)
    def unit_to_u8(x, out, rnd):  # pragma: no cover - compiled
        # corruptions.quantize_u8 in one pass: x * 255, then round (half to even) or
        # + 1e-4, clamped to [0, 255], truncated; float32 throughout (one loop per
        # mode, through int32: the loops vectorise)
        f = np.float32
        eps, lo, hi = f(1e-4), f(0.0), f(255.0)
        if rnd:
            for i in range(x.shape[0]):
                v = np.round(x[i] * hi)
                out[i] = np.uint8(np.int32(min(max(v, lo), hi)))
        else:
            for i in range(x.shape[0]):
                v = x[i] * hi + eps
                out[i] = np.uint8(np.int32(min(max(v, lo), hi)))

    @nb.njit(cache=True, nogil=True)
    def snow_composite(x, bl, blend, out):  # pragma: no cover - compiled
        # corruptions.snow_composite pointwise, float32 in the torch path's order; row
        # by row, one channel per inner loop (the loops vectorise)
        bsz, ch, h, w = x.shape
        f = np.float32
        kb, kc = f(blend), f(1.0 - blend)
        t = np.empty(w, dtype=np.float32)
        rev = np.empty(w, dtype=np.float32)
        for b in range(bsz):
            for i in range(h):
                x0, x1, x2 = x[b, 0, i], x[b, 1, i], x[b, 2, i]
                snow = bl[b, 0, i]
                flip = bl[b, 0, h - 1 - i]
                for j in range(w):
                    grey = (f(0.299) * x0[j] + f(0.587) * x1[j]) + f(0.114) * x2[j]
                    t[j] = grey * f(1.5) + f(0.5)
                    rev[j] = flip[np.uintp(w - 1 - j)]  # unsigned: no wraparound test
                for c in range(ch):
                    xc = x[b, c, i]
                    oc = out[b, c, i]
                    for j in range(w):
                        v = xc[j]
                        v = ((kb * v + kc * max(v, t[j])) + snow[j]) + rev[j]
                        oc[j] = min(max(v, f(0.0)), f(1.0))

    @nb.njit(cache=True, nogil=True)
    def noise_apply(x, n, kind, a):  # pragma: no cover - compiled
        # in place on the random draws n, float32 in the torch paths' order:
        # 0 gaussian: clip(x + n * a); 1 speckle: clip(x + x * (n * a));
        # 2 impulse (n uniform): 0 or 1 where n < a (1 iff n >= a / 2), else x
        # (one loop per kind: they vectorise)
        f = np.float32
        af, half, zero, one = f(a), f(a * 0.5), f(0.0), f(1.0)
        if kind == 0:
            for i in range(x.shape[0]):
                v = x[i] + n[i] * af
                n[i] = min(max(v, zero), one)
        elif kind == 1:
            for i in range(x.shape[0]):
                v = x[i]
                v = v + v * (n[i] * af)
                n[i] = min(max(v, zero), one)
        else:
            for i in range(x.shape[0]):
                u = n[i]
                v = x[i]
                if u < af:
                    v = one if u >= half else zero
                n[i] = min(max(v, zero), one)

    @nb.njit(cache=True, nogil=True)
    def hsv_affine(x, out, saturation, a, c):  # pragma: no cover - compiled
        # _ops.hsv_saturation_affine (S <- clip(S a + c)) or _ops.hsv_value_shift
        # (V <- clip(V + c)) then the corruption's clip to [0, 1], pixel by pixel,
        # float32 in the torch path's order; row by row with the three channels
        # written in the same inner loop (it vectorises)
        bsz, ch, h, w = x.shape
        f = np.float32
        af, cf, tiny, zero, one = f(a), f(c), f(1e-12), f(0.0), f(1.0)
        for b in range(bsz):
            for i in range(h):
                x0, x1, x2 = x[b, 0, i], x[b, 1, i], x[b, 2, i]
                o0, o1, o2 = out[b, 0, i], out[b, 1, i], out[b, 2, i]
                if saturation:
                    for j in range(w):
                        r, g, bl = x0[j], x1[j], x2[j]
                        v = max(max(r, g), bl)
                        delta = v - min(min(r, g), bl)
                        s = delta / max(v, tiny) if v > zero else zero
                        s2 = min(max(s * af + cf, zero), one)
                        k = s2 / max(s, tiny)
                        vs = v * s2
                        if delta > zero:
                            p0, p1, p2 = v - k * (v - r), v - k * (v - g), v - k * (v - bl)
                        else:  # grey: hue 0 (red), so (V, V(1 - S'), V(1 - S'))
                            p0, p1, p2 = v - vs * zero, v - vs * one, v - vs * one
                        o0[j] = min(max(p0, zero), one)
                        o1[j] = min(max(p1, zero), one)
                        o2[j] = min(max(p2, zero), one)
                else:
                    for j in range(w):
                        r, g, bl = x0[j], x1[j], x2[j]
                        v = max(max(r, g), bl)
                        v2 = min(max(v + cf, zero), one)
                        ratio = v2 / max(v, tiny) if v > zero else zero
                        if v > zero:
                            p0, p1, p2 = r * ratio, g * ratio, bl * ratio
                        else:
                            p0, p1, p2 = v2, v2, v2
                        o0[j] = min(max(p0, zero), one)
                        o1[j] = min(max(p1, zero), one)
                        o2[j] = min(max(p2, zero), one)

    @nb.njit(cache=True, nogil=True)
    def spatter_mix(x, m, rgb, mud, out):  # pragma: no cover - compiled
        # corruptions._spatter's last line: clip(x + m * rgb) (water) or
        # clip(x * (1 - m) + rgb * m) (mud), float32 in the torch path's order
        bsz, ch, h, w = x.shape
        f = np.float32
        for b in range(bsz):
            for c in range(ch):
                k = rgb[c]
                for i in range(h):
                    for j in range(w):
                        mm = m[b, 0, i, j]
                        v = x[b, c, i, j] * (f(1.0) - mm) + k * mm if mud else x[b, c, i, j] + mm * k
                        out[b, c, i, j] = min(max(v, f(0.0)), f(1.0))

    @nb.njit(cache=True, nogil=True)
    def motion_taps(xp, out, offs, wts, ntaps):  # pragma: no cover - compiled
        # out[b, c, i, j] = sum_t wts[b, t] * xp[b, c, i + offs[b, t, 0], j + offs[b, t, 1]]
        # over the first ntaps[b] taps, accumulated in tap order as in _ops.motion_blur.
        bsz, ch, h, w = out.shape
        for b in range(bsz):
            nt = ntaps[b]
            ob, wb = offs[b], wts[b]
            for c in range(ch):
                xc = xp[b, c]
                for i in range(h):
                    # windows sliced first: indices from range(w) need no negative-index
                    # wraparound, so the row loops vectorise
                    o = out[b, c, i]
                    src = xc[i + ob[0, 0], ob[0, 1]:ob[0, 1] + w]
                    wt = wb[0]
                    for j in range(w):
                        o[j] = src[j] * wt
                    t = 1
                    while t + 8 <= nt:
                        # eight (then four) taps per pass over the row, same order of
                        # additions: the partial sum stays in registers
                        s0 = xc[i + ob[t, 0], ob[t, 1]:ob[t, 1] + w]
                        s1 = xc[i + ob[t + 1, 0], ob[t + 1, 1]:ob[t + 1, 1] + w]
                        s2 = xc[i + ob[t + 2, 0], ob[t + 2, 1]:ob[t + 2, 1] + w]
                        s3 = xc[i + ob[t + 3, 0], ob[t + 3, 1]:ob[t + 3, 1] + w]
                        s4 = xc[i + ob[t + 4, 0], ob[t + 4, 1]:ob[t + 4, 1] + w]
                        s5 = xc[i + ob[t + 5, 0], ob[t + 5, 1]:ob[t + 5, 1] + w]
                        s6 = xc[i + ob[t + 6, 0], ob[t + 6, 1]:ob[t + 6, 1] + w]
                        s7 = xc[i + ob[t + 7, 0], ob[t + 7, 1]:ob[t + 7, 1] + w]
                        w0, w1, w2, w3 = wb[t], wb[t + 1], wb[t + 2], wb[t + 3]
                        w4, w5, w6, w7 = wb[t + 4], wb[t + 5], wb[t + 6], wb[t + 7]
                        for j in range(w):
                            o[j] = (((((((o[j] + w0 * s0[j]) + w1 * s1[j]) + w2 * s2[j]) + w3 * s3[j])
                                     + w4 * s4[j]) + w5 * s5[j]) + w6 * s6[j]) + w7 * s7[j]
                        t += 8
                    while t + 4 <= nt:
                        s0 = xc[i + ob[t, 0], ob[t, 1]:ob[t, 1] + w]
                        s1 = xc[i + ob[t + 1, 0], ob[t + 1, 1]:ob[t + 1, 1] + w]
                        s2 = xc[i + ob[t + 2, 0], ob[t + 2, 1]:ob[t + 2, 1] + w]
                        s3 = xc[i + ob[t + 3, 0], ob[t + 3, 1]:ob[t + 3, 1] + w]
                        w0, w1, w2, w3 = wb[t], wb[t + 1], wb[t + 2], wb[t + 3]
                        for j in range(w):
                            o[j] = (((o[j] + w0 * s0[j]) + w1 * s1[j]) + w2 * s2[j]) + w3 * s3[j]
                        t += 4
                    while t < nt:
                        src = xc[i + ob[t, 0], ob[t, 1]:ob[t, 1] + w]
                        wt = wb[t]
                        for j in range(w):
                            o[j] = o[j] + wt * src[j]
                        t += 1

    @nb.njit(cache=True, nogil=True)
    def u8_levels(x, lv):  # pragma: no cover - compiled
        # lv = round(x * 255) (half to even), and whether every |lv / 255 - x| <= 1e-6:
        # corruptions._shot_noise's test, float32 in the torch path's order
        f = np.float32
        s255, inv, tol = f(255.0), f(1.0 / 255.0), f(1e-6)
        ok = True
        for i in range(x.shape[0]):
            v = np.round(x[i] * s255)
            ok &= abs(v * inv - x[i]) <= tol
            lv[i] = np.int32(v)
        return ok

    @nb.njit(cache=True, nogil=True)
    def poisson_guide(lv, u, guide, values, out, amb):  # pragma: no cover - compiled
        # _ops.poisson_levels' guide-table step: top = the 24-bit integer of the float32
        # uniform u; its bucket settles k -> out = values[k], else the position goes to amb
        # and u keeps top (exact in float32) for the float64 refinement.
        n = 0
        scale = np.float32(1 << 24)
        for i in range(lv.shape[0]):
            top = np.int32(np.floor(u[i] * scale))
            k = guide[np.uintp((top >> 12) + lv[i] * 4096)]
            if k < 0:
                amb[n] = i
                n += 1
                u[i] = np.float32(top)
            else:
                out[i] = values[k]
        return n

    @nb.njit(cache=True, nogil=True)
    def levels_unit(x):  # pragma: no cover - compiled
        # corruptions._uint8_levels_unit_ in place on flat float32 x, in its order:
        # floor(clip(x, 0, 1) * 255 + 1e-4) / 255
        f = np.float32
        lo, hi, s, eps = f(0.0), f(1.0), f(255.0), f(1e-4)
        for i in range(x.shape[0]):
            x[i] = np.floor(min(max(x[i], lo), hi) * s + eps) / s

    @nb.njit(cache=True, nogil=True)
    def fog_mix(x, fr, maxv, strength, out):  # pragma: no cover - compiled
        # corruptions._fog's last line: clip((x + s * fractal) * max(x) / (max(x) + s)),
        # float32 in the torch path's order; fr is the whole map, cropped here; maxv the
        # per-image maxima (torch's amax: a float max reduction does not vectorise here)
        bsz, ch, h, w = x.shape
        f = np.float32
        s, zero, one = f(strength), f(0.0), f(1.0)
        for b in range(bsz):
            m = maxv[b]
            den = m + s
            for c in range(ch):
                for i in range(h):
                    r = x[b, c, i]
                    q = fr[b, i, :w]
                    o = out[b, c, i]
                    for j in range(w):
                        v = ((r[j] + s * q[j]) * m) / den
                        o[j] = min(max(v, zero), one)

    @nb.njit(cache=True, nogil=True)
    def equalize_hist(img, out):  # pragma: no cover - compiled
        # corruptions._equalize_hist image by image (flat (B, N) uint8-valued float32):
        # lut[i] = round((cdf(i) - h0) * (255 * (1 / (N - h0)))) for i above the first
        # non-empty bin i0 (0 up to it), float32 as torch computes it; constant images
        # map to i0
        bsz, n = img.shape
        f = np.float32
        hist = np.zeros(256, dtype=np.int64)
        lut = np.empty(256, dtype=np.float32)
        lv = np.empty(n, dtype=np.int64)
        for b in range(bsz):
            hist[:] = 0
            for k in range(n):
                v = min(max(np.int64(img[b, k]), 0), 255)
                lv[k] = v
                hist[v] += 1
            first = 0
            while hist[first] == 0:
                first += 1
            h0 = hist[first]
            if h0 == n:
                lut[:] = f(first)
            else:
                scale = (f(1.0) / f(max(n - h0, 1))) * f(255.0)
                cdf = 0
                for i in range(256):
                    cdf += hist[i]
                    val = min(max(np.round(f(cdf - h0) * scale), f(0.0)), f(255.0))
                    lut[i] = f(0.0) if i <= first else val
            o = out[b]
            for k in range(n):
                o[k] = lut[lv[k]]

    @nb.njit(cache=True, nogil=True)
    def poisson_refine(lv, amb, u, cdf, values, out):  # pragma: no cover - compiled
        # _ops.poisson_levels' refinement of the undecided elements: k = #{j : cdf[lv, j]
        # <= u} (float64; torch.searchsorted(..., right=True) on the sorted CDF row)
        kmax = cdf.shape[1]
        for t in range(amb.shape[0]):
            i = amb[t]
            row = cdf[lv[i]]
            ut = u[t]
            lo, hi = 0, kmax  # binary search: the first j with row[j] > u
            while lo < hi:
                mid = (lo + hi) // 2
                if row[mid] <= ut:
                    lo = mid + 1
                else:
                    hi = mid
            out[i] = values[lo]

    return glass_sweeps, separable, zoom_sum, pil_box_nearest, plasma, elastic, canny, edt_truncated, unit_to_u8, snow_composite, noise_apply, hsv_affine, spatter_mix, motion_taps, u8_levels, poisson_guide, levels_unit, fog_mix, equalize_hist, poisson_refine


def glass_sweeps(y: torch.Tensor, codes: torch.Tensor, delta: int) -> None:
    """Run the published glass-blur sweeps in place on (B, C, H, W) float32 ``y``
    (contiguous, CPU).  ``codes``: (S, B, nh, nw) int16 ``(dy + d) * 2d + (dx + d)``,
    sweep-major."""
    b, c, h, w = y.shape
    code = np.arange(4 * delta * delta)
    offs = (code // (2 * delta) - delta) * w + (code % (2 * delta) - delta)
    yc = y.permute(0, 2, 3, 1).contiguous()  # channels-last: ~1.3x faster sweeps, transposes included
    _kernels()[0](yc.view(b, h * w, c).numpy(), codes.to(torch.int16).contiguous().numpy(), offs, delta, w)
    y.copy_(yc.permute(0, 3, 1, 2))


def separable_filter(x: torch.Tensor, kh: torch.Tensor, ih: torch.Tensor, kw: torch.Tensor, iw: torch.Tensor) -> torch.Tensor:
    """Separable correlation of (N, C, H, W) float32 CPU ``x``: taps ``kh``/``kw``,
    border-extended source indices ``ih`` (H + len(kh) - 1) / ``iw``."""
    n, c, h, w = x.shape
    xs = x.contiguous().view(n * c, h, w)
    out = torch.empty_like(xs)
    f32 = np.float32
    _kernels()[1](xs.numpy(), out.numpy(), kh.numpy().astype(f32), ih.numpy().astype(np.uintp),
                  kw.numpy().astype(f32), iw.numpy().astype(np.uintp))
    return out.view(n, c, h, w)


def zoom_sum(x: torch.Tensor, rows, cols) -> torch.Tensor:
    """``x + sum_z zoom_z(x)`` for (N, C, H, W) float32 CPU ``x``, each zoom a
    bilinear resampling given per axis as (i0, i1, frac) arrays of shapes
    (Z, H) and (Z, W): ``v = x[i0] + frac * (x[i1] - x[i0])``."""
    n, c, h, w = x.shape
    xs = x.contiguous().view(n * c, h, w)
    out = xs.clone()
    # unsigned indices: numba skips the negative-index wraparound on each gather
    (r0, r1, rf), (c0, c1, cf) = rows, cols
    u = np.uintp
    identity = ((rf == 0).all(1) & (r0 == np.arange(h)).all(1) & (cf == 0).all(1) & (c0 == np.arange(w)).all(1))
    _kernels()[2](xs.numpy(), out.numpy(), r0.astype(u), r1.astype(u), rf, c0.astype(u), c1.astype(u), cf, identity,
                  r0.min(1).astype(np.int64), r1.max(1).astype(np.int64))
    return out.view(n, c, h, w)


def pil_box_nearest(x: np.ndarray, out: np.ndarray, horiz, vert, up_rows: np.ndarray, up_cols: np.ndarray) -> None:
    """Pillow ``resize(BOX)`` then ``resize(NEAREST)`` of a (B, H, W, 3) uint8
    batch into ``out`` (B, H', W', 3), bit for bit.  ``horiz`` / ``vert``: (source indices,
    22-bit integer taps), each (n_out, taps) int32; ``up_rows`` / ``up_cols``:
    the source pixel of every upsampled row / column."""
    b, h, w, _ = x.shape
    _kernels()[3](x.reshape(b, h, w * 3), out.reshape(b, out.shape[1], -1), *horiz, *vert, up_rows, up_cols)


def plasma(u: torch.Tensor, wibbledecay: float) -> torch.Tensor:
    """Un-normalised diamond-square maps (B, S, S) from the uniforms ``u``
    (B, S, S) float32 CPU (see ``_ops.plasma_fractal``)."""
    u = u.contiguous()
    m = torch.zeros_like(u)
    _kernels()[4](u.numpy(), m.numpy(), wibbledecay)
    return m


def elastic(x: torch.Tensor, inv: torch.Tensor, fields: torch.Tensor, alpha: float) -> torch.Tensor:
    """The two bilinear resamplings of ``elastic_transform`` and its clip to [0, 1]
    on (B, 3, H, W) float32 CPU ``x``: the affine warp by the inverse maps ``inv``
    (B, 3, 3) float64 (edge-centre reflection), then the displacement
    ``alpha * fields`` ((B, 2, H, W) float32, channel 0 = x, 1 = y; edge reflection)."""
    b, c, h, w = x.shape  # c == 3
    x = x.contiguous()
    out = torch.empty_like(x)
    warped = torch.empty((c, h * w), dtype=x.dtype)
    _kernels()[5](x.view(b, c, h * w).numpy(), out.view(b, c, h * w).numpy(), warped.numpy(),
                  inv.contiguous().numpy(), fields.contiguous().numpy(), np.float32(alpha), h, w)
    return out


def canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``corruptions._canny`` of (B, 1, H, W) float32 CPU uint8-valued ``img``: bool edges."""
    b, _, h, w = img.shape
    out = torch.empty((b, 1, h, w), dtype=torch.bool)
    _kernels()[6](img.reshape(b, h, w).contiguous().numpy(), float(low), float(high), out.numpy().reshape(b, h, w))
    return out


def edt_truncated(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """``corruptions._edt_truncated`` of the bool (B, 1, H, W) CPU ``edges``."""
    b, _, h, w = edges.shape
    out = torch.empty((b, 1, h, w), dtype=torch.float32)
    _kernels()[7](edges.reshape(b, h, w).contiguous().numpy(), int(cap), out.numpy().reshape(b, h, w))
    return torch.sqrt_(out).clamp_(max=float(cap))


def unit_to_u8(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``corruptions.quantize_u8`` of contiguous float32 CPU ``x`` (``mode`` floor or round)."""
    out = torch.empty(x.shape, dtype=torch.uint8)
    _kernels()[8](x.view(-1).numpy(), out.view(-1).numpy(), mode == "round")
    return out


def snow_composite(x: torch.Tensor, blurred: torch.Tensor, blend: float) -> torch.Tensor:
    """``corruptions.snow_composite`` of float32 CPU (B, 3, H, W) ``x`` and (B, 1, H, W) ``blurred``."""
    x = x.contiguous()
    out = torch.empty_like(x)
    _kernels()[9](x.numpy(), blurred.contiguous().numpy(), float(blend), out.numpy())
    return out


_NOISE_KINDS = {"gaussian": 0, "speckle": 1, "impulse": 2}


def noise_apply(x: torch.Tensor, draws: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    """The pointwise step of gaussian / speckle / impulse noise on contiguous
    float32 CPU ``x`` with its random ``draws`` (overwritten and returned)."""
    _kernels()[10](x.view(-1).numpy(), draws.view(-1).numpy(), _NOISE_KINDS[kind], float(a))
    return draws


def hsv_affine(x: torch.Tensor, saturation: bool, a: float, c: float) -> torch.Tensor:
    """``clip(hsv_saturation_affine(x, a, c))`` (``saturation``) or
    ``clip(hsv_value_shift(x, c))`` of contiguous float32 CPU (B, 3, H, W) ``x``."""
    out = torch.empty_like(x)
    _kernels()[11](x.numpy(), out.numpy(), bool(saturation), float(a), float(c))
    return out


def spatter_mix(x: torch.Tensor, m: torch.Tensor, rgb: torch.Tensor, mud: bool) -> torch.Tensor:
    """``corruptions._spatter``'s blend of contiguous float32 CPU (B, 3, H, W) ``x``
    with the (B, 1, H, W) mask ``m`` and colour ``rgb`` (3,)."""
    out = torch.empty_like(x)
    _kernels()[12](x.numpy(), m.contiguous().numpy(), rgb.contiguous().numpy(), bool(mud), out.numpy())
    return out


def motion_taps(xp: torch.Tensor, out: torch.Tensor, offs: np.ndarray, wts: np.ndarray, ntaps: np.ndarray) -> torch.Tensor:
    """Fill (B, C, H, W) float32 ``out`` with the weighted sum of shifted windows of
    the border-extended float32 ``xp``: per image ``b``, taps ``t < ntaps[b]`` of
    weight ``wts[b, t]`` (float32) reading ``xp`` at offset ``offs[b, t]`` (rows, cols;
    int64, into ``xp``)."""
    _kernels()[13](xp.contiguous().numpy(), out.numpy(), offs, wts, ntaps)
    return out


def u8_levels(x: torch.Tensor) -> torch.Tensor | None:
    """``round(x * 255)`` as int32 of contiguous float32 CPU ``x`` when every
    element is within 1e-6 of its 8-bit level (``corruptions._shot_noise``'s
    test), else None."""
    lv = torch.empty(x.shape, dtype=torch.int32)
    return lv if _kernels()[14](x.view(-1).numpy(), lv.view(-1).numpy()) else None


def poisson_guide(lv: torch.Tensor, u: torch.Tensor, guide: torch.Tensor, values: torch.Tensor):
    """The guide-table step of ``_ops.poisson_levels`` on flat int32 levels ``lv`` and
    their float32 uniforms ``u`` (overwritten): ``(out, amb)`` with ``out[i] =
    values[k]`` where the bucket settles ``k``, and ``amb`` the other positions (int64,
    increasing), whose ``u`` now holds the 24-bit integer of the uniform."""
    out = torch.empty(u.shape, dtype=torch.float32)
    amb = torch.empty(u.shape, dtype=torch.int64)
    n = _kernels()[15](lv.numpy(), u.numpy(), guide.numpy(), values.numpy(), out.numpy(), amb.numpy())
    return out, amb[:n]


def poisson_refine(lv: torch.Tensor, amb: torch.Tensor, u: torch.Tensor, cdf: torch.Tensor, values: torch.Tensor,
                   out: torch.Tensor) -> None:
    """``out[amb[t]] = values[k]`` with ``k`` the float64 inverse CDF of level
    ``lv[amb[t]]`` (rows of ``cdf``) at ``u[t]``: ``_ops.poisson_levels``' refinement."""
    _kernels()[19](lv.numpy(), amb.numpy(), u.numpy(), cdf.numpy(), values.numpy(), out.numpy())


def correlate_taps(xp: torch.Tensor, shape, taps) -> torch.Tensor:
    """Correlation of the border-extended float32 (B, C, H + kh - 1, W + kw - 1)
    ``xp`` with the nonzero kernel entries ``taps`` ((row, col, weight), in the
    order to accumulate), same taps for every image: the (B, C, H, W) output."""
    b = shape[0]
    offs = np.ascontiguousarray(np.broadcast_to(np.array([t[:2] for t in taps], dtype=np.int64), (b, len(taps), 2)))
    wts = np.ascontiguousarray(np.broadcast_to(np.array([t[2] for t in taps], dtype=np.float32), (b, len(taps))))
    return motion_taps(xp, torch.empty(shape, dtype=torch.float32), offs, wts, np.full(b, len(taps), dtype=np.int64))


def levels_unit_(x: torch.Tensor) -> torch.Tensor:
    """``corruptions._uint8_levels_unit_`` in place on contiguous float32 CPU ``x``."""
    _kernels()[16](x.view(-1).numpy())
    return x


def fog_mix(x: torch.Tensor, fractal: torch.Tensor, strength: float) -> torch.Tensor:
    """``corruptions._fog``'s blend of contiguous float32 CPU (B, 3, H, W) ``x`` with
    the (B, S, S) plasma maps (S >= H, W; cropped to the image)."""
    out = torch.empty_like(x)
    maxv = x.reshape(x.shape[0], -1).amax(dim=1)
    _kernels()[17](x.numpy(), fractal.contiguous().numpy(), maxv.numpy(), float(strength), out.numpy())
    return out


def equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """``corruptions._equalize_hist`` of (B, 1, H, W) uint8-valued float32 CPU ``img``."""
    b = img.shape[0]
    out = torch.empty(img.shape, dtype=torch.float32)
    _kernels()[18](img.reshape(b, -1).contiguous().numpy(), out.view(b, -1).numpy())
    return out
