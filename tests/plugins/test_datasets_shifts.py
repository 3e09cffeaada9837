"""The embedded default's shifted test sets (FD-Shifts' study types) and the numpy corruptions behind them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rbx_datasets import shifts
from rbx_datasets.embedded import SHIFT_SEED, EmbeddedDigits


@pytest.fixture(scope="module")
def digits():
    return EmbeddedDigits()


def test_covariate_set_is_deterministic_under_its_seed(digits):
    images = digits.samples("id").images
    a, meta_a = shifts.covariate_set(images, seed=7)
    b, meta_b = shifts.covariate_set(images, seed=7)
    c, _ = shifts.covariate_set(images, seed=8)
    assert np.array_equal(a, b) and meta_a == meta_b
    noise = np.array([kind == "noise" for kind, _, _ in meta_a])
    assert not np.array_equal(a[noise], c[noise])  # the seed drives the noise …
    assert np.array_equal(a[~noise], c[~noise])  # … and nothing else
    assert np.array_equal(EmbeddedDigits().samples("shift/covariate").images, shifts.covariate_set(images, SHIFT_SEED)[0])


def test_blur_matches_scipy_with_a_black_border():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 8, 8)).astype(np.uint8)
    for s, sigma in shifts.BLUR_SIGMA.items():
        expected = np.stack([gaussian_filter(im.astype(np.float64), sigma, mode="constant", cval=0.0, truncate=3.0) for im in images])
        got = shifts.corrupt(images, "blur", s, rng)
        assert np.abs(got.astype(int) - np.clip(np.round(expected), 0, 255).astype(int)).max() <= 1


def test_contrast_and_noise_by_hand():
    image = np.array([[[0, 100], [200, 100]]], dtype=np.uint8)  # mean 100
    # (x − 100)·0.7 + 100
    assert shifts.corrupt(image, "contrast", 3, np.random.default_rng(0)).tolist() == [[[30, 100], [170, 100]]]
    flat = np.full((200, 8, 8), 128, dtype=np.uint8)
    noisy = shifts.corrupt(flat, "noise", 2, np.random.default_rng(0)).astype(np.float64)
    assert noisy.mean() == pytest.approx(128, abs=1.0)
    assert noisy.std() == pytest.approx(0.20 * 255, rel=0.03)
    with pytest.raises(ValueError, match="unknown covariate shift 'fog'"):
        shifts.corrupt(flat, "fog", 1, np.random.default_rng(0))


def test_embedded_shift_subsets(digits):
    test, near = digits.samples("id"), digits.samples("ood/digits-6to9")
    cov = digits.samples("shift/covariate")
    assert len(cov) == 3 * len(test) == 1149
    assert np.array_equal(cov.labels, np.tile(test.labels, 3))  # a covariate shift keeps the class
    assert cov.ids[0] == f"noise/1/{test.ids[0]}" and cov.ids[-1].startswith("contrast/")
    assert len(set(cov.ids)) == len(cov)
    new = digits.samples("shift/new-class")
    assert len(new) == len(test) + len(near) == 383 + 714
    assert np.array_equal(new.labels[: len(test)], test.labels)
    assert (new.labels[len(test) :] == -1).all()  # a class the model does not know: a failure whatever it predicts
    # the earlier subsets (and so the shipped model's train split) are untouched
    assert digits.fingerprint("train") == "8205eadb4104faee"  # the key of the shipped weights
    assert digits.subsets()[:6] == ["train", "val", "id", "ood/digits-6to9", "ood/photos", "ood/textures"]
