"""``embedded-scenes``: the segmentation benchmark that needs nothing.

Seeded synthetic 64×64 RGB scenes, generated with numpy alone, so ``rbx run
--suite segmentation`` and ``--suite anomaly-segmentation`` work on a fresh
machine with no download. The data never depends on the run's seed.

Each scene is a noisy background (a random colour, a low-frequency blotch
pattern and Gaussian pixel noise) with 1–4 objects, later ones drawn over
earlier ones. A known object is one of three shapes, each with its own
texture and a colour drawn around the class's mean colour (:data:`CLASS_COLOURS`,
σ 0.15 per channel, so colours of different classes, and of the random
background, overlap); the texture's second colour is the first darkened:

=====  ============  ==========================================
id     class         shape / texture
=====  ============  ==========================================
0      background    blotches + noise
1      square        rotated square, stripes along one side
2      disc          disc, checkerboard
3      triangle      rotated equilateral triangle, dots
=====  ============  ==========================================

Objects are anti-aliased: a pixel's coverage is its signed distance to the
shape's edge plus one half, clipped to [0, 1]. Pixels whose coverage is
strictly between 0.25 and 0.75 are ambiguous and get the ignore label 255
(as Cityscapes' void boundaries); pixels covered at least 0.75 get the
object's class. A share of the scenes is low-contrast (a fog-like blend
towards grey), and texture periods, object sizes (radius 6–14 px) and noise
vary, so a small network makes real mistakes at edges, on small objects and in
fog.

Subsets (sizes in :data:`SIZES`, each from its own seed
``SEED + index``): ``train``, ``val`` and ``test`` hold known objects only,
masks of class ids ``0..3`` or 255. ``anomaly/unseen-shape`` scenes hold the
same known objects and, in front of them, one or two *crosses* with a speckle
texture that no training scene shows; their masks use the SegmentMeIfYouCan
encoding: 0 in-distribution (background and known objects), 1 anomaly (the
cross), 255 void (the cross's ambiguous edge pixels, as defined above). The
anomaly subset follows the ``smiyc-anomaly`` protocol
(:meth:`EmbeddedScenes.anomaly_protocol`).

Sample ids are ``scenes/<subset>/<index>``.
"""

from __future__ import annotations

import hashlib
from functools import cached_property, lru_cache

import numpy as np

from robustbench_x.api import Dataset, SampleSource

__all__ = ["EmbeddedScenes", "build", "CLASSES", "IGNORE_INDEX", "SIZES", "SEED", "render_scene"]

VERSION = "embedded-scenes-v2"
SEED = 20261207
SIDE = 64
CLASSES = ["background", "square", "disc", "triangle"]
IGNORE_INDEX = 255
#: Images per subset.
SIZES = {"train": 480, "val": 120, "test": 120, "anomaly/unseen-shape": 120}
ANOMALY_SUBSET = "anomaly/unseen-shape"
#: Coverage band that is void (ambiguous edge pixels).
VOID_BAND = (0.25, 0.75)
#: Mean RGB colour of each known class; a known object's colour is drawn around it (σ = COLOUR_SPREAD per
#: channel), so colour is a strong but overlapping cue, as road grey or sky blue in a street scene.
CLASS_COLOURS = {1: np.array([0.8, 0.35, 0.3]), 2: np.array([0.35, 0.75, 0.35]), 3: np.array([0.35, 0.45, 0.85])}
COLOUR_SPREAD = 0.15
#: Share of scenes blended towards grey (low contrast).
FOG_SHARE = 0.3

_SQUARE, _DISC, _TRIANGLE, _CROSS = 1, 2, 3, "cross"


