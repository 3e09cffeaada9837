"""ImageNet-P sequence generator (rbx_robustness.engine.perturbations).

Checks the construction of ``ImageNet-P/create_p/make_imagenet_p.py``: frame
counts (31, translate 41), which frame equals the clean image, seeded
determinism, the published per-frame steps (translate moves i - 20 px, noise
levels, brightness shifts, motion-blur angles), crop-before vs crop-after.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Small tensors: one intra-op thread is faster, and far faster on busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from rbx_robustness.engine import (  # noqa: E402
    PERTURBATIONS,
    TEST_PERTURBATIONS,
    VALIDATION_PERTURBATIONS,
    sequence,
    sequence_batch,
)
from rbx_robustness.engine import _ops  # noqa: E402


def _image(h=96, w=128) -> torch.Tensor:
    """A natural image (skimage chelsea) resized to (h, w), on the 8-bit grid."""
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.chelsea()).resize((w, h), Image.BILINEAR)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255.0


IMG = _image()
CROP = 80


def test_registry():
    assert len(PERTURBATIONS) == 14
    assert set(TEST_PERTURBATIONS) == {"gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
                                       "brightness", "translate", "rotate", "tilt", "scale"}
    assert set(VALIDATION_PERTURBATIONS) == {"speckle_noise", "gaussian_blur", "spatter", "shear"}
    for name, spec in PERTURBATIONS.items():
        assert spec.n_frames == (41 if name == "translate" else 31)
        assert "make_imagenet_p.py" in spec.source
    assert {n for n, s in PERTURBATIONS.items() if s.kind == "noise"} == {"gaussian_noise", "shot_noise",
                                                                           "speckle_noise"}


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_frames_shape_range_determinism_clean_frame(name):
    spec = PERTURBATIONS[name]
    s1 = sequence(IMG, name, torch.Generator().manual_seed(3), crop=CROP)
    s2 = sequence(IMG, name, torch.Generator().manual_seed(3), crop=CROP)
    assert s1.shape == (spec.n_frames, 3, CROP, CROP)
    assert float(s1.min()) >= 0.0 and float(s1.max()) <= 1.0
    assert torch.equal(s1, s2)
    clean = _ops.center_crop(IMG, CROP)
    if spec.clean_frame is not None:
        # noise: frame 0 is the untouched crop; brightness/rotate/shear: zero
        # step; translate: zero shift; zoom_blur: frame 0 before any zoom;
        # scale: frame 24 has scale (2.5 * 24 + 40) / 100 = 1
        torch.testing.assert_close(s1[spec.clean_frame], clean, atol=1e-5, rtol=0)
    else:  # (gaussian_blur's frame 0, sigma 0.25, is almost the clean image)
        assert (s1 - clean).abs().mean() > 1e-3
    # consecutive frames differ (it is a sequence)
    assert (s1[1:] - s1[:-1]).abs().amax() > 0


def test_noise_frame0_exact_and_levels():
    x = _image(64, 64)
    for name, levels in (("gaussian_noise", (0.03, 0.05, 0.08)), ("speckle_noise", (0.05, 0.10, 0.15))):
        for diff, lvl in enumerate(levels, start=1):
            s = sequence(x, name, torch.Generator().manual_seed(0), difficulty=diff)
            assert torch.equal(s[0], x)
            mid = (x > 0.15) & (x < 0.85)
            noise = (s[1:] - x)[:, mid]
            if name == "speckle_noise":
                noise = noise / x[mid]
            assert abs(noise.std().item() / lvl - 1) < 0.05
            # frames 1..30 are independent draws
            c = np.corrcoef((s[1] - x).ravel(), (s[2] - x).ravel())[0, 1]
            assert abs(c) < 0.05
    s = sequence(x, "shot_noise", torch.Generator().manual_seed(0))
    assert torch.equal(s[0], x)
    v = ((s[1:] - x) ** 2).mean().item()
    assert abs(v / (x.mean().item() / 300) - 1) < 0.1  # Poisson: var of k/300 = x/300


def test_translate_moves_by_published_pixel_steps():
    x = _image(96, 128)
    s = sequence(x, "translate", torch.Generator(), crop=None)
    assert s.shape[0] == 41
    assert torch.equal(s[20], x)
    for i in (0, 7, 19, 21, 33, 40):
        t = i - 20
        if t > 0:  # content moves right by t, black enters on the left
            assert torch.equal(s[i][..., t:], x[..., :-t])
            assert torch.count_nonzero(s[i][..., :t]) == 0
        else:
            assert torch.equal(s[i][..., :t], x[..., -t:])
            assert torch.count_nonzero(s[i][..., t:]) == 0
    # with the published CenterCrop after the shift
    sc = sequence(x, "translate", torch.Generator(), crop=CROP)
    torch.testing.assert_close(sc, _ops.center_crop(s, CROP))


def test_brightness_steps():
    x = _image(32, 32)
    s = sequence(x, "brightness", torch.Generator())
    v = s.amax(dim=1).mean(dim=(1, 2))  # mean HSV value per frame
    v0 = x.amax(dim=0)
    for i in (0, 10, 20, 30):
        expected = (v0 + (i - 15) * 0.02).clamp(0, 1).mean()
        assert abs(v[i] - expected) < 1e-5


def test_motion_blur_angles_and_zero_angle_frame():
    x = _image(48, 48)
    s = sequence(x, "motion_blur", torch.Generator())
    ref = _ops.motion_blur(x[None], 10, 3, torch.tensor([0.0], dtype=torch.float64))[0]
    torch.testing.assert_close(s[30], ref.clamp(0, 1))  # angle (30 - 30) * 4 = 0
    ref0 = _ops.motion_blur(x[None], 10, 3, torch.tensor([-120.0], dtype=torch.float64))[0]
    torch.testing.assert_close(s[0], ref0.clamp(0, 1))


def test_crop_order_follows_original():
    """Geometric sequences transform the full image then crop; pixel-wise ones
    crop first (results differ at the crop border for blurs)."""
    full = sequence(IMG, "rotate", torch.Generator(), crop=None)
    torch.testing.assert_close(sequence(IMG, "rotate", torch.Generator(), crop=CROP), _ops.center_crop(full, CROP))
    full = sequence(IMG, "gaussian_blur", torch.Generator(), crop=None)
    cropped = sequence(IMG, "gaussian_blur", torch.Generator(), crop=CROP)
    assert not torch.allclose(cropped, _ops.center_crop(full, CROP))
    direct = sequence(_ops.center_crop(IMG, CROP).contiguous(), "gaussian_blur", torch.Generator())
    torch.testing.assert_close(cropped, direct)


def test_rotation_is_clockwise_for_positive_angles():
    """torchvision-0.2 affine (used in 2018): positive angle = clockwise on screen."""
    x = torch.zeros(3, 41, 41)
    x[:, 20, 30:] = 1.0  # a bright ray pointing right from the centre
    s = sequence(x, "rotate", torch.Generator())
    last = s[30].mean(0)  # +15 degrees
    ys, xs = torch.nonzero(last > 0.3, as_tuple=True)
    right = xs > 25
    assert ys[right].float().mean() > 20.5  # the ray tilts downwards (clockwise, y down)


def test_batch_matches_single_for_deterministic_sequences():
    xb = torch.stack([IMG, IMG.flip(-1)])
    for name in ("tilt", "brightness"):
        b = sequence_batch(xb, name, torch.Generator(), crop=CROP)
        for i in range(2):
            torch.testing.assert_close(b[i], sequence(xb[i], name, torch.Generator(), crop=CROP))


def test_spatter_liquid_flows_down():
    x = torch.full((3, 64, 64), 0.3)
    s = sequence(x, "spatter", torch.Generator().manual_seed(1))
    m = (s - x).abs().sum(dim=1)  # spatter mask per frame
    rows = torch.arange(64).float()
    centre = [(m[i].sum(1) * rows).sum() / m[i].sum().clamp_min(1e-9) for i in (0, 10)]
    assert centre[1] > centre[0]


def _old_torchvision_inverse(w, h, angle, translate, scale, shear):
    """Inverse affine coefficients as torchvision 0.2 handed them to Pillow:
    M = T C RSS C^-1, centre (w/2 + 0.5, h/2 + 0.5),
    RSS = [[cos a * s, -sin(a + shear) * s], [sin a * s, cos(a + shear) * s]]."""
    import math

    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    a, sh = math.radians(angle), math.radians(shear)
    T = np.array([[1, 0, translate[0]], [0, 1, translate[1]], [0, 0, 1]], dtype=float)
    Cm = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=float)
    RSS = np.array([[math.cos(a) * scale, -math.sin(a + sh) * scale, 0],
                    [math.sin(a) * scale, math.cos(a + sh) * scale, 0], [0, 0, 1]])
    return tuple(np.linalg.inv(T @ Cm @ RSS @ np.linalg.inv(Cm))[:2].ravel())


@pytest.mark.parametrize("name,params,resample", [
    ("rotate", lambda i: (i - 15, (0, 0), 1.0, 0), "BILINEAR"),
    ("scale", lambda i: (0, (0, 0), (i * 2.5 + 40) / 100, 0), "BILINEAR"),
    ("shear", lambda i: (0, (0, 0), 1.0, i - 15), "BILINEAR"),
    ("translate", lambda i: (0, (i - 20, 0), 1.0, 0), "NEAREST"),
])
def test_affine_frames_match_pillow_with_2018_torchvision_semantics(name, params, resample):
    """Frames vs Pillow ``Image.transform(AFFINE)`` driven the way torchvision
    0.2 ``affine`` drove it when ImageNet-P was made (mean error < 0.8 levels:
    Pillow rounds and interpolates in 8-bit fixed point)."""
    from PIL import Image

    im = Image.fromarray((IMG * 255).round().byte().permute(1, 2, 0).numpy())
    s = sequence(IMG, name)
    for i in (0, 6, 14, 16, 30):
        ref = np.asarray(im.transform(im.size, Image.AFFINE, _old_torchvision_inverse(im.width, im.height, *params(i)),
                                      getattr(Image, resample))).astype(float)
        err = np.abs(s[i].permute(1, 2, 0).numpy() * 255 - ref).mean()
        assert err < (0.01 if name == "translate" else 0.8), (name, i, err)


def test_tilt_matches_opencv_warp_perspective():
    cv2 = pytest.importorskip("cv2")
    a = (IMG * 255).round().byte().permute(1, 2, 0).numpy()
    h, w = a.shape[:2]
    s = sequence(IMG, "tilt")
    for i in (0, 9, 15, 30):
        t = np.deg2rad(i - 15)
        f = np.sqrt(w ** 2 + h ** 2)
        P1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
        RX = np.array([[1, 0, 0, 0], [0, np.cos(t), -np.sin(t), 0], [0, np.sin(t), np.cos(t), 0], [0, 0, 0, 1]])
        RY = np.array([[np.cos(t), 0, -np.sin(t), 0], [0, 1, 0, 0], [np.sin(t), 0, np.cos(t), 0], [0, 0, 0, 1]])
        T = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
        P2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
        ref = cv2.warpPerspective(a, P2 @ T @ RX @ RY @ P1, (w, h)).astype(float)
        err = np.abs(s[i].permute(1, 2, 0).numpy() * 255 - ref).mean()
        assert err < 0.8, (i, err)


def test_gaussian_blur_frames_match_skimage():
    from skimage.filters import gaussian

    s = sequence(IMG, "gaussian_blur")
    a = IMG.permute(1, 2, 0).double().numpy()
    for i in (0, 15, 30):
        ref = gaussian(a, sigma=0.25 + 0.035 * i, truncate=6.0, channel_axis=-1)
        np.testing.assert_allclose(s[i].permute(1, 2, 0).numpy(), ref, atol=2e-6)


def test_zoom_blur_is_cumulative_mean_of_zooms():
    s = sequence(IMG, "zoom_blur")
    torch.testing.assert_close(s[0], IMG)
    # frame 1 = mean(clean, zoom 1.004)
    from rbx_robustness.engine.perturbations import _affine_frames

    zoom = _affine_frames(IMG, [(0.0, (0, 0), 1.004, 0.0)])[0]
    torch.testing.assert_close(s[1], (IMG + zoom) / 2)
