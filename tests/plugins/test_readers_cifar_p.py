"""CIFAR-10/100-P reader on real .npy sequence files (docs/datasets.md#cifar-p)."""

import numpy as np
import pytest

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.readers.cifar_p import CifarP, build
from rbx_robustness.definitions import flip_probability


def sequences(n, t, tag):
    data = np.zeros((n, t, 32, 32, 3), dtype=np.uint8)
    data[..., 0, 0, 0] = np.arange(n)[:, None]  # sequence index
    data[..., 0, 0, 1] = np.arange(t)[None, :]  # frame index
    data[..., 0, 0, 2] = tag
    return data


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "CIFAR-10-P"
    r.mkdir()
    np.save(r / "gaussian_noise.npy", sequences(3, 31, 1))
    np.save(r / "translate.npy", sequences(3, 16, 2))  # make_cifar_p.py: 16 translate frames
    return r


def test_full_size_gaussian_noise(tmp_path):
    """Default sizes: (10000, 31, 32, 32, 3), sparse on disk."""
    arr = np.lib.format.open_memmap(tmp_path / "gaussian_noise.npy", mode="w+", dtype=np.uint8, shape=(10000, 31, 32, 32, 3))
    arr[9999, 30] = 200
    arr.flush()
    del arr
    ds = CifarP(tmp_path)
    src = ds.samples("p/gaussian_noise")
    assert len(src) == 10000 * 31
    img, label, sid = src[len(src) - 1]
    assert (np.asarray(img).min(), label, sid) == (200, -1, "gaussian_noise/9999#30")
    assert isinstance(ds.sequence_source("gaussian_noise")._array.array, np.memmap)
    assert len(ds.fingerprint("p/gaussian_noise")) == 16


def test_sequence_api_and_frames(root):
    ds = CifarP(root, n_sequences=3)
    assert ds.perturbations == ["gaussian_noise", "translate"]
    assert ds.sequence_length("gaussian_noise") == 31 and ds.sequence_length("translate") == 16
    seqs = list(ds.sequences("translate"))
    assert [(lab, sid) for _, lab, sid in seqs] == [(-1, "translate/0"), (-1, "translate/1"), (-1, "translate/2")]
    frames = seqs[2][0]
    assert len(frames) == 16 and frames[0].size == (32, 32) and frames[0].mode == "RGB"
    assert [tuple(np.asarray(f)[0, 0]) for f in frames[:2]] == [(2, 0, 2), (2, 1, 2)]

    src = ds.samples("p/gaussian_noise")
    assert len(src) == 3 * 31
    img, label, sid = src[31 + 5]
    assert tuple(np.asarray(img)[0, 0]) == (1, 5, 1) and sid == "gaussian_noise/1#5" and label == -1
    preds = np.array([np.asarray(src[i][0])[0, 0, 1] // 10 for i in range(len(src))]).reshape(3, 31)
    # noise: frame j vs frame 0 differs for j >= 10, i.e. 21 of 30 comparisons per sequence
    assert flip_probability(preds, noise=True) == pytest.approx(21 / 30)


def test_labels_from_cifar_c_labels_file(root, tmp_path):
    np.save(tmp_path / "labels.npy", np.tile(np.array([7, 0, 3], np.uint8), 5))
    ds = CifarP(root, labels=tmp_path / "labels.npy", n_sequences=3)  # a CIFAR-C labels.npy: first 3 used
    assert [lab for _, lab, _ in ds.sequences("translate")] == [7, 0, 3]
    assert ds.samples("p/translate")[16][1] == 0
    np.save(tmp_path / "short.npy", np.array([1, 2, 99], np.int64))
    assert len(CifarP(root, labels=tmp_path / "short.npy", n_sequences=3).classes) == 100
    np.save(tmp_path / "bad.npy", np.arange(15, dtype=np.uint8))
    with pytest.raises(DatasetLayoutError, match="not the test labels repeated 5 times"):
        CifarP(root, labels=tmp_path / "bad.npy", n_sequences=3)


def test_shape_mismatch_names_the_file(root):
    np.save(root / "translate.npy", np.zeros((3, 16, 32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"translate.npy' has dtype uint8 and shape \(3, 16, 32, 32\); expected uint8 \(3, T, 32, 32, 3\)"):
        CifarP(root, n_sequences=3)
    with pytest.raises(DatasetLayoutError, match=r"gaussian_noise.npy' .* expected uint8 \(10000, T, 32, 32, 3\)"):
        CifarP(root, perturbations=["gaussian_noise"])  # default: the 10,000 test images


def test_missing_root_unknown_file_and_damaged_file(root, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"CIFAR-P root '.*nope' does not exist"):
        build(options={"root": str(tmp_path / "nope")})
    np.save(root / "rotation.npy", sequences(3, 31, 0))
    with pytest.raises(DatasetLayoutError, match="Did you mean 'rotate'"):
        CifarP(root, n_sequences=3)
    (root / "rotation.npy").unlink()
    (root / "translate.npy").write_bytes(b"not an npy file")
    with pytest.raises(UndecodableFileError, match=r"cannot decode .*translate.npy"):
        CifarP(root, n_sequences=3)


def test_a_cifar10_type_refuses_a_label_of_cifar100_naming_the_file(root, tmp_path):
    from rbx_robustness.datasets import build_cifar100_p, build_cifar_p

    np.save(tmp_path / "labels.npy", np.arange(10000) % 100)  # the factory reads the 10,000-image test set
    config = str(tmp_path / "datasets.yaml")
    with pytest.raises(DatasetLayoutError, match=r"labels\.npy' holds labels up to 99, outside \[0, 10\)(.|\n)*cifar100-p") as info:
        build_cifar_p("c10p", {"root": str(root), "labels": "labels.npy"}, config)
    assert info.value.key == "labels"
    with pytest.raises(DatasetLayoutError, match=r"gaussian_noise\.npy.*expected uint8 \(10000"):  # past the labels: the tiny files are not 10,000 sequences
        build_cifar100_p("c100p", {"root": str(root), "labels": "labels.npy"}, config)
