"""RobustBench's protocol as data (the shipped ImageNet list, the per-dataset
threat models) and the [0, 1] input plumbing: the model's normalisation
recovered from its transform, refused when it is not affine."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from rbx_attacks import inputs, protocol


def test_imagenet_list_is_robustbench_s_5000_ids():
    ids = protocol.sample_list(protocol.IMAGENET_IDS)
    assert len(ids) == len(set(ids)) == 5000
    assert all(re.fullmatch(r"n\d{8}/ILSVRC2012_val_\d{8}\.JPEG", i) for i in ids)
    assert ids[:2] == ["n09468604/ILSVRC2012_val_00015253.JPEG", "n02823750/ILSVRC2012_val_00020685.JPEG"]


def test_select_matches_listed_ids_in_dataset_order():
    listed = ["n1/a.JPEG", "n2/b.JPEG"]
    assert protocol.select(["n2/b.JPEG", "n1/c.JPEG", "val/n1/a.JPEG"], listed) == [0, 2]


def test_threat_models_per_dataset():
    budgets = {(name, norm): p.budget(norm).eps_label for name, p in protocol.PROTOCOLS.items() for norm in p.eps}
    assert budgets == {("cifar10", "Linf"): "8/255", ("cifar10", "L2"): "0.5", ("cifar100", "Linf"): "8/255",
                       ("imagenet", "Linf"): "4/255", ("embedded-digits", "Linf"): "0.1", ("embedded-digits", "L2"): "0.5"}
    assert protocol.PROTOCOLS["imagenet"].preprocessing == "Res256Crop224"
    assert protocol.PROTOCOLS["cifar100"].budget("L2") is None


def test_normalisation_is_recovered_from_the_transform():
    from torchvision import transforms as T

    from rbx_models.smallcnn import transform

    mean, std = inputs.normalisation(transform)
    assert torch.allclose(mean, torch.tensor([0.5])) and torch.allclose(std, torch.tensor([0.25]))
    rgb = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    mean, std = inputs.normalisation(rgb)
    assert torch.allclose(mean, torch.tensor([0.485, 0.456, 0.406]), atol=1e-6)
    assert torch.allclose(std, torch.tensor([0.229, 0.224, 0.225]), atol=1e-6)


def test_a_non_affine_transform_is_refused():
    from torchvision import transforms as T

    gamma = T.Compose([T.ToTensor(), T.Lambda(lambda t: t ** 2)])
    with pytest.raises(ValueError, match="not an affine map"):
        inputs.normalisation(gamma)


def test_the_wrapped_model_sees_what_the_transform_gives():
    from PIL import Image

    from rbx_models.smallcnn import SmallCNN, transform

    torch.manual_seed(0)
    net = SmallCNN(6).eval()
    mean, std = inputs.normalisation(transform)
    image = Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8), "L")
    unit = inputs.inverted_transform(transform, mean, std)(image)
    assert unit.min() >= 0 and unit.max() <= 1
    with torch.no_grad():
        assert torch.allclose(inputs.UnitInputModel(net, mean, std)(unit[None]), net(transform(image)[None]), atol=1e-5)


def test_cifar_reader_names_the_missing_file_and_reads_records(tmp_path):
    from rbx_attacks.cifar import build_cifar10, build_cifar100
    from robustbench_x.errors import ConfigError

    with pytest.raises(ConfigError, match=r"datasets\.yaml: key 'datasets\.mine\.root': .*test_batch\.bin does not exist\n  fix: extract cifar-10-binary\.tar\.gz"):
        build_cifar10("mine", {"root": str(tmp_path)}, str(tmp_path / "datasets.yaml"))
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    pixels = np.arange(3072) % 256
    records = [np.concatenate([[c, f], pixels]) for c, f in ((1, 42), (3, 7))]
    for name in ("test.bin", "train.bin"):
        (folder / name).write_bytes(np.asarray(records, dtype=np.uint8).tobytes())
    data = build_cifar100("c100", {"root": str(tmp_path)})
    image, label, sample_id = data.samples("id")[1]
    assert (label, sample_id, image.size) == (7, "id/00001", (32, 32))  # the fine label
    red = np.asarray(image)[..., 0]
    assert red[0, 1] == 1 and np.asarray(image)[0, 0, 1] == 1024 % 256  # red plane first, then green


def test_model_info_import_refuses_a_bad_file(tmp_path):
    from rbx_attacks.robustbench import import_model_info
    from robustbench_x.errors import UsageError

    folder = tmp_path / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    (folder / "X.json").write_text('{"clean_acc": "ninety"}')
    with pytest.raises(UsageError, match=r"X\.json: key 'clean_acc' is 'ninety'"):
        import_model_info(tmp_path, tmp_path / "store")
    with pytest.raises(UsageError, match="no model_info files"):
        import_model_info(tmp_path / "cifar10", tmp_path / "store")


def test_cifar_reader_refuses_a_label_outside_the_classes_and_a_torn_file_at_open(tmp_path):
    """A label byte of 12 in CIFAR-10 scored as a wrong prediction, silently; now the run
    stops before any work, naming the file and the record."""
    from rbx_attacks.cifar import build_cifar10
    from robustbench_x.errors import ConfigError

    pixels = np.zeros(3072, dtype=np.uint8)
    good = np.concatenate([[3], pixels]).astype(np.uint8).tobytes()
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(good)
    (tmp_path / "test_batch.bin").write_bytes(good + np.concatenate([[12], pixels]).astype(np.uint8).tobytes())
    config = str(tmp_path / "datasets.yaml")
    with pytest.raises(ConfigError, match=r"key 'datasets\.c10\.root': .*test_batch\.bin: record 1 has label 12, outside \[0, 10\)"):
        build_cifar10("c10", {"root": str(tmp_path)}, config)
    (tmp_path / "test_batch.bin").write_bytes(good)
    (tmp_path / "data_batch_3.bin").write_bytes(good + good + np.concatenate([[10], pixels]).astype(np.uint8).tobytes())
    with pytest.raises(ConfigError, match=r"data_batch_3\.bin: record 2 has label 10"):
        build_cifar10("c10", {"root": str(tmp_path)}, config)
    (tmp_path / "data_batch_3.bin").write_bytes(good[:-5])
    with pytest.raises(ConfigError, match=r"data_batch_3\.bin: 3068 bytes is not a whole number of 3073-byte CIFAR records\n  fix: re-extract"):
        build_cifar10("c10", {"root": str(tmp_path)}, config)
    (tmp_path / "data_batch_3.bin").write_bytes(good)
    assert len(build_cifar10("c10", {"root": str(tmp_path)}, config).samples("train")) == 5
