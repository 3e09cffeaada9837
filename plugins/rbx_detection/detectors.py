"""Detectors as models (``docs/methods.md#detections-file``): where a frame's
detections come from. Each model provides the capability ``detections``:
``detect(dataset, subset)`` returns, per frame of ``dataset.samples(subset)``,
``(boxes (K, 4) x1 y1 x2 y2 in pixels, sign codes (K,), scores (K,))``.

* :class:`DetectionsFileModel` reads them from a file in the documented format
  (:mod:`rbx_detection.detections_file`); the built-in ``embedded-detections``
  is the file generated with the embedded sequences.
* :class:`TorchvisionDetector` runs one of torchvision's detection models
  (``torchvision:fasterrcnn_resnet50_fpn`` …) built with ``weights=None`` and
  a local checkpoint read with ``weights_only=True`` (or safetensors): no
  weight is downloaded. Output label ``k`` is the sign code ``k`` (0 is
  torchvision's background), so the checkpoint must be trained with 15
  classes in that order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rbx_detection.detections_file import EMPTY, folder_files, read_located
from robustbench_x.api import Model, load_state_dict
from robustbench_x.errors import ConfigError, JobError

PROVIDES = frozenset({"detections"})


class DetectionsFileModel(Model):
    provides = PROVIDES

    def __init__(self, path: Path, name: str) -> None:
        self.name, self.path = name, Path(path)
        self.by_frame, self.where = read_located(self.path)  # every row checked before any scoring
        self._fingerprint = _content_hash(self.path)

    def detect(self, dataset, subset: str):
        keys = _frame_keys(dataset)(subset)
        return [self.by_frame.get(key, EMPTY) for key in keys]

    def unknown_videos(self, dataset) -> list[str]:
        """Videos named in the file that the dataset does not have (a typo, another split)."""
        known = {stem for s in dataset.subsets() for stem, _ in _frame_keys(dataset)(s)}
        return sorted({video for video, _ in self.by_frame} - known)

    def frames_beyond(self, dataset) -> list[str]:
        """Rows whose frame the dataset's video does not have (frames numbered from 0, or offset):
        scored, they would be missed silently. One line each: where, video, frame, frame count."""
        counts = getattr(dataset, "frame_counts", dict)()
        return [
            f"{self.where[(video, frame)]}: video {video} has {counts[video]} frames, frame {frame} is beyond them"
            for video, frame in sorted(self.by_frame) if video in counts and frame > counts[video]
        ]

    def fingerprint(self) -> str:
        return f"detections-file-{self._fingerprint}"


class TorchvisionDetector(Model):
    provides = PROVIDES

    def __init__(self, arch: str, checkpoint: Path, num_classes: int, name: str) -> None:
        import torchvision

        self.name, self.arch = name, arch
        try:
            builder = torchvision.models.get_model_builder(arch)
        except ValueError as exc:
            raise ConfigError(f"torchvision has no model '{arch}': {exc}", key="arch", fix="see torchvision.models.list_models(torchvision.models.detection)") from None
        self.net = builder(weights=None, weights_backbone=None, num_classes=num_classes).eval()
        state = load_state_dict(checkpoint)
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing:
            raise ConfigError(f"checkpoint does not fit '{arch}' with {num_classes} classes: missing {len(missing)} keys, e.g. {missing[:3]}", file=str(checkpoint), key="checkpoint", fix="use the architecture and num_classes the checkpoint was trained with")
        self._fingerprint = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:16]

    @property
    def module(self):
        return self.net

    def transform(self):
        from torchvision.transforms.functional import pil_to_tensor

        return lambda image: pil_to_tensor(image.convert("RGB")).float() / 255.0

    def detect(self, dataset, subset: str, batch_size: int = 4):
        import torch

        source, to_tensor = dataset.samples(subset), self.transform()
        device = next(self.net.parameters()).device
        out = []
        with torch.inference_mode():
            for start in range(0, len(source), batch_size):
                images = [to_tensor(source[i][0]).to(device) for i in range(start, min(start + batch_size, len(source)))]
                for result in self.net(images):
                    out.append((result["boxes"].cpu().double().numpy(), result["labels"].cpu().numpy().astype(np.int64), result["scores"].cpu().double().numpy()))
        return out

    def fingerprint(self) -> str:
        return f"torchvision-{self.arch}-{self._fingerprint}"


def _content_hash(path: Path) -> str:
    """A file's bytes, or the files a detections folder is read from, by name and bytes."""
    h = hashlib.sha256()
    for file in folder_files(path) if path.is_dir() else [path]:
        h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def _frame_keys(dataset):
    keys = getattr(dataset, "frame_keys", None)
    if keys is None:
        raise JobError(f"dataset '{dataset.name}' does not say which video and frame each sample is (no frame_keys(subset)); use a CURE-TSD dataset")
    return keys


