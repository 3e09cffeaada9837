"""rbx_vlm through the CLI: the ``ood`` and ``dg`` suites on a tiny open_clip model
saved to a local checkpoint and tiny ImageNet-layout trees; the VLM methods
skipped, with the hint, on the embedded default; specs importable without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rbx_vlm.testing import make_imagenet_tree, save_tiny_clip, write_config
from robustbench_x.results import read_results, read_scores

VLM = ("mcm", "gl-mcm", "zeroshot-msp", "coop", "gallop")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm-e2e")
    config, weights = save_tiny_clip(root / "model")
    tree = make_imagenet_tree(root / "data", train=6, val=3, ood=4)
    return write_config(root / "datasets.yaml", tree, config, weights)


def _run(cli, suite, config, out, methods):
    result = cli("--quiet", "run", "--suite", suite, "--config", str(config), "--models", "tiny-clip", "--datasets", "tiny-imagenet",
                 "--methods", ",".join(methods), "--out", str(out), "--format", "json")  # fmt: skip
    frame = read_results(out)
    assert result.code == 0, (result, frame[frame.status != "ok"][["method", "error"]].to_dict("records"))
    return frame


def test_ood_suite_runs_every_vlm_method(cli, setup, tmp_path):
    frame = _run(cli, "ood", setup, tmp_path / "ood", [*VLM, "msp"])
    assert set(frame["method"]) == {*VLM, "msp"} and set(frame["status"]) == {"ok"}
    auroc = frame[frame.metric == "auroc"]
    assert set(auroc["subset"]) == {"ood/iNaturalist", "ood/Textures"}
    assert auroc.groupby("method").size().to_dict() == {m: 2 for m in [*VLM, "msp"]}
    # On CLIP the zero-shot MSP is the post-hoc MSP of the cached logits τ·cos.
    scores = {m: read_scores(tmp_path / "ood", "ood", "tiny-clip", "tiny-imagenet", m) for m in ("msp", "zeroshot-msp", "gallop")}
    np.testing.assert_allclose(scores["msp"]["score"], scores["zeroshot-msp"]["score"], rtol=1e-5)
    assert np.isfinite(scores["gallop"]["score"]).all()
    params = json.loads(frame[frame.method == "gallop"]["params"].iloc[0])
    assert params["topk"] == [5, 10, 15, 20] and params["weight_decay"] == 0.01 and params["budget"] == "cpu"


def test_dg_suite_reports_accuracy_on_shifted_imagenets(cli, setup, tmp_path):
    frame = _run(cli, "dg", setup, tmp_path / "dg", [*VLM, "msp"])
    assert set(frame["status"]) == {"ok"} and set(frame["metric"]) == {"accuracy"}
    assert set(frame["subset"]) == {"id", "dg/imagenet-v2", "dg/imagenet-sketch", "dg/imagenet-a", "dg/imagenet-r"}
    assert frame.groupby("method").size().to_dict() == {m: 5 for m in [*VLM, "msp"]}
    # ImageNet-A/-R: no method predicts a class outside the official 200 (A: only stingray, index 2,
    # is among them; R: goldfish and stingray, not tench, index 0).
    for method in [*VLM, "msp"]:
        scores = read_scores(tmp_path / "dg", "dg", "tiny-clip", "tiny-imagenet", method)
        a, r = scores[scores.subset == "dg/imagenet-a"], scores[scores.subset == "dg/imagenet-r"]
        assert len(a) == 3 and set(a["prediction"]) == {2}, method
        assert len(r) == 6 and not (r["prediction"] == 0).any(), method
    # the partial A / R trees are flagged in the results: a job diagnostic naming the missing classes
    for diagnostics in frame["diagnostics"]:
        recorded = json.loads(diagnostics)
        assert "199 of its 200 classes have no images" in recorded["incomplete:dg/imagenet-a"]
        assert "198 of its 200 classes have no images" in recorded["incomplete:dg/imagenet-r"]


def test_vlm_methods_are_skipped_with_the_hint_on_the_embedded_default(cli, tmp_path):
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "gallop,coop,msp", "--out", str(tmp_path / "o"), "--format", "json")
    frame = read_results(tmp_path / "o")
    assert result.code == 0, result
    learned = frame[frame.method.isin(["gallop", "coop"])]
    assert set(learned["status"]) == {"skipped"} and len(learned) == 2
    for error in learned["error"]:
        assert "requires vlm" in error and "openclip:ViT-B-16/openai" in error and "type: openclip" in error
    assert set(frame[frame.method == "msp"]["status"]) == {"ok"}


def test_listing_imports_no_torch():
    code = (
        "import sys, rbx_vlm\n"
        "names = [s.name for s in rbx_vlm.rbx_methods()] + [s.name for s in rbx_vlm.rbx_datasets()]\n"
        "names += [s.name for s in rbx_vlm.rbx_models()] + [s.name for s in rbx_vlm.rbx_suites()]\n"
        "print(','.join(names)); print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "mcm,gl-mcm,zeroshot-msp,coop,gallop,imagenet,imagenet-v2,imagenet-sketch,imagenet-a,imagenet-r,openclip,dg"
    assert out[1] == "False False"


def test_specs_declare_requirements_and_outputs():
    import rbx_vlm

    methods = {s.name: s for s in rbx_vlm.rbx_methods()}
    assert methods["gallop"].requires == {"vlm", "train_split"} and methods["coop"].requires == {"vlm", "train_split"}
    assert methods["mcm"].requires == {"vlm"} and methods["gl-mcm"].requires == {"vlm"}
    assert all("prediction" in s.outputs and "score" in s.outputs for s in methods.values())
    (model,) = rbx_vlm.rbx_models()
    assert model.family and model.label_space is None and model.provides == {"vlm", "logits", "features", "embeddings"}
    (dg,) = rbx_vlm.rbx_suites()
    assert (dg.method_output, dg.subsets, dg.metrics, dg.headline) == ("prediction", ("id", "dg/*"), ("accuracy",), ("accuracy",))
