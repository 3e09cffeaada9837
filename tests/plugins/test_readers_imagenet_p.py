"""ImageNet-P reader on real MP4 sequences written with PyAV (docs/datasets.md#imagenet-p)."""

import warnings

import numpy as np
import pytest

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.definitions import flip_probability, is_noise

av = pytest.importorskip("av", reason="PyAV (pip install av) is needed to write and read ImageNet-P .mp4 sequences")

from rbx_robustness.readers.imagenet_p import ImageNetP, build, decode_video, sequence_length  # noqa: E402

CODEC = next((c for c in ("libx264", "mpeg4") if c in av.codecs_available), None)
pytestmark = pytest.mark.skipif(CODEC is None, reason="this PyAV build has neither the libx264 nor the mpeg4 encoder")

WNIDS = ["n01440764", "n01443537"]


def write_mp4(path, n_frames, offset=0):
    """Frame j is a flat grey of value offset + 6·j (decodes to within a few levels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODEC, rate=1)  # ImageNet-P: 1 frame per second
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for j in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), offset + 6 * j, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def grey(img):
    return float(np.asarray(img, dtype=np.float64).mean())


@pytest.fixture
def root(tmp_path):
    write_mp4(tmp_path / "brightness" / WNIDS[0] / "ILSVRC2012_val_00000293.mp4", 31)
    write_mp4(tmp_path / "brightness" / WNIDS[1] / "ILSVRC2012_val_00000010.mp4", 31, offset=10)
    write_mp4(tmp_path / "translate" / WNIDS[1] / "ILSVRC2012_val_00000010.mp4", 41)
    write_mp4(tmp_path / "gaussian_noise" / WNIDS[0] / "ILSVRC2012_val_00000293.mp4", 31)
    return tmp_path


def make(root, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 wnids, not 1000
        return ImageNetP(root, **kwargs)


def test_sequence_lengths():
    assert sequence_length("translate") == 41
    assert all(sequence_length(p) == 31 for p in ("brightness", "gaussian_noise", "gaussian_noise_2", "shear"))


def test_sequences_api(root):
    with pytest.warns(UserWarning, match="2 wnid folders instead of 1000"):
        ds = ImageNetP(root)
    assert ds.perturbations == ["gaussian_noise", "brightness", "translate"]  # IMAGENET_P_TEST order
    assert ds.subsets() == ["p/gaussian_noise", "p/brightness", "p/translate"]
    seqs = list(ds.sequences("brightness"))
    assert [(label, sid) for _, label, sid in seqs] == [
        (0, "brightness/n01440764/ILSVRC2012_val_00000293"),
        (1, "brightness/n01443537/ILSVRC2012_val_00000010"),
    ]
    frames = seqs[1][0]
    assert len(frames) == 31 and frames[0].mode == "RGB" and frames[0].size == (32, 32)
    # frames come back in stream order: frame j was encoded as grey 10 + 6·j (lossy, within a few levels)
    assert all(abs(grey(f) - (10 + 6 * j)) < 4 for j, f in enumerate(frames))
    (translate,) = ds.sequences("translate")
    assert len(translate[0]) == 41


def test_frames_as_dataset_samples(root):
    ds = make(root, classes=WNIDS)
    src = ds.samples("p/brightness")
    assert len(src) == 2 * 31
    img, label, sid = src[31 + 4]
    assert (label, sid) == (1, "brightness/n01443537/ILSVRC2012_val_00000010#4")
    assert abs(grey(img) - (10 + 24)) < 4
    assert src[0][2] == "brightness/n01440764/ILSVRC2012_val_00000293#0"
    np.testing.assert_array_equal(src.labels, [0] * 31 + [1] * 31)
    tsrc = ds.samples("p/translate")
    assert len(tsrc) == 41 and tsrc[40][2].endswith("#40")
    assert ds.fingerprint("p/brightness") != ds.fingerprint("p/gaussian_noise")

    # frames reshape sequence-major to (m, T) for the metrics: a "model" predicting the grey bucket
    preds = np.array([round(grey(src[i][0]) / 60) for i in range(len(src))]).reshape(2, 31)
    assert not is_noise("brightness")
    fp = flip_probability(preds, noise=False)
    assert 0 < fp < 0.2


def test_build_with_selection(root):
    ds = build(options={"root": str(root), "perturbations": ["translate"], "classes": WNIDS})
    assert ds.subsets() == ["p/translate"]
    with pytest.raises(DatasetLayoutError, match="Did you mean 'translate'"):
        make(root, perturbations=["tranlsate"])


def test_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"ImageNet-P root '.*nope' does not exist(.|\n)*Zenodo record 3565846"):
        ImageNetP(tmp_path / "nope")


def test_unknown_perturbation_folder_suggests(root):
    (root / "brightnes").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"brightnes' is not an ImageNet-P perturbation folder. Did you mean 'brightness'"):
        make(root)


def test_undecodable_video_names_the_file(root):
    bad = root / "brightness" / WNIDS[0] / "ILSVRC2012_val_00000293.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    ds = make(root)
    with pytest.raises(UndecodableFileError) as info:
        ds.samples("p/brightness")[0]
    assert str(bad) in str(info.value)
    assert ds.samples("p/brightness")[31][2].endswith("#0")  # the other video still decodes


def test_wrong_frame_count_names_the_file(root):
    short = root / "translate" / WNIDS[1] / "ILSVRC2012_val_00000010.mp4"
    write_mp4(short, 31)  # translate needs 41
    with pytest.raises(UndecodableFileError, match=r"ILSVRC2012_val_00000010.mp4: decoded 31 frames, expected 41"):
        next(make(root).sequences("translate"))
    assert len(decode_video(short)) == 31
