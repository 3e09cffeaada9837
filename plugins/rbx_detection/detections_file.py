"""A file of detections (``docs/methods.md#detections-file``): what a detector
run elsewhere (a GPU, another framework) produced, scored here on CPU.

CSV with a header row, or JSON (an array of objects), one detection per row /
object, with the keys

    video      the video's stem as released, ``01_04_01_02_03`` (``.mp4`` allowed)
    frame      1-based frame number, as in the annotation files
    sign_type  the sign code 1..14 (``01`` speed_limit ... ``14`` parking)
    x1, y1, x2, y2   the box in pixels of the full frame, origin top-left, y down
    score      confidence, higher = surer (optional: without the column or key
               every detection scores 1; with it, every row needs one)

A frame with no row has no detection; a row repeated exactly is refused (a
detector emits a box once: the copy would be a false positive). Or a folder of ``<video stem>.txt``
files in the annotation files' line format (``frameNumber_signType_`` and the
four corners), the form of the VIP Cup 2017 submissions: every detection's
score is 1 and its box encloses the four corners, as for the ground truth.
Every problem is a ``ConfigError`` naming the file, the row and the key,
raised before any scoring.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from rbx_detection.annotations import parse_annotations
from rbx_detection.cure_tsd_names import SIGN_TYPES, parse_video_name
from robustbench_x.errors import ConfigError

COLUMNS = ("video", "frame", "sign_type", "x1", "y1", "x2", "y2", "score")
REQUIRED = COLUMNS[:-1]
FORMAT = (
    "CSV with header video,frame,sign_type,x1,y1,x2,y2[,score], a JSON array of objects with those keys, or a folder "
    "of <video stem>.txt in the annotation line format (docs/methods.md#detections-file)"
)

#: One frame's detections: boxes (K, 4), sign codes (K,), scores (K,).
FrameDetections = tuple[np.ndarray, np.ndarray, np.ndarray]
EMPTY: FrameDetections = (np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0))


def read_detections(path: str | Path) -> dict[tuple[str, int], FrameDetections]:
    """``{(video stem, frame): (boxes, signs, scores)}`` from a CSV or JSON file, or a folder of per-video files."""
    return read_located(path)[0]


def read_located(path: str | Path) -> tuple[dict[tuple[str, int], FrameDetections], dict[tuple[str, int], str]]:
    """:func:`read_detections`, and where each frame's first row is (``line 7``, ``item 3``, a folder's file name)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise ConfigError("detections file not found", file=str(path), fix=f"give an existing file: {FORMAT}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the detections file: {exc}", file=str(path), fix="save it as UTF-8 text") from None
    if not text.strip():
        raise ConfigError("the detections file is empty", file=str(path), fix=f"write the header row and one row per detection: {FORMAT}")
    scored, records = _json_records(text, path) if path.suffix.lower() == ".json" else _csv_records(text, path)
    frames: dict[tuple[str, int], list[tuple[list[float], int, float]]] = defaultdict(list)
    first: dict[tuple[str, int], str] = {}
    seen: dict[tuple, str] = {}
    for where, record in records:
        video, frame, sign, box, score = _parse(record, path, where, scored)
        row = (video, frame, sign, *box, score)
        if row in seen:
            raise _repeated(path, where, seen[row], f"{video}, frame {frame}, sign_type {sign}, box {tuple(box)}, score {score:g}")
        seen[row] = where
        first.setdefault((video, frame), where)
        frames[(video, frame)].append((box, sign, score))
    by_frame = {
        key: (np.asarray([b for b, _, _ in rows], dtype=np.float64), np.asarray([s for _, s, _ in rows], dtype=np.int64), np.asarray([c for _, _, c in rows], dtype=np.float64))
        for key, rows in frames.items()
    }
    return by_frame, first


