"""A torchvision detection model from a local checkpoint, offline: built with
weights=None, loaded with weights_only=True / safetensors, run on frames."""

from __future__ import annotations

import numpy as np
import pytest

from rbx_detection.cure_tsd import CureTSD
from rbx_detection.detectors import build_torchvision
from rbx_detection.testing import write_cure_tsd_tree
from robustbench_x.errors import ConfigError

ARCH = "ssdlite320_mobilenet_v3_large"


def test_a_local_checkpoint_detects_in_every_frame(tmp_path):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision.models.get_model(ARCH, weights=None, weights_backbone=None, num_classes=15)
    pth, st = tmp_path / "det.pth", tmp_path / "det.safetensors"
    torch.save({"model": net.state_dict()}, pth)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    dataset = CureTSD(write_cure_tsd_tree(tmp_path / "tree", video=False, train=False)["root"])
    outputs = []
    for path in (pth, st):
        model = build_torchvision(ARCH, {"checkpoint": str(path)})
        assert model.provides == {"detections"} and model.fingerprint().startswith(f"torchvision-{ARCH}-")
        frames = model.detect(dataset, "id")
        assert len(frames) == len(dataset.samples("id"))
        for boxes, signs, scores in frames:
            assert boxes.shape == (len(signs), 4) and scores.shape == signs.shape
            assert ((signs >= 1) & (signs <= 14)).all() and (boxes[:, 2] >= boxes[:, 0]).all()
        outputs.append(frames)
    for (b1, s1, c1), (b2, s2, c2) in zip(*outputs):  # the same weights through either file format
        np.testing.assert_allclose(b1, b2, atol=1e-4)
        assert s1.tolist() == s2.tolist()


def test_no_checkpoint_or_a_wrong_one_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs a local checkpoint"):
        build_torchvision(ARCH, {})
    with pytest.raises(ConfigError, match="not found"):
        build_torchvision(ARCH, {"checkpoint": str(tmp_path / "none.pth")})
    import torch

    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        build_torchvision(ARCH, {"checkpoint": str(tmp_path / "other.pth")})


def test_a_head_other_than_background_and_the_14_signs_is_refused(tmp_path):
    (tmp_path / "any.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match="num_classes 10") as info:
        build_torchvision(ARCH, {"checkpoint": str(tmp_path / "any.pth"), "num_classes": 10})
    assert "key 'num_classes'" in str(info.value)
