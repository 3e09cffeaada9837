"""Shared fixtures: an isolated cache, the CLI called in-process, test plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the whole session (and every xdist worker): the built-in
    model trains once; the feature cache's file locks make sharing safe."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "rbx-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, shared_cache):
    monkeypatch.setenv("RBX_CACHE_DIR", str(shared_cache))
    for var in ("RBX_CONFIG", "RBX_PLUGINS", "RBX_DISABLE_PLUGINS", "RBX_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield
    from robustbench_x import registry

    registry._REGISTRY = None


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``rbx ARGS`` in this process (torch is imported once per session)."""

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        from robustbench_x import cli as cli_module
        from robustbench_x import registry

        registry._REGISTRY = None
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["rbx", *args])
        capsys.readouterr()
        try:
            cli_module.main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def test_plugins(monkeypatch):
    """Make the plugins in tests/fixtures importable and register them by name."""
    monkeypatch.syspath_prepend(str(FIXTURES))

    def use(*modules: str) -> None:
        monkeypatch.setenv("RBX_PLUGINS", ",".join(modules))

    return use


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A single-node Ray cluster started in a directory of its own, as on a real
    cluster where the workers' working directory is not the user's. It runs with
    this interpreter (so its workers import this checkout), on ports of its own
    (so it coexists with other clusters on the machine), and is stopped through
    its own process, never with `ray stop`, which stops every cluster."""
    import signal
    import subprocess
    import time

    pytest.importorskip("ray")
    cwd = tmp_path_factory.mktemp("ray-head-cwd")
    port = _free_port()
    ports = {flag: _free_port() for flag in ("--ray-client-server-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                             "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port", "--object-manager-port")}
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head", "--block", f"--port={port}",
               "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
    log = cwd / "ray-start.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while "will now block forever" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"address": f"127.0.0.1:{port}", "cwd": cwd}
    proc.terminate()  # --block: the head shuts its own processes down
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this fixture started, nothing else