class ArraySource(SampleSource):
    """Scenes held as uint8 arrays: images ``(N, H, W, 3)``, masks ``(N, H, W)``."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, ids: list[str]) -> None:
        self.images, self.masks, self.ids = images, masks, ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return Image.fromarray(self.images[i], mode="RGB"), self.masks[i].astype(np.int64), self.ids[i]


def _signed_distance(kind, yy, xx, cy, cx, r, angle) -> np.ndarray:
    """Signed distance to the shape's edge, positive inside, in pixels."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == _DISC:
        return r - np.hypot(u, v)
    if kind == _SQUARE:
        h = r * 0.85
        return np.minimum(h - np.abs(u), h - np.abs(v))
    if kind == _TRIANGLE:
        # equilateral triangle of circumradius r: inside of three half-planes at distance r/2 from the centre
        normals = [(np.cos(angle + k * 2 * np.pi / 3), np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
        return np.min([r / 2 - (nx * dx + ny * dy) for nx, ny in normals], axis=0)
    if kind == _CROSS:
        arm = r * 0.35
        return np.maximum(np.minimum(r - np.abs(u), arm - np.abs(v)), np.minimum(arm - np.abs(u), r - np.abs(v)))
    raise ValueError(kind)


def _texture(kind, yy, xx, angle, period, rng) -> np.ndarray:
    """A {0, 1}-valued pattern of the object's class (1 = its first colour)."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    if kind == _SQUARE:
        return (np.floor(u / period) % 2).astype(np.float64)
    if kind == _DISC:
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    if kind == _TRIANGLE:
        fu, fv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
        return (np.hypot(fu, fv) < 0.3).astype(np.float64)
    if kind == _CROSS:
        coarse = rng.random((SIDE // 2, SIDE // 2)) < 0.5
        return np.kron(coarse, np.ones((2, 2))).astype(np.float64)
    raise ValueError(kind)


def _blotches(rng) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a bilinearly upsampled 5×5 random grid."""
    grid = rng.random((5, 5))
    t = np.linspace(0, 4, SIDE)
    i0 = np.minimum(np.floor(t).astype(int), 3)
    f = t - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def render_scene(rng: np.random.Generator, *, anomaly: bool) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 (64, 64, 3), mask uint8 (64, 64))``.

    Without ``anomaly`` the mask holds class ids or 255; with it, the SMIYC
    encoding (0 in-distribution, 1 cross, 255 the cross's ambiguous edge).
    """
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    base = rng.uniform(0.15, 0.85, 3)
    blot = _blotches(rng)[..., None]
    image = np.clip(base * (0.7 + 0.6 * blot), 0, 1)
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
    kinds: list = list(rng.choice([_SQUARE, _DISC, _TRIANGLE], size=int(rng.integers(1, 5))))
    if anomaly:
        # drawn last, in front of the known objects, so every anomaly scene shows one
        kinds += [_CROSS] * int(rng.integers(1, 3))
    for kind in kinds:
        r = rng.uniform(6, 14)
        cy, cx = rng.uniform(4, SIDE - 4, 2)
        angle = rng.uniform(0, 2 * np.pi)
        coverage = np.clip(_signed_distance(kind, yy, xx, cy, cx, r, angle) + 0.5, 0, 1)
        pattern = _texture(kind, yy, xx, rng.uniform(0, np.pi), rng.uniform(4.0, 7.0), rng)[..., None]
        if kind == _CROSS:
            first = rng.uniform(0, 1, 3)
        else:
            first = np.clip(CLASS_COLOURS[kind] + rng.normal(0, COLOUR_SPREAD, 3), 0, 1)
        second = first * rng.uniform(0.4, 0.7)
        colour = pattern * first + (1 - pattern) * second
        a = coverage[..., None]
        image = image * (1 - a) + colour * a
        inside, edge = coverage >= VOID_BAND[1], (coverage > VOID_BAND[0]) & (coverage < VOID_BAND[1])
        if anomaly:
            mask[inside] = 1 if kind == _CROSS else 0
        else:
            mask[inside] = kind
        mask[edge] = IGNORE_INDEX if (kind == _CROSS or not anomaly) else mask[edge]
    if rng.random() < FOG_SHARE:
        fog = rng.uniform(0.4, 0.7)
        image = image * (1 - fog) + 0.5 * fog
    image = image + rng.normal(0, rng.uniform(0.03, 0.1), image.shape)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mask


@lru_cache(maxsize=None)
def generate(subset: str) -> ArraySource:
    """The subset's scenes, from its own seed (``SEED`` + its index in :data:`SIZES`);
    generated once per process (about 1 s for all four subsets), never modified."""
    index = list(SIZES).index(subset)
    rng = np.random.default_rng(SEED + index)
    anomaly = subset == ANOMALY_SUBSET
    pairs = [render_scene(rng, anomaly=anomaly) for _ in range(SIZES[subset])]
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    return ArraySource(images, masks, [f"scenes/{subset}/{i}" for i in range(len(pairs))])


class EmbeddedScenes(Dataset):
    name = "embedded-scenes"
    task = "segmentation"
    classes = list(CLASSES)
    ignore_index = IGNORE_INDEX
    provides = frozenset({"train_split", "val_split", "anomaly_masks"})

    def __init__(self, name: str = "embedded-scenes") -> None:
        self.name = name
        self._fingerprints: dict[str, str] = {}

    @cached_property
    def _sources(self) -> dict[str, ArraySource]:
        return {}

    def subsets(self) -> list[str]:
        return list(SIZES)

    def samples(self, subset: str) -> ArraySource:
        if subset not in SIZES:
            raise KeyError(f"{self.name} has no subset {subset!r}; it has {list(SIZES)}")
        if subset not in self._sources:
            self._sources[subset] = generate(subset)
        return self._sources[subset]

    def anomaly_protocol(self, subset: str) -> str:
        """The anomaly benchmark convention of an ``anomaly/*`` subset (``docs/tasks.md``)."""
        if subset != ANOMALY_SUBSET:
            raise KeyError(f"{self.name}: {subset!r} is not an anomaly subset; it has {ANOMALY_SUBSET!r}")
        return "smiyc-anomaly"

    def component_size_filters(self, subset: str) -> tuple[int, int]:
        """SegmentMeIfYouCan's anomaly-track filters (500 / 100 px on 2048×1024 frames) scaled to
        the scenes' area: (1, 0) px, practically no filter (declared as a deviation)."""
        scale = SIDE * SIDE / (2048 * 1024)
        return round(500 * scale), round(100 * scale)

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            source = self.samples(subset)
            h = hashlib.sha256(VERSION.encode())
            h.update(subset.encode())
            h.update(np.ascontiguousarray(source.images).tobytes())
            h.update(np.ascontiguousarray(source.masks).tobytes())
            self._fingerprints[subset] = h.hexdigest()[:16]
        return self._fingerprints[subset]


def build(name: str = "embedded-scenes", options: dict | None = None, config_file: str | None = None) -> EmbeddedScenes:
    return EmbeddedScenes(name)
