"""robustbench_x.api.load_state_dict: the one reader of users' checkpoints
(timm, OpenCLIP, torchvision segmenters and detectors all go through it)."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file

from robustbench_x.api import load_state_dict
from robustbench_x.errors import ConfigError


def test_safetensors_and_wrapped_pickles_read_the_same(tmp_path):
    weights = {"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.zeros(2)}
    save_file(weights, tmp_path / "w.safetensors")
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        state = load_state_dict(tmp_path / name)
        assert set(state) == set(weights) and all(torch.equal(state[k], weights[k]) for k in weights)


def test_a_pickled_object_is_refused_with_the_file_and_key(tmp_path):
    torch.save({"state_dict": argparse.Namespace(payload=1)}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError, match="weights_only") as info:
        load_state_dict(tmp_path / "evil.pth", key="models.mine.checkpoint")
    assert "evil.pth" in str(info.value) and "models.mine.checkpoint" in str(info.value)


def test_something_that_is_not_a_state_dict_is_named(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="expected a state dict"):
        load_state_dict(tmp_path / "list.pth")
