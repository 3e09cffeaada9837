"""Fixtures shared by the method plugins' tests."""

from __future__ import annotations

import os

import pytest
import torch

from robustbench_x.testing import ModelContext


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small fits on one thread: much faster on a busy 2-core machine, and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory):
    """The built-in CNN on the embedded digits (its shipped weights), with a cache of the plugin tests."""
    cache = tmp_path_factory.getbasetemp() / "rbx-heat-gradients-cache"
    previous = os.environ.get("RBX_CACHE_DIR")
    os.environ["RBX_CACHE_DIR"] = str(cache)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from rbx_datasets.embedded import build as build_dataset
        from rbx_models.smallcnn import build as build_model

        dataset = build_dataset()
        model = build_model(dataset=dataset, seed=0, log=lambda message: None)
        yield model, dataset
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("RBX_CACHE_DIR", None)
        else:
            os.environ["RBX_CACHE_DIR"] = previous


@pytest.fixture(scope="module")
def ctx(embedded_model):
    model, dataset = embedded_model
    return ModelContext(model, dataset, seed=0)
