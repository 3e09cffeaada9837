"""The cache heals itself and a full disk is a failed job, never a signal.

Every cache entry (features, cached model weights, fitted method state) is
checked against the manifest written after it; a damaged one is reported by
path, removed and recomputed, with and without ``--force``. Orphaned temporary
entries of killed writers are removed. A full disk while the backbone's
outputs are written fails the jobs with the path and the size needed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_x import cachedir
from robustbench_x.results import read_results

# mahalanobis reads the features, caches fitted state, and runs on cached built-in weights: seed 1
# has no shipped weights (rbx_models.smallcnn), so the CNN is trained once and its weights cached.
RUN = ("--quiet", "run", "--suite", "ood", "--methods", "mahalanobis", "--seeds", "1")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A private cache and store after one run (the shared cache is never damaged)."""
    root = tmp_path_factory.mktemp("heal")
    env = dict(os.environ, RBX_CACHE_DIR=str(root / "cache"))
    subprocess.run([sys.executable, "-m", "robustbench_x.cli", *RUN, "--out", str(root / "store")], env=env, check=True, capture_output=True)
    return root


@pytest.fixture
def cache(warm, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    shutil.copytree(warm / "cache", path)
    monkeypatch.setenv("RBX_CACHE_DIR", str(path))
    cachedir._checked.clear()
    return path


def _entry(cache: Path, kind: str) -> tuple[Path, Path]:
    """(entry, the file in it to damage)."""
    if kind == "features":
        entry = max((p for p in (cache / "features").iterdir() if p.is_dir()), key=lambda p: (p / "features.npy").stat().st_size)
        return entry, entry / "features.npy"
    folder = {"weights": "models", "fitted": "fitted"}[kind]
    (entry,) = (p for p in (cache / folder).glob("*.safetensors"))
    return entry, entry


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("force", [False, True], ids=["fresh-store", "force"])
@pytest.mark.parametrize("kind", ["features", "weights", "fitted"])
def test_a_truncated_entry_is_reported_by_path_and_recomputed(kind, force, warm, cache, cli, tmp_path, caplog):
    entry, damaged = _entry(cache, kind)
    _truncate(damaged)
    if force:
        store = tmp_path / "store"
        shutil.copytree(warm / "store", store)
    else:
        store = tmp_path / "fresh"
    with caplog.at_level(logging.WARNING, logger="robustbench_x.cache"):
        result = cli(*RUN, "--out", str(store), *(["--force"] if force else []))
    assert result.code == 0, result
    reports = [r.getMessage() for r in caplog.records if r.name == "robustbench_x.cache"]
    assert any(f"cache entry {entry}: {damaged.name} has" in m and "truncated" in m and "recomputing" in m for m in reports), reports
    assert cachedir.check(entry, full=True) is None  # rebuilt and sealed
    expected = read_results(warm / "store").set_index(["subset", "metric"])["value"]
    got = read_results(store).set_index(["subset", "metric"])["value"]
    assert (got.sort_index() - expected.sort_index()).abs().max() < 1e-6  # recomputed, same numbers


def test_same_size_corruption_is_caught_by_the_checksum(cache, cli, tmp_path, caplog):
    entry, damaged = _entry(cache, "fitted")
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="robustbench_x.cache"):
        assert cli(*RUN, "--out", str(tmp_path / "store")).code == 0
    assert any(f"cache entry {damaged}: {damaged.name} does not match its checksum" in r.getMessage() for r in caplog.records)
    assert cachedir.check(entry, full=True) is None


def test_large_files_are_checked_by_sampled_blocks_and_fully_by_verify(tmp_path, monkeypatch, cli):
    monkeypatch.setattr(cachedir, "FULL_CHECK_BYTES", 1000)
    monkeypatch.setattr(cachedir, "BLOCK", 64)
    monkeypatch.setenv("RBX_CACHE_DIR", str(tmp_path))
    path, built = cachedir.cached_file(tmp_path / "blobs" / "big.bin", lambda tmp: tmp.write_bytes(os.urandom(64 * 64)))
    assert built and cachedir.check(path) is None
    data = bytearray(path.read_bytes())
    data[64 * 2 + 5] ^= 1  # between the sampled blocks at 0 and 256: only a full check sees it
    path.write_bytes(bytes(data))
    cachedir._checked.clear()
    assert cachedir.check(path) is None
    assert "checksum" in cachedir.check(path, full=True)
    data[0] ^= 1  # inside a sampled block
    path.write_bytes(bytes(data))
    assert "checksum" in cachedir.check(path)
    result = cli("cache", "verify")
    assert result.code == 1 and f"damaged: {path}: big.bin does not match its checksum" in result.out
    assert not path.exists()


