"""Throughput of the rbx batched corruption engine vs the per-image reference.

Usage::

    PYTHONPATH=plugins python benchmarks/corruption_throughput.py [--n 32] [--severities 1,2,3,4,5] [--repeats 3]
                                                                 [--threads N] [--device cpu] [--skip-32]

Runs every ImageNet-C corruption on the same N natural 224x224 images
(scikit-image samples and random crops of them) with

* ours: ``rbx_robustness.engine.corrupt`` on one (N, 3, 224, 224) batch, uint8
  in and uint8 out by default (like the reference; ``--input float`` times
  float [0, 1] in and out instead);
* reference: ``imagecorruptions.corrupt`` (package ``imagecorruptions-imaug``, an
  independent numpy/OpenCV implementation) called image by image on uint8
  arrays, as it is designed to be used.

and prints images/s per corruption (over the requested severities), both on
one CPU thread by default (the engine's default; the reference is
single-threaded numpy; ``--threads 0`` lets torch use its default count), the
ratio ours/reference, and the overall figure (total images / total time over
all corruptions and severities).  Every (corruption, severity) is timed
``--repeats`` times with ours and the reference interleaved, keeping the
minimum of each (the least disturbed run on a shared machine); one warm-up
pass per corruption is run first for both (numba JIT, FFT plans, lazy
imports).  A second table does the same at 32 px with the engine's ``cifar``
preset (the reference has no CIFAR parameters: timing only).  If the
reference package is not installed only our numbers are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from rbx_robustness.engine import CORRUPTIONS, _ops, corrupt  # noqa: E402


def natural_images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """n uint8 (size, size, 3) images: skimage samples resized, then random crops."""
    from PIL import Image
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    srcs = [np.asarray(Image.fromarray(s).convert("RGB")) for s in srcs]
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        s = srcs[i % len(srcs)]
        if i < len(srcs):
            im = Image.fromarray(s).resize((size, size), Image.BILINEAR)
        else:
            h, w = s.shape[:2]
            c = int(rng.randint(min(h, w) // 2, min(h, w) + 1))
            y, x = rng.randint(0, h - c + 1), rng.randint(0, w - c + 1)
            im = Image.fromarray(s[y: y + c, x: x + c]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(im))
    return np.stack(out)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def table(names, sevs, imgs, batch, dev, preset, repeats, ref_corrupt, out=print) -> tuple[float, float]:
    """Per-corruption images/s of ours and of the reference, and their ratio.

    Each (corruption, severity) is timed ``repeats`` times, ours and the
    reference interleaved, and the minimum of each is kept: on a shared
    machine the minimum is the run least disturbed by other processes.
    Returns the total minimal times (ours, reference) over everything."""
    n = len(imgs)
    gen = torch.Generator(device=dev).manual_seed(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    hdr = f"{'corruption':18s} {'ours img/s':>11s} {'ref img/s':>10s} {'ratio':>7s}"
    out(hdr)
    out("-" * len(hdr))
    tot_ours = tot_ref = 0.0
    for name in names:
        corrupt(batch[:2], name, sevs[0], gen, preset=preset)  # warm-up: lazy imports, FFT plans, numba JIT
        if ref_corrupt:
            ref_corrupt(imgs[0], sevs[0], name)
        t_ours = t_ref = 0.0
        for s in sevs:
            best_ours = best_ref = float("inf")
            for _ in range(repeats):
                best_ours = min(best_ours, _time(lambda: (corrupt(batch, name, s, gen, preset=preset), sync())))
                if ref_corrupt:
                    best_ref = min(best_ref, _time(lambda: [ref_corrupt(im, s, name) for im in imgs]))
            t_ours += best_ours
            t_ref += best_ref if ref_corrupt else 0.0
        tot_ours += t_ours
        tot_ref += t_ref
        n_done = n * len(sevs)
        line = f"{name:18s} {n_done / t_ours:11.1f}"
        if ref_corrupt:
            line += f" {n_done / t_ref:10.1f} {t_ref / t_ours:6.1f}x"
        out(line)
    n_all = n * len(sevs) * len(names)
    out("-" * len(hdr))
    line = f"{'overall':18s} {n_all / tot_ours:11.1f}"
    if ref_corrupt:
        line += f" {n_all / tot_ref:10.1f} {tot_ref / tot_ours:6.1f}x"
    out(line)
    return tot_ours, tot_ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--severities", default="1,2,3,4,5")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per (corruption, severity); the minimum is kept")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads of the engine's CPU path (rbx_robustness.engine._ops.CPU_THREADS); "
                         "default 1 = the engine's default and like for like with the single-threaded "
                         "reference; 0 = torch's default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corruptions", default="", help="comma list (default: all 19)")
    ap.add_argument("--input", choices=("uint8", "float"), default="uint8",
                    help="dtype of our batch: uint8 (default, like the reference's uint8 arrays in and out) or float [0, 1]")
    ap.add_argument("--skip-32", action="store_true", help="skip the 32 px CIFAR-preset table")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    _ops.CPU_THREADS = args.threads if args.threads > 0 else None
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sevs = [int(s) for s in args.severities.split(",")]
    names = args.corruptions.split(",") if args.corruptions else list(CORRUPTIONS)
    dev = torch.device(args.device)

    try:
        from imagecorruptions import corrupt as ref_corrupt
    except ImportError:  # pragma: no cover
        ref_corrupt = None

    print(f"{args.n} images, severities {sevs}, {args.repeats} interleaved repeats (minimum kept), device {dev}, "
          f"our input {args.input}, torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, torch {torch.__version__}")
    print(f"reference: {'imagecorruptions (imagecorruptions-imaug), per image on uint8 arrays' if ref_corrupt else 'not installed'}")
    for size, preset in ((224, "imagenet"), (32, "cifar")):
        if size == 32 and args.skip_32:
            continue
        imgs = natural_images(args.n, size)
        # the HWC arrays seen as (N, 3, H, W) (channels-last strides), as a decoded batch is
        batch = torch.from_numpy(imgs).permute(0, 3, 1, 2)
        batch = (batch if args.input == "uint8" else batch.float().div(255.0)).to(dev)
        print(f"\n{size} px, engine preset '{preset}'" + (" (the reference applies its own ImageNet parameters: a timing comparison only)" if size == 32 else ""))
        tot_ours, tot_ref = table(names, sevs, imgs, batch, dev, preset, args.repeats, ref_corrupt)
        print(f"total time: ours {tot_ours:.2f} s" + (f", reference {tot_ref:.2f} s" if ref_corrupt else ""))


if __name__ == "__main__":
    main()
