"""A method that cannot run on a configured dataset (VOICE on fewer than three
classes, a certified margin on one, knn with k above the train split's size)
and a dataset a suite cannot attack are refused before any work, exit 2, with
a `fix:` a user can follow; the documented plugin fixes run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_x.results import read_results

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _folder(root: Path, classes: int, train: int = 3, test: int = 3) -> Path:
    rng = np.random.default_rng(classes)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "noise").mkdir(exist_ok=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "noise" / f"{i}.png")
    return root


def _config(tmp_path: Path, train: int = 3, **classes: int) -> Path:
    entries = "".join(
        f"  {name}:\n    type: imagefolder\n    root: {_folder(tmp_path / name, n, train)}\n    train: train\n    test: test\n    ood: {{noise: {tmp_path / name / 'noise'}}}\n"
        for name, n in classes.items()
    )
    path = tmp_path / "datasets.yaml"
    path.write_text("datasets:\n" + entries)
    return path


def _flat(text: str) -> str:
    return " ".join(text.split())


def _refused(result, store: Path) -> str:
    assert result.code == 2 and not store.exists() and "Traceback" not in result.err, result
    return _flat(result.err)


def test_voice_on_two_classes_is_refused_before_any_work(cli, tmp_path):
    config = _config(tmp_path, two=2)
    store = tmp_path / "store"
    err = _refused(cli("run", "--suite", "explanation", "--datasets", "two", "--config", str(config), "--out", str(store)), store)
    assert "method 'voice' cannot run on dataset 'two'" in err and "the dataset's 2 classes leave 1, two are needed" in err, err
    assert "fix: use a dataset of at least 3 classes" in err


def test_voice_job_message_for_one_class_says_no_contrast_class():
    import pytest

    from rbx_explain.contrast import check_contrast

    with pytest.raises(ValueError, match="a one-class model has no contrast class: the contrast set is too small") as info:
        check_contrast("all", 1)
    assert "1 classes" not in str(info.value) and "two-class" not in str(info.value)


def test_voice_and_certified_on_one_class_are_refused_before_training(cli, tmp_path):
    config = _config(tmp_path, one=1)
    for suite in ("explanation", "certified"):
        store = tmp_path / f"store-{suite}"
        err = _refused(cli("run", "--suite", suite, "--datasets", "one", "--config", str(config), "--out", str(store)), store)
        assert "dataset 'one' has a single class" in err and "fix: give its test split at least two classes" in err, err


def test_unnamed_datasets_that_cannot_serve_a_method_become_skipped_jobs_with_the_reason(tmp_path):
    from robustbench_x.config import load_config
    from robustbench_x.plan import make_plan
    from robustbench_x.preflight import check_methods, open_datasets
    from robustbench_x.registry import get_registry

    registry = get_registry()
    config = load_config(_config(tmp_path, two=2, three=3), registry)
    opened: dict = {}
    open_datasets(registry, config, None, opened)
    plan = check_methods(registry, make_plan(registry, config, "explanation", models=["builtin-cnn"]), opened)
    reasons = {j.dataset.name: j.skip_reason for j in plan.jobs}
    assert reasons["three"] is None and reasons["two"].endswith("to run it, use a dataset of at least 3 classes")
    knn = check_methods(registry, make_plan(registry, config, "ood", models=["builtin-cnn"], datasets=["two", "three"], methods=["knn"]), opened)
    assert {j.skip_reason.split(": ", 1)[1].split(";")[0] for j in knn.jobs} == {
        "k=50 nearest neighbours need at least 50 training images, the train split has 6",
        "k=50 nearest neighbours need at least 50 training images, the train split has 9",
    }


def _use_doc_plugin(tmp_path: Path, monkeypatch, page: str, heading: str, module: str) -> None:
    """Register the plugin module a docs section shows, as its comment says (RBX_PLUGINS)."""
    text = (DOCS / page).read_text()
    section = text[text.index(f"## {heading}\n"):]
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(re.search(r"```python\n(.*?)```", section, re.S).group(1)))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("RBX_PLUGINS", module)


def test_knn_above_the_train_split_names_a_fix_that_runs(cli, tmp_path, monkeypatch):
    config = _config(tmp_path, train=5, small=2)
    store = tmp_path / "store"
    err = _refused(cli("run", "--suite", "ood", "--datasets", "small", "--methods", "knn", "--config", str(config), "--out", str(store)), store)
    assert "k=50 nearest neighbours need at least 50 training images, the train split has 10" in err
    assert "fix: give the dataset a train split of at least 50 images, or register a variant with a smaller k (at most 10)" in err
    assert "docs/plugins.md#a-variant-with-other-parameters" in err
    # following it: the variant of docs/plugins.md, k = 10, runs
    _use_doc_plugin(tmp_path, monkeypatch, "plugins.md", "A variant with other parameters", "my_variants")
    result = cli("--quiet", "run", "--suite", "ood", "--datasets", "small", "--methods", "knn-k10", "--config", str(config), "--out", str(store))
    assert result.code == 0, result
    assert set(read_results(store)["status"]) == {"ok"}


def test_adversarial_on_an_imagefolder_names_a_fix_that_runs(cli, tmp_path, monkeypatch):
    config = _config(tmp_path, folder=2)
    store = tmp_path / "store"
    err = _refused(cli("run", "--suite", "adversarial", "--datasets", "folder", "--config", str(config), "--out", str(store)), store)
    assert "dataset 'folder' cannot serve suite 'adversarial': it provides no attack_protocol fix: store the images as a type with a threat model" in err
    assert "docs/datasets.md#adversarial-suites-on-other-images" in err
    _use_doc_plugin(tmp_path, monkeypatch, "datasets.md", "Adversarial suites on other images", "my_threat_model")
    config.write_text(config.read_text().replace("type: imagefolder", "type: imagefolder-attackable"))
    result = cli("--quiet", "run", "--suite", "adversarial", "--datasets", "folder", "--methods", "pgd-10-eps8", "--config", str(config), "--out", str(store))
    assert result.code == 0, result
    frame = read_results(store)
    assert set(frame["status"]) == {"ok"} and "robust-accuracy" in set(frame["metric"])
