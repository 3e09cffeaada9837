"""CURE-TSD reader (olivesgatech/CURE-TSD ``README.md``; names in
:mod:`rbx_detection.cure_tsd_names`, annotations in
:mod:`rbx_detection.annotations`; ``docs/datasets.md#detection-types``).

Layout under ``root`` (the release's folder names are not documented; only the
file names are)::

    <root>/01_04_00_00_00.mp4          a video, decoded with PyAV in frame order
    <root>/01_04_01_02_03/001.jpg      or its frames, pre-extracted (any image type;
                                       the last number in the file name is the frame)
    <annotations>/01_04.txt            one annotation file per sequence
                                       (default: <root>/labels, else <root>)

Subsets: ``id`` holds the challenge-free videos (``…_00_00_00``), and
``c/<Challenge>/<level>`` the challenge videos, named as the CURE-TSR reader
names its folders (``c/LensBlur/3``). A sample is one frame: ``(PIL image,
-1, "<video stem>/<frame:03d>")``; its boxes come from
:meth:`CureTSD.ground_truth`. Frames are numbered from 1 in decoding order, as
in the annotation files (001–300). ``split`` keeps the official test or train
sequence numbers (:data:`~rbx_detection.cure_tsd_names.TEST_SEQUENCES`),
``sequence`` real or unreal videos, ``frame_step`` every k-th frame
(1, 1 + k, …).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbx_detection.annotations import Annotations, read_annotations
from rbx_detection.cure_tsd_names import SEQUENCE_TYPES, SIGN_TYPES, VideoName, parse_video_name
from robustbench_x.api import Dataset, SampleSource
from robustbench_x.errors import ConfigError, JobError
from robustbench_x.sources import decode_image

VERSION = "cure-tsd-reader-v1"
CLASSES = [SIGN_TYPES[k] for k in sorted(SIGN_TYPES)]
OPTION_KEYS = frozenset({"root", "annotations", "split", "sequence", "frame_step", "label_space"})
REQUIRED_KEYS = frozenset({"root"})
OPTION_TYPES = {"root": "path", "annotations": "path", "split": "str", "sequence": "str", "frame_step": "int", "label_space": "str"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_LOOKS_LIKE_VIDEO = re.compile(r"^\d{2}_\d{2}_")


@dataclass(frozen=True)
class Video:
    name: VideoName
    path: Path  # the .mp4, or the folder of frames
    frames: dict[int, Path] | None  # frame number -> image file (pre-extracted), None for a video file
    n_frames: int


class CureTSD(Dataset):
    """CURE-TSD videos by condition, one sample per frame (module docstring)."""

    task = "detection"
    classes = CLASSES
    provides = frozenset({"cure"})

    def __init__(self, root, *, annotations=None, split: str = "test", sequence: str = "both", frame_step: int = 1, name: str = "cure-tsd", config_file: str | None = None) -> None:
        self.name, self.config_file = name, config_file
        self._key = key = f"datasets.{name}"
        fix = "set `root:` to the folder holding the CURE-TSD videos (01_04_00_00_00.mp4 …) or their extracted frame folders"
        self.root = _existing_dir(root, f"{key}.root", fix, config_file)
        if annotations is not None:
            self.annotation_dir = _existing_dir(annotations, f"{key}.annotations", "set `annotations:` to the folder of 01_01.txt … 02_49.txt", config_file)
        else:  # below the root, which is already resolved against datasets.yaml: resolving it again doubled a relative --config's folder
            self.annotation_dir = self.root / "labels" if (self.root / "labels").is_dir() else self.root
        if split not in ("test", "train", "all"):
            raise ConfigError(f"split must be test, train or all, got {split!r}", file=config_file, key=f"{key}.split", fix="set `split: test` (the official 30 % test sequences)")
        if sequence not in ("real", "unreal", "both"):
            raise ConfigError(f"sequence must be real, unreal or both, got {sequence!r}", file=config_file, key=f"{key}.sequence", fix="set `sequence: both`")
        if not isinstance(frame_step, int) or frame_step < 1:
            raise ConfigError(f"frame_step must be a positive integer, got {frame_step!r}", file=config_file, key=f"{key}.frame_step", fix="set `frame_step: 10` to score every tenth frame")
        self.split, self.sequence, self.frame_step = split, sequence, frame_step
        videos = [v for v in self._discover() if (split == "all" or v.name.split == split) and (sequence == "both" or SEQUENCE_TYPES[v.name.sequence_type] == sequence)]
        if not videos:
            raise ConfigError(
                f"no {sequence if sequence != 'both' else ''} video of the {split} split under '{self.root}'".replace("  ", " "),
                file=config_file, key=f"{key}.root", fix=f"{fix}; the {split} split's sequence numbers are in docs/datasets.md#cure-tsd",
            )  # fmt: skip
        self.annotations: dict[str, Annotations] = {}
        for video in videos:
            file = video.name.annotation
            if file not in self.annotations:
                path = self.annotation_dir / file
                if not path.is_file():
                    raise ConfigError(f"annotation file '{path}' for video '{video.path.name}' does not exist", file=config_file, key=f"{key}.annotations", fix="point `annotations:` at the folder of the released sequenceType_sequenceNumber.txt files")
                try:
                    self.annotations[file] = read_annotations(path)
                except ValueError as exc:
                    raise ConfigError(str(exc), file=config_file, key=f"{key}.annotations", fix="the line format is frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury") from None
        for video in videos:
            signs = self.annotations[video.name.annotation].frame
            if video.frames is None and len(signs) and int(signs.max()) > video.n_frames:
                # a decoded video shorter than its annotations would leave the later signs out of every score
                raise ConfigError(
                    f"video '{video.path}' decodes to {video.n_frames} frames, but '{video.name.annotation}' has signs up to "
                    f"frame {int(signs.max())}: the video is truncated or not the released one",
                    file=config_file, key=f"{key}.root", fix="download the video again (the released ones have 300 frames)",
                )
        self.videos: dict[str, list[Video]] = {}
        for video in sorted(videos, key=lambda v: v.name):
            self.videos.setdefault(video.name.subset, []).append(video)
        self._subsets = ["id"] * ("id" in self.videos) + sorted((s for s in self.videos if s != "id"), key=_condition_order)
        self._sources: dict[str, FrameSource] = {}

    # ------------------------------------------------------------ discovery
    def _discover(self) -> list[Video]:
        found: dict[str, Video] = {}
        with os.scandir(self.root) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        for e in entries:
            is_video = e.is_file() and e.name.lower().endswith(".mp4")
            if not (is_video or (e.is_dir() and _LOOKS_LIKE_VIDEO.match(e.name))):
                continue
            try:
                name = parse_video_name(e.name)
            except ValueError as exc:
                raise ConfigError(f"{exc} (file '{e.path}')", file=self.config_file, key=f"{self._key}.root", fix="rename or remove it; names are as released (docs/datasets.md#cure-tsd)") from None
            if name.stem in found and found[name.stem].frames is not None:
                continue  # pre-extracted frames win over decoding the video
            found[name.stem] = self._frames_folder(name, Path(e.path)) if e.is_dir() else Video(name, Path(e.path), None, _count_frames(Path(e.path), self.config_file, f"{self._key}.root"))
        return list(found.values())

    def _frames_folder(self, name: VideoName, folder: Path) -> Video:
        frames: dict[int, Path] = {}
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                if not e.is_file() or not e.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                m = _LAST_NUMBER.search(Path(e.name).stem)
                if not m:
                    raise ConfigError(f"frame file '{e.path}' has no frame number in its name", file=self.config_file, key=f"{self._key}.root", fix="name extracted frames by their 1-based number, e.g. 001.jpg")
                number = int(m.group(1))
                if number in frames:
                    raise ConfigError(f"frames '{frames[number].name}' and '{e.name}' in '{folder}' both claim frame {number}", file=self.config_file, key=f"{self._key}.root", fix="keep one image per frame number")
                frames[number] = Path(e.path)
        if not frames:
            raise ConfigError(f"frame folder '{folder}' holds no image", file=self.config_file, key=f"{self._key}.root", fix="extract the video's frames into it, or remove it")
        if min(frames) < 1:
            raise ConfigError(f"frame folder '{folder}' has a frame numbered 0; frames are numbered from 1 as in the annotations", file=self.config_file, key=f"{self._key}.root", fix="number the extracted frames 001, 002, …")
        return Video(name, folder, frames, max(frames))

    # ------------------------------------------------------------ the Dataset API
    def subsets(self) -> list[str]:
        return list(self._subsets)

    def samples(self, subset: str) -> "FrameSource":
        if subset not in self.videos:
            raise JobError(f"dataset '{self.name}' has no subset '{subset}' (has: {', '.join(self._subsets)})")
        if subset not in self._sources:
            items = []
            for video in self.videos[subset]:
                numbers = sorted(video.frames) if video.frames is not None else range(1, video.n_frames + 1)
                items += [(video, n) for n in numbers if (n - 1) % self.frame_step == 0]
            self._sources[subset] = FrameSource(items)
        return self._sources[subset]

    def ground_truth(self, subset: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame of ``samples(subset)``: ``(boxes (K, 4) x1 y1 x2 y2, sign codes (K,))``."""
        return [self.annotations[video.name.annotation].in_frame(frame) for video, frame in self.samples(subset).items]

    def frame_counts(self) -> dict[str, int]:
        """Each video's number of frames (``n_frames``, the highest frame number of extracted frames), by stem."""
        return {video.name.stem: video.n_frames for videos in self.videos.values() for video in videos}

    def frame_keys(self, subset: str) -> list[tuple[str, int]]:
        """Per frame of ``samples(subset)``: ``(video stem, frame number)``."""
        return [(video.name.stem, frame) for video, frame in self.samples(subset).items]

    def fingerprint(self, subset: str) -> str:
        digest = hashlib.sha256(f"{VERSION}|{subset}|{self.frame_step}".encode())
        for video in self.videos[subset]:
            paths = [video.path] if video.frames is None else [video.frames[n] for n in sorted(video.frames)]
            digest.update("|".join(f"{p.name}:{p.stat().st_size}" for p in paths).encode())
            ann = self.annotations[video.name.annotation]
            digest.update(ann.frame.tobytes() + ann.sign.tobytes() + ann.polygon.tobytes())
        return digest.hexdigest()[:16]


