"""kill -9 at any moment, then the same command again: the run completes, no
row is duplicated, no truncated file is ever counted as done. Two runs into
the same --out at once neither lose nor duplicate a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from robustbench_x.results import read_results

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
KEY = ["model", "dataset", "subset", "method", "metric", "seed"]
ARGS = ["--quiet", "run", "--suite", "ood", "--methods", "msp,energy,slow,maxlogit", "--seeds", "0,1"]


@pytest.fixture
def env(shared_cache):
    e = dict(os.environ)
    e.update(RBX_CACHE_DIR=str(shared_cache), RBX_PLUGINS="faulty_methods", PYTHONPATH=os.pathsep.join([str(FIXTURES), e.get("PYTHONPATH", "")]))
    return e


def _rbx(out: Path, env, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robustbench_x.cli", *ARGS, *extra, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _result_files(out: Path) -> list[Path]:
    return sorted((out / "results").rglob("part-*.parquet")) if (out / "results").exists() else []


def _wait_for(predicate, proc, limit=180.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, shared_cache):
    out = tmp_path_factory.mktemp("clean")
    e = dict(os.environ, RBX_CACHE_DIR=str(shared_cache), RBX_PLUGINS="faulty_methods",
             PYTHONPATH=os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-m", "robustbench_x.cli", *ARGS, "--executor", "inline", "--out", str(out)], env=e, check=True)
    return read_results(out).set_index(KEY)["value"].sort_index()


def _assert_complete_and_equal(out: Path, clean) -> None:
    for path in _result_files(out) + sorted((out / "scores").rglob("part-*.parquet")):
        pq.read_table(path)  # every visible file is whole
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "error"]]
    assert not frame.duplicated(KEY).any()
    jobs = frame.drop_duplicates(["method", "seed"])
    assert len(_result_files(out)) == len(jobs) == 8
    values = frame.set_index(KEY)["value"].sort_index()
    assert values.index.equals(clean.index) and (values == clean).all()


def test_sigkill_of_the_runner_at_several_moments_then_resume(tmp_path, env, clean):
    out = tmp_path / "store"
    # Moments: while the workers start (no result yet), after 3 and after 6 of the 8 jobs.
    for files_before_kill in (0, 3, 6):
        proc = _rbx(out, env, "--executor", "local", "--workers", "2")
        if files_before_kill == 0:
            _wait_for(lambda: bool(_children(proc.pid)), proc)
        else:
            _wait_for(lambda: len(_result_files(out)) >= files_before_kill, proc)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = subprocess.run([sys.executable, "-m", "robustbench_x.cli", *ARGS, "--out", str(out)], env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_complete_and_equal(out, clean)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_sigkill_of_a_worker_fails_its_job_only_then_resume(tmp_path, env, clean):
    out = tmp_path / "store"
    env = dict(env, RBX_TEST_SLOW_S="2")
    proc = _rbx(out, env, "--executor", "local", "--workers", "2")
    killed = False
    deadline = time.monotonic() + 180
    while not killed and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        # Kill a worker once results exist: the workers are then inside jobs.
        if workers and _result_files(out):
            for worker in workers:
                cmdline = Path(f"/proc/{worker}/cmdline").read_bytes() if Path(f"/proc/{worker}/cmdline").exists() else b""
                if b"multiprocessing" in cmdline:
                    os.kill(worker, signal.SIGKILL)
                    killed = True
                    break
        time.sleep(0.05)
    code = proc.wait(timeout=300)
    assert killed
    if code == 1:  # the killed worker's job is a failed row with the cause
        frame = read_results(out)
        assert frame.loc[frame["status"] == "failed", "error"].str.contains("worker died").all()
    final = subprocess.run([sys.executable, "-m", "robustbench_x.cli", *ARGS, "--out", str(out)], env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_complete_and_equal(out, clean)


def test_two_runs_into_the_same_out_at_once(tmp_path, env, clean):
    out = tmp_path / "store"
    first = _rbx(out, env, "--executor", "local", "--workers", "2")
    second = _rbx(out, env, "--executor", "inline")
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-3000:]
    assert second.wait(timeout=300) == 0, second.stderr.read().decode()[-3000:]
    _assert_complete_and_equal(out, clean)


def _wait_mid_run(out: Path, proc) -> None:
    """Until some results exist and the workers are inside further jobs."""
    _wait_for(lambda: len(_result_files(out)) >= 2, proc)
    assert proc.poll() is None, "the run finished before it could be interrupted"


def test_ctrl_c_with_workers_blames_no_job_and_prints_no_traceback(tmp_path, env, clean):
    out = tmp_path / "store"
    proc = _rbx(out, dict(env, RBX_TEST_SLOW_S="3"), "--executor", "local", "--workers", "2")
    _wait_mid_run(out, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    assert proc.wait(timeout=60) == 130
    stderr = proc.stderr.read().decode()
    assert "Traceback" not in stderr, stderr[-3000:]
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "seed", "error"]].to_dict("records")
    assert not list(out.rglob(".*.failed"))
    # The run's record says it stopped, and counts the jobs it finished (their seeds feed the pages' fix commands).
    import json

    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert [r["summary"]["interrupted"] for r in records] == [True], records
    assert 1 <= records[0]["summary"]["ok"] <= len(_result_files(out)) and records[0]["plan"]
    final = subprocess.run([sys.executable, "-m", "robustbench_x.cli", *ARGS, "--out", str(out)], env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_complete_and_equal(out, clean)


def test_workers_stop_with_their_killed_runner_and_blame_no_job(tmp_path, env, clean):
    out = tmp_path / "store"
    proc = _rbx(out, dict(env, RBX_TEST_SLOW_S="8"), "--executor", "local", "--workers", "2")
    _wait_mid_run(out, proc)
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGTERM)  # the runner alone (a closed terminal, a job scheduler): its workers are orphaned
    proc.wait(timeout=60)
    deadline = time.monotonic() + 5  # a worker checks for its runner every second; a slow job takes 8 s
    while time.monotonic() < deadline and any(map(_running, workers)):
        time.sleep(0.2)
    alive = [w for w in workers if _running(w)]
    assert not alive, f"workers still running after their runner died: {alive}"
    frame = read_results(out)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"][["method", "seed", "error"]].to_dict("records")
    final = subprocess.run([sys.executable, "-m", "robustbench_x.cli", *ARGS, "--out", str(out)], env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_complete_and_equal(out, clean)


def _running(pid: int) -> bool:
    """Alive and not a zombie (``/proc/<pid>/stat``: the state follows the command name's closing parenthesis)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
