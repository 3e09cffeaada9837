"""What keying jobs by their checkpoints' content costs (``robustbench_x.digests``).

The planner hashes every model input file (``checkpoint:``, ``members:``, a
detections file) so a checkpoint replaced at the same path is a new job. Three
figures, on a file of ``--size-mb`` random bytes:

1. **first plan**: ``file_digest`` with an empty memo, against a plain
   ``hashlib.sha256`` loop over the same file (ratio ≈ 1: the memo costs nothing);
2. **next runs**: ``file_digest`` in a fresh process with the memo on disk, the
   case of every ``rbx run`` into a finished store (target: milliseconds, not a
   re-hash);
3. **file replaced**: after the file is rewritten, ``file_digest`` hashes it again.

Run: ``python benchmarks/input_digests.py [--size-mb 1024]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = "import sys, time; t = time.perf_counter(); from robustbench_x.digests import file_digest; file_digest(sys.argv[1]); print(time.perf_counter() - t)"


def in_fresh_process(path: Path, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True, capture_output=True, text=True, env=env)
    return float(out.stdout.strip())


def plain_sha256(path: Path) -> float:
    started = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(2**22):
            h.update(block)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.safetensors"
        with open(path, "wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(2**20))
        env = {**os.environ, "RBX_CACHE_DIR": str(Path(tmp) / "cache")}
        reference = plain_sha256(path)
        first = in_fresh_process(path, env)
        warm = sorted(in_fresh_process(path, env) for _ in range(5))[2]
        with open(path, "r+b") as fh:
            fh.write(os.urandom(16))
        replaced = in_fresh_process(path, env)
    print(f"file: {args.size_mb} MiB")
    print(f"plain sha256 loop: {reference:.2f} s")
    print(f"first plan (empty memo): {first:.2f} s  ({first / reference:.2f}x the plain loop)")
    print(f"next runs (memo, median of 5): {warm * 1000:.1f} ms  ({warm / reference:.4f}x)")
    print(f"after the file is replaced: {replaced:.2f} s  ({replaced / reference:.2f}x)")


if __name__ == "__main__":
    main()
