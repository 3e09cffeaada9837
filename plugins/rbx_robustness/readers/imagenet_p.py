"""ImageNet-P reader (Hendrycks & Dietterich, ICLR 2019; hendrycks/robustness
``ImageNet-P/create_p/make_imagenet_p.py``, ``ImageNet-P/test.py`` and
``ImageNet-P/utils/video_loader.py``; ``docs/datasets.md#imagenet-p``).

Format
------
One H.264 MP4 per sequence (ffmpeg ``libx264``, 1 frame/s), 224×224 frames::

    <root>/<perturbation>/<wnid>/ILSVRC2012_val_XXXXXXXX.mp4

**31 frames** per sequence, **41 for translate** (shift ``i − 20`` px). The 10
test perturbations are ``gaussian_noise, shot_noise, motion_blur, zoom_blur,
snow, brightness, translate, rotate, tilt, scale``; the 4 validation ones
``speckle_noise, gaussian_blur, spatter, shear``. Stronger-noise difficulty
folders ``<noise>_2`` / ``<noise>_3`` (``test.py`` with ``--difficulty``) are
read when present (the public Zenodo release, record 3565846, has none and
lacks four of the 14 folders; any subset of folders is accepted).

Frames are decoded with PyAV (``pip install av``) in stream order and
converted to RGB PIL images, like the official ``VideoFolder`` (OpenCV
``VideoCapture`` + BGR→RGB; the two libraries may differ by rounding in the
YUV→RGB conversion). No resize: ``test.py`` applies only ``ToTensor`` +
``Normalize``. The lossy frames are the benchmark: never regenerate them.
A file that cannot be decoded, or decodes to a frame count other than 31
(41), raises :class:`UndecodableFileError` naming the file.

Two views
---------
* :meth:`ImageNetP.sequences` ``(perturbation)`` yields ``(frames, label,
  sequence_id)``: the list of PIL frames of one video, its wnid label and
  ``<perturbation>/<wnid>/<stem>``; :meth:`ImageNetP.sequence_source` is the
  indexable form.
* As a :class:`~robustbench_x.api.Dataset`, subset ``p/<perturbation>`` has one
  sample per **frame**, sequence-major (all frames of sequence 0, then of
  sequence 1, …), with sample id ``<sequence_id>#<frame>`` (frame 0-based, 0
  the first frame of the video). Logits of a subset therefore reshape to
  ``(m, T, C)`` with ``T = sequence_length(perturbation)`` for
  :func:`rbx_robustness.definitions.flip_probability` /
  :func:`~rbx_robustness.definitions.ut5d`; ``is_noise(perturbation)``
  picks the comparison. Decoded videos are cached (a few, LRU) so reading the
  frames in order decodes each video once.

Labels: wnid folder index in the sorted wnids found (or the ``classes``
option), as ``VideoFolder``; the metrics do not use them. Order: sorted wnid,
then sorted file name (``DatasetFolder`` order).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from rbx_robustness.readers._common import (
    DatasetLayoutError,
    UndecodableFileError,
    check_options,
    fingerprint,
    index,
    load_class_list,
    require_dir,
    select,
    subdirs,
    suggestion,
    unknown_subset,
)
from robustbench_x.api import Dataset, SampleSource
from rbx_robustness.tables import IMAGENET_P_EXTRA, IMAGENET_P_TEST
from rbx_robustness.definitions import is_noise

VERSION = "imagenet-p-reader-v1"
PERTURBATIONS = IMAGENET_P_TEST + IMAGENET_P_EXTRA
NOISE_PERTURBATIONS = tuple(p for p in PERTURBATIONS if is_noise(p))
#: Stronger-noise folders ``<noise>_<difficulty>`` used by ``test.py --difficulty 2/3``.
DIFFICULTY_FOLDERS = tuple(f"{p}_{d}" for p in NOISE_PERTURBATIONS for d in (2, 3))
KNOWN = PERTURBATIONS + DIFFICULTY_FOLDERS

OPTION_KEYS = frozenset({"root", "classes", "perturbations"})
REQUIRED_KEYS = frozenset({"root"})
VIDEO_EXTENSION = ".mp4"
CACHE_SEQUENCES = 4

FIX_ROOT = (
    "download ImageNet-P (Zenodo record 3565846), extract the tars into one folder and set `root:` to it: "
    "it must contain `<perturbation>/<wnid>/<name>.mp4` (e.g. `brightness/n01440764/ILSVRC2012_val_00000293.mp4`)"
)

__all__ = ["ImageNetP", "SequenceSource", "FrameSource", "decode_video", "sequence_length", "is_noise", "build"]


def sequence_length(perturbation: str) -> int:
    """Frames per ImageNet-P sequence: 41 for ``translate``, 31 otherwise (``make_imagenet_p.py``)."""
    base = perturbation.rsplit("_", 1)[0] if perturbation in DIFFICULTY_FOLDERS else perturbation
    return 41 if base == "translate" else 31


def decode_video(path, expected_frames: int | None = None) -> list:
    """All frames of an MP4 as RGB PIL images, in stream order (PyAV)."""
    try:
        import av
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading ImageNet-P .mp4 sequences needs PyAV: pip install av") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UndecodableFileError(path, "the file has no video stream")
            frames = [frame.to_image() for frame in container.decode(video=0)]
    except UndecodableFileError:
        raise
    except Exception as exc:  # PyAV raises av.error.* (InvalidDataError, ...) subclasses of several bases
        raise UndecodableFileError(path, f"{type(exc).__name__}: {exc}") from None
    if not frames:
        raise UndecodableFileError(path, "the video stream holds no frame")
    if expected_frames is not None and len(frames) != expected_frames:
        raise UndecodableFileError(
            path,
            f"decoded {len(frames)} frames, expected {expected_frames} (ImageNet-P sequences have 31 frames, translate 41)",
            fix="re-download this sequence; a truncated or re-encoded video changes the flip statistics",
        )
    return [f if f.mode == "RGB" else f.convert("RGB") for f in frames]


class SequenceSource:
    """The videos of one perturbation: ``source[k] -> (frames, label, sequence_id)``."""

    def __init__(self, perturbation: str, paths: list[str], labels: np.ndarray, ids: list[str], sizes: list[int]) -> None:
        self.perturbation = perturbation
        self.length = sequence_length(perturbation)
        self.paths, self.labels, self.ids, self.sizes = paths, labels, ids, sizes
        self._cache: OrderedDict[int, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, k: int) -> list:
        k = index(k, len(self))
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        frames = decode_video(self.paths[k], self.length)
        self._cache[k] = frames
        while len(self._cache) > CACHE_SEQUENCES:
            self._cache.popitem(last=False)
        return frames

    def __getitem__(self, k: int):
        k = index(k, len(self))
        return list(self.frames(k)), int(self.labels[k]), self.ids[k]

    def __iter__(self) -> Iterator[tuple[list, int, str]]:
        for k in range(len(self)):
            yield self[k]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # workers decode for themselves
        return state


class FrameSource(SampleSource):
    """Frames of all sequences of one perturbation, sequence-major; id ``<sequence_id>#<frame>``."""

    def __init__(self, sequences: SequenceSource) -> None:
        self.sequences = sequences
        self.length = sequences.length

    def __len__(self) -> int:
        return len(self.sequences) * self.length

    def __getitem__(self, i: int):
        i = index(i, len(self))
        k, j = divmod(i, self.length)
        frame = self.sequences.frames(k)[j]
        return frame.copy(), int(self.sequences.labels[k]), f"{self.sequences.ids[k]}#{j}"

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(self.sequences.labels, self.length)


