"""Segmentation models: torchvision's networks from a local checkpoint (never a download),
clear errors naming the option, and the built-in segmenter's shipped weights."""

from __future__ import annotations

import pytest
import torch

from rbx_segmentation.models import build_module, build_torchvision
from rbx_segmentation.scenes import build as build_scenes
from robustbench_x.errors import ConfigError


def test_torchvision_lraspp_from_a_local_safetensors_checkpoint(tmp_path):
    import torchvision.models.segmentation as tvs
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    path = tmp_path / "lraspp.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = build_torchvision("lraspp_mobilenet_v3_large", {"checkpoint": str(path)}, dataset=build_scenes())
    assert model.num_classes == 4 and {"dense_logits", "feature_maps"} <= model.provides and "logits" not in model.provides
    image = build_scenes().samples("test")[0][0]
    x = model.transform()(image)[None]
    logits, features = model.forward(x)
    assert logits.shape == (1, 4, 64, 64) and features.ndim == 2
    with torch.no_grad():
        torch.testing.assert_close(logits, reference(x)["out"])


def test_torchvision_without_or_with_a_missing_checkpoint_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint") as missing:
        build_torchvision("deeplabv3_resnet50", {}, dataset=build_scenes())
    assert "nothing is downloaded" in str(missing.value)
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        build_torchvision("fcn_resnet50", {"checkpoint": str(tmp_path / "absent.pth")}, dataset=build_scenes())
    with pytest.raises(ConfigError, match="unknown torchvision segmentation architecture"):
        build_torchvision("unet", {"checkpoint": "x"})
    with pytest.raises(ConfigError, match="package.module:attr"):
        build_module(None, {})


def test_the_manifest_keys_the_weights_the_runtime_would_train(tmp_path, monkeypatch):
    import json
    import shutil

    import rbx_segmentation.models as models
    from rbx_segmentation.models import MANIFEST, load_shipped, weights_key

    dataset = build_scenes()
    entries = json.loads(MANIFEST.read_text())["weights"]
    assert {(e["kind"], e["seed"]) for e in entries} >= {("plain", 0), ("plain", 4000), ("batchensemble", 0), ("lpbnn", 0)}
    # the manifest's keys are the ones the runtime computes for embedded-scenes' train split
    plain0 = next(e for e in entries if e["kind"] == "plain" and e["seed"] == 0)
    assert plain0["key"] == weights_key(dataset.fingerprint("train"), 0, len(dataset.classes), "plain", 1)
    # weight files are generated, not tracked: a manifest without its files loads nothing, and the recipe trains
    shutil.copy(MANIFEST, tmp_path / "manifest.json")
    monkeypatch.setattr(models, "MANIFEST", tmp_path / "manifest.json")
    assert load_shipped(plain0["key"]) is None


def test_a_train_split_smaller_than_one_batch_is_an_error_not_an_untrained_segmenter(tmp_path):
    """With fewer images than one batch no optimizer step ran: the "segmenter" stayed at its
    initialisation and torch warned about lr_scheduler.step() before optimizer.step()."""
    import warnings

    import numpy as np

    from rbx_segmentation.models import _train
    from rbx_segmentation.net import RECIPE, train

    images, masks = np.zeros((3, 16, 16, 3), np.uint8), np.zeros((3, 16, 16), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"3 training image\(s\) make no whole batch of 8"):
            train(images, masks, 2, seed=0, epochs=1)

    class Tiny:
        name, classes = "streets", ["road", "car"]

        def samples(self, subset):
            assert subset == "train"
            return [(images[0], masks[0], "a")] * (RECIPE["batch_size"] - 1)

    with pytest.raises(ValueError, match=r"dataset 'streets': its train split has 7 labelled image\(s\), fewer than one batch .*fix: give a train split of at least 8"):
        _train(Tiny(), 0, "plain", 1)
