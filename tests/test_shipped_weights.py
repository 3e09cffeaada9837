"""Weight files are generated, never tracked: each plugin's manifest keeps the
sha256 of what its recipe produced (``tools/train_*.py --check`` reproduces
them), git ignores the files, a fresh clone trains them at first use, and a
file that is present must match its manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(ROOT.glob("plugins/*/weights/manifest.json"))


def _tracked() -> set[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "plugins"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(out.decode().split("\0"))


def test_there_are_manifests():
    assert {m.parent.parent.name for m in MANIFESTS} >= {"rbx_models", "rbx_segmentation", "rbx_lipschitz"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.parent.parent.name)
def test_weight_files_are_not_tracked_and_a_present_one_matches_its_manifest(manifest):
    entries = json.loads(manifest.read_text())["weights"]
    assert entries, manifest
    tracked = _tracked()
    for entry in entries:
        path = manifest.parent / entry["file"]
        if tracked is not None:
            assert str(path.relative_to(ROOT)) not in tracked, f"{path} is generated: untrack it (git rm --cached)"
        if path.is_file():  # regenerated here by tools/train_*.py
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path
    assert "*.safetensors" in (ROOT / ".gitignore").read_text().splitlines()
    assert not any(line.startswith("!") and line.endswith(".safetensors") for line in (ROOT / ".gitignore").read_text().splitlines())


def test_load_shipped_weights_checks_the_file_before_reading_it(tmp_path):
    import torch
    from safetensors.torch import save

    from robustbench_x.api import load_shipped_weights

    assert load_shipped_weights(tmp_path / "manifest.json", "k", regenerate="python tools/x.py") is None  # no manifest
    data = save({"w": torch.ones(2)})
    (tmp_path / "a.safetensors").write_bytes(data)
    entries = [{"file": "a.safetensors", "key": "k", "sha256": hashlib.sha256(data).hexdigest()},
               {"file": "gone.safetensors", "key": "g", "sha256": "0" * 64}]
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": entries}))
    assert torch.equal(load_shipped_weights(tmp_path / "manifest.json", "k", regenerate="python tools/x.py")["w"], torch.ones(2))
    assert load_shipped_weights(tmp_path / "manifest.json", "other", regenerate="python tools/x.py") is None
    # listed but absent (a fresh clone): nothing to load, the caller trains at first use
    assert load_shipped_weights(tmp_path / "manifest.json", "g", regenerate="python tools/x.py") is None
    (tmp_path / "a.safetensors").write_bytes(data[:-1] + b"!")
    with pytest.raises(ValueError, match=r"a\.safetensors: sha256 .* does not match manifest\.json .*damaged or stale"):
        load_shipped_weights(tmp_path / "manifest.json", "k", regenerate="python tools/x.py")
