"""Peak memory and time of :func:`rbx_retrieval.ranking.rank_gallery`.

Ranks a gallery of 100,000 random **128-d float32** embeddings (L2-normalised)
against 1,000 queries, top-100, in chunks of 256 queries, and prints the peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, a high-water
mark) before and after, the documented bound of the extra memory
(:func:`rbx_retrieval.ranking.rank_gallery_memory_bound`), the size a full
``Q x G`` score matrix would need, and the wall time. The first 10 rankings are
checked against a full numpy sort.

Run: ``python benchmarks/retrieval_memory.py [--queries 1000] [--gallery 100000]
[--dim 128] [--k 100] [--chunk-size 256]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rbx_retrieval.ranking import rank_gallery, rank_gallery_memory_bound  # noqa: E402

MIB = 1024 * 1024


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    rng = np.random.default_rng(a.seed)
    gallery = rng.standard_normal((a.gallery, a.dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rank_gallery(queries[:2], gallery[:10], 3)  # warm-up: torch/BLAS thread pools are not counted

    threads = torch.get_num_threads()
    bound = rank_gallery_memory_bound(a.queries, a.gallery, a.dim, a.k, a.chunk_size, dtype_bytes=4, n_threads=threads)
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    idx, scores = rank_gallery(queries, gallery, a.k, a.chunk_size)
    elapsed = time.perf_counter() - t0
    after = peak_rss_bytes()

    for i in range(10):  # spot check against a full sort (score desc, index asc)
        s = gallery.astype(np.float64) @ queries[i].astype(np.float64)
        order = np.lexsort((np.arange(s.size), -s))[: a.k]
        assert np.array_equal(np.sort(idx[i]), np.sort(order)) or np.allclose(
            np.sort(scores[i]), np.sort(s[order]).astype(np.float32), atol=1e-6
        ), f"query {i} differs from a full sort"

    print(f"rank_gallery: Q={a.queries} queries x G={a.gallery} gallery, D={a.dim} float32, k={a.k}, "
          f"chunk_size={a.chunk_size}, torch threads={threads}, torch {torch.__version__}")
    print(f"inputs: gallery {gallery.nbytes / MIB:.1f} MiB + queries {queries.nbytes / MIB:.1f} MiB (allocated before 'before')")
    print(f"peak RSS before: {before / MIB:.1f} MiB")
    print(f"peak RSS after:  {after / MIB:.1f} MiB  (increase {(after - before) / MIB:.1f} MiB)")
    print("documented bound on the extra memory: C*G*b + 2*T*G*(b+8) + 2*C*(k+1)*(b+8) + Q*k*(b+8)")
    print(f"  = {bound / MIB:.1f} MiB  (C={min(a.chunk_size, a.queries)}, b=4, T={threads})")
    print(f"a full Q x G float32 score matrix would need {a.queries * a.gallery * 4 / MIB:.1f} MiB")
    print(f"time: {elapsed:.3f} s ({a.queries / elapsed:.0f} queries/s); outputs {idx.shape} {idx.dtype}, {scores.dtype}")
    print(f"increase within bound: {after - before <= bound}")


if __name__ == "__main__":
    main()
