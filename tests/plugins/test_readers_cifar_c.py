"""CIFAR-10/100-C reader on real .npy files in the distributed format (docs/datasets.md#cifar-c)."""

import pickle

import numpy as np
import pytest

from rbx_robustness.readers import DatasetLayoutError, UndecodableFileError
from rbx_robustness.readers.cifar_c import CifarC, build


def test_full_size_file_severity_major(tmp_path):
    """A real-size (50000, 32, 32, 3) file (sparse on disk) read with the default sizes."""
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    test_labels = (np.arange(10000) % 10).astype(np.uint8)
    np.save(root / "labels.npy", np.tile(test_labels, 5))
    arr = np.lib.format.open_memmap(root / "fog.npy", mode="w+", dtype=np.uint8, shape=(50000, 32, 32, 3))
    for s in range(1, 6):
        arr[10000 * (s - 1) + 7] = 10 * s  # test image 7 at severity s
    arr[10000 * 5 - 1] = 255  # the last test image at severity 5
    arr.flush()
    del arr

    ds = build(options={"root": str(root)})
    assert ds.subsets() == [f"c/fog/{s}" for s in range(1, 6)]
    assert ds.classes[:2] == ["airplane", "automobile"] and len(ds.classes) == 10
    assert isinstance(ds._arrays["fog"].array, np.memmap)
    for s in range(1, 6):
        src = ds.samples(f"c/fog/{s}")
        assert len(src) == 10000
        img, label, sid = src[7]
        assert (label, sid, img.size, img.mode) == (7, f"fog/{s}/7", (32, 32), "RGB")
        assert np.all(np.asarray(img) == 10 * s)
        assert np.all(np.asarray(src[6][0]) == 0)
    img, label, sid = ds.samples("c/fog/5")[-1]
    assert (np.asarray(img).min(), label, sid) == (255, 9999 % 10, "fog/5/9999")
    fp = {s: ds.fingerprint(f"c/fog/{s}") for s in range(1, 6)}
    assert len(set(fp.values())) == 5
    # a sample source pickles without the array (DataLoader workers re-open the file)
    assert len(pickle.dumps(ds.samples("c/fog/1"))) < 200_000


def small(root, n=4, corruptions=("gaussian_noise", "spatter"), labels=None):
    root.mkdir(parents=True, exist_ok=True)
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)[:n] if labels is None else labels
    np.save(root / "labels.npy", np.tile(labels, 5))
    for k, c in enumerate(corruptions):
        data = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
        data[:, 0, 0, 0] = np.arange(5 * n)  # row index in pixel (0, 0, R)
        data[:, 0, 0, 1] = k
        np.save(root / f"{c}.npy", data)
    return root


def test_rows_map_to_severity_and_test_index(tmp_path):
    ds = CifarC(small(tmp_path / "c"), n_per_severity=4)
    assert ds.subsets() == [f"c/{c}/{s}" for c in ("gaussian_noise", "spatter") for s in range(1, 6)]
    src = ds.samples("c/spatter/3")
    pixels = np.asarray(src[2][0])
    assert pixels[0, 0, 0] == 10  # row 4·(3−1) + 2
    assert pixels[0, 0, 1] == 1  # from spatter.npy
    assert [src[i][1] for i in range(4)] == [3, 1, 4, 1]
    assert [src[i][2] for i in range(4)] == [f"spatter/3/{i}" for i in range(4)]
    with pytest.raises(IndexError):
        src[4]


def test_cifar100_classes_inferred_from_labels(tmp_path):
    ds = CifarC(small(tmp_path / "c", labels=np.array([0, 99, 50, 12], np.uint8)), n_per_severity=4)
    assert len(ds.classes) == 100 and ds.classes[99] == "worm"
    with pytest.raises(DatasetLayoutError, match=r"outside \[0, 10\).*\n.*num_classes: 100"):
        CifarC(tmp_path / "c", n_per_severity=4, num_classes=10)


def test_missing_root_and_nested_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"CIFAR-C root '.*nope' does not exist(.|\n)*Zenodo 2535967"):
        CifarC(tmp_path / "nope")
    small(tmp_path / "CIFAR-10-C")
    with pytest.raises(DatasetLayoutError, match=r"labels.npy' does not exist\n.*fix: set `root:` to '.*CIFAR-10-C'"):
        CifarC(tmp_path, n_per_severity=4)


def test_shape_mismatch_names_the_file(tmp_path):
    root = small(tmp_path / "c")
    np.save(root / "spatter.npy", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"spatter.npy' has dtype uint8 and shape \(20, 32, 32\); expected uint8 \(20, 32, 32, 3\)"):
        CifarC(root, n_per_severity=4)
    # by default the images per severity are a fifth of labels.npy (a build-c --preset cifar tree)
    assert len(CifarC(small(tmp_path / "d")).samples("c/spatter/5")) == 4
    # ... and a corruption file of another length is named
    root = small(tmp_path / "e")
    np.save(root / "spatter.npy", np.zeros((50000, 32, 32, 3), np.uint8)[:25])
    with pytest.raises(DatasetLayoutError, match=r"spatter.npy' has dtype uint8 and shape \(25, 32, 32, 3\); expected uint8 \(20, 32, 32, 3\)"):
        CifarC(root)


def test_labels_must_repeat_five_times(tmp_path):
    root = small(tmp_path / "c")
    np.save(root / "labels.npy", np.arange(20, dtype=np.uint8) % 10)
    with pytest.raises(DatasetLayoutError, match="not the test labels repeated 5 times"):
        CifarC(root, n_per_severity=4)


def test_unknown_corruption_file_suggests(tmp_path):
    root = small(tmp_path / "c", corruptions=("gaussian_noise", "jpeg_compresion"))
    with pytest.raises(DatasetLayoutError, match="Did you mean 'jpeg_compression'"):
        CifarC(root, n_per_severity=4)
    ds = CifarC(root, n_per_severity=4, corruptions=["gaussian_noise"])  # an explicit selection ignores it
    assert ds.subsets()[0] == "c/gaussian_noise/1"
    with pytest.raises(DatasetLayoutError, match="Did you mean 'saturate'"):
        CifarC(root, n_per_severity=4, corruptions=["saturated"])


def test_pickled_or_damaged_npy_names_the_file(tmp_path):
    root = small(tmp_path / "c")
    np.save(root / "spatter.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(UndecodableFileError, match=r"cannot decode .*spatter.npy"):
        CifarC(root, n_per_severity=4)
    (root / "spatter.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UndecodableFileError, match=r"cannot decode .*spatter.npy"):
        CifarC(root, n_per_severity=4)


def test_a_cifar10_type_refuses_a_label_of_cifar100_naming_the_file(tmp_path):
    """`type: cifar-c` with a label >= 10 became 100 classes with CIFAR-100 names while
    label_space stayed cifar10; now it stops before any work, naming labels.npy."""
    from rbx_robustness.datasets import build_cifar100_c, build_cifar_c

    root = small(tmp_path / "c", labels=np.array([0, 12, 5, 1], np.uint8))
    config = str(tmp_path / "datasets.yaml")
    with pytest.raises(DatasetLayoutError, match=r"labels\.npy' holds labels in \[0, 12\], outside \[0, 10\)(.|\n)*cifar100-c") as info:
        build_cifar_c("c10c", {"root": "c"}, config)
    assert info.value.key == "root"
    assert len(build_cifar100_c("c100c", {"root": "c"}, config).classes) == 100
    assert len(build_cifar_c("ok", {"root": str(small(tmp_path / "ok"))}, config).classes) == 10