def build_file(arch: str | None = None, options: dict | None = None, dataset=None, seed: int = 0, log=print) -> DetectionsFileModel:
    """A ``models:`` entry ``{type: detections-file, options: {detections: <file>}}``."""
    return DetectionsFileModel(_file_option(options), name="detections-file")


def check_file(arch: str | None = None, options: dict | None = None, datasets: dict | None = None) -> None:
    """``ModelSpec.check``: ``rbx run`` reads the whole file once before any job, so a
    malformed row, or a frame beyond its video in one of the run's ``datasets``, is one
    exit-2 message naming the file, the line and the column."""
    path = _file_option(options)
    try:
        model = DetectionsFileModel(path, name="detections-file")
    except ConfigError as exc:
        column = f" (column '{exc.key}')" if exc.key and exc.key not in ("header", "row", "line") else ""
        raise ConfigError(f"{exc.message}{column}", file=exc.file or str(path), key="options.detections", fix=exc.fix) from None
    for name, dataset in (datasets or {}).items():
        beyond = model.frames_beyond(dataset)
        if beyond:
            raise ConfigError(beyond_message(beyond, name), file=str(path), key="options.detections", fix=BEYOND_FIX)


#: What to do about rows whose frame the video does not have.
BEYOND_FIX = "renumber the file's frames (001 is the first frame of each video), or name the dataset the detections were made on"


def beyond_message(beyond: list[str], dataset: str) -> str:
    """One line for :meth:`DetectionsFileModel.frames_beyond`'s findings on ``dataset``: the first, and how many more."""
    more = f", and {len(beyond) - 1} more frames" if len(beyond) > 1 else ""
    return f"{beyond[0]} in dataset '{dataset}'{more}; frames are numbered from 1 as in the annotation files, and such rows would match nothing"


def _file_option(options: dict | None) -> Path:
    inner = dict(options or {}).get("options") or {}
    path = inner.get("detections") if isinstance(inner, dict) else None
    if not path:
        raise ConfigError("no detections file given", key="options.detections", fix="add `options: {detections: <file.csv or .json>}` to the model entry (format: docs/methods.md#detections-file)")
    return Path(str(path)).expanduser()


def build_embedded(arch: str | None = None, options: dict | None = None, dataset=None, seed: int = 0, log=print) -> DetectionsFileModel:
    from rbx_detection.embedded import detections_path

    return DetectionsFileModel(detections_path(), name="embedded-detections")


def build_torchvision(arch: str | None = None, options: dict | None = None, dataset=None, seed: int = 0, log=print) -> TorchvisionDetector:
    """``torchvision:<arch>`` with a ``models:`` entry giving ``checkpoint:`` (and ``num_classes``, default 15)."""
    opts = dict(options or {})
    checkpoint = opts.get("checkpoint")
    if not checkpoint:
        raise ConfigError(f"torchvision:{arch} needs a local checkpoint (no weights are downloaded)", key="checkpoint", fix="add a models entry with `type: torchvision`, `arch: <name>` and `checkpoint: <file .pth or .safetensors>`")
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise ConfigError("checkpoint file not found", file=str(path), key="checkpoint", fix="give the path of a .pth (read with weights_only=True) or .safetensors file")
    num_classes = int(opts.get("num_classes") or 15)
    if num_classes != 15:
        # output label k is read as sign code k: any other head would score labels that are not sign types
        raise ConfigError(
            f"torchvision:{arch} has num_classes {num_classes}, but its labels are read as CURE-TSD sign codes 1..14 "
            "(0 the background), so the detector must have 15 classes",
            key="num_classes", fix="train or convert the checkpoint to 15 classes in sign-code order, or score its output as a detections file",
        )
    return TorchvisionDetector(arch, path, num_classes, name=f"torchvision:{arch}")
