"""`rbx run --suite cure-tsd` on the embedded sequences: the bundled detections
with nothing configured, and a user's detections file named in datasets.yaml."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from robustbench_x.results import read_results

METRICS = {"det-precision", "det-recall", "det-f0.5", "det-f2"}


def test_embedded_default_runs_and_renders_a_page(cli, tmp_path):
    out, pages = tmp_path / "store", tmp_path / "pages"
    result = cli("--quiet", "run", "--suite", "cure-tsd", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["ok"] == 2 and summary["failed"] == 0 and summary["skipped"] == 0  # the built-in CNN is not planned
    frame = read_results(out)
    assert set(frame["model"]) == {"embedded-detections"} and set(frame["method"]) == {"detections", "detections-any-class"}
    assert set(frame["metric"]) == METRICS
    ok = frame[frame["status"] == "ok"].set_index(["method", "subset", "metric"])["value"]
    # a wrong-class detection counts for the class-agnostic rule only
    assert ok[("detections-any-class", "id", "det-recall")] > ok[("detections", "id", "det-recall")]
    # the blob detector loses signs as the blur grows
    recall = [ok[("detections", f"c/LensBlur/{lv}", "det-recall")] for lv in range(1, 6)]
    assert recall[0] > recall[-1] and all(np.diff(recall) <= 1e-12)
    undefined = frame[frame["status"] == "failed"]
    assert set(undefined["subset"]) <= {"c/Darkening/3", "c/Darkening/4", "c/Darkening/5"}
    assert all(e.startswith("metric undefined: no detection") for e in undefined["error"])

    scores = pq.read_table(next((out / "scores").rglob("*.parquet"))).to_pandas()
    assert {"sample_id", "subset", "video", "frame", "n_gt", "n_det", "tp", "fp", "fn"} <= set(scores.columns)
    assert (scores["tp"] + scores["fn"] == scores["n_gt"]).all() and (scores["tp"] + scores["fp"] == scores["n_det"]).all()

    result = cli("--quiet", "leaderboard", str(out), "--out", str(pages))
    assert result.code == 0, result
    page = (pages / "cure-tsd.md").read_text()
    assert "| LensBlur |" in page and "| all types |" in page and "det-f0.5 ↑ by challenge type and level" in page
    assert "## Not defined" in page and (pages / "cure-tsd-embedded-detections-embedded-cure-tsd.png").stat().st_size > 5000


def test_a_users_detections_file_is_scored_on_the_embedded_sequences(cli, tmp_path):
    from rbx_detection.embedded import build

    ds = build()
    rows = []
    for (video, frame), (boxes, signs) in zip(ds.frame_keys("id"), ds.ground_truth("id")):
        for box, sign in zip(boxes, signs):  # the ground truth itself, on the challenge-free videos only
            rows.append(f"{video},{frame},{sign},{box[0]},{box[1]},{box[2]},{box[3]},0.8")
    n_signs = len(rows)
    rows.append(f"{ds.frame_keys('id')[0][0]},1,6,0,0,10,10,0.1")  # one false alarm on an empty frame
    detections = tmp_path / "mine.csv"
    detections.write_text("video,frame,sign_type,x1,y1,x2,y2,score\n" + "\n".join(rows) + "\n")
    config = tmp_path / "datasets.yaml"
    config.write_text(f"models:\n  my-detector:\n    type: detections-file\n    options: {{detections: {detections}}}\n")
    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "cure-tsd", "--config", str(config), "--models", "my-detector", "--methods", "detections", "--out", str(out))
    assert result.code == 0, result
    frame = read_results(out)
    values = frame.set_index(["subset", "metric"])["value"]
    assert values[("id", "det-recall")] == 1.0 and values[("id", "det-precision")] == n_signs / (n_signs + 1)
    assert values[("c/LensBlur/1", "det-recall")] == 0.0 and values[("c/LensBlur/1", "det-f2")] == 0.0
    assert frame.set_index(["subset", "metric"]).loc[("c/LensBlur/1", "det-precision"), "status"] == "failed"

    broken = tmp_path / "broken.csv"
    broken.write_text("video,frame,sign_type,x1,y1,x2,y2\n01_04_00_00_00,1,99,0,0,1,1\n")
    config.write_text(f"models:\n  my-detector:\n    type: detections-file\n    options: {{detections: {broken}}}\n")
    result = cli("--quiet", "run", "--suite", "cure-tsd", "--config", str(config), "--models", "my-detector", "--out", str(tmp_path / "o2"))
    # read once at plan time: one message, exit 2, no job run
    assert result.code == 2 and not (tmp_path / "o2").exists(), result
    assert result.err.count("broken.csv") == 1 and "key 'models.my-detector.options.detections'" in result.err
    assert "line 2: sign_type '99' is not a sign code 1..14 (column 'sign_type')" in result.err and "Traceback" not in result.err

    shifted = tmp_path / "shifted.csv"  # a frame past the 12-frame videos: refused before any work
    shifted.write_text(detections.read_text().replace(",1,6,0,0,10,10,", ",101,6,0,0,10,10,"))
    config.write_text(f"models:\n  my-detector:\n    type: detections-file\n    options: {{detections: {shifted}}}\n")
    result = cli("--quiet", "run", "--suite", "cure-tsd", "--config", str(config), "--models", "my-detector", "--out", str(tmp_path / "o3"))
    assert result.code == 2 and not (tmp_path / "o3").exists(), result
    beyond = f"line {n_signs + 2}: video {ds.frame_keys('id')[0][0]} has 12 frames, frame 101 is beyond them in dataset 'embedded-cure-tsd'"
    assert beyond in " ".join(result.err.split()) and "fix: renumber the file's frames" in result.err

    # run without rbx run's checks (the API, the conformance kit): the job stops before scoring, saying the same
    from robustbench_x.config import load_config
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry
    from robustbench_x.runner import RunOptions, run_group

    registry = get_registry()
    plan = make_plan(registry, load_config(config, registry), "cure-tsd", models=["my-detector"], methods=["detections"])
    (outcome,) = [o for group in plan.groups() for o in run_group(group, RunOptions(out=str(tmp_path / "o4")))]
    assert outcome.status == "failed" and beyond in read_results(tmp_path / "o4")["error"].iloc[0]


def test_default_models_of_another_task_are_left_out_of_the_plan():
    from robustbench_x.config import Config
    from robustbench_x.plan import make_plan
    from robustbench_x.registry import get_registry

    registry = get_registry()
    detection = make_plan(registry, Config(), "cure-tsd")
    assert {j.model.name for j in detection.jobs} == {"embedded-detections"} and not detection.skipped
    ood = make_plan(registry, Config(), "ood")
    assert "embedded-detections" not in {j.model.name for j in ood.jobs} and "builtin-cnn" in {j.model.name for j in ood.jobs}
    # named explicitly, a model that cannot serve the suite is planned and skipped with the reason (never built)
    named = make_plan(registry, Config(), "cure-tsd", models=["builtin-cnn", "embedded-detections"])
    skipped = {(j.model.name, j.skip_reason.split(",")[0]) for j in named.skipped}
    assert skipped == {("builtin-cnn", "requires detections")} and len(named.runnable) == 2
