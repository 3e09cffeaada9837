"""CURE-TSD annotation files: one per sequence (``01_04.txt``), one line per
sign and frame, ``frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury``
(olivesgatech/CURE-TSD ``README.md``, "Annotation Format" and
``Images/coordinate_system.png``).

The coordinate figure puts the origin at the top-left corner with y growing
downwards, and its example line ``240_14_1033_214_1095_214_1033_293_1095_293``
has the "lower" corners at the *smaller* y (the sign's top edge in the image):
the corner names do not say which edge is on top, so the axis-aligned box is
taken as the min / max of the four corners, whatever their order, and the
polygon is kept as read. Coordinates are pixels, used as continuous values
(area ``(x2 - x1) * (y2 - y1)``, no ``+ 1``).

The parser is tolerant where the release is not explicit: ``_``, ``,``,
``;``, tabs or spaces between fields; blank lines and a header line (first
field not a number, e.g. the format line itself) are skipped. Anything else
that does not parse is an error naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbx_detection.cure_tsd_names import SIGN_TYPES

_SPLIT = re.compile(r"[_,;\s]+")
FIELDS = "frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury"


@dataclass(frozen=True)
class Annotations:
    """The signs of one sequence: ``frame`` (N,) 1-based, ``sign`` (N,) codes
    1..14, ``polygon`` (N, 8) as read (ll, lr, ul, ur corners, x then y),
    ``box`` (N, 4) axis-aligned ``x1, y1, x2, y2``, ``line`` (N,) the 1-based
    line each was read from."""

    frame: np.ndarray
    sign: np.ndarray
    polygon: np.ndarray
    box: np.ndarray
    line: np.ndarray

    def in_frame(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (K, 4), sign codes (K,))`` of one frame, in file order."""
        rows = self.frame == frame
        return self.box[rows], self.sign[rows]


def box_from_polygon(polygon: np.ndarray) -> np.ndarray:
    """``(N, 8)`` corner coordinates ``x, y, x, y…`` -> ``(N, 4)`` enclosing ``x1, y1, x2, y2``."""
    xs, ys = polygon[:, 0::2], polygon[:, 1::2]
    return np.stack([xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)], axis=1)


def parse_annotations(text: str, source: str = "<annotations>") -> Annotations:
    """Parse the text of one annotation file; ``ValueError`` naming ``source`` and the line."""
    frames, signs, polygons, lines = [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [f for f in _SPLIT.split(line.strip()) if f]
        if not fields or (number == 1 and not _is_number(fields[0])):
            continue  # blank, or a header line
        where = f"{source}, line {number} ({line.strip()!r})"
        if len(fields) != 10:
            raise ValueError(f"{where}: {len(fields)} fields, expected 10 ({FIELDS})")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ValueError(f"{where}: a field is not a number ({FIELDS})") from None
        frame, sign = values[0], values[1]
        if frame != int(frame) or frame < 1:
            raise ValueError(f"{where}: frame number {fields[0]} is not a positive integer")
        if sign not in SIGN_TYPES:
            raise ValueError(f"{where}: sign type {fields[1]} is outside 01..14")
        if not all(np.isfinite(values[2:])):
            raise ValueError(f"{where}: a corner coordinate is not finite")
        frames.append(int(frame))
        signs.append(int(sign))
        polygons.append(values[2:])
        lines.append(number)
    polygon = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    return Annotations(np.asarray(frames, dtype=np.int64), np.asarray(signs, dtype=np.int64), polygon, box_from_polygon(polygon), np.asarray(lines, dtype=np.int64))


def read_annotations(path: Path) -> Annotations:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read annotation file {path}: {exc}") from None
    return parse_annotations(text, str(path))


def format_line(frame: int, sign: int, polygon) -> str:
    """One line in the released format (what the embedded sequences are written with)."""
    return "_".join([f"{frame:03d}", f"{sign:02d}", *(str(int(round(v))) for v in polygon)])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
