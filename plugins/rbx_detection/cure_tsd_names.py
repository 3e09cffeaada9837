"""CURE-TSD names: video and annotation file names, sign and challenge codes,
and the official train / test split (Temel, Alshawi, Chen & AlRegib,
"Challenging Environments for Traffic Sign Detection: Reliability Assessment
under Inclement Conditions", arXiv 1902.06857; olivesgatech/CURE-TSD
``README.md`` at commit c2a3120, sections "File Name Format", "Test
Sequences", "Annotation Format"; ``docs/datasets.md#detection-types``).

Video ``<sequenceType>_<sequenceNumber>_<challengeSourceType>_<challengeType>_<challengeLevel>.mp4``
(``01_04_01_02_03.mp4``: real sequence 4, After Effects, lens blur, level 3);
annotation ``<sequenceType>_<sequenceNumber>.txt``, shared by every challenge
version of the sequence. The sign and challenge codes are CURE-TSR's (the
same lab's release): they, the challenge names and the ``c/<Folder>/<level>``
subset names are taken from the CURE-TSR reader of ``rbx_robustness``, so a
condition has one name across the two datasets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from rbx_robustness.readers.cure_tsr import CHALLENGE_TYPES, SIGN_TYPES

__all__ = ["CHALLENGE_TYPES", "SIGN_TYPES", "SEQUENCE_TYPES", "TEST_SEQUENCES", "VideoName", "parse_video_name", "parse_annotation_name"]

SEQUENCE_TYPES = {1: "real", 2: "unreal"}
CHALLENGE_SOURCES = {0: "none", 1: "After Effects"}
#: The README's "Test Sequences": sequence numbers of the 30 % test split, per sequence type.
TEST_SEQUENCES = {
    1: frozenset({4, 5, 6, 7, 8, 18, 19, 21, 24, 26, 31, 38, 39, 41, 47}),
    2: frozenset({2, 4, 6, 9, 12, 13, 16, 17, 18, 20, 22, 28, 31, 32, 36}),
}

_VIDEO = re.compile(r"^(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})$")
_ANNOTATION = re.compile(r"^(\d{2})_(\d{2})$")


@dataclass(frozen=True, order=True)
class VideoName:
    """Fields of a CURE-TSD video name."""

    sequence_type: int  # 1 real, 2 unreal
    sequence_number: int  # 1..49
    challenge_source: int  # 0 none, 1 After Effects
    challenge_type: int  # 0 none, 1..12
    challenge_level: int  # 0 none, 1..5

    @property
    def stem(self) -> str:
        return "_".join(f"{v:02d}" for v in (self.sequence_type, self.sequence_number, self.challenge_source, self.challenge_type, self.challenge_level))

    @property
    def annotation(self) -> str:
        """The annotation file this video shares with its sequence's other versions."""
        return f"{self.sequence_type:02d}_{self.sequence_number:02d}.txt"

    @property
    def split(self) -> str:
        return "test" if self.sequence_number in TEST_SEQUENCES[self.sequence_type] else "train"

    @property
    def subset(self) -> str:
        """``id`` for the challenge-free video, else ``c/<Folder>/<level>`` (CURE-TSR's names)."""
        if not self.challenge_type:
            return "id"
        return f"c/{CHALLENGE_TYPES[self.challenge_type][1]}/{self.challenge_level}"


def parse_video_name(name: str) -> VideoName:
    """Decode a video file name (or a frame folder named like one); ``ValueError`` saying what is wrong."""
    base = os.path.basename(str(name).rstrip("/\\"))
    stem = base[: -len(".mp4")] if base.lower().endswith(".mp4") else base
    m = _VIDEO.match(stem)
    if not m:
        raise ValueError(f"'{base}' does not match sequenceType_sequenceNumber_challengeSourceType_challengeType_challengeLevel[.mp4] (two digits each)")
    seq_type, number, source, challenge, level = (int(g) for g in m.groups())
    _check_sequence(base, seq_type, number)
    if source not in CHALLENGE_SOURCES:
        raise ValueError(f"'{base}': challenge source {source:02d} is neither 00 (none) nor 01 (After Effects)")
    if challenge and challenge not in CHALLENGE_TYPES:
        raise ValueError(f"'{base}': challenge type {challenge:02d} is outside 00..12")
    if (challenge == 0) != (source == 0) or (challenge == 0) != (level == 0) or level > 5:
        raise ValueError(f"'{base}': source {source:02d}, type {challenge:02d}, level {level:02d} do not go together (00_00_00 for no challenge, else 01_<01..12>_<01..05>)")
    return VideoName(seq_type, number, source, challenge, level)


def parse_annotation_name(name: str) -> tuple[int, int]:
    """``(sequence type, sequence number)`` of an annotation file name ``01_04.txt``."""
    base = os.path.basename(str(name))
    m = _ANNOTATION.match(base[: -len(".txt")] if base.lower().endswith(".txt") else "")
    if not m:
        raise ValueError(f"'{base}' does not match sequenceType_sequenceNumber.txt (two digits each)")
    seq_type, number = int(m.group(1)), int(m.group(2))
    _check_sequence(base, seq_type, number)
    return seq_type, number


def _check_sequence(base: str, seq_type: int, number: int) -> None:
    if seq_type not in SEQUENCE_TYPES:
        raise ValueError(f"'{base}': sequence type {seq_type:02d} is neither 01 (real) nor 02 (unreal)")
    if not 1 <= number <= 49:
        raise ValueError(f"'{base}': sequence number {number:02d} is outside 01..49")
