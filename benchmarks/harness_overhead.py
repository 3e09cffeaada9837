"""How much the harness adds over a plain PyTorch loop, and what extra
post-hoc methods cost once the backbone has run.

Builds an ImageFolder (1,000 ID test, 1,000 OOD, 200 train, 100 val images of
64×64, 10 classes) and a timm ``resnet18`` checkpoint (random weights; the
numbers are about time, not accuracy), then times, each as a fresh process
with a fresh feature cache:

(a) ``rbx run --suite ood --methods msp``;
(b) ``rbx run --suite ood`` with every post-hoc method (no gradient method);
(c) a plain script: torchvision ImageFolder + DataLoader, the same timm
    transform and forward pass, MSP, scikit-learn AUROC.

Prints a/c (target ≤ 1.15: the harness adds little) and b/a (target ≤ 1.3:
the backbone runs once whatever the number of post-hoc methods; b also needs
the 300 train/val images that (a) never reads).

Run: ``python benchmarks/harness_overhead.py [--workdir DIR] [--arch resnet18]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

POSTHOC = "msp,maxlogit,energy,mahalanobis,knn,vim,react,gradnorm"

PLAIN = textwrap.dedent(
    """
    import sys, timm, torch, timm.data
    from safetensors.torch import load_file
    from sklearn.metrics import roc_auc_score
    from torchvision.datasets import ImageFolder, DatasetFolder
    from torch.utils.data import DataLoader
    from PIL import Image

    root, ckpt, arch = sys.argv[1], sys.argv[2], sys.argv[3]
    net = timm.create_model(arch, pretrained=False, num_classes=10)
    net.load_state_dict(load_file(ckpt))
    net.eval()
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=net), is_training=False)
    load = lambda p: Image.open(p).convert("RGB")
    def msp(folder):
        ds = ImageFolder(folder, transform=tf, loader=load)
        out = []
        with torch.inference_mode():
            for x, _ in DataLoader(ds, batch_size=256):
                out.append(net(x).softmax(1).max(1).values)
        return torch.cat(out)
    s_id, s_ood = msp(root + "/test"), msp(root + "/ood_parent")
    y = torch.cat([torch.ones(len(s_id)), torch.zeros(len(s_ood))])
    print("auroc", roc_auc_score(y.numpy(), torch.cat([s_id, s_ood]).numpy()))
    """
)


def make_data(root: Path, arch: str) -> Path:
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    rng = np.random.default_rng(0)
    counts = {"train": 20, "val": 10, "test": 100}
    for split, per_class in counts.items():
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = rng.integers(0, 255, (1, 1, 3)) * 0.5
                img = (base + rng.integers(0, 128, (64, 64, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    ood = root / "ood_parent" / "ood"
    ood.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(ood / f"{i}.png")
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, num_classes=10)
    ckpt = root / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    (root / "datasets.yaml").write_text(
        f"datasets:\n  bench:\n    type: imagefolder\n    root: {root}\n    train: train\n    val: val\n    test: test\n"
        f"    label_space: bench10\n    ood:\n      noise: {ood}\n"
        f"models:\n  bench-model:\n    type: timm\n    arch: {arch}\n    checkpoint: {ckpt}\n    num_classes: 10\n    label_space: bench10\n"
    )
    return ckpt


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement, interleaved; the minimum is reported")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rbx-bench-"))
    data = work / "data"
    if not (data / "datasets.yaml").exists():
        make_data(data, args.arch)
    ckpt = data / "weights.safetensors"
    base = dict(os.environ)
    rbx = [sys.executable, "-m", "robustbench_x.cli", "--quiet", "run", "--suite", "ood", "--config", str(data / "datasets.yaml"),
           "--models", "bench-model", "--datasets", "bench"]
    runs: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(args.repeat):  # interleaved, so a load spike hits every measurement alike
        runs["c"].append(timed([sys.executable, "-c", PLAIN, str(data), str(ckpt), args.arch], base))
        runs["a"].append(timed(rbx + ["--methods", "msp", "--out", str(work / "a"), "--force"], base | {"RBX_CACHE_DIR": str(work / f"cache-a-{time.time_ns()}")}))
        runs["b"].append(timed(rbx + ["--methods", POSTHOC, "--out", str(work / "b"), "--force"], base | {"RBX_CACHE_DIR": str(work / f"cache-b-{time.time_ns()}")}))
    plain, a, b = min(runs["c"]), min(runs["a"]), min(runs["b"])
    print(f"minimum of {args.repeat} interleaved runs each; every run a fresh process with a fresh feature cache")
    print(f"images: 1000 ID test + 1000 OOD (+300 train/val for b), model timm:{args.arch}, {os.cpu_count()} CPUs")
    print(f"(c) plain PyTorch loop + MSP AUROC : {plain:7.2f} s")
    print(f"(a) rbx run, msp only              : {a:7.2f} s")
    print(f"(b) rbx run, {len(POSTHOC.split(','))} post-hoc methods      : {b:7.2f} s")
    print(f"a/c = {a / plain:.3f}   (target <= 1.15)")
    print(f"b/a = {b / a:.3f}   (target <= 1.30)")


if __name__ == "__main__":
    main()
