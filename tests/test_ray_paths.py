"""Ray sees what the user sees: relative paths resolve where `rbx` ran, not in
the Ray workers' directory; an address that is not a Ray cluster is exit 2 in
seconds."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_x.results import read_results


def _tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    for folder in [root / s / c for s in ("train", "test") for c in ("a", "b")] + [root / "noise"]:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow
def test_relative_out_cache_and_dataset_root_land_where_the_user_ran_rbx(cli, tmp_path, monkeypatch, ray_head):
    user = tmp_path / "user"
    _tree(user / "data")
    (user / "datasets.yaml").write_text("datasets:\n  mine:\n    type: imagefolder\n    root: data\n    train: train\n    test: test\n    ood: {noise: data/noise}\n")
    monkeypatch.setenv("RBX_CACHE_DIR", "rel-cache")
    result = cli("--quiet", "run", "--suite", "ood", "--datasets", "mine", "--methods", "msp", "--executor", "ray",
                 "--ray-address", ray_head["address"], "--out", "rel-out", cwd=user)
    assert result.code == 0, result
    frame = read_results(user / "rel-out")
    assert set(frame["status"]) == {"ok"} and set(frame["dataset"]) == {"mine"} and "ood/noise" in set(frame["subset"])
    assert any((user / "rel-cache").iterdir())
    assert not (ray_head["cwd"] / "rel-out").exists() and not (ray_head["cwd"] / "rel-cache").exists()


@pytest.fixture
def http_server():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_server_is_not_a_ray_cluster(tmp_path, http_server):
    pytest.importorskip("ray")
    out = tmp_path / "store"
    command = [sys.executable, "-m", "robustbench_x.cli", "run", "--suite", "ood", "--methods", "msp", "--executor", "ray",
               "--ray-address", http_server, "--out", str(out)]
    # Ray itself would wait for minutes; a timeout here means the check did not work.
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, env=dict(os.environ))
    assert result.returncode == 2, result.stderr
    assert f"{http_server} accepts connections but is not a Ray cluster" in result.stderr and "fix:" in result.stderr
    assert not out.exists()