def folder_files(folder: Path) -> list[Path]:
    """The per-video files of a detections folder, in name order (what is read, and fingerprinted)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith("."))


def _read_folder(folder: Path) -> tuple[dict[tuple[str, int], FrameDetections], dict[tuple[str, int], str]]:
    files = folder_files(folder)
    if not files:
        raise ConfigError("the detections folder holds no <video stem>.txt file", file=str(folder), fix=FORMAT)
    out: dict[tuple[str, int], FrameDetections] = {}
    where: dict[tuple[str, int], str] = {}
    for file in files:
        try:
            video = parse_video_name(file.stem).stem
        except ValueError as exc:
            raise ConfigError(f"{exc} (file '{file.name}')", file=str(file), key="file name", fix="name each file after its video, 01_04_01_02_03.txt") from None
        try:
            found = parse_annotations(file.read_text(encoding="utf-8"), source=str(file))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(str(exc), file=str(file), key="line", fix=FORMAT) from None
        seen: dict[tuple, int] = {}
        for i, row in enumerate(zip(found.frame.tolist(), found.sign.tolist(), map(tuple, found.polygon.tolist()))):
            if row in seen:
                raise _repeated(file, f"line {found.line[i]}", f"line {seen[row]}", f"frame {row[0]}, sign type {row[1]}, corners {row[2]}")
            seen[row] = int(found.line[i])
        for frame in np.unique(found.frame).tolist():
            rows = found.frame == frame
            out[(video, int(frame))] = (found.box[rows], found.sign[rows].astype(np.int64), np.ones(int(rows.sum())))
            where[(video, int(frame))] = f"file {file.name}"
    return out, where


def _repeated(path: Path, where: str, first: str, row: str) -> ConfigError:
    return ConfigError(
        f"{where} repeats {first} exactly ({row}): a detector emits a box once, and the copy would count as a false positive",
        file=str(path), key="row", fix="remove the repeated row (e.g. a file written twice, or appended to)",
    )


def write_detections(path: str | Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with :data:`COLUMNS`) as CSV, the format :func:`read_detections` reads."""
    from robustbench_x.api import atomic_write

    lines = [",".join(COLUMNS)]
    for r in rows:
        lines.append(",".join([r["video"], str(int(r["frame"])), str(int(r["sign_type"])), *(f"{float(r[k]):.2f}" for k in ("x1", "y1", "x2", "y2")), f"{float(r['score']):.4f}"]))
    atomic_write(path, "\n".join(lines) + "\n")


def _csv_records(text: str, path: Path):
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        data = bool(header) and _is_video(header[0])
        what = "the first line is a detection, not the header row" if data else f"the header row lacks {', '.join(missing)}"
        raise ConfigError(f"line 1: {what} (has {', '.join(header) or 'nothing'})", file=str(path), key="header", fix=f"start the file with the line {','.join(COLUMNS)}: {FORMAT}")
    reader.fieldnames = header

    def rows():
        for line, row in enumerate(reader, start=2):
            yield f"line {line}", row

    return "score" in header, rows()


def _json_records(text: str, path: Path):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=str(path), fix=FORMAT) from None
    if not isinstance(data, list):
        raise ConfigError(f"the top level is a {type(data).__name__}, expected an array of detections", file=str(path), fix=FORMAT)
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ConfigError(f"item {i} is a {type(row).__name__}, expected an object", file=str(path), key=f"[{i}]", fix=FORMAT)
    return any("score" in row for row in data), ((f"item {i}", row) for i, row in enumerate(data))


def _parse(record: dict, path: Path, where: str, scored: bool):
    def bad(key: str, why: str, fix: str = FORMAT) -> ConfigError:
        return ConfigError(f"{where}: {why}", file=str(path), key=key, fix=fix)

    for key in REQUIRED:
        if record.get(key) in (None, ""):
            raise bad(key, f"no value for '{key}'")
    try:
        video = parse_video_name(str(record["video"]).strip()).stem
    except ValueError as exc:
        raise bad("video", str(exc)) from None
    numbers = {}
    for key in COLUMNS[1:]:
        value = record.get(key)
        if key == "score" and value in (None, ""):
            if scored:  # a default of 1 would rank this row above every scored one
                raise bad("score", "no value for 'score', while the file gives scores", fix="give every row a score, or drop the score column / key (then every detection scores 1)")
            value = 1.0
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            raise bad(key, f"'{key}' = {value!r} is not a number") from None
        if not math.isfinite(numbers[key]):
            raise bad(key, f"'{key}' = {value!r} is not finite")
    frame, sign = numbers["frame"], numbers["sign_type"]
    if frame != int(frame) or frame < 1:
        raise bad("frame", f"frame {record['frame']!r} is not a 1-based frame number")
    if sign not in SIGN_TYPES:
        raise bad("sign_type", f"sign_type {record['sign_type']!r} is not a sign code 1..14")
    x1, y1, x2, y2 = (numbers[k] for k in ("x1", "y1", "x2", "y2"))
    if x2 < x1 or y2 < y1:
        raise bad("x2", f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has x2 < x1 or y2 < y1; give the top-left then the bottom-right corner")
    return video, int(frame), int(sign), [x1, y1, x2, y2], numbers["score"]


def _is_video(text: str) -> bool:
    try:
        parse_video_name(text.strip())
    except ValueError:
        return False
    return True
