"""CURE-TSD file names and annotation lines, as released (olivesgatech/CURE-TSD README)."""

from __future__ import annotations

import numpy as np
import pytest

from rbx_detection.annotations import parse_annotations
from rbx_detection.cure_tsd_names import TEST_SEQUENCES, VideoName, parse_annotation_name, parse_video_name


def test_real_video_name_decodes_every_field():
    name = parse_video_name("01_04_01_02_03.mp4")
    assert name == VideoName(sequence_type=1, sequence_number=4, challenge_source=1, challenge_type=2, challenge_level=3)
    assert name.stem == "01_04_01_02_03" and name.annotation == "01_04.txt"
    assert name.subset == "c/LensBlur/3" and name.split == "test"


def test_unreal_challenge_free_video_name():
    name = parse_video_name("/data/CURE-TSD/02_01_00_00_00.mp4")
    assert (name.sequence_type, name.sequence_number, name.challenge_type, name.challenge_level) == (2, 1, 0, 0)
    assert name.subset == "id" and name.split == "train" and name.annotation == "02_01.txt"
    assert parse_video_name("02_36_01_12_05").subset == "c/Haze/5"  # a frame folder is named by the stem


def test_official_split_has_fifteen_test_sequences_per_type():
    assert [len(TEST_SEQUENCES[t]) for t in (1, 2)] == [15, 15]
    assert parse_video_name("01_47_00_00_00.mp4").split == "test" and parse_video_name("02_47_00_00_00.mp4").split == "train"


@pytest.mark.parametrize(
    "bad, why",
    [
        ("03_04_00_00_00.mp4", "sequence type 03"),
        ("01_50_00_00_00.mp4", "sequence number 50"),
        ("01_04_01_13_01.mp4", "challenge type 13"),
        ("01_04_01_02_00.mp4", "do not go together"),
        ("01_04_00_02_01.mp4", "do not go together"),
        ("01_04_01_02_06.mp4", "do not go together"),
        ("01_4_01_02_03.mp4", "does not match"),
        ("01_04_01_02_03.avi", "does not match"),
    ],
)
def test_bad_video_names_say_what_is_wrong(bad, why):
    with pytest.raises(ValueError, match=why):
        parse_video_name(bad)


def test_annotation_file_name():
    assert parse_annotation_name("labels/02_13.txt") == (2, 13)
    with pytest.raises(ValueError, match="sequenceType_sequenceNumber.txt"):
        parse_annotation_name("02_13_00.txt")


def test_annotation_parser_on_the_release_example_line():
    # README's coordinate-system figure: file 01_01.txt, line 172 (the "lower" corners are the top edge)
    ann = parse_annotations("240_14_1033_214_1095_214_1033_293_1095_293\n")
    assert ann.frame.tolist() == [240] and ann.sign.tolist() == [14]
    assert ann.polygon.tolist() == [[1033, 214, 1095, 214, 1033, 293, 1095, 293]]
    assert ann.box.tolist() == [[1033, 214, 1095, 293]]


def test_annotation_parser_header_blank_lines_other_delimiters_and_frames():
    text = "frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury\n001_06_10_20_30_20_10_45_30_45\n\n001,13,50,5,60,5,50,15,60,15\n003 01 7 9 3 9 7 2 3 2\n"
    ann = parse_annotations(text)
    assert ann.frame.tolist() == [1, 1, 3] and ann.sign.tolist() == [6, 13, 1]
    boxes, signs = ann.in_frame(1)
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 45], [50, 5, 60, 15]])
    assert signs.tolist() == [6, 13]
    np.testing.assert_array_equal(ann.in_frame(3)[0], [[3, 2, 7, 9]])  # corners in any order: min / max
    assert ann.in_frame(2)[0].shape == (0, 4)


@pytest.mark.parametrize(
    "line, why",
    [("001_06_10_20_30_20_10_45_30", "9 fields"), ("001_15_10_20_30_20_10_45_30_45", "sign type 15"),
     ("000_06_10_20_30_20_10_45_30_45", "frame number 000"), ("001_06_10_20_30_x_10_45_30_45", "not a number")],
)  # fmt: skip
def test_annotation_parser_names_the_file_and_line(line, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_annotations(f"001_06_10_20_30_20_10_45_30_45\n{line}\n", "labels/01_04.txt")
    assert "labels/01_04.txt, line 2" in str(info.value)
