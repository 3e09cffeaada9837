"""A model's input files key its results by content: a checkpoint replaced at the
same path re-runs its jobs, one moved unchanged does not; relative paths are
relative to datasets.yaml; a missing file and a key the family would ignore
stop the run before any work; the digest memo heals; timm ``members:`` make an
ensemble."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from robustbench_x.config import load_config
from robustbench_x.digests import file_digest
from robustbench_x.errors import ConfigError
from robustbench_x.plan import make_plan
from robustbench_x.registry import get_registry
from robustbench_x.results import read_results
from robustbench_x.testing.checks import write_imagefolder


def _save(net, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _net(seed: int):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_resnet", pretrained=False, num_classes=3)


@pytest.fixture
def toy(tmp_path):
    """An imagefolder dataset, a timm checkpoint in ``weights/`` and a datasets.yaml naming it relatively."""
    options = write_imagefolder(tmp_path / "data", classes=("a", "b", "c"), ood=("far",), size=16)
    (tmp_path / "weights").mkdir()
    _save(_net(0), tmp_path / "weights" / "w.safetensors")
    config = tmp_path / "datasets.yaml"
    config.write_text(
        "datasets:\n  toy:\n    type: imagefolder\n    root: data\n    train: train\n    val: val\n    test: test\n    label_space: toy3\n"
        f"    ood:\n      far: {options['ood']['far']}\n"
        "models:\n  tiny:\n    type: timm\n    arch: test_resnet\n    checkpoint: weights/w.safetensors\n    num_classes: 3\n    label_space: toy3\n"
    )
    return tmp_path, config


def _plan(config, methods=("msp",)):
    registry = get_registry()
    return make_plan(registry, load_config(config, registry), "ood", models=["tiny"], datasets=["toy"], methods=list(methods), seeds=[0])


def test_relative_checkpoint_is_relative_to_datasets_yaml(toy, monkeypatch):
    root, config = toy
    monkeypatch.chdir(root.parent)  # not the yaml's folder: the cwd must not matter
    [job] = _plan(config).jobs
    assert job.model.options["checkpoint"] == str(root / "weights" / "w.safetensors")


def test_the_job_key_follows_the_checkpoint_content_not_its_path(toy):
    root, config = toy
    before = _plan(config).jobs[0].config_hash
    shutil.move(root / "weights", root / "moved")
    config.write_text(config.read_text().replace("weights/w.safetensors", "moved/w.safetensors"))
    assert _plan(config).jobs[0].config_hash == before  # moved, unchanged: nothing to re-run
    _save(_net(1), root / "moved" / "w.safetensors")
    assert _plan(config).jobs[0].config_hash != before  # retrained at the same path: a new job


def test_a_replaced_checkpoint_is_not_already_done(toy, cli):
    root, config = toy
    args = ("--quiet", "run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy",
            "--methods", "msp", "--out", str(root / "o"), "--format", "json")
    assert cli(*args).code == 0
    again = cli(*args)
    assert json.loads(again.out)["cached"] == 1
    _save(_net(1), root / "weights" / "w.safetensors")
    third = cli(*args)
    assert third.code == 0 and json.loads(third.out)["cached"] == 0 and json.loads(third.out)["ok"] == 1
    frame = read_results(root / "o")
    assert frame["model_fingerprint"].nunique() == 2  # both runs' rows are kept; the leaderboard shows the newest


def test_a_missing_checkpoint_stops_the_run_before_any_work(toy, cli):
    root, config = toy
    (root / "weights" / "w.safetensors").unlink()
    result = cli("run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy", "--methods", "msp", "--out", str(root / "o"))
    assert result.code == 2
    text = result.out + result.err
    assert "models.tiny.checkpoint" in text and str(root / "weights" / "w.safetensors") in text and "relative to datasets.yaml" in text
    assert not (root / "o" / "results").exists()


def test_the_digest_memo_is_used_checked_and_healed(tmp_path):
    import robustbench_x.digests as digests

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = file_digest(path)
    def entry(memo):  # the session's cache is shared: other tests leave memos of their own (some deliberately damaged)
        try:
            return json.loads(memo.read_text())
        except ValueError:
            return {}

    [memo] = [m for m in (digests.cache_root() / "digests").glob("*.json") if entry(m).get("path") == str(path.resolve())]
    digests._known.clear()
    memo.write_text("{ damaged")
    assert file_digest(path) == first  # recomputed, and the memo rewritten
    assert json.loads(memo.read_text())["digest"] == first
    digests._known.clear()
    path.write_bytes(b"b" * 1000)  # same size, new mtime
    os.utime(path, ns=(1, 1))
    assert file_digest(path) != first
    digests._known.clear()
    entry = json.loads(memo.read_text())
    memo.write_text(json.dumps({**entry, "digest": "sha256:0000000000000000"}))
    assert file_digest(path) == "sha256:0000000000000000"  # the memo is trusted while size and mtime hold


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("type: builtin-cnn\n    checkpoint: w.pt", "models.m.checkpoint", "reads no key besides 'type'"),
        ("type: timm\n    arch: resnet18\n    options: {quick_gelu: true}", "models.m.options", "allowed keys"),
        ("type: openclip\n    arch: ViT-B-32\n    options: {quick_gelu: 'yes'}", "models.m.options.quick_gelu", "true"),
        ("type: detections-file\n    options: {detection: d.csv}", "models.m.options.detection", "did you mean 'detections'"),
        ("type: timm\n    arch: resnet18\n    members: w.pt", "models.m.members", "list of files"),
        # "false" is a true string: timm would download hub weights
        ("type: timm\n    arch: resnet18\n    pretrained: 'false'", "models.m.pretrained", "`pretrained: true` or `pretrained: false`"),
        ("type: openclip\n    arch: ViT-B-32\n    pretrained: true", "models.m.pretrained", "expected a string"),
    ],
)
def test_a_key_the_family_would_ignore_is_refused(tmp_path, entry, key, message):
    config = tmp_path / "datasets.yaml"
    config.write_text(f"models:\n  m:\n    {entry}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config, get_registry())
    assert err.value.key == key and message in str(err.value), str(err.value)


def test_timm_members_are_the_listed_checkpoints(toy):
    from rbx_models.timm_model import build

    root, _ = toy
    for seed in (1, 2):
        _save(_net(seed), root / "weights" / f"m{seed}.safetensors")
    files = [str(root / "weights" / f"m{s}.safetensors") for s in (1, 2)]
    model = build("test_resnet", {"checkpoint": str(root / "weights" / "w.safetensors"), "num_classes": 3, "members": files}, log=lambda m: None)
    assert "ensemble" in model.provides
    members = model.members(3)
    assert members[0] is model and len(members) == 3
    for seed, member in zip((1, 2), members[1:]):
        for (k, v), (_, w) in zip(_net(seed).state_dict().items(), member.net.state_dict().items()):
            assert torch.equal(v, w), k
    with pytest.raises(ConfigError, match="an ensemble of 5 is this model and 4 others, but the models entry lists 2") as err:
        model.members(5)
    assert err.value.key == "members"
    assert "ensemble" not in build("test_resnet", {"pretrained": False, "num_classes": 3}).provides


def test_deep_ensemble_runs_on_timm_members_and_is_skipped_without(toy, cli):
    root, config = toy
    assert _plan(config, ["deep_ensemble"]).jobs[0].skip_reason  # no members: no ensemble
    for seed in range(1, 5):
        _save(_net(seed), root / "weights" / f"m{seed}.safetensors")
    config.write_text(config.read_text() + "    members: [" + ", ".join(f"weights/m{s}.safetensors" for s in range(1, 5)) + "]\n")
    assert _plan(config, ["deep_ensemble"]).jobs[0].skip_reason is None
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy",
                 "--methods", "deep_ensemble", "--out", str(root / "o"), "--format", "json")
    frame = read_results(root / "o")
    assert result.code == 0 and set(frame["status"]) == {"ok"}, frame[["error"]].to_dict("records")


def test_a_model_with_another_number_of_classes_fails_its_jobs_naming_both(toy, cli):
    # a 10-class checkpoint declared with the 3-class folder's label space used to give metrics over 10 classes
    import timm

    root, config = toy
    torch.manual_seed(0)
    _save(timm.create_model("test_resnet", pretrained=False, num_classes=10), root / "weights" / "w.safetensors")
    config.write_text(config.read_text().replace("num_classes: 3", "num_classes: 10"))
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy",
                 "--methods", "msp", "--out", str(root / "o"), "--format", "json")
    [failure] = json.loads(result.out)["failures"]
    assert result.code == 1 and "outputs 10 classes but dataset 'toy' has 3" in failure["error"] and "num_classes: 3" in failure["error"]


@pytest.mark.parametrize(
    ("make", "members", "key", "message", "fix"),
    [
        (lambda: _other(num_classes=10), False, "models.tiny.checkpoint", "its classifier has 10 outputs, the entry's architecture 3", "set num_classes: 10"),
        (lambda: _other(arch="test_vit"), False, "models.tiny.checkpoint", "of the architecture's tensors are missing", "(arch:)"),
        (lambda: b"\0" * 100, False, "models.tiny.checkpoint", "cannot read", "a complete .safetensors file"),
        (lambda: _other(num_classes=10), True, "models.tiny.members[0]", "its classifier has 10 outputs", "set num_classes: 10"),
    ],
    ids=["class-count", "architecture", "not-safetensors", "member"],
)
def test_a_checkpoint_that_does_not_fit_stops_the_run_before_any_work(toy, cli, make, members, key, message, fix):
    # each of these failed inside every job (with a bare "Error(s) in loading state_dict"), after the datasets were read
    root, config = toy
    blob = make()
    (root / "weights" / "bad.safetensors").write_bytes(blob)
    if members:
        config.write_text(config.read_text() + "    members: [weights/bad.safetensors]\n")
    else:
        config.write_text(config.read_text().replace("weights/w.safetensors", "weights/bad.safetensors"))
    result = cli("run", "--suite", "ood", "--config", str(config), "--models", "tiny", "--datasets", "toy", "--methods", "msp", "--out", str(root / "o"))
    err = " ".join(result.err.split())
    assert result.code == 2 and f"key '{key}'" in err and message in err and fix in err, result
    assert str(root / "weights" / "bad.safetensors") in err
    assert not (root / "o").exists()


def _other(arch: str = "test_resnet", num_classes: int = 3) -> bytes:
    import timm
    from safetensors.torch import save

    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    return save({k: v.contiguous() for k, v in net.state_dict().items()})
