"""Per-resolution parameter tables of the published corruption generators.

hendrycks/robustness (commit 8190fe3) ships one generator per benchmark, each
with its own severity tables tuned to its image size:

``imagenet``  ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px; the tables of
              :data:`rbx_robustness.engine.corruptions.CORRUPTIONS`);
``cifar``     ``ImageNet-C/create_c/make_cifar_c.py`` (32 px, CIFAR-10-C and
              CIFAR-100-C);
``tiny``      ``ImageNet-C/create_c/make_tinyimagenet_c.py`` (64 px,
              Tiny-ImageNet-C).

The tables below are those files' ``c = [...]`` lists transcribed as data, in
the engine's parameter order (``CORRUPTIONS[name].param_names``). Besides the
tables, two code paths depend on the generator:

* fog draws its plasma map at ``plasma_fractal``'s default ``mapsize`` (256,
  32, 64) and crops it to the image;
* frost shrinks the photographs first (``cv2.resize(frost, (0, 0), fx=f,
  fy=f)``, bilinear, with f = 0.2 for CIFAR and 0.3 for Tiny; ImageNet uses
  them at full size) and then takes a random crop of the image size.

Those are the ``options`` of a preset (keyword arguments of the corruption
functions).
"""

from __future__ import annotations

import numpy as np

SOURCE_CIFAR = "hendrycks/robustness@8190fe3:ImageNet-C/create_c/make_cifar_c.py"
SOURCE_TINY = "hendrycks/robustness@8190fe3:ImageNet-C/create_c/make_tinyimagenet_c.py"


def _zooms(*stops: float) -> tuple:
    """``np.arange(1, stop, 0.01)`` for each severity, as the zoom_blur tables of both files."""
    return tuple((tuple(float(v) for v in np.arange(1, stop, 0.01)),) for stop in stops)


def _elastic(size: int, rows) -> tuple:
    """The elastic tables are written ``IMSIZE * k`` with ``IMSIZE`` the image side."""
    return tuple(tuple(size * k for k in row) for row in rows)


CIFAR_TABLE: dict[str, tuple] = {
    "gaussian_noise": ((0.04,), (0.06,), (0.08,), (0.09,), (0.10,)),
    "shot_noise": ((500,), (250,), (100,), (75,), (50,)),
    "impulse_noise": ((0.01,), (0.02,), (0.03,), (0.05,), (0.07,)),
    "speckle_noise": ((0.06,), (0.1,), (0.12,), (0.16,), (0.2,)),
    "gaussian_blur": ((0.4,), (0.6,), (0.7,), (0.8,), (1,)),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": _zooms(1.06, 1.11, 1.16, 1.21, 1.26),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "contrast": ((0.75,), (0.5,), (0.4,), (0.3,), (0.15,)),
    "brightness": ((0.05,), (0.1,), (0.15,), (0.2,), (0.3,)),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "jpeg_compression": ((80,), (65,), (58,), (50,), (40,)),
    "pixelate": ((0.95,), (0.9,), (0.85,), (0.75,), (0.65,)),
    "elastic_transform": _elastic(32, ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                       (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))),
}

TINY_TABLE: dict[str, tuple] = {
    "gaussian_noise": ((0.04,), (0.08,), (0.12,), (0.15,), (0.18,)),
    "shot_noise": ((250,), (100,), (50,), (30,), (15,)),
    "impulse_noise": ((0.01,), (0.02,), (0.05,), (0.08,), (0.14,)),
    "speckle_noise": ((0.15,), (0.2,), (0.25,), (0.3,), (0.35,)),
    "gaussian_blur": ((0.5,), (0.75,), (1,), (1.25,), (1.5,)),
    "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": _zooms(1.06, 1.11, 1.16, 1.21, 1.26),
    "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0), (0.65, 0.3, 1, 0.69, 0.6, 0),
                (0.65, 0.1, 0.7, 0.68, 0.6, 1), (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
    "contrast": ((0.4,), (0.3,), (0.2,), (0.1,), (0.05,)),
    "brightness": ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,)),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    "jpeg_compression": ((65,), (58,), (50,), (40,), (25,)),
    "pixelate": ((0.9,), (0.8,), (0.7,), (0.6,), (0.5,)),
    "elastic_transform": _elastic(64, ((0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06),
                                       (0.1, 0.03, 0.03), (0.16, 0.03, 0.02))),
}

#: Keyword options of the corruption functions that differ between generators.
CIFAR_OPTIONS = {"fog": {"mapsize": 32}, "frost": {"photo_scale": 0.2}}
TINY_OPTIONS = {"fog": {"mapsize": 64}, "frost": {"photo_scale": 0.3}}