def test_orphaned_temporary_entries_are_cleaned_unless_a_writer_holds_the_lock(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    uid = "0123456789abcdef0123456789abcdef"
    orphan = features / f".abc.{uid}.tmp"
    orphan.mkdir()
    (orphan / "logits.npy").write_bytes(b"x")
    live = features / f".def.{uid}.tmp"
    live.mkdir()
    fresh = features / f".ghi.{uid}.tmp"
    # a library's own temporary file (safetensors writes `.tmpXXXXXX`, then renames it): its writer is not ours to judge
    foreign = features / ".tmpAbC123"
    foreign.write_bytes(b"x")
    for path in (orphan, orphan / "logits.npy", live, foreign):
        os.utime(path, (time.time() - 60, time.time() - 60))
    with cachedir.lock_for(features / "def"):
        fresh.mkdir()
        removed = cachedir.clean_orphans(tmp_path, older_than=time.time() - 1)
    assert removed == [orphan]
    assert live.exists() and fresh.exists() and foreign.exists() and not orphan.exists()


def test_cache_info_verify_and_clear(cache, cli):
    info = cli("cache", "info", "--format", "json")
    assert info.code == 0, info
    assert '"features"' in info.out and '"models"' in info.out and '"fitted"' in info.out
    assert cli("cache", "verify").code == 0
    refused = cli("cache", "clear")  # stdin is not a terminal here: never delete unasked
    assert refused.code == 2 and "--yes" in refused.err and (cache / "features").exists()
    cleared = cli("cache", "clear", "--yes")
    assert cleared.code == 0 and not any(cache.iterdir())


# ------------------------------------------------------------------ full disk


@pytest.mark.parametrize("command", [("cache", "info"), ("cache", "verify"), ("cache", "clear", "--yes"), ("run", "--suite", "ood", "--methods", "msp")])
def test_a_cache_dir_that_is_a_file_is_exit_2_naming_it(cli, tmp_path, monkeypatch, command):
    # it read as an empty cache ("0 entries", "nothing to clear"), and a run failed every job on its first write
    bogus = tmp_path / "cache-file"
    bogus.write_text("x")
    monkeypatch.setenv("RBX_CACHE_DIR", str(bogus))
    extra = ("--out", str(tmp_path / "store")) if command[0] == "run" else ()
    result = cli(*command, *extra)
    assert result.code == 2 and f"$RBX_CACHE_DIR {bogus} is a file" in " ".join(result.err.split()), result
    assert not (tmp_path / "store").exists()


def test_cache_clear_names_what_it_could_not_delete(tmp_path, monkeypatch, cli):
    root = tmp_path / "cache"
    (root / "fitted").mkdir(parents=True)
    (root / "fitted" / "a.safetensors").write_bytes(b"x")
    (root / "locked").write_bytes(b"x")
    monkeypatch.setenv("RBX_CACHE_DIR", str(root))
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name == "locked":
            raise PermissionError(1, "Operation not permitted", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    result = cli("cache", "clear", "--yes")
    err = " ".join(result.err.split())
    assert result.code == 2 and f"{root / 'locked'}: Operation not permitted" in err and "fix:" in err, result
    assert "internal error" not in err and not (root / "fitted").exists()  # the rest is cleared


def test_injected_enospc_fails_the_jobs_naming_the_path_and_leaves_nothing_half_written(cache, cli, tmp_path, monkeypatch):
    shutil.rmtree(cache / "features")  # the backbone pass must write
    real = os.posix_fallocate

    def full(fd, offset, length):
        if "/features/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full)
    result = cli("--quiet", "run", "--suite", "ood", "--methods", "msp,energy", "--out", str(tmp_path / "store"))
    assert result.code == 1, result
    frame = read_results(tmp_path / "store")
    assert (frame["status"] == "failed").all() and len(frame) == 2
    for error in frame["error"]:
        assert "no space left on device writing" in error and str(cache / "features") in error and "needed" in error
    assert not [p for p in (cache / "features").iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (not root); the injected ENOSPC test covers this path")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_tmpfs_gives_failed_rows_and_exit_1_not_sigbus(tiny_tmpfs, warm, tmp_path):
    shutil.copytree(warm / "cache" / "models", tiny_tmpfs / "models")  # the weights fit; the features do not
    env = dict(os.environ, RBX_CACHE_DIR=str(tiny_tmpfs))
    store = tmp_path / "store"
    run = subprocess.run([sys.executable, "-m", "robustbench_x.cli", "--quiet", "run", "--suite", "ood", "--methods", "msp", "--out", str(store)],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])  # SIGBUS would be -7
    frame = read_results(store)
    assert (frame["status"] == "failed").all()
    assert f"no space left on device writing {tiny_tmpfs}/features/" in frame["error"].iloc[0] and "needed" in frame["error"].iloc[0]
    assert not [p for p in (tiny_tmpfs / "features").iterdir() if p.name.endswith(".tmp")]
