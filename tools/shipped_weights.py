"""What the weight-training tools (``train_builtin.py``, ``train_lipschitz.py``,
``train_segmenter.py``) share: the environment a manifest records, the sha256
line each written file gets, and ``--check`` (retrain into a temporary folder
and compare every file's sha256 with the shipped manifest)."""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path


def environment() -> dict[str, str]:
    """What decides whether a retraining is bit-for-bit: float kernels differ across builds and CPUs."""
    import numpy
    import torch

    return {
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def sha256_logged(path: Path, log: Callable[[str], None]) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    log(f"{digest}  {path.name}")
    return digest


def check(manifest: Path, retrain: Callable[[Path], dict]) -> int:
    """``retrain(folder)`` writes the files and returns their manifest; 0 when
    every file has the shipped sha256, else 1 (each file is listed)."""
    shipped_manifest = json.loads(manifest.read_text())
    shipped = {e["file"]: e["sha256"] for e in shipped_manifest["weights"]}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {e["file"]: e["sha256"] for e in retrain(Path(tmp))["weights"]}
    differ = sorted(f for f in shipped.keys() | fresh.keys() if shipped.get(f) != fresh.get(f))
    for f in sorted(shipped.keys() | fresh.keys()):
        print(f"{'same   ' if f not in differ else 'DIFFERS'}  {f}")
    if differ:
        print(f"shipped on {shipped_manifest.get('generated_with')}, this machine {environment()}")
    return 1 if differ else 0
