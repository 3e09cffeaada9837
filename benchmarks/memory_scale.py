"""Memory at ImageNet-C scale: a synthetic feature cache of N samples
(default 500,000: 250,000 ID + 250,000 OOD) with 2048-d features and 1000-class
logits, written through the real :class:`FeatureCache` (memory-mapped .npy),
scored by the real MSP and Energy methods (chunked reads of the memory map),
then every OOD and failure metric on the columnar score arrays.

Prints the on-disk size of the cache, the peak resident memory (RSS) after
each stage and the throughput (samples/s) of scoring and of the metrics. The
features alone are N × 2048 × 4 bytes (4.1 GB at the default N), more than the
peak RSS: they are never all in RAM.

Run: ``python benchmarks/memory_scale.py [--n 500000] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robustbench_x.api import Dataset, Model
from robustbench_x.cache import FeatureCache
from robustbench_x.testing import ArrayContext

D, C, CHUNK = 2048, 1000, 20_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_split() -> str:
    """Current anonymous vs file-backed resident memory: pages of a memory map
    count in RSS while mapped but are page cache the kernel can drop."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) / 1024
    return f"now anonymous {fields.get('RssAnon', 0):7.1f} MiB, file-backed {fields.get('RssFile', 0):7.1f} MiB"


class _Fixed(Model, Dataset):
    """Stands in for a model and a dataset: only fingerprints are needed."""

    def fingerprint(self, subset: str | None = None) -> str:
        return f"synthetic-{subset}"


def _write(directory: Path, n: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = np.lib.format.open_memmap(directory / "logits.npy", mode="w+", dtype=np.float32, shape=(n, C))
    feats = np.lib.format.open_memmap(directory / "features.npy", mode="w+", dtype=np.float32, shape=(n, D))
    labels = np.lib.format.open_memmap(directory / "labels.npy", mode="w+", dtype=np.int64, shape=(n,))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        y = rng.integers(0, C, m)
        z = rng.standard_normal((m, C), dtype=np.float32)
        z[np.arange(m), y] += shift + rng.random(m, dtype=np.float32) * 4  # confident-ish, some mistakes
        logits[start : start + m] = z
        feats[start : start + m] = rng.standard_normal((m, D), dtype=np.float32)
        labels[start : start + m] = y if shift > 0 else -1
    for a in (logits, feats, labels):
        a.flush()
    del logits, feats, labels
    np.save(directory / "sample_ids.npy", np.char.add("s", np.arange(n).astype(str)), allow_pickle=False)


def _never(directory: Path) -> None:
    raise RuntimeError("the child process should have written this entry")


def _build_cache(root: Path, n: int) -> None:
    half = n // 2
    cache, fake = FeatureCache(root), _Fixed()
    cache.get(fake, fake, "id", lambda d: _write(d, half, 3.0, 0))
    cache.get(fake, fake, "ood/synthetic", lambda d: _write(d, n - half, 0.0, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="rbx-memory-"))
    half = args.n // 2
    cache, fake = FeatureCache(root), _Fixed()
    print(f"N = {args.n:,} samples ({half:,} ID + {args.n - half:,} OOD), features {D}-d, logits {C} classes")
    print(f"peak RSS at start                 : {peak_rss_mib():8.1f} MiB")
    t = time.perf_counter()
    # Written by a child process, so this process's peak RSS measures reading, scoring and metrics only.
    import multiprocessing as mp

    proc = mp.get_context("spawn").Process(target=_build_cache, args=(root, args.n))
    proc.start()
    proc.join()
    outputs = {s: cache.get(fake, fake, s, _never) for s in ("id", "ood/synthetic")}
    size = sum(f.stat().st_size for f in cache.root.rglob("*.npy"))
    print(f"cache written by a child ({size / 2**30:.2f} GiB on disk) in {time.perf_counter() - t:6.1f} s; opened memory-mapped")

    from rbx_posthoc.logit import MSP, Energy

    ctx = ArrayContext(outputs, num_classes=C)
    ctx.wants = frozenset({"score", "confidence", "prediction"})
    scores = {}
    for method in (MSP(), Energy()):
        t = time.perf_counter()
        scores[type(method).__name__] = {s: method.score(ctx, s) for s in outputs}
        dt = time.perf_counter() - t
        print(f"{type(method).__name__:6s} scores: {args.n / dt:12,.0f} samples/s; peak RSS {peak_rss_mib():8.1f} MiB; {rss_split()}")

    from robustbench_x.metrics import failure, ood

    msp = scores["MSP"]
    labels = np.asarray(outputs["id"].labels)
    correct = msp["id"]["prediction"] == labels
    t = time.perf_counter()
    values = {}
    for name in ("auroc", "fpr_at_95_tpr", "aupr_in", "aupr_out", "detection_error"):
        values[name] = getattr(ood, name)(score_id=msp["id"]["score"], score_ood=msp["ood/synthetic"]["score"])
    for name in ("failure_auroc", "ap_error", "aurc", "eaurc", "augrc"):
        values[name] = getattr(failure, name)(confidence=msp["id"]["confidence"], correct=correct)
    dt = time.perf_counter() - t
    print(f"10 metrics on {args.n:,} scores: {args.n * 10 / dt:12,.0f} sample-metrics/s ({dt:.2f} s); peak RSS {peak_rss_mib():8.1f} MiB; {rss_split()}")
    print("values: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))
    print(f"features alone would need {args.n * D * 4 / 2**30:.2f} GiB in RAM; peak RSS stayed at {peak_rss_mib() / 1024:.2f} GiB")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