class ImageNetP(Dataset):
    """ImageNet-P as distributed (see the module docstring)."""

    task = "classification"
    provides = frozenset()

    def __init__(self, root, *, classes=None, perturbations=None, name: str = "imagenet-p") -> None:
        self.name = name
        self.root = require_dir(root, "ImageNet-P", FIX_ROOT)
        present = []
        for entry in subdirs(self.root):
            if entry.name not in KNOWN:
                if perturbations is not None:
                    continue
                raise DatasetLayoutError(
                    f"'{entry.path}' is not an ImageNet-P perturbation folder.{suggestion(entry.name, KNOWN)}",
                    key="root",
                    fix=f"rename or remove it, or list the wanted ones in `perturbations:`; perturbations: {', '.join(PERTURBATIONS)}",
                )
            present.append(entry.name)
        present = [p for p in KNOWN if p in present]
        if not present:
            raise DatasetLayoutError(f"no ImageNet-P perturbation folder under '{self.root}'", key="root", fix=FIX_ROOT)
        self.perturbations = select(perturbations, present, KNOWN, "perturbation", "perturbations", f"'{self.root}'")
        given = load_class_list(classes, "ImageNet-P")
        if given is None:
            wnids: set[str] = set()
            for p in self.perturbations:
                wnids.update(e.name for e in subdirs(self.root / p))
            if not wnids:
                raise DatasetLayoutError(f"no wnid folders under the perturbation folders of '{self.root}'", key="root", fix=FIX_ROOT)
            given = sorted(wnids)
            if len(given) != 1000:
                warnings.warn(
                    f"ImageNet-P at '{self.root}': found {len(given)} wnid folders instead of 1000, so labels are "
                    "indices into these sorted wnids, not ImageNet-1k class indices; pass `classes:` to fix the label space",
                    stacklevel=2,
                )
        self.classes = given
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self._sources: dict[str, SequenceSource] = {}

    def sequence_source(self, perturbation: str) -> SequenceSource:
        """The indexable sequences of ``perturbation``; files are listed on first use."""
        if perturbation not in self.perturbations:
            raise KeyError(
                f"{self.name} has no perturbation {perturbation!r}.{suggestion(perturbation, self.perturbations)} "
                f"It has {self.perturbations}"
            )
        if perturbation not in self._sources:
            folder = self.root / perturbation
            paths, labels, ids, sizes = [], [], [], []
            for wnid_dir in subdirs(folder):
                label = self.class_index.get(wnid_dir.name)
                if label is None:
                    raise DatasetLayoutError(
                        f"class folder '{wnid_dir.path}' is not in the class list.{suggestion(wnid_dir.name, self.classes)}",
                        key="classes",
                        fix="add its wnid to `classes:` or remove the folder",
                    )
                with os.scandir(wnid_dir.path) as it:
                    videos = sorted((e for e in it if e.is_file() and e.name.lower().endswith(VIDEO_EXTENSION)), key=lambda e: e.name)
                for f in videos:
                    paths.append(f.path)
                    labels.append(label)
                    ids.append(f"{perturbation}/{wnid_dir.name}/{f.name[: -len(VIDEO_EXTENSION)]}")
                    sizes.append(f.stat().st_size)
            if not paths:
                raise DatasetLayoutError(f"'{folder}' holds no <wnid>/*.mp4 sequence", key="root", fix=FIX_ROOT)
            self._sources[perturbation] = SequenceSource(perturbation, paths, np.asarray(labels, dtype=np.int64), ids, sizes)
        return self._sources[perturbation]

    def sequences(self, perturbation: str) -> Iterator[tuple[list, int, str]]:
        """Yield ``(frames, label, sequence_id)`` for every video of ``perturbation``, decoding lazily."""
        yield from self.sequence_source(perturbation)

    def subsets(self) -> list[str]:
        return [f"p/{p}" for p in self.perturbations]

    def samples(self, subset: str) -> FrameSource:
        if not subset.startswith("p/") or subset[2:] not in self.perturbations:
            raise unknown_subset(self.name, subset, self.subsets())
        return FrameSource(self.sequence_source(subset[2:]))

    def fingerprint(self, subset: str) -> str:
        seqs = self.samples(subset).sequences
        extra = f"T={seqs.length}\n".encode() + "\n".join(self.classes).encode()
        return fingerprint(VERSION, subset, seqs.ids, seqs.labels, seqs.sizes, extra)


def build(name: str = "imagenet-p", options: dict | None = None, config_file: str | None = None) -> ImageNetP:
    """Factory for ``datasets.yaml``: ``root`` (required), ``classes``, ``perturbations``."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (imagenet-p)", config_file)
    return ImageNetP(opts["root"], classes=opts.get("classes"), perturbations=opts.get("perturbations"), name=name)
