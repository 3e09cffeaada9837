"""CURE-OR reader (Temel, Lee & AlRegib, "CURE-OR: Challenging Unreal and Real
Environments for Object Recognition", ICMLA 2018; olivesgatech/CURE-OR
``README.md``, ``dataloader.py``, ``analysis.py``, ``cure_or_objects.txt``;
``docs/datasets.md#cure-or``).

Format
------
1,000,000 JPEGs: 100 objects × 5 backgrounds × 5 devices × 5 orientations × 80
versions (original, grayscale and 78 challenge × level conditions). File name::

    <background>_<device>_<orientation>_<objectID>_<challengeType>_<challengeLevel>.jpg
    e.g. 3_2_5_045_05_4.jpg

one digit each for background (1 White, 2 Texture 1, 3 Texture 2, 4 3D 1,
5 3D 2), device (1 iPhone 6s, 2 HTC One X, 3 LG Leon, 4 Logitech C920,
5 Nikon D80) and orientation (1 front 0°, 2 left 90°, 3 back 180°, 4 right
270°, 5 top); 3 digits object id (001..100); 2 digits challenge type
(01..18); 1 digit level: ``0`` for types 01 (no challenge) and 10
(grayscale), ``1..4`` for 02/11 (resize), ``1..5`` otherwise.
:func:`parse_filename` returns these fields; each sample's parsed name is in
``samples(subset).fields[i]``.

Subsets: ``id`` = ``01_no_challenge`` (the original colour images) and
``c/<challenge folder>/<level>`` for every other (type, level) present, named
by ``dataloader.py``'s folder names, e.g. ``c/05_blur/3``,
``c/10_grayscale_no_challenge/0``. Labels: ``label="object"`` (default)
gives ``objectID − 1`` with classes ``"NNN <name>"`` from
``cure_or_objects.txt``; ``label="category"`` gives the index of the object's
category in ``dataloader.py``'s order (Toy, Personal Belongings, Office
Supplies, Household, Sports/Entertainment, Health/Personal Care). Sample ids
are paths relative to ``root``; order is sorted relative path.

Inferred / unverified layout (docs/datasets.md#cure-or) and how this reader copes:

* The top-level folders ``01_no_challenge`` … ``18_grayscale_saltpepper`` are
  the challenge folder names of ``dataloader.py`` (which names result files,
  not images) [INFERRED]; any other top-level folder is an error.
* Inside a challenge folder, ``Level_<L>`` sub-folders are expected for the
  levelled types and none for types 01 and 10 (a third-party script reads
  ``<challenge>/Level_5/3d1/HTC/``) [INFERRED]. Everything below
  (background / device folders, named ``white, texture1, texture2, 3d1, 3d2``
  and ``iPhone, HTC, LG, Logitech, DSLR_JPG`` or ``Nikon`` depending on the
  source [UNVERIFIED]) is walked recursively and **not** interpreted: the
  file name is authoritative. A levelled challenge folder without
  ``Level_<L>`` folders is walked once and split by the level in the names.
* Each file's challenge type (and level, under ``Level_<L>``) must agree with
  its folders; a mismatch or unparseable name is an error naming the file.
* The original protocol (no training, top-5 of off-the-shelf APIs, 125
  images per object and condition) is not encoded here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbx_robustness.readers._common import (
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

VERSION = "cure-or-reader-v1"

BACKGROUNDS = {1: "White", 2: "Texture 1 (living room)", 3: "Texture 2 (kitchen)", 4: "3D 1 (living room)", 5: "3D 2 (office)"}
DEVICES = {1: "iPhone 6s", 2: "HTC One X", 3: "LG Leon", 4: "Logitech C920 HD Pro Webcam", 5: "Nikon D80"}
ORIENTATIONS = {1: "Front 0°", 2: "Left 90°", 3: "Back 180°", 4: "Right 270°", 5: "Top"}
#: challenge code -> (name, folder name of dataloader.py)
CHALLENGE_TYPES = {
    1: ("No challenge", "01_no_challenge"), 2: ("Resize", "02_resize"),
    3: ("Underexposure", "03_underexposure"), 4: ("Overexposure", "04_overexposure"),
    5: ("Gaussian blur", "05_blur"), 6: ("Contrast", "06_contrast"),
    7: ("Dirty lens 1", "07_dirtylens1"), 8: ("Dirty lens 2", "08_dirtylens2"),
    9: ("Salt & pepper noise", "09_saltpepper"), 10: ("Grayscale", "10_grayscale_no_challenge"),
    11: ("Grayscale resize", "11_grayscale_resize"), 12: ("Grayscale underexposure", "12_grayscale_underexposure"),
    13: ("Grayscale overexposure", "13_grayscale_overexposure"), 14: ("Grayscale gaussian blur", "14_grayscale_blur"),
    15: ("Grayscale contrast", "15_grayscale_contrast"), 16: ("Grayscale dirty lens 1", "16_grayscale_dirtylens1"),
    17: ("Grayscale dirty lens 2", "17_grayscale_dirtylens2"), 18: ("Grayscale salt & pepper", "18_grayscale_saltpepper"),
}  # fmt: skip
FOLDER_CODE = {folder: code for code, (_, folder) in CHALLENGE_TYPES.items()}


def levels_of(challenge_type: int) -> tuple[int, ...]:
    """Valid levels: 0 for 01 / 10, 1..4 for resize (02 / 11), 1..5 otherwise (docs/datasets.md#cure-or)."""
    if challenge_type in (1, 10):
        return (0,)
    if challenge_type in (2, 11):
        return (1, 2, 3, 4)
    return (1, 2, 3, 4, 5)


#: Object categories in ``dataloader.py`` order (``self.categories``).
CATEGORIES: dict[str, tuple[int, ...]] = {
    "Toy": (20, 21, 37, 38, 39, 40, 41, 42, 62, 63, 76, 78, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93),
    "Personal Belongings": (9, 11, 12, 13, 24, 25, 53, 64, 69, 99),
    "Office Supplies": (26, 34, 46, 47, 48, 49, 50, 51, 52, 59, 60, 61, 66, 95),
    "Household": (1, 2, 6, 7, 15, 16, 17, 22, 27, 28, 30, 33, 43, 45, 55, 58, 65, 67, 70, 71, 72, 73, 74, 75, 82, 97, 100),
    "Sports/Entertainment": (5, 8, 10, 14, 18, 19, 68, 79, 80, 81),
    "Health/Personal Care": (3, 4, 23, 29, 31, 32, 35, 36, 44, 54, 56, 57, 77, 94, 96, 98),
}
CATEGORY_NAMES = list(CATEGORIES)
CATEGORY_OF = {obj: i for i, members in enumerate(CATEGORIES.values()) for obj in members}
assert sorted(CATEGORY_OF) == list(range(1, 101)) and sum(map(len, CATEGORIES.values())) == 100

#: ``cure_or_objects.txt`` (object 070 is "Strainer" in the README).
OBJECT_NAMES = dict(enumerate("""
Coca cola bottle - Red|Coca cola bottle - Green|Medicine - Spray|Medicine|Baseball|Lasko Heater|Rival Clothing iron|
Soccer jersey|Neck pillow|Electric air pump|iPhone 4S|LG Cell phone|iPod Shuffle|Adidas Shinguard|Flask|Candle - Yellow|
Candle - Blue|Gloves|Armband|Toy car - Orange|Toy car - Red|Lock|Hair brush|Sunglasses - Black|Sunglasses - Yellow|
Square card reader|Fish keychain|Multipurpose pocket knives|Toothbrush|Bottle opener|Toothpaste - Full|Toothpaste - Empty|
Chewing gum|Calculator|Dayquil cold medicine|Handsoap bottle - Empty|Baby toy - Jingle|Baby toy - Trumpet|Hello Kitty doll|
Toy - Playskool|Jingle stick|Toy car|Tile|Thermometer|Silver coffee pot|Hole puncher|Glue stick|Liquid white out|
Tape white out|Marker - Expo black|Marker - Sharpie blue|Highlighter|Mac charger|Hair roller|Cleaner|Floss|
ACE Elastic bandage|Stanley Tape measure|Logitech Presenter remote|Kensington Presenter remote|DYMO label maker|
Stuffed animal|Minion action figure|Megabus water bottle pack|Jar|Calculator|Cutlery tray|Training marker cone|Shoes|
Sifter|Pan|Cheese grater|Barilla Spaghetti|BIC Lighter|Oven mitt|Stuffed animal - horse|Hudson Volumetric exerciser|
Rubber duck|Deck of cards - Hoyle|Deck of cards - Savannah|Soccer ball|Gold coffee pot|Toy car - Green|Toy car - Blue|
Monkey|Plastic ball - Green|Plastic ball - Red Blue|Lion|Teething toy - Stars Animals|Teething toy - Circles Square|
Toy - Red Blue|Toy - Yellow Green|Toy|Calcium bottle|Tape dispenser|Hand cream|Coca cola can|Hand sanitizer|
Canon camera|Sweet N Low sweetner""".replace("\n", "").split("|"), start=1))
assert len(OBJECT_NAMES) == 100
#: Object classes ``"NNN <name>"`` (two objects are both named "Calculator").
OBJECT_CLASSES = [f"{k:03d} {OBJECT_NAMES[k]}" for k in range(1, 101)]

OPTION_KEYS = frozenset({"root", "label"})
REQUIRED_KEYS = frozenset({"root"})
LABELS = ("object", "category")

_NAME = re.compile(r"^(\d)_(\d)_(\d)_(\d{3})_(\d{2})_(\d)\.jpe?g$", re.IGNORECASE)
_LEVEL_DIR = re.compile(r"^Level_(\d+)$")

FIX_ROOT = (
    "set `root:` to the CURE-OR folder holding the challenge folders 01_no_challenge/ … 18_grayscale_saltpepper/ "
    "(each with Level_<L>/ sub-folders for the levelled challenges)"
)


@dataclass(frozen=True)
class CureOrName:
    """Fields of a CURE-OR file name (docs/datasets.md#cure-or)."""

    background: int
    device: int
    orientation: int
    object_id: int
    challenge_type: int
    challenge_level: int

    @property
    def category(self) -> str:
        return CATEGORY_NAMES[CATEGORY_OF[self.object_id]]

    @property
    def object_name(self) -> str:
        return OBJECT_NAMES[self.object_id]

    @property
    def challenge(self) -> str:
        return CHALLENGE_TYPES[self.challenge_type][0]

    @property
    def challenge_folder(self) -> str:
        return CHALLENGE_TYPES[self.challenge_type][1]


def parse_filename(name: str) -> CureOrName:
    """Parse ``b_d_o_OOO_TT_L.jpg``; ``ValueError`` if it does not fit the codes."""
    m = _NAME.match(os.path.basename(name))
    if not m:
        raise ValueError(f"'{name}' does not match <background>_<device>_<orientation>_<objectID>_<challengeType>_<challengeLevel>.jpg")
    bg, dev, ori, obj, chal, level = (int(g) for g in m.groups())
    for value, table, what in ((bg, BACKGROUNDS, "background"), (dev, DEVICES, "device"), (ori, ORIENTATIONS, "orientation")):
        if value not in table:
            raise ValueError(f"'{name}': {what} {value} is outside 1..5")
    if not 1 <= obj <= 100:
        raise ValueError(f"'{name}': object id {obj:03d} is outside 001..100")
    if chal not in CHALLENGE_TYPES:
        raise ValueError(f"'{name}': challenge type {chal:02d} is outside 01..18")
    if level not in levels_of(chal):
        raise ValueError(f"'{name}': level {level} is invalid for challenge type {chal:02d} (valid: {levels_of(chal)})")
    return CureOrName(bg, dev, ori, obj, chal, level)


def _walk_jpegs(folder: Path) -> list[tuple[str, str]]:
    """``(relative path, absolute path)`` of every JPEG below ``folder``, sorted by relative path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith((".jpg", ".jpeg")):
                full = os.path.join(dirpath, f)
                out.append((os.path.relpath(full, folder).replace(os.sep, "/"), full))
    return sorted(out)


class CureOR(Dataset):
    """CURE-OR by challenge type × level (see the module docstring)."""

    task = "classification"
    provides = frozenset()

    def __init__(self, root, *, label: str = "object", name: str = "cure-or") -> None:
        self.name = name
        if label not in LABELS:
            raise DatasetLayoutError(f"label must be one of {LABELS}, got {label!r}", key="label", fix="set `label: object` or `label: category`")
        self.label = label
        self.classes = list(OBJECT_CLASSES if label == "object" else CATEGORY_NAMES)
        self.root = require_dir(root, "CURE-OR", FIX_ROOT)
        # subset -> (challenge code, level, folder to walk, pre-walked files or None)
        self._where: dict[str, tuple[int, int, Path, list | None]] = {}
        for entry in subdirs(self.root):
            code = FOLDER_CODE.get(entry.name)
            if code is None:
                raise DatasetLayoutError(
                    f"'{entry.path}' is not a CURE-OR challenge folder.{suggestion(entry.name, list(FOLDER_CODE))}",
                    key="root",
                    fix=f"rename or remove it; challenge folders: {', '.join(FOLDER_CODE)}",
                )
            self._add_challenge(code, Path(entry.path))
        if not self._where:
            raise DatasetLayoutError(f"no CURE-OR challenge folder under '{self.root}'", key="root", fix=FIX_ROOT)
        order = sorted(self._where, key=lambda s: (self._where[s][0], self._where[s][1]))
        self._where = {s: self._where[s] for s in order}
        self._sources: dict[str, FileSource] = {}

    @staticmethod
    def _subset(code: int, level: int) -> str:
        return "id" if code == 1 else f"c/{CHALLENGE_TYPES[code][1]}/{level}"

    def _add_challenge(self, code: int, folder: Path) -> None:
        valid = levels_of(code)
        children = subdirs(folder)
        level_dirs = [(c, _LEVEL_DIR.match(c.name)) for c in children]
        if any(m for _, m in level_dirs):
            stray = [c.path for c, m in level_dirs if not m]
            if stray:
                raise DatasetLayoutError(
                    f"'{folder}' mixes Level_<L> folders with other folders: {stray}",
                    key="root",
                    fix="keep only the Level_<L> folders at this depth",
                )
            for c, m in level_dirs:
                level = int(m.group(1))
                if level not in valid:
                    raise DatasetLayoutError(
                        f"'{c.path}': level {level} does not exist for {CHALLENGE_TYPES[code][1]} (levels {valid})",
                        key="root",
                        fix="remove or rename the folder",
                    )
                self._where[self._subset(code, level)] = (code, level, Path(c.path), None)
        elif valid == (0,):
            self._where[self._subset(code, 0)] = (code, 0, folder, None)
        else:  # no Level_ folders: split by the level in the file names
            by_level: dict[int, list] = {}
            for rel, full in _walk_jpegs(folder):
                parsed = self._parse(full, code, None)
                by_level.setdefault(parsed.challenge_level, []).append((rel, full, parsed))
            if not by_level:
                raise DatasetLayoutError(f"'{folder}' holds no .jpg image", key="root", fix="re-extract the CURE-OR archive")
            for level, files in sorted(by_level.items()):
                self._where[self._subset(code, level)] = (code, level, folder, files)

    @staticmethod
    def _parse(path: str, code: int, level: int | None) -> CureOrName:
        try:
            parsed = parse_filename(path)
        except ValueError as exc:
            raise DatasetLayoutError(f"{exc} (file '{path}')", key="root", fix="remove or rename the file") from None
        if parsed.challenge_type != code or (level is not None and parsed.challenge_level != level):
            where = CHALLENGE_TYPES[code][1] + (f" level {level}" if level is not None else "")
            raise DatasetLayoutError(
                f"'{path}' is a {parsed.challenge_folder} level {parsed.challenge_level} image inside the {where} folder",
                key="root",
                fix="move the file to the folder its name encodes, or re-extract the archive",
            )
        return parsed

    def subsets(self) -> list[str]:
        return list(self._where)

    def samples(self, subset: str) -> FileSource:
        if subset not in self._where:
            raise unknown_subset(self.name, subset, list(self._where))
        if subset not in self._sources:
            code, level, folder, files = self._where[subset]
            if files is None:
                files = [(rel, full, self._parse(full, code, level)) for rel, full in _walk_jpegs(folder)]
            if not files:
                raise DatasetLayoutError(f"'{folder}' holds no .jpg image", key="root", fix="re-extract the CURE-OR archive")
            base = folder.relative_to(self.root).as_posix()
            paths = [full for _, full, _ in files]
            ids = [f"{base}/{rel}" for rel, _, _ in files]
            fields = [p for _, _, p in files]
            if self.label == "object":
                labels = [p.object_id - 1 for p in fields]
            else:
                labels = [CATEGORY_OF[p.object_id] for p in fields]
            sizes = [os.stat(p).st_size for p in paths]
            self._sources[subset] = FileSource(paths, np.asarray(labels, dtype=np.int64), ids, sizes, fields)
        return self._sources[subset]

    def fingerprint(self, subset: str) -> str:
        source = self.samples(subset)
        return fingerprint(VERSION, subset, source.ids, source.labels, source.sizes, self.label.encode())


def build(name: str = "cure-or", options: dict | None = None, config_file: str | None = None) -> CureOR:
    """Factory for ``datasets.yaml``: ``root`` (required), ``label`` (``object`` | ``category``)."""
    opts = check_options(options, OPTION_KEYS, REQUIRED_KEYS, f"dataset '{name}' (cure-or)", config_file)
    return CureOR(opts["root"], label=opts.get("label", "object"), name=name)
