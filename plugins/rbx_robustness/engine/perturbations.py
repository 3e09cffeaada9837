"""ImageNet-P perturbation sequences in pure torch.

Follows ``ImageNet-P/create_p/make_imagenet_p.py`` of hendrycks/robustness
(commit 8190fe3).  In the original every source image is ``Resize(256)``-ed;
pixel-wise / blur / weather sequences centre-crop it to 224 *first* and then
perturb, while the geometric sequences (translate, rotate, tilt, scale, shear,
and the zoom layers of zoom_blur) transform the 256 image and centre-crop 224
*after*.  :func:`sequence` reproduces that with ``crop=224`` on a
``Resize(256)`` image; with ``crop=None`` (default) every frame keeps the
input's size.

Frames (``i`` = frame index, 31 frames ``i = 0..30``; translate 41 frames):

=================  =========================================================
gaussian_noise      frame 0 = clean image; frames 1..30 = independent draws
                    ``clip(x + N(0, s))``, s = 0.03 (difficulty 2: 0.05, 3: 0.08)
shot_noise          frame 0 clean; ``clip(Poisson(x*l)/l)``, l = 300 (120, 60)
speckle_noise       frame 0 clean; ``clip(x + x*N(0, s))``, s = 0.05 (0.10, 0.15)
motion_blur         ImageMagick motion blur radius 10, sigma 3, angle (i-30)*4
                    (no clean frame; frame 30 has angle 0)
zoom_blur           frame 0 clean; frame i = mean of the clean crop and the
                    crops of affine zooms 1 + 0.004*j, j = 1..i (bilinear)
snow                one snow layer (N(0.05, 0.3), zoom 3, threshold 0.5);
                    frame i blurs it with radius 14, sigma 4, angle 4i - 150;
                    blend 0.85 as in ImageNet-C snow
brightness          HSV V + (i - 15) * 0.02  (frame 15 = clean)
translate           41 frames, horizontal shift i - 20 px, nearest, black fill
                    (frame 20 = clean)
rotate              i - 15 degrees, bilinear, black fill (frame 15 = clean)
tilt                3-D rotation phi = theta = i - 15 degrees about the image
                    centre, pinhole f = sqrt(w^2 + h^2), cv2.warpPerspective
scale               zoom (2.5 i + 40) / 100, bilinear, black fill (frame 24 = clean)
gaussian_blur       skimage gaussian, sigma 0.25 + 0.035 i, truncate 6
spatter             liquid layer N(0.65, 0.27), gaussian sigma 3.7, threshold
                    0.69; frame i = water spatter mask (intensity 0.6) of the
                    current layer; then the layer flows down:
                    ``layer[r] <- 0.05 l[r+1] + 0.1 l[r] + 0.15 l[r-1] + 0.7 l[r-2]``
shear               x-shear i - 15 degrees, bilinear, black fill
=================  =========================================================

Affine frames use torchvision-0.2 ``affine`` semantics as used in 2018 (the
version the sequences were made with): Pillow inverse mapping about the centre
``(w/2 + 0.5, h/2 + 0.5)``, positive angles clockwise, shear matrix
``[[1, -sin s], [0, cos s]]`` (today's torchvision uses ``-angle`` and
``tan``-shear).  Frames are returned as unquantised floats in [0, 1]; the
original wrote uint8 PNGs (truncating) and H.264-encoded them
(``build.build_p`` encodes with documented settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import _ops
from .corruptions import (
    _WATER_RGB,
    snow_blur,
    snow_composite,
    snow_layer,
    spatter_water_mask,
)

SOURCE_P = "hendrycks/robustness@8190fe3:ImageNet-P/create_p/make_imagenet_p.py"

__all__ = ["PERTURBATIONS", "PerturbationSpec", "TEST_PERTURBATIONS", "VALIDATION_PERTURBATIONS",
           "sequence", "sequence_batch"]


# =========================================================================== geometry helpers


def _old_tv_affine_forward(w: int, h: int, angle: float, translate, scale: float, shear: float) -> torch.Tensor:
    """Forward map M = T C RSS C^-1 of torchvision 0.2 ``affine`` in Pillow's
    continuous coordinates, centre ``(w*0.5 + 0.5, h*0.5 + 0.5)``,
    ``RSS = [[cos a * s, -sin(a + sh) * s], [sin a * s, cos(a + sh) * s]]``."""
    a = math.radians(angle)
    sh = math.radians(shear)
    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    T = torch.tensor([[1, 0, translate[0]], [0, 1, translate[1]], [0, 0, 1]], dtype=torch.float64)
    C = torch.tensor([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=torch.float64)
    Ci = torch.tensor([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=torch.float64)
    RSS = torch.tensor([[math.cos(a) * scale, -math.sin(a + sh) * scale, 0],
                        [math.sin(a) * scale, math.cos(a + sh) * scale, 0],
                        [0, 0, 1]], dtype=torch.float64)
    return T @ C @ RSS @ Ci


def _affine_frames(img: torch.Tensor, params: list[tuple], interp: str = "bilinear") -> torch.Tensor:
    """img (3, H, W); params: list of (angle, (tx, ty), scale, shear) -> (T, 3, H, W)."""
    _, h, w = img.shape
    inv = torch.stack([torch.linalg.inv(_old_tv_affine_forward(w, h, *p)) for p in params])
    x = img.unsqueeze(0).expand(len(params), -1, -1, -1)
    return _ops.warp_homography(x, inv, convention="pil", interp=interp)


def _tilt_matrix(w: int, h: int, deg: float) -> torch.Tensor:
    phi = theta = math.radians(deg)
    f = math.sqrt(w ** 2 + h ** 2)
    P1 = torch.tensor([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    RX = torch.tensor([[1, 0, 0, 0], [0, math.cos(theta), -math.sin(theta), 0],
                       [0, math.sin(theta), math.cos(theta), 0], [0, 0, 0, 1]], dtype=torch.float64)
    RY = torch.tensor([[math.cos(phi), 0, -math.sin(phi), 0], [0, 1, 0, 0],
                       [math.sin(phi), 0, math.cos(phi), 0], [0, 0, 0, 1]], dtype=torch.float64)
    T = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=torch.float64)
    P2 = torch.tensor([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float64)
    return P2 @ T @ RX @ RY @ P1


# =========================================================================== generators
# Each takes x (B, 3, H, W) (already cropped when crop_first), a parameter dict,
# the generator and the crop size (applied by geometric generators at the end),
# and returns (B, T, 3, h, w).

_NOISE_LEVELS = {
    "gaussian_noise": (0.03, 0.05, 0.08),
    "shot_noise": (300, 120, 60),
    "speckle_noise": (0.05, 0.10, 0.15),
}


def _noise_seq(kind):
    def gen(x, g, crop, difficulty):
        b = x.shape[0]
        level = _NOISE_LEVELS[kind][difficulty - 1]
        rep = x.unsqueeze(1).expand(b, 30, *x.shape[1:])
        if kind == "gaussian_noise":
            noisy = rep + _ops.randn(rep.shape, g, x.device) * level
        elif kind == "shot_noise":
            noisy = _ops.poisson(rep * level, g) / level
        else:
            noisy = rep + rep * _ops.randn(rep.shape, g, x.device) * level
        return torch.cat([x.unsqueeze(1), noisy.clamp_(0.0, 1.0)], dim=1)

    return gen


def _motion_blur_seq(x, g, crop, difficulty):
    b = x.shape[0]
    frames = []
    for i in range(31):
        ang = torch.full((b,), float((i - 30) * 4), dtype=torch.float64)
        frames.append(_ops.motion_blur(x, 10, 3, ang).clamp_(0.0, 1.0))
    return torch.stack(frames, dim=1)


def _zoom_blur_seq(x, g, crop, difficulty):
    outs = []
    for img in x:
        zooms = _affine_frames(img, [(0.0, (0, 0), 1 + 0.004 * i, 0.0) for i in range(1, 31)])
        base = img.unsqueeze(0)
        if crop is not None:
            zooms = _ops.center_crop(zooms, crop)
            base = _ops.center_crop(base, crop)
        csum = torch.cumsum(torch.cat([base, zooms], dim=0), dim=0)
        counts = torch.arange(1, 32, device=x.device, dtype=x.dtype).view(31, 1, 1, 1)
        outs.append((csum / counts).clamp_(0.0, 1.0))
    return torch.stack(outs)


def _snow_seq(x, g, crop, difficulty):
    b, _, h, w = x.shape
    layer = snow_layer(b, h, w, 0.05, 0.3, 3, 0.5, g, x.device)
    frames = []
    for i in range(31):
        ang = torch.full((b,), float(i * 4 - 150), dtype=torch.float64)
        frames.append(snow_composite(x, snow_blur(layer, 14, 4, ang), 0.85))
    return torch.stack(frames, dim=1)


def _brightness_seq(x, g, crop, difficulty):
    return torch.stack([_ops.hsv_value_shift(x, (i - 15) * 0.02).clamp_(0.0, 1.0) for i in range(31)], dim=1)


def _geometric(make_frames):
    def gen(x, g, crop, difficulty):
        outs = []
        for img in x:
            fr = make_frames(img)
            if crop is not None:
                fr = _ops.center_crop(fr, crop)
            outs.append(fr.clamp_(0.0, 1.0))
        return torch.stack(outs)

    return gen


def _translate_frames(img):
    return _affine_frames(img, [(0.0, (i - 20, 0), 1.0, 0.0) for i in range(41)], interp="nearest")


def _rotate_frames(img):
    return _affine_frames(img, [(float(i - 15), (0, 0), 1.0, 0.0) for i in range(31)])


def _scale_frames(img):
    return _affine_frames(img, [(0.0, (0, 0), (i * 2.5 + 40) / 100.0, 0.0) for i in range(31)])


def _shear_frames(img):
    return _affine_frames(img, [(0.0, (0, 0), 1.0, float(i - 15)) for i in range(31)])


def _tilt_frames(img):
    _, h, w = img.shape
    inv = torch.stack([torch.linalg.inv(_tilt_matrix(w, h, float(i - 15))) for i in range(31)])
    return _ops.warp_homography(img.unsqueeze(0).expand(31, -1, -1, -1), inv, convention="cv2")


def _gaussian_blur_seq(x, g, crop, difficulty):
    return torch.stack([_ops.gaussian_filter(x, 0.25 + 0.035 * i, mode="nearest", truncate=6.0).clamp_(0.0, 1.0)
                        for i in range(31)], dim=1)


_FLOW = torch.tensor([0.7, 0.15, 0.1, 0.05])  # correlation form of np.convolve(., [.05, .1, .15, .7], 'same')


def _spatter_seq(x, g, crop, difficulty):
    b, _, h, w = x.shape
    liquid = _ops.randn((b, 1, h, w), g, x.device).mul_(0.27).add_(0.65)
    liquid = _ops.gaussian_filter(liquid, 3.7, mode="nearest")
    liquid = torch.where(liquid < 0.69, torch.zeros_like(liquid), liquid)
    colour = _WATER_RGB.to(x).view(1, 3, 1, 1)
    flow = _FLOW.to(x).view(1, 1, 4, 1)
    frames = []
    for _ in range(31):
        m = spatter_water_mask(liquid, 0.6)
        frames.append((x + m * colour).clamp_(0.0, 1.0))
        liquid = F.conv2d(F.pad(liquid, (0, 0, 2, 1)), flow)
    return torch.stack(frames, dim=1)


# =========================================================================== registry


@dataclass(frozen=True)
class PerturbationSpec:
    name: str
    split: str  # "test" (10) or "validation" (4)
    n_frames: int
    kind: str  # "noise" (frame 0 is the reference, other frames i.i.d.) or "temporal"
    crop_first: bool  # True: crop then perturb; False: perturb the full image then crop
    frames: str  # what frame i is
    clean_frame: int | None  # index of the frame equal to the input, if any
    fn: Callable = field(repr=False)
    source: str = SOURCE_P
    deviations: str = ""


_SPECS = [
    PerturbationSpec("gaussian_noise", "test", 31, "noise", True,
                     "0: clean; 1..30: clip(x + N(0, 0.03)) i.i.d. (difficulty 2/3: 0.05/0.08)", 0,
                     _noise_seq("gaussian_noise"), deviations="none (torch RNG)"),
    PerturbationSpec("shot_noise", "test", 31, "noise", True,
                     "0: clean; 1..30: clip(Poisson(300 x) / 300) i.i.d. (difficulty 2/3: 120/60)", 0,
                     _noise_seq("shot_noise"), deviations="none (torch RNG)"),
    PerturbationSpec("motion_blur", "test", 31, "temporal", True,
                     "ImageMagick motion blur radius 10, sigma 3, angle (i - 30) * 4", None,
                     _motion_blur_seq, deviations="ImageMagick kernel re-implemented (see corruptions)"),
    PerturbationSpec("zoom_blur", "test", 31, "temporal", False,
                     "0: clean; i: mean(clean, zoom(1 + 0.004 j) for j = 1..i)", 0,
                     _zoom_blur_seq, deviations="no uint8 rounding of the intermediate zoom frames"),
    PerturbationSpec("snow", "test", 31, "temporal", True,
                     "fixed snow layer motion-blurred at angle 4 i - 150 (radius 14, sigma 4), blend 0.85", None,
                     _snow_seq, deviations="ImageMagick kernel re-implemented (see corruptions)"),
    PerturbationSpec("brightness", "test", 31, "temporal", True,
                     "HSV V + (i - 15) * 0.02", 15, _brightness_seq, deviations="none"),
    PerturbationSpec("translate", "test", 41, "temporal", False,
                     "horizontal shift by i - 20 px (nearest, black fill)", 20,
                     _geometric(_translate_frames), deviations="none"),
    PerturbationSpec("rotate", "test", 31, "temporal", False,
                     "rotation by i - 15 degrees (bilinear, black fill)", 15,
                     _geometric(_rotate_frames),
                     deviations="bilinear via grid_sample (Pillow uses 8-bit fixed point)"),
    PerturbationSpec("tilt", "test", 31, "temporal", False,
                     "perspective tilt phi = theta = i - 15 degrees", None,
                     _geometric(_tilt_frames),
                     deviations="bilinear via grid_sample (OpenCV uses 1/32-pixel fixed point)"),
    PerturbationSpec("scale", "test", 31, "temporal", False,
                     "zoom by (2.5 i + 40) / 100 (bilinear, black fill; frame 24 = scale 1)", 24,
                     _geometric(_scale_frames), deviations="bilinear via grid_sample"),
    PerturbationSpec("speckle_noise", "validation", 31, "noise", True,
                     "0: clean; 1..30: clip(x + x N(0, 0.05)) i.i.d. (difficulty 2/3: 0.10/0.15)", 0,
                     _noise_seq("speckle_noise"), deviations="none (torch RNG)"),
    PerturbationSpec("gaussian_blur", "validation", 31, "temporal", True,
                     "gaussian blur sigma 0.25 + 0.035 i (truncate 6)", None,
                     _gaussian_blur_seq, deviations="none"),
    PerturbationSpec("spatter", "validation", 31, "temporal", True,
                     "water spatter of a liquid layer flowing down ~2 px per frame", None,
                     _spatter_seq, deviations="OpenCV chain re-implemented (see corruptions.spatter)"),
    PerturbationSpec("shear", "validation", 31, "temporal", False,
                     "x-shear by i - 15 degrees (bilinear, black fill)", 15,
                     _geometric(_shear_frames), deviations="bilinear via grid_sample"),
]

PERTURBATIONS: dict[str, PerturbationSpec] = {s.name: s for s in _SPECS}
TEST_PERTURBATIONS = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow", "brightness",
                      "translate", "rotate", "tilt", "scale")
VALIDATION_PERTURBATIONS = ("speckle_noise", "gaussian_blur", "spatter", "shear")


def sequence_batch(images: torch.Tensor, name: str, generator: torch.Generator | None = None, *,
                   crop: int | tuple[int, int] | None = None, difficulty: int = 1) -> torch.Tensor:
    """Perturbation sequences for a batch: (B, 3, H, W) -> (B, T, 3, h, w).

    ``crop``: centre-crop size applied where the original applies
    ``CenterCrop(224)`` (before pixel-wise perturbations, after geometric
    ones); ``None`` keeps the full frame.  ``difficulty`` (1-3) selects the
    noise level of gaussian/shot/speckle noise (the ``_2``/``_3`` variants of
    the original script); it is ignored by the other perturbations.
    """
    if name not in PERTURBATIONS:
        raise KeyError(f"unknown perturbation {name!r}; known: {sorted(PERTURBATIONS)}")
    if difficulty not in (1, 2, 3):
        raise ValueError("difficulty must be 1, 2 or 3")
    spec = PERTURBATIONS[name]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(images.shape)}")
    dtype = images.dtype
    x = images.to(torch.float32).contiguous()
    with torch.no_grad(), _ops.cpu_threads(x.device):
        if spec.crop_first and crop is not None:
            x = _ops.center_crop(x, crop).contiguous()
            out = spec.fn(x, generator, None, difficulty)
        else:
            out = spec.fn(x, generator, crop, difficulty)
    assert out.shape[1] == spec.n_frames
    return out.to(dtype)


def sequence(image: torch.Tensor, name: str, generator: torch.Generator | None = None, *,
             crop: int | tuple[int, int] | None = None, difficulty: int = 1) -> torch.Tensor:
    """One perturbation sequence: image (3, H, W) in [0, 1] -> (T, 3, h, w)
    with T = 31 (41 for translate).  See :func:`sequence_batch`."""
    if image.dim() != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(image.shape)}")
    return sequence_batch(image.unsqueeze(0), name, generator, crop=crop, difficulty=difficulty)[0]
