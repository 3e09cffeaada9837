"""Covariate shift for small grayscale images, in numpy: noise, blur, contrast.

The embedded default's ``shift/covariate`` subset (:mod:`rbx_datasets.embedded`)
is built here, without the corruption engine of the robustness plugin, so that
the failure and calibration suites have shifted data on every install.

Three kinds, three severities each, on uint8 images in [0, 255]; results are
rounded and clipped back to uint8:

* ``noise``: additive Gaussian noise, std ``NOISE_STD[s]`` × 255 (drawn from
  one seeded generator for the whole set);
* ``blur``: Gaussian blur, std ``BLUR_SIGMA[s]`` pixels, separable kernel of
  radius ⌈3σ⌉, black (zero) outside the image, as the digits' background;
* ``contrast``: ``(x − μ)·c + μ`` with μ the image's mean and
  ``c = CONTRAST[s]`` (ImageNet-C's contrast, Hendrycks & Dietterich, ICLR 2019).

Severities are chosen for 8×8 digits, where a sub-pixel blur already erases
strokes: on the built-in CNN (seed 0) they give about 3 / 15 / 30 % error for
noise, 9 / 19 / 32 % for blur and 5 / 15 / 32 % for contrast; the i.i.d.
error is 1 %.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KINDS", "NOISE_STD", "BLUR_SIGMA", "CONTRAST", "corrupt", "covariate_set"]

KINDS = ("noise", "blur", "contrast")
NOISE_STD = {1: 0.12, 2: 0.20, 3: 0.28}
BLUR_SIGMA = {1: 0.55, 2: 0.60, 3: 0.65}
CONTRAST = {1: 0.80, 2: 0.75, 3: 0.70}


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius)))
    h, w = images.shape[1:]
    rows = sum(k * padded[:, :, j : j + w] for j, k in enumerate(kernel))
    return sum(k * rows[:, j : j + h, :] for j, k in enumerate(kernel))


def corrupt(images: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(N, H, W)`` uint8 → the same images under ``kind`` at ``severity`` (1–3), uint8."""
    x = np.asarray(images, dtype=np.float64)
    if kind == "noise":
        y = x + rng.normal(0.0, NOISE_STD[severity] * 255.0, x.shape)
    elif kind == "blur":
        y = _blur(x, BLUR_SIGMA[severity])
    elif kind == "contrast":
        mean = x.mean(axis=(1, 2), keepdims=True)
        y = (x - mean) * CONTRAST[severity] + mean
    else:
        raise ValueError(f"unknown covariate shift {kind!r}; expected one of {KINDS}")
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def covariate_set(images: np.ndarray, seed: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Every image under every kind once, the severity cycling 1, 2, 3 along the set.

    Returns the ``(len(KINDS) · N, H, W)`` uint8 images, kind-major, and for
    each one ``(kind, severity, index of its source image)``.
    """
    rng = np.random.default_rng(seed)
    severity = 1 + np.arange(len(images)) % 3
    out, meta = [], []
    for kind in KINDS:
        shifted = np.empty_like(images)
        for s in (1, 2, 3):
            rows = np.flatnonzero(severity == s)
            shifted[rows] = corrupt(images[rows], kind, s, rng)
        out.append(shifted)
        meta += [(kind, int(severity[i]), i) for i in range(len(images))]
    return np.concatenate(out), meta
