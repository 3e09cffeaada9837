"""The CURE-TSD reader on a tiny tree in the released layout (frame folders and
an MP4 decoded with PyAV), the detections file, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rbx_detection.cure_tsd import CureTSD, build
from rbx_detection.detections_file import read_detections
from rbx_detection.testing import HEIGHT, WIDTH, write_cure_tsd_tree
from robustbench_x.errors import ConfigError

W, H = WIDTH, HEIGHT


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "CURE-TSD"
    write_cure_tsd_tree(root)
    (root / "README.txt").write_text("not a video: ignored")
    return root


def test_subsets_frames_and_ground_truth(tree):
    ds = CureTSD(tree)
    assert ds.task == "detection" and ds.subsets() == ["id", "c/Darkening/2", "c/LensBlur/5"]
    source = ds.samples("id")
    assert len(source) == 4 and source[2][2] == "01_04_00_00_00/003" and source[2][1] == -1
    assert np.asarray(source[2][0]).shape == (H, W, 3) and np.asarray(source[2][0]).max() == 30
    assert ds.frame_keys("c/Darkening/2")[0] == ("01_04_01_04_02", 1)
    truth = ds.ground_truth("c/Darkening/2")  # the sequence's annotations serve every challenge version
    np.testing.assert_array_equal(truth[0][0], [[2, 3, 10, 9]])
    assert truth[0][1].tolist() == [6] and truth[1][0].shape == (0, 4)
    assert truth[2][1].tolist() == [14, 6]


def test_video_decoded_in_frame_order(tree):
    ds = CureTSD(tree)
    source = ds.samples("c/LensBlur/5")
    assert len(source) == 4 and [source[i][2] for i in range(4)] == [f"01_04_01_02_05/{f:03d}" for f in range(1, 5)]
    means = [np.asarray(source[i][0], dtype=float).mean() for i in (0, 1, 3)]
    assert means == pytest.approx([0, 40, 120], abs=4)  # lossy codec; the order is what matters
    assert np.asarray(source[1][0], dtype=float).mean() == pytest.approx(40, abs=4)  # going back reopens the video


def test_split_sequence_and_frame_step(tree):
    assert CureTSD(tree, split="train").subsets() == ["id"]
    assert CureTSD(tree, split="all").frame_keys("id")[:5:4] == [("01_01_00_00_00", 1), ("01_04_00_00_00", 1)]
    assert [k for _, k in CureTSD(tree, frame_step=2).frame_keys("id")] == [1, 3]
    with pytest.raises(ConfigError, match="no unreal video of the test split"):
        CureTSD(tree, sequence="unreal")


def test_bad_root_file_name_and_missing_annotations_name_the_file_key_and_fix(tree, tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        build("mine", {"root": str(tmp_path / "nowhere")}, config_file="datasets.yaml")
    assert "key 'datasets.mine.root'" in str(info.value) and "fix:" in str(info.value) and "datasets.yaml" in str(info.value)
    (tree / "01_04_01_02_9.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="01_04_01_02_9.mp4") as info:
        CureTSD(tree)
    assert "does not match sequenceType_sequenceNumber" in str(info.value)
    (tree / "01_04_01_02_9.mp4").unlink()
    (tree / "labels" / "01_04.txt").unlink()
    with pytest.raises(ConfigError, match="01_04.txt") as info:
        CureTSD(tree)
    assert "key 'datasets.cure-tsd.annotations'" in str(info.value)
    with pytest.raises(ConfigError, match="unknown key 'roots'"):
        build("mine", {"roots": "x"})


def test_detections_csv_and_json_read_the_same(tmp_path):
    rows = [
        {"video": "01_04_00_00_00", "frame": 3, "sign_type": 14, "x1": 20, "y1": 4, "x2": 28, "y2": 12, "score": 0.9},
        {"video": "01_04_00_00_00.mp4", "frame": 3, "sign_type": 6, "x1": 1, "y1": 1, "x2": 5, "y2": 5},
    ]
    rows[1]["score"] = 0.5
    csv = tmp_path / "d.csv"
    csv.write_text("video,frame,sign_type,x1,y1,x2,y2,score\n01_04_00_00_00,3,14,20,4,28,12,0.9\n01_04_00_00_00.mp4,3,6,1,1,5,5,0.5\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    for path in (csv, tmp_path / "d.json"):
        dets = read_detections(path)
        assert list(dets) == [("01_04_00_00_00", 3)]
        boxes, signs, scores = dets[("01_04_00_00_00", 3)]
        np.testing.assert_array_equal(boxes, [[20, 4, 28, 12], [1, 1, 5, 5]])
        assert signs.tolist() == [14, 6] and scores.tolist() == [0.9, 0.5]


def test_without_a_score_column_every_detection_scores_one_but_an_empty_score_cell_is_refused(tmp_path):
    unscored = tmp_path / "u.csv"
    unscored.write_text("video,frame,sign_type,x1,y1,x2,y2\n01_04_00_00_00,3,14,20,4,28,12\n01_04_00_00_00,3,6,1,1,5,5\n")
    assert read_detections(unscored)[("01_04_00_00_00", 3)][2].tolist() == [1.0, 1.0]
    row = {"video": "01_04_00_00_00", "frame": 3, "sign_type": 6, "x1": 1, "y1": 1, "x2": 5, "y2": 5}
    (tmp_path / "u.json").write_text(json.dumps([row, dict(row, x1=2)]))
    assert read_detections(tmp_path / "u.json")[("01_04_00_00_00", 3)][2].tolist() == [1.0, 1.0]
    # a default of 1 among scored rows would rank the unscored detection first
    csv = tmp_path / "d.csv"
    csv.write_text("video,frame,sign_type,x1,y1,x2,y2,score\n01_04_00_00_00,3,14,20,4,28,12,0.9\n01_04_00_00_00,3,6,1,1,5,5,\n")
    (tmp_path / "d.json").write_text(json.dumps([dict(row, score=0.9), dict(row, x1=2)]))
    for path, where in ((csv, "line 3"), (tmp_path / "d.json", "item 1")):
        with pytest.raises(ConfigError, match=f"{where}: no value for 'score'") as info:
            read_detections(path)
        assert str(path) in str(info.value) and "key 'score'" in str(info.value) and "drop the score column" in str(info.value)


def test_an_exactly_repeated_row_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "d.csv"
    row = "01_04_00_00_00,3,6,1,1,5,5,0.5"
    path.write_text(f"video,frame,sign_type,x1,y1,x2,y2,score\n{row}\n01_04_00_00_00,3,6,1,1,5,5,0.4\n{row}\n")
    with pytest.raises(ConfigError, match="line 4 repeats line 2 exactly") as info:
        read_detections(path)
    assert str(path) in str(info.value) and "fix: remove the repeated row" in str(info.value)
    folder = tmp_path / "vip"  # the annotation-format folder: same rule, the per-video file's lines
    folder.mkdir()
    line = "003_06_1_1_5_1_1_5_5_5"
    (folder / "01_04_00_00_00.txt").write_text(f"{line}\n\n003_06_2_1_5_1_1_5_5_5\n{line}\n")
    with pytest.raises(ConfigError, match=r"line 4 repeats line 1 exactly \(frame 3, sign type 6") as info:
        read_detections(folder)
    assert "01_04_00_00_00.txt" in str(info.value)


@pytest.mark.parametrize(
    "text, why",
    [("", "the detections file is empty"), ("  \n", "the detections file is empty"),
     ("01_04_00_00_00,3,6,1,1,5,5,0.5\n", "line 1: the first line is a detection, not the header row")],
)  # fmt: skip
def test_an_empty_file_or_one_without_header_says_so(tmp_path, text, why):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why) as info:
        read_detections(path)
    assert str(path) in str(info.value) and "fix:" in str(info.value)


def test_frames_beyond_a_video_are_named_with_the_line_and_the_frame_count(tmp_path):
    from rbx_detection.detectors import DetectionsFileModel
    from rbx_detection.embedded import build

    ds = build()
    (video, _), n_frames = ds.frame_keys("id")[0], ds.frame_counts()[ds.frame_keys("id")[0][0]]
    path = tmp_path / "d.csv"
    path.write_text(f"video,frame,sign_type,x1,y1,x2,y2,score\n{video},{n_frames},6,1,1,5,5,0.5\n{video},{n_frames + 100},6,1,1,5,5,0.5\n")
    model = DetectionsFileModel(path, name="mine")
    assert model.frames_beyond(ds) == [f"line 3: video {video} has {n_frames} frames, frame {n_frames + 100} is beyond them"]


@pytest.mark.parametrize(
    "line, key, why",
    [("01_04_00_00_00,0,6,1,1,5,5,1", "frame", "1-based"), ("01_04_00_00_00,1,15,1,1,5,5,1", "sign_type", "1..14"),
     ("01_04_00_00_00,1,6,5,1,1,5,1", "x2", "x2 < x1"), ("01_04_00_0_00,1,6,1,1,5,5,1", "video", "does not match"),
     ("01_04_00_00_00,1,6,1,1,5,nan,1", "y2", "not finite"), ("01_04_00_00_00,1,6,1,1,5,5,high", "score", "not a number")],
)  # fmt: skip
def test_bad_detections_name_the_file_line_and_key(tmp_path, line, key, why):
    path = tmp_path / "d.csv"
    path.write_text(f"video,frame,sign_type,x1,y1,x2,y2,score\n01_04_00_00_00,1,6,1,1,5,5,1\n{line}\n")
    with pytest.raises(ConfigError, match=why) as info:
        read_detections(path)
    assert str(path) in str(info.value) and f"key '{key}'" in str(info.value) and "line 3" in str(info.value) and "fix:" in str(info.value)


def test_detections_file_without_required_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("video,frame,class,x1,y1,x2,y2\n")
    with pytest.raises(ConfigError, match="lacks sign_type"):
        read_detections(path)


def test_a_decoded_video_shorter_than_its_annotations_is_named(tree):
    """A truncated download would leave the later signs out of every score."""
    from rbx_detection.testing import write_mp4

    write_mp4(tree / "01_04_01_02_05.mp4", 2)  # its sequence has signs in frame 3
    with pytest.raises(ConfigError, match="decodes to 2 frames, but '01_04.txt' has signs up to frame 3") as info:
        CureTSD(tree)
    assert "key 'datasets.cure-tsd.root'" in str(info.value) and "300 frames" in str(info.value)


def test_a_folder_of_per_video_files_in_the_annotation_format_reads_like_the_csv(tmp_path):
    """The VIP Cup 2017 submission form: <video stem>.txt in the annotation line
    format, corners in either naming, each box enclosing its four corners, score 1."""
    from rbx_detection.detectors import DetectionsFileModel

    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "01_04_00_00_00.txt").write_text("frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury\n003_14_20_12_28_12_20_4_28_4\n003_06_1_1_5_1_1_5_5_5\n")
    (folder / "notes.md").write_text("ignored")
    dets = read_detections(folder)
    assert list(dets) == [("01_04_00_00_00", 3)]
    boxes, signs, scores = dets[("01_04_00_00_00", 3)]
    np.testing.assert_array_equal(boxes, [[20, 4, 28, 12], [1, 1, 5, 5]])
    assert signs.tolist() == [14, 6] and scores.tolist() == [1.0, 1.0]

    before = DetectionsFileModel(folder, "mine").fingerprint()
    (folder / "01_04_00_00_00.txt").write_text("003_06_1_1_5_1_1_5_5_5\n")
    assert DetectionsFileModel(folder, "mine").fingerprint() != before

    (folder / "01_04_00_0.txt").write_text("")
    with pytest.raises(ConfigError, match="01_04_00_0.txt") as info:
        read_detections(folder)
    assert "key 'file name'" in str(info.value)
    (folder / "01_04_00_0.txt").unlink()
    (folder / "01_04_00_00_00.txt").write_text("003_99_1_1_5_1_1_5_5_5\n")
    with pytest.raises(ConfigError, match="01_04_00_00_00.txt"):
        read_detections(folder)
    for file in folder.glob("*.txt"):
        file.unlink()
    with pytest.raises(ConfigError, match="no <video stem>.txt"):
        read_detections(folder)


def test_option_errors_name_the_datasets_yaml_key(tree):
    for key, value in (("frame_step", 0), ("split", "val"), ("sequence", "fake")):
        with pytest.raises(ConfigError) as info:
            build("signs", {"root": str(tree), key: value}, config_file="datasets.yaml")
        assert f"key 'datasets.signs.{key}'" in str(info.value)
