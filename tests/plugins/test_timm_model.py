"""timm models: local checkpoints (safetensors and weights_only torch files),
features that feed the classifier exactly, and an end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rbx_models.timm_model import build
from robustbench_x.api import load_state_dict
from robustbench_x.errors import ConfigError
from robustbench_x.results import read_results


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    root = tmp_path_factory.mktemp("ckpt")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "w.safetensors"))
    torch.save({"state_dict": net.state_dict()}, root / "w.pth")
    return root, net


def test_safetensors_and_pth_checkpoints_load_the_same_weights(checkpoint):
    root, net = checkpoint
    a = build("test_resnet", {"checkpoint": str(root / "w.safetensors"), "num_classes": 3}, log=lambda m: None)
    b = build("test_resnet", {"checkpoint": str(root / "w.pth"), "num_classes": 3}, log=lambda m: None)
    assert a.fingerprint() == b.fingerprint()
    for (k, v), (_, w) in zip(net.state_dict().items(), a.net.state_dict().items()):
        assert torch.equal(v, w), k


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    # Any non-tensor object stands in for a malicious payload: weights_only refuses to unpickle it.
    torch.save({"state_dict": argparse.Namespace(payload=1)}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        load_state_dict(tmp_path / "evil.pth")


def test_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        build("test_resnet", {"checkpoint": str(tmp_path / "nope.safetensors")})


def test_features_feed_the_linear_head_exactly(checkpoint):
    root, _ = checkpoint
    model = build("test_resnet", {"checkpoint": str(root / "w.safetensors"), "num_classes": 3}, log=lambda m: None)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    x = model.transform()(image)[None]
    logits, feats = model.forward(x)
    W, b = model.linear_head()
    np.testing.assert_allclose(feats.numpy() @ W.T + b, logits.numpy(), rtol=1e-4, atol=1e-4)
    assert {"linear_head", "features", "input_grad"} <= model.provides


def test_timm_model_from_config_runs_the_ood_suite(checkpoint, tmp_path, cli):
    root, _ = checkpoint
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    # ViM's principal space has D = 48 dimensions here: it needs more train images than that (60), or its residual is 0
    for split, n in (("train", 20), ("val", 4), ("test", 4)):
        for c in ("a", "b", "c"):
            (data / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(data / split / c / f"{i}.png")
    (data / "far").mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(data / "far" / f"{i}.jpg")
    config = tmp_path / "datasets.yaml"
    config.write_text(
        f"datasets:\n  toy:\n    type: imagefolder\n    root: {data}\n    train: train\n    val: val\n    test: test\n    label_space: toy3\n    ood:\n      far: data/far\n"
        f"models:\n  tiny:\n    type: timm\n    arch: test_resnet\n    checkpoint: {root / 'w.safetensors'}\n    num_classes: 3\n    label_space: toy3\n"
    )
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy",
                 "--methods", "msp,energy,mahalanobis,vim", "--out", str(tmp_path / "o"), "--format", "json")
    frame = read_results(tmp_path / "o")
    assert result.code == 0, (result, frame[frame.status != "ok"][["method", "error"]].to_dict("records"))
    assert set(frame["method"]) == {"msp", "energy", "mahalanobis", "vim"}
