"""The engine's CPU fast paths against exact oracles: the table Poisson sampler
against scipy's Poisson quantile function on the same uniforms, the compiled
glass-blur sweeps against the published loop, the compiled separable filter
against scipy, and the compiled and pure-torch paths against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbx_robustness.engine import _compiled, _ops, corrupt
from rbx_robustness.engine import corruptions as C


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure"])
@pytest.mark.parametrize("lam", [3, 25, 60, 500])
def test_poisson_levels_is_the_exact_inverse_cdf(lam, compiled, monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    if compiled and not _compiled.available():
        pytest.skip("numba not installed")
    if not compiled:
        monkeypatch.setattr(_compiled, "available", lambda: False)
    levels = torch.arange(256, dtype=torch.float32).repeat(40)
    got = _ops.poisson_levels(levels, lam, torch.Generator().manual_seed(lam))
    # replay the draws: 24 bits per element (float32), then 53 more bits for the
    # elements whose guide bucket holds a CDF step, in order
    g = torch.Generator().manual_seed(lam)
    top = torch.rand(levels.numel(), generator=g).numpy().astype(np.float64) * 2.0 ** 24
    assert np.array_equal(top, np.floor(top)), "float32 uniforms are multiples of 2^-24"
    _, guide, _ = _ops._poisson_level_tables(float(lam), 256)
    idx = (top.astype(np.int64) >> 12) + levels.numpy().astype(np.int64) * 4096
    amb = np.flatnonzero(guide.numpy()[idx] < 0)
    assert 0 < len(amb) < 0.05 * len(idx)
    u = top.copy()
    u[amb] += torch.rand(len(amb), dtype=torch.float64, generator=g).numpy()
    u *= 2.0 ** -24
    k = stats.poisson.ppf(u, levels.double().numpy() / 255.0 * lam)
    want = np.clip(k / lam, 0.0, 1.0).astype(np.float32)
    np.testing.assert_array_equal(got.numpy(), want)


def test_shot_noise_takes_the_table_only_for_8bit_levels(monkeypatch):
    calls = []
    real = _ops.poisson_levels
    monkeypatch.setattr(_ops, "poisson_levels", lambda *a: calls.append(1) or real(*a))
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    corrupt(u8, "shot_noise", 2, torch.Generator().manual_seed(1))
    corrupt(u8.float() / 255.0, "shot_noise", 2, torch.Generator().manual_seed(1))
    assert len(calls) == 2
    off_grid = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    y = corrupt(off_grid, "shot_noise", 2, torch.Generator().manual_seed(1))
    assert len(calls) == 2 and torch.isfinite(y).all()


needs_numba = pytest.mark.skipif(not _compiled.available(), reason="numba not installed")


@needs_numba
def test_compiled_shot_noise_is_torch_bit_for_bit(monkeypatch):
    u8 = torch.randint(0, 256, (3, 3, 40, 52), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = (u8, u8.float() / 255.0, torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    fast = [[corrupt(x, "shot_noise", s, torch.Generator().manual_seed(s)) for s in range(1, 6)] for x in inputs]
    monkeypatch.setattr(_compiled, "available", lambda: False)
    for x, outs in zip(inputs, fast):
        for s, a in enumerate(outs, 1):
            assert torch.equal(a, corrupt(x, "shot_noise", s, torch.Generator().manual_seed(s))), (x.dtype, s)


def _sequential_glass_sweeps(y: np.ndarray, offsets: np.ndarray, d: int) -> np.ndarray:
    """The published loop in plain Python: y[h, w] <- y[h + dy, w + dx]."""
    y = y.copy()
    _, h, w, _ = y.shape
    for s in range(offsets.shape[0]):
        for b in range(y.shape[0]):
            for hh in range(h - d, d, -1):
                for ww in range(w - d, d, -1):
                    dy, dx = offsets[s, b, hh - d - 1, ww - d - 1]
                    y[b, hh, ww] = y[b, hh + dy, ww + dx]
    return y


@needs_numba
@pytest.mark.parametrize("d", [1, 2, 4])
def test_compiled_glass_sweeps_are_the_published_loop(d):
    g = torch.Generator().manual_seed(d)
    y = torch.rand(2, 3, 19, 27, generator=g)
    codes = torch.randint(0, 4 * d * d, (2, 2, 19 - 2 * d, 27 - 2 * d), generator=g, dtype=torch.int16)
    offs = C._glass_offsets(codes, d)
    assert int(offs.min()) == -d and int(offs.max()) == d - 1
    want = _sequential_glass_sweeps(y.permute(0, 2, 3, 1).numpy(), offs.numpy().astype(int), d)
    got = y.clone()
    _compiled.glass_sweeps(got, codes, d)
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), want)


@needs_numba
@pytest.mark.parametrize("name", ["glass_blur", "zoom_blur", "fog", "gaussian_blur", "spatter", "elastic_transform",
                                  "motion_blur", "snow", "defocus_blur"])
def test_compiled_and_pure_torch_paths_agree(name, monkeypatch):
    x = torch.randint(0, 256, (3, 3, 40, 52), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    fast = [corrupt(x, name, s, torch.Generator().manual_seed(s)) for s in range(1, 6)]
    monkeypatch.setattr(_compiled, "available", lambda: False)
    pure = [corrupt(x, name, s, torch.Generator().manual_seed(s)) for s in range(1, 6)]
    for s, (a, b) in enumerate(zip(fast, pure), 1):
        # same random draws and algorithm; float32 sums in another order move a
        # value across a truncation boundary at most by one level, rarely
        d = (a.int() - b.int()).abs()
        assert int(d.max()) <= 1 and float((d > 0).float().mean()) < 1e-3, f"{name} sev {s}"


@needs_numba
@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap"])
def test_compiled_separable_filter_matches_scipy(mode):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(2, 3, 23, 37, generator=torch.Generator().manual_seed(0))
    for sigma in (0.7, 2.0, 6.0):
        got = _ops.gaussian_filter(x, sigma, mode=mode)
        want = ndimage.gaussian_filter(x.double().numpy(), (0, 0, sigma, sigma), mode=mode, truncate=4.0)
        np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure"])
def test_pixelate_is_pillow_bit_for_bit(compiled, monkeypatch):
    if compiled and not _compiled.available():
        pytest.skip("numba not installed")
    if not compiled:
        monkeypatch.setattr(_compiled, "available", lambda: False)
    from PIL import Image

    for h, w in ((224, 224), (37, 53)):
        x = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(h))
        for sev, c in enumerate((0.6, 0.5, 0.4, 0.3, 0.25), 1):
            got = corrupt(x.permute(0, 3, 1, 2), "pixelate", sev).permute(0, 2, 3, 1).numpy()
            for a, im in zip(got, x.numpy()):
                small = Image.fromarray(im).resize((int(w * c), int(h * c)), Image.BOX)
                np.testing.assert_array_equal(a, np.asarray(small.resize((w, h), Image.NEAREST)))


@needs_numba
@pytest.mark.parametrize("mapsize, decay", [(256, 1.7), (32, 2.0), (64, 1.4)])
def test_compiled_plasma_is_the_torch_plasma_bit_for_bit(mapsize, decay, monkeypatch):
    fast = _ops.plasma_fractal(2, mapsize, decay, torch.Generator().manual_seed(0), "cpu")
    monkeypatch.setattr(_compiled, "available", lambda: False)
    pure = _ops.plasma_fractal(2, mapsize, decay, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(fast, pure)


@needs_numba
def test_compiled_canny_and_distance_are_the_torch_ones_bit_for_bit(monkeypatch):
    g = torch.Generator().manual_seed(0)
    for sigma in (1.0, 2.0, 4.0):  # dense to sparse edge maps
        liq = _ops.gaussian_filter(torch.rand(3, 1, 45, 61, generator=g), sigma)
        liq = (liq - liq.amin()) / (liq.amax() - liq.amin())
        L = torch.floor(liq * 255.0 + 1e-4)
        fast = C._canny(L, 50.0, 150.0)
        fast_d = C._edt_truncated(fast, 20)
        with monkeypatch.context() as m:
            m.setattr(_compiled, "available", lambda: False)
            pure = C._canny(L, 50.0, 150.0)
            pure_d = C._edt_truncated(fast, 20)
        assert 0 < int(fast.sum()) < fast.numel() // 2
        assert torch.equal(fast, pure) and torch.equal(fast_d, pure_d)


@needs_numba
@pytest.mark.parametrize("mode", ["floor", "round"])
def test_compiled_quantize_u8_is_torch_bit_for_bit(mode, monkeypatch):
    g = torch.Generator().manual_seed(0)
    # every level, the rounding / truncation boundaries around it, and out-of-range values
    lv = torch.arange(256, dtype=torch.float32) / 255.0
    f = torch.cat([lv, lv + 1e-7, lv - 1e-7, (lv + 0.5 / 255.0), torch.rand(5000, generator=g) * 1.2 - 0.1])
    fast = C.quantize_u8(f, mode)
    monkeypatch.setattr(_compiled, "available", lambda: False)
    assert torch.equal(fast, C.quantize_u8(f, mode))


@needs_numba
def test_compiled_snow_composite_is_torch_bit_for_bit(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 19, 23, generator=g)
    blurred = torch.rand(2, 1, 19, 23, generator=g) * 0.6
    fast = C.snow_composite(x, blurred, 0.8)
    monkeypatch.setattr(_compiled, "available", lambda: False)
    assert torch.equal(fast, C.snow_composite(x, blurred, 0.8))


@needs_numba
@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "impulse_noise", "brightness", "saturate", "fog"])
def test_compiled_pointwise_corruptions_are_torch_bit_for_bit(name, monkeypatch):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x[0, :, :8] = x[0, :1, :8]  # grey pixels (S = 0)
    x[1, :, :4] = 0.0  # black pixels (V = 0)
    fast = [corrupt(x, name, s, torch.Generator().manual_seed(s)) for s in range(1, 6)]
    monkeypatch.setattr(_compiled, "available", lambda: False)
    for s, a in enumerate(fast, 1):
        assert torch.equal(a, corrupt(x, name, s, torch.Generator().manual_seed(s))), s


@needs_numba
def test_compiled_spatter_blend_is_torch_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 19, 23, generator=g)
    m = torch.rand(2, 1, 19, 23, generator=g) * 1.2
    water, mud = C._WATER_RGB.view(1, 3, 1, 1), C._MUD_RGB.view(1, 3, 1, 1)
    assert torch.equal(_compiled.spatter_mix(x, m, C._WATER_RGB, False), (x + m * water).clamp_(0.0, 1.0))
    assert torch.equal(_compiled.spatter_mix(x, m, C._MUD_RGB, True), (x * (1.0 - m) + mud * m).clamp_(0.0, 1.0))


@needs_numba
def test_compiled_equalize_hist_and_8bit_levels_are_torch_bit_for_bit(monkeypatch):
    g = torch.Generator().manual_seed(0)
    # truncated distance maps, empty low bins, a constant image, and histograms whose
    # LUT entry (cdf - h0) * 255 / (n - h0) lies within 1e-4 of a rounding tie (h0
    # pixels at 0, d at 1, the rest at 2): there the float32 order of operations shows
    img = torch.randint(0, 21, (200, 1, 30, 41), generator=g).float()
    img[1] = torch.randint(100, 256, (1, 30, 41), generator=g).float()
    img[2] = 7.0
    n = 30 * 41
    h0, d = np.meshgrid(np.arange(1, n), np.arange(1, n), indexing="ij")
    v = d * 255.0 / (n - h0)
    ties = np.argwhere((np.abs(v - np.floor(v) - 0.5) < 1e-4) & (h0 + d < n))[:150] + 1
    assert len(ties) > 50
    for k, (a, b) in enumerate(ties, 3):
        img[k] = 2.0
        img[k].view(-1)[:a] = 0.0
        img[k].view(-1)[a:a + b] = 1.0
    x = torch.rand(2, 3, 19, 23, generator=g) * 1.2 - 0.1
    x[0, 0, 0, :5] = torch.tensor([0.0, 1.0, 3.0 / 255.0, 0.5, -0.0])
    fast_h, fast_l = C._equalize_hist(img), C._uint8_levels_unit_(x.clone())
    monkeypatch.setattr(_compiled, "available", lambda: False)
    assert torch.equal(fast_h, C._equalize_hist(img))
    assert torch.equal(fast_l, C._uint8_levels_unit_(x.clone()))
