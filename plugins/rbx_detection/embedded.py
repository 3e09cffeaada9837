"""The embedded CURE-TSD stand-in: three short synthetic sequences written in the
released layout, so the detection suite runs with nothing configured.

What is written (deterministically, under ``$RBX_CACHE_DIR/embedded-cure-tsd``):

* sequences ``01_04`` and ``01_05`` (real) and ``02_02`` (unreal), all test
  sequences of the official split, 12 frames of 128 × 96 pixels each: a sky and
  road gradient with smooth texture and one or two coloured signs (stop and
  no_entry red, parking blue, priority_to yellow) that grow as they approach,
  and in ``01_05`` a red car on the road that is not a sign; frame 1 of every
  sequence has no sign;
* each as a frame folder ``<stem>/<frame:03d>.png`` in its challenge-free
  version (``…_00_00_00``) and under two challenge types at levels 1–5:
  lens blur (``01_02``: a disc of radius 1–5 px, half the README's After
  Effects radii 2–10, on frames 13 times narrower than the real ones) and
  darkening (``01_04``: intensities times 2^e with the README's exposures
  e = −1, −3, −5, −7, −9, applied to sRGB values and rounded to 8 bits);
* ``labels/<type>_<number>.txt`` in the released line format, with the
  format line as a header;
* ``detections.csv``: what :func:`colour_blob_detector` finds in every frame,
  in the detections-file format (:mod:`rbx_detection.detections_file`).

The detector is a hand-made baseline, not a learned one: pixels whose
chromaticity is within 0.12 of a sign colour and whose brightest channel is
at least 24/255, grouped into 8-connected blobs of at least 6 pixels; the box
is the blob's extent and the score its mean closeness to the colour. It finds
most signs in clean frames, takes the red car for a stop sign (a false
positive) and every no_entry sign for a stop sign (right box, wrong class:
counted by ``detections-any-class``, not by ``detections``), and loses signs
as blur mixes them with the background and darkening pushes them under the
brightness floor, which is what the page is meant to show.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rbx_detection.annotations import FIELDS, format_line
from rbx_detection.cure_tsd_names import VideoName

VERSION = "embedded-cure-tsd-v2"
WIDTH, HEIGHT, N_FRAMES = 128, 96, 12
SEQUENCES = ((1, 4), (1, 5), (2, 2))
#: sign code -> RGB colour of the synthetic sign; no_entry (12) has stop's red, so the detector calls it stop
SIGN_COLOURS = {6: (200, 30, 35), 14: (25, 70, 190), 11: (235, 190, 20), 12: (200, 30, 35)}
#: sign code -> the colour the detector looks for
DETECTOR_COLOURS = {6: (200, 30, 35), 14: (25, 70, 190), 11: (235, 190, 20)}
#: (sequence type, number) -> [(sign code, start x, start y, drift x, drift y, first frame)]
TRACKS = {
    (1, 4): [(6, 70, 40, 3.0, -1.5, 2)],
    (1, 5): [(14, 60, 42, 3.5, -1.0, 2), (11, 40, 44, -2.5, -1.0, 5)],
    (2, 2): [(11, 66, 38, 2.5, -1.5, 2), (12, 30, 46, -1.5, -1.0, 7)],
}
#: (sequence type, number) -> unannotated red objects (a car on the road): x, y, width, height, drift x
DISTRACTORS = {(1, 5): [(20, 70, 18, 9, 1.5)]}
LENS_BLUR_RADII = (1, 2, 3, 4, 5)
DARKENING_EXPOSURES = (-1, -3, -5, -7, -9)
CHALLENGES = {2: LENS_BLUR_RADII, 4: DARKENING_EXPOSURES}
CHROMA_TOLERANCE, BRIGHTNESS_FLOOR, MIN_PIXELS = 0.12, 24, 6


def ensure(root: Path | None = None) -> Path:
    """The embedded tree (generated on first use, sealed by ``manifest.json``)."""
    from robustbench_x.api import cache_root, cached_file

    root = Path(root) if root is not None else cache_root() / "embedded-cure-tsd" / VERSION
    manifest = root / "manifest.json"
    if manifest.exists() and not _intact(root, manifest):
        manifest.unlink()  # a file went missing or changed: regenerate everything
    cached_file(manifest, lambda tmp: _generate(root, tmp))
    return root


def _intact(root: Path, manifest: Path) -> bool:
    try:
        sizes = json.loads(manifest.read_text())
        return all((root / name).is_file() and (root / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, AttributeError):
        return False


def _generate(root: Path, manifest_tmp: Path) -> None:
    from PIL import Image

    from rbx_detection.detections_file import write_detections
    from robustbench_x.api import atomic_write

    written: dict[str, int] = {}
    detections = []
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for seq_type, number in SEQUENCES:
        clean, lines = _sequence(seq_type, number)
        label = root / "labels" / f"{seq_type:02d}_{number:02d}.txt"
        atomic_write(label, "\n".join([FIELDS, *lines]) + "\n")
        written[label.relative_to(root).as_posix()] = label.stat().st_size
        versions = [(VideoName(seq_type, number, 0, 0, 0), clean)]
        for challenge, params in CHALLENGES.items():
            for level, param in enumerate(params, start=1):
                versions.append((VideoName(seq_type, number, 1, challenge, level), _challenge(clean, challenge, param)))
        for name, frames in versions:
            folder = root / name.stem
            folder.mkdir(exist_ok=True)
            for i, frame in enumerate(frames, start=1):
                path = folder / f"{i:03d}.png"
                Image.fromarray(frame).save(path, optimize=False)
                written[path.relative_to(root).as_posix()] = path.stat().st_size
                for box, sign, score in colour_blob_detector(frame):
                    detections.append({"video": name.stem, "frame": i, "sign_type": sign, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3], "score": score})
    write_detections(root / "detections.csv", detections)
    written["detections.csv"] = (root / "detections.csv").stat().st_size
    manifest_tmp.write_text(json.dumps(written, sort_keys=True, indent=0))


def _sequence(seq_type: int, number: int) -> tuple[list[np.ndarray], list[str]]:
    """Clean uint8 frames and the annotation lines of one sequence."""
    rng = np.random.default_rng(1000 * seq_type + number)
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    sky = np.array([150, 170, 190]) if seq_type == 1 else np.array([120, 160, 210])
    road = np.array([95, 95, 90]) if seq_type == 1 else np.array([80, 85, 95])
    base = np.where(y < 0.55, sky + (y / 0.55) * 30, road - ((y - 0.55) / 0.45) * 25) * np.ones((1, WIDTH, 1))
    texture = _smooth(rng.normal(0, 1, (HEIGHT // 8 + 2, WIDTH // 8 + 2)))
    frames, lines = [], []
    for f in range(1, N_FRAMES + 1):
        image = base + 8 * texture[..., None] + rng.normal(0, 2.0, base.shape)
        for x, y, w, h, dx in DISTRACTORS.get((seq_type, number), []):
            x = int(round(x + dx * (f - 1)))
            image[y : y + h, x : x + w] = np.asarray(SIGN_COLOURS[6]) * 0.9
        for sign, x0, y0, dx, dy, first in TRACKS[(seq_type, number)]:
            if f < first:
                continue
            t = f - first
            size = 8 + 1.2 * t
            cx, cy = x0 + dx * t, y0 + dy * t
            x1, y1, x2, y2 = (int(round(v)) for v in (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2))
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, WIDTH), min(y2, HEIGHT)
            image[y1:y2, x1:x2] = np.asarray(SIGN_COLOURS[sign]) + rng.normal(0, 3.0, (y2 - y1, x2 - x1, 3))
            # corners as the README's figure: "lower" = top edge in image coordinates
            lines.append(format_line(f, sign, (x1, y1, x2, y1, x1, y2, x2, y2)))
        frames.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
    return frames, lines


def _smooth(coarse: np.ndarray) -> np.ndarray:
    from scipy.ndimage import zoom

    return zoom(coarse, (HEIGHT / coarse.shape[0], WIDTH / coarse.shape[1]), order=3)[:HEIGHT, :WIDTH]


def _challenge(frames: list[np.ndarray], challenge: int, param: float) -> list[np.ndarray]:
    if challenge == 4:  # darkening: exposure in stops
        return [np.clip(np.round(f * 2.0**param), 0, 255).astype(np.uint8) for f in frames]
    from scipy.ndimage import convolve

    r = int(param)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (xx**2 + yy**2 <= r * r + 0.5).astype(np.float64)
    disc /= disc.sum()
    return [np.clip(np.round(np.stack([convolve(f[..., c].astype(np.float64), disc, mode="nearest") for c in range(3)], axis=-1)), 0, 255).astype(np.uint8) for f in frames]


def colour_blob_detector(frame: np.ndarray) -> list[tuple[tuple[int, int, int, int], int, float]]:
    """``[(box x1 y1 x2 y2, sign code, score)]`` of one uint8 RGB frame (module docstring)."""
    from scipy.ndimage import find_objects, label

    rgb = frame.astype(np.float64)
    total = rgb.sum(axis=-1, keepdims=True)
    chroma = np.divide(rgb, total, out=np.full_like(rgb, 1 / 3), where=total > 0)
    bright = frame.max(axis=-1) >= BRIGHTNESS_FLOOR
    found = []
    for sign, colour in DETECTOR_COLOURS.items():
        ref = np.asarray(colour, dtype=np.float64) / sum(colour)
        distance = np.linalg.norm(chroma - ref, axis=-1)
        mask = bright & (distance < CHROMA_TOLERANCE)
        labels, n = label(mask, structure=np.ones((3, 3)))
        for k, region in enumerate(find_objects(labels), start=1):
            pixels = labels[region] == k
            if pixels.sum() < MIN_PIXELS:
                continue
            closeness = 1 - distance[region][pixels] / CHROMA_TOLERANCE
            box = (region[1].start, region[0].start, region[1].stop, region[0].stop)
            found.append((box, sign, round(float(closeness.mean()), 4)))
    return found


def build(name: str = "embedded-cure-tsd", options: dict | None = None, config_file: str | None = None):
    """The built-in dataset: the embedded tree read by the CURE-TSD reader."""
    from rbx_detection.cure_tsd import CureTSD

    return CureTSD(ensure(), split="test", name=name)


def detections_path() -> Path:
    """The bundled detections file of the embedded sequences."""
    return ensure() / "detections.csv"
