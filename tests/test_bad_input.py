"""Every bad input of the core issue gets a message naming the file, key or
name and the fix; usage errors exit 2; a job's error is a failed row (exit 1)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_x.config import load_config
from robustbench_x.errors import ConfigError
from robustbench_x.registry import Registry
from robustbench_x.results import read_results


@pytest.fixture(scope="module")
def registry():
    r = Registry()
    r.load_entry_points()
    return r


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _tree(root: Path, classes=("a", "b"), per_class=6, splits=("train", "val", "test"), size=12) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    ood = root / "noise"
    ood.mkdir(exist_ok=True)
    for i in range(per_class):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(ood / f"{i}.png")
    return root


def test_malformed_yaml_names_file_and_line(tmp_path, registry):
    path = _yaml(tmp_path, "datasets:\n  x: [unclosed\n")
    with pytest.raises(ConfigError, match=r"(?s)datasets.yaml: malformed YAML at line \d+.*\n  fix: fix the YAML syntax"):
        load_config(path, registry)


def test_unknown_top_level_key_suggests_the_right_one(tmp_path, registry):
    path = _yaml(tmp_path, "datasetz: {}\n")
    with pytest.raises(ConfigError, match="(?s)key 'datasetz'.*did you mean 'datasets'"):
        load_config(path, registry)


def test_unknown_dataset_key_names_the_key_and_allowed_keys(tmp_path, registry):
    path = _yaml(tmp_path, """
        datasets:
          mine:
            type: imagefolder
            root: .
            test: test
            tset: oops
    """)
    with pytest.raises(ConfigError, match=r"(?s)key 'datasets.mine.tset'.*did you mean 'test'.*allowed keys"):
        load_config(path, registry)


def test_missing_type_and_unknown_type(tmp_path, registry):
    with pytest.raises(ConfigError, match="(?s)datasets.mine.*missing 'type'"):
        load_config(_yaml(tmp_path, "datasets:\n  mine:\n    root: .\n"), registry)
    with pytest.raises(ConfigError, match="(?s)datasets.mine.type.*unknown type 'imagefoldr'.*did you mean 'imagefolder'"):
        load_config(_yaml(tmp_path, "datasets:\n  mine:\n    type: imagefoldr\n"), registry)


def test_missing_required_key(tmp_path, registry):
    with pytest.raises(ConfigError, match="(?s)datasets.mine.test.*missing required key 'test'"):
        load_config(_yaml(tmp_path, "datasets:\n  mine:\n    type: imagefolder\n    root: .\n"), registry)


def test_config_errors_exit_2_without_traceback(tmp_path, cli):
    path = _yaml(tmp_path, "datasets:\n  mine:\n    type: imagefolder\n    root: .\n    test: test\n    bogus: 1\n")
    result = cli("run", "--suite", "ood", "--config", str(path))
    assert result.code == 2
    assert "bogus" in result.err and "fix:" in result.err and "Traceback" not in result.err


def test_missing_config_file_exit_2(tmp_path, cli):
    result = cli("run", "--suite", "ood", "--config", str(tmp_path / "nope.yaml"))
    assert result.code == 2 and "nope.yaml" in result.err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--suite", "oood"], "unknown suite 'oood'. Did you mean 'ood'"),
        (["run", "--suite", "ood", "--methods", "engery"], "unknown method 'engery'. Did you mean 'energy'"),
        (["run", "--suite", "ood", "--models", "builtin-cn"], "unknown model 'builtin-cn'. Did you mean 'builtin-cnn'"),
        (["run", "--suite", "ood", "--datasets", "embedded-digit"], "unknown dataset 'embedded-digit'. Did you mean 'embedded-digits'"),
        (["run", "--suite", "ood", "--executor", "locl"], "unknown executor 'locl'. Did you mean 'local'"),
        (["list", "method"], "Did you mean 'methods'"),
    ],
)
def test_unknown_names_suggest_the_closest_and_exit_2(cli, args, expected):
    result = cli(*args)
    assert result.code == 2, result
    assert expected in result.err.replace("\n", " ")


def test_dataset_root_that_does_not_exist(tmp_path, cli):
    path = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {tmp_path / 'missing'}\n    test: test\n    ood: {{x: {tmp_path}}}\n")
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(path), "--datasets", "mine", "--methods", "msp", "--out", str(tmp_path / "o"))
    assert result.code == 2, result  # found before any work: no failed row in the store
    assert "dataset root does not exist" in result.err and "datasets.mine.root" in result.err and "fix:" in result.err
    assert not (tmp_path / "o").exists()


def test_a_single_class_dataset_is_refused_before_any_work(tmp_path, cli):
    """One class: the model's softmax is the same for every image, so the OOD page
    showed AUROC 50.0 in bold and calibration ECE 0, as if they were answers."""
    root = _tree(tmp_path / "data", classes=("a",))
    path = _yaml(tmp_path, f"datasets:\n  one:\n    type: imagefolder\n    root: {root}\n    train: train\n    test: test\n    ood:\n      noise: {root / 'noise'}\n")
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(path), "--datasets", "one", "--methods", "msp", "--out", str(tmp_path / "o"))
    assert result.code == 2, result
    assert "dataset 'one' has a single class ('a')" in result.err and "datasets.one" in result.err and "fix: give its test split at least two classes" in result.err
    assert not (tmp_path / "o").exists()


def test_undecodable_image_fails_the_job_naming_the_file(tmp_path, cli):
    root = _tree(tmp_path / "data")
    (root / "test" / "a" / "broken.png").write_bytes(b"this is not a png")
    path = _yaml(tmp_path, f"datasets:\n  mine:\n    type: imagefolder\n    root: {root}\n    train: train\n    test: test\n    ood:\n      noise: {root / 'noise'}\n")
    result = cli("--quiet", "run", "--suite", "ood", "--config", str(path), "--datasets", "mine", "--methods", "msp,energy", "--out", str(tmp_path / "o"))
    assert result.code == 1, result
    frame = read_results(tmp_path / "o")
    failed = frame[frame["status"] == "failed"]
    assert set(failed["method"]) == {"msp", "energy"}
    assert all("broken.png" in e and "cannot decode" in e for e in failed["error"])


def test_misbehaving_methods_fail_alone(tmp_path, cli, test_plugins):
    test_plugins("misbehaving_methods")
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "msp,nan-score,short-score,raises,needs-vlm", "--out", str(tmp_path), "--format", "json")
    assert result.code == 1, result
    frame = read_results(tmp_path)
    status = frame.groupby("method")["status"].agg(lambda s: set(s))
    assert status["msp"] == {"ok"}
    assert status["nan-score"] == {"failed"} and status["short-score"] == {"failed"} and status["raises"] == {"failed"}
    assert status["needs-vlm"] == {"skipped"}
    errors = frame.set_index("method")["error"]
    assert "non-finite" in errors["nan-score"] and "'score'" in errors["nan-score"] and "subset 'id'" in errors["nan-score"]
    assert "shape (382,)" in errors["short-score"] and "expected (383,)" in errors["short-score"]
    assert "deliberate failure in fit" in errors["raises"]
    assert "requires vlm" in errors["needs-vlm"]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_system_exit_from_a_method_is_a_failed_row_not_the_end_of_the_run(tmp_path, cli, test_plugins, executor):
    test_plugins("misbehaving_methods")
    args = ["--executor", executor] + (["--job-timeout", "600"] if executor == "local" else [])  # local: a spawned worker
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "exits,msp", "--out", str(tmp_path), *args)
    assert result.code == 1, result
    frame = read_results(tmp_path)
    status = frame.groupby("method")["status"].agg(lambda s: set(s))
    assert status["exits"] == {"failed"} and status["msp"] == {"ok"}
    assert frame.loc[frame["method"] == "exits", "error"].str.startswith("SystemExit: 0").all()


def test_prediction_outputs_are_validated(tmp_path, cli, test_plugins):
    test_plugins("misbehaving_methods")
    methods = "prediction-nan,prediction-out-of-range,prediction-fractional,prediction-float-integral"
    result = cli("--quiet", "run", "--suite", "failure", "--methods", methods, "--out", str(tmp_path))
    assert result.code == 1, result
    frame = read_results(tmp_path)
    errors = frame.groupby("method")["error"].first()
    status = frame.groupby("method")["status"].agg(lambda s: set(s))
    assert status["prediction-float-integral"] == {"ok"}  # floats holding class indices are fine
    assert "'prediction'" in errors["prediction-nan"] and "not class indices (e.g. nan)" in errors["prediction-nan"]
    assert "outside [0, 6) (e.g. 999)" in errors["prediction-out-of-range"]
    assert "not class indices (e.g. 0.5)" in errors["prediction-fractional"]
    assert {status[m].pop() for m in ("prediction-nan", "prediction-out-of-range", "prediction-fractional")} == {"failed"}


def test_method_not_producing_the_suite_output_is_a_usage_error(cli):
    result = cli("run", "--suite", "calibration", "--methods", "energy")
    assert result.code == 2 and "does not output 'probs'" in result.err