class FrameSource(SampleSource):
    """One frame per sample; a video is decoded forward from the last frame read,
    so reading in order decodes each video once."""

    def __init__(self, items: list[tuple[Video, int]]) -> None:
        self.items = items
        self.labels = np.full(len(items), -1, dtype=np.int64)
        self.ids = [f"{video.name.stem}/{frame:03d}" for video, frame in items]
        self._open: tuple[Path, object, object, int] | None = None  # (path, container, frame iterator, last frame number)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        video, frame = self.items[i]
        image = decode_image(video.frames[frame]) if video.frames is not None else self._decode(video.path, frame)
        return image, -1, self.ids[i]

    def _decode(self, path: Path, frame: int):
        import av

        if self._open is None or self._open[0] != path or self._open[3] >= frame:
            self.close()
            try:
                container = av.open(str(path))
                self._open = (path, container, container.decode(video=0), 0)
            except (av.FFmpegError, OSError) as exc:
                raise JobError(f"cannot decode video {path}: {exc}\n  fix: re-download the file; it is damaged or not an MP4") from None
        path_, container, frames, last = self._open
        for decoded in frames:
            last += 1
            if last == frame:
                self._open = (path_, container, frames, last)
                return decoded.to_image()
        self.close()
        raise JobError(f"video {path} ends before frame {frame}\n  fix: re-download the file; it is truncated")

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __getstate__(self):  # a DataLoader worker opens its own container
        return {**self.__dict__, "_open": None}


