"""CURE-TSR reader (Temel, Kwon, Prabhushankar & AlRegib, "CURE-TSR: Challenging
Unreal and Real Environments for Traffic Sign Recognition", NeurIPS 2017 workshop;
olivesgatech/CURE-TSR ``README.md``, ``utils.py``, ``train.py``;
``docs/datasets.md#cure-tsr``).

Format
------
Variable-size BMP crops of traffic signs, one folder per condition::

    <root>/Real_Test/ChallengeFree/*.bmp              the clean test set   -> subset ``id``
    <root>/Real_Test/<Challenge>-<level>/*.bmp        level 1..5           -> ``c/<Challenge>/<level>``
    <root>/Real_Train/ChallengeFree/*.bmp             the clean train set  -> ``train`` (with ``train: Real_Train``)

File name ``<sequenceType>_<signType>_<challengeType>_<challengeLevel>_<Index>.bmp``,
e.g. ``01_05_08_01_0050.bmp``: sequence ``01`` Real / ``02`` Unreal; sign
``01``..``14``; challenge ``00`` (none) or ``01``..``12``; level ``00`` (none)
or ``01``..``05``; ``Index`` the sign instance, shared by all challenge
versions of one sign. :func:`parse_filename` returns these fields; every
sample's parsed name is in ``samples(subset).fields[i]``.

Labels follow the official ``utils.py::make_dataset``: ``signType − 1``
(0..13); order is ``sorted(os.listdir(folder))`` as there. Sample ids are the
path relative to ``root`` (``Real_Test/DirtyLens-5/01_05_05_05_0050.bmp``).
Challenge subsets are named by their folder name (``c/DirtyLens/5``).
Each file's challenge type, level and sequence type must agree with its
folder; a mismatch or an unparseable name is an error naming the file.

Inferred / unverified points (docs/datasets.md#cure-tsr): folder names
``Real_Train`` / ``Real_Test`` are from the official ``train.py``; the
``<Name>-<level>`` folder names (``Decolorization``, ``LensBlur``,
``CodecError``, ``Darkening``, ``DirtyLens``, ``Exposure``, ``GaussianBlur``,
``Noise``, ``Rain``, ``Shadow``, ``Snow``, ``Haze``) come from third-party
loaders; ``Unreal_Train`` / ``Unreal_Test`` for ``sequence="unreal"`` are
[UNVERIFIED]. Preprocessing (``Resize([28, 28])``, ``l2normalize``,
per-channel standardisation) belongs to the model transform, not here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbx_robustness.readers._common import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    FileSource,
    check_options,
    fingerprint,
    require_dir,
    subdirs,
    suggestion,
    unknown_subset,
)
from robustbench_x.api import Dataset

VERSION = "cure-tsr-reader-v1"

SEQUENCE_TYPES = {1: "Real", 2: "Unreal"}
SIGN_TYPES = {
    1: "speed_limit", 2: "goods_vehicles", 3: "no_overtaking", 4: "no_stopping", 5: "no_parking",
    6: "stop", 7: "bicycle", 8: "hump", 9: "no_left", 10: "no_right", 11: "priority_to",
    12: "no_entry", 13: "yield", 14: "parking",
}  # fmt: skip
#: challenge code -> (name, folder name)
CHALLENGE_TYPES = {
    1: ("Decolorization", "Decolorization"), 2: ("Lens blur", "LensBlur"), 3: ("Codec error", "CodecError"),
    4: ("Darkening", "Darkening"), 5: ("Dirty lens", "DirtyLens"), 6: ("Exposure", "Exposure"),
    7: ("Gaussian blur", "GaussianBlur"), 8: ("Noise", "Noise"), 9: ("Rain", "Rain"),
    10: ("Shadow", "Shadow"), 11: ("Snow", "Snow"), 12: ("Haze", "Haze"),
}  # fmt: skip
FOLDER_CODE = {folder: code for code, (_, folder) in CHALLENGE_TYPES.items()}
CHALLENGE_FREE = "ChallengeFree"
LEVELS = (1, 2, 3, 4, 5)
CLASSES = [SIGN_TYPES[k] for k in sorted(SIGN_TYPES)]

OPTION_KEYS = frozenset({"root", "sequence", "train"})
REQUIRED_KEYS = frozenset({"root"})

_NAME = re.compile(r"^(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d+)\.bmp$", re.IGNORECASE)


@dataclass(frozen=True)
class CureTsrName:
    """Fields of a CURE-TSR file name (docs/datasets.md#cure-tsr)."""

    sequence_type: int  # 1 Real, 2 Unreal
    sign_type: int  # 1..14
    challenge_type: int  # 0 none, 1..12
    challenge_level: int  # 0 none, 1..5
    index: int

    @property
    def sequence(self) -> str:
        return SEQUENCE_TYPES[self.sequence_type]

    @property
    def sign(self) -> str:
        return SIGN_TYPES[self.sign_type]

    @property
    def challenge(self) -> str | None:
        return CHALLENGE_TYPES[self.challenge_type][0] if self.challenge_type else None

    @property
    def challenge_folder(self) -> str:
        return CHALLENGE_TYPES[self.challenge_type][1] if self.challenge_type else CHALLENGE_FREE

    @property
    def label(self) -> int:
        """``signType − 1``, as ``utils.py::make_dataset`` (``int(fname[3:5]) − 1``)."""
        return self.sign_type - 1


def parse_filename(name: str) -> CureTsrName:
    """Parse ``<seq>_<sign>_<challenge>_<level>_<index>.bmp``; ``ValueError`` if it does not fit."""
    m = _NAME.match(os.path.basename(name))
    if not m:
        raise ValueError(f"'{name}' does not match <sequenceType>_<signType>_<challengeType>_<challengeLevel>_<Index>.bmp")
    seq, sign, chal, level, idx = (int(g) for g in m.groups())
    if seq not in SEQUENCE_TYPES:
        raise ValueError(f"'{name}': sequence type {seq:02d} is neither 01 (Real) nor 02 (Unreal)")
    if sign not in SIGN_TYPES:
        raise ValueError(f"'{name}': sign type {sign:02d} is outside 01..14")
    if chal != 0 and chal not in CHALLENGE_TYPES:
        raise ValueError(f"'{name}': challenge type {chal:02d} is outside 00..12")
    if (chal == 0) != (level == 0) or level > 5:
        raise ValueError(f"'{name}': challenge level {level:02d} is invalid for challenge type {chal:02d} (00 with 00, else 01..05)")
    return CureTsrName(seq, sign, chal, level, idx)


class CureTSR(Dataset):
    """CURE-TSR Real (or Unreal) test set by condition (see the module docstring)."""

    task = "classification"
    classes = CLASSES

    def __init__(self, root, *, sequence: str = "real", train=None, name: str = "cure-tsr") -> None:
        self.name = name
        seq = str(sequence).lower()
        if seq not in ("real", "unreal"):
            raise DatasetLayoutError(f"sequence must be 'real' or 'unreal', got {sequence!r}", key="sequence", fix="set `sequence: real`")
        self.sequence_type = 1 if seq == "real" else 2
        self.prefix = SEQUENCE_TYPES[self.sequence_type]
        fix = (
            f"set `root:` to the CURE-TSR folder that contains {self.prefix}_Test/ (and {self.prefix}_Train/), "
            f"with {self.prefix}_Test/ChallengeFree/*.bmp and {self.prefix}_Test/<Challenge>-<1..5>/*.bmp"
        )
        self.root = require_dir(root, "CURE-TSR", fix)
        test_dir = self.root / f"{self.prefix}_Test"
        if not test_dir.is_dir():
            raise DatasetLayoutError(f"'{test_dir}' does not exist", key="root", fix=fix)
        self.folders: dict[str, Path] = {}
        challenge_subsets = []
        for entry in subdirs(test_dir):
            if entry.name == CHALLENGE_FREE:
                self.folders["id"] = Path(entry.path)
                continue
            challenge, dash, level = entry.name.rpartition("-")
            if not dash or challenge not in FOLDER_CODE:
                guess = challenge if dash else entry.name
                raise DatasetLayoutError(
                    f"'{entry.path}' is not a CURE-TSR condition folder.{suggestion(guess, list(FOLDER_CODE))}",
                    key="root",
                    fix=f"expected ChallengeFree or <Challenge>-<1..5> with Challenge in: {', '.join(FOLDER_CODE)}",
                )
            if level not in {str(v) for v in LEVELS}:
                raise DatasetLayoutError(
                    f"'{entry.path}': challenge level '{level}' is outside 1–5", key="root", fix="remove or rename the folder"
                )
            challenge_subsets.append((FOLDER_CODE[challenge], int(level), f"c/{challenge}/{level}", Path(entry.path)))
        if "id" not in self.folders:
            raise DatasetLayoutError(f"'{test_dir / CHALLENGE_FREE}' does not exist", key="root", fix=fix)
        for _, _, subset, path in sorted(challenge_subsets):
            self.folders[subset] = path
        # the train split only when ``train:`` names it: the planner reads what a dataset
        # provides from its options, so a split found on disk alone could never be trained on
        if train not in (None, ""):
            self.folders["train"] = self._train_folder(train)
        self.provides = frozenset({"train_split"}) if "train" in self.folders else frozenset()
        self._sources: dict[str, FileSource] = {}

    def _train_folder(self, value) -> Path:
        """``train:`` is relative to ``root``: the release's ``Real_Train`` (its
        ``ChallengeFree`` folder is read; challenge folders are not training data),
        or the folder of clean training images itself."""
        folder = Path(str(value)).expanduser()
        folder = folder if folder.is_absolute() else self.root / folder
        fix = f"set `train: {self.prefix}_Train` (relative to root), the folder holding {CHALLENGE_FREE}/*.bmp"
        if not folder.is_dir():
            raise DatasetLayoutError(f"train folder '{folder}' does not exist", key="train", fix=fix)
        return folder / CHALLENGE_FREE if (folder / CHALLENGE_FREE).is_dir() else folder

    def subsets(self) -> list[str]:
        return list(self.folders)

    def samples(self, subset: str) -> FileSource:
        if subset not in self.folders:
            raise unknown_subset(self.name, subset, list(self.folders))
        if subset not in self._sources:
            folder = self.folders[subset]
            expected_code = 0 if subset in ("id", "train") else FOLDER_CODE[subset.split("/")[1]]
            expected_level = 0 if subset in ("id", "train") else int(subset.split("/")[2])
            rel = folder.relative_to(self.root).as_posix()
            paths, labels, ids, sizes, fields = [], [], [], [], []
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)), key=lambda e: e.name)
            for e in entries:
                try:
                    parsed = parse_filename(e.name)
                except ValueError as exc:
                    raise DatasetLayoutError(f"{exc} (file '{e.path}')", key="root", fix="remove or rename the file") from None
                if (parsed.challenge_type, parsed.challenge_level, parsed.sequence_type) != (expected_code, expected_level, self.sequence_type):
                    raise DatasetLayoutError(
                        f"'{e.path}' is a {parsed.sequence} {parsed.challenge_folder} level {parsed.challenge_level} image "
                        f"inside folder '{rel}'",
                        key="root",
                        fix="move the file to the folder its name encodes, or re-extract the archive",
                    )
                paths.append(e.path)
                labels.append(parsed.label)
                ids.append(f"{rel}/{e.name}")
                sizes.append(e.stat().st_size)
                fields.append(parsed)
            if not paths:
                raise DatasetLayoutError(f"'{folder}' holds no .bmp image", key="root", fix="re-extract the CURE-TSR archive")
            self._sources[subset] = FileSource(paths, np.asarray(labels, dtype=np.int64), ids, sizes, fields)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        source = self.samples(subset)
        return fingerprint(VERSION, subset, source.ids, source.labels, source.sizes)


def build(name: str = "cure-tsr", options: dict | None = None, config_file: str | None = None) -> CureTSR:
    """Factory for ``datasets.yaml``: ``root`` (required), ``sequence`` (``real`` | ``unreal``),
    ``train`` (e.g. ``Real_Train``, relative to ``root``)."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (cure-tsr)", config_file)
    return CureTSR(opts["root"], sequence=opts.get("sequence", "real"), train=opts.get("train"), name=name)