def _count_frames(path: Path, config_file: str | None, key: str) -> int:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise ConfigError(f"cannot open video '{path}': {exc}", file=config_file, key=key, fix="re-download the file; it is damaged or not an MP4") from None


def _existing_dir(value, key: str, fix: str, config_file: str | None) -> Path:
    from robustbench_x.api import resolve_path

    if value is None or str(value) == "":
        raise ConfigError(f"no '{key.rsplit('.', 1)[-1]}' given", file=config_file, key=key, fix=fix)
    path = resolve_path(value, config_file)
    if not path.is_dir():
        raise ConfigError(f"'{path}' is not a directory" if path.exists() else f"'{path}' does not exist", file=config_file, key=key, fix=fix)
    return path


def _condition_order(subset: str) -> tuple[str, int]:
    _, challenge, level = subset.split("/")
    return challenge, int(level)


def build(name: str = "cure-tsd", options: dict | None = None, config_file: str | None = None) -> CureTSD:
    """Factory for a ``datasets.yaml`` entry of ``type: cure-tsd`` (see the module docstring)."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - OPTION_KEYS)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' for type 'cure-tsd'", file=config_file, key=f"datasets.{name}.{unknown[0]}", fix=f"allowed keys: {', '.join(sorted(OPTION_KEYS))}")
    return CureTSD(
        opts.get("root"), annotations=opts.get("annotations"), split=opts.get("split", "test"), sequence=opts.get("sequence", "both"),
        frame_step=opts.get("frame_step", 1), name=name, config_file=config_file,
    )  # fmt: skip
