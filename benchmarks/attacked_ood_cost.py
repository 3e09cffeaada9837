"""Cost of the ``ood-attacked`` suite's attack on the embedded default.

Usage::

    python benchmarks/attacked_ood_cost.py [--repeats 3] [--threads 1]

On the built-in CNN and the embedded digits (every subset the suite attacks),
times, per sample, PGD with the suite's threat model (:data:`rbx_attacked_ood.attack.THREAT`)
on an own-score objective (MSP, climbed as log max softmax) and on a
feature-space one (Mahalanobis), and the share of that time spent in the
model's forward and backward passes (the same number of forward + backward
passes timed alone). Each figure is the minimum over ``--repeats`` runs (the
least disturbed on a shared machine). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rbx_attacked_ood.attack import THREAT, DifferentiableModel, attack_score
    from rbx_attacked_ood.objectives import OBJECTIVES
    from rbx_datasets.embedded import build as build_dataset
    from rbx_models.smallcnn import build as build_model
    from robustbench_x.api import load_factory
    from robustbench_x.registry import get_registry
    from robustbench_x.testing import ModelContext

    dataset = build_dataset()
    model = build_model(dataset=dataset, seed=0, log=lambda message: None)
    ctx = ModelContext(model, dataset)
    subsets = ["id"] + [s for s in dataset.subsets() if s.startswith("ood/")]
    x = torch.cat([torch.cat([b for b, _ in ctx.loader(s, 512)]) for s in subsets])
    net = DifferentiableModel(model, x.shape[1])
    pixels = net.pixels(x).clamp(0, 1)
    n = len(pixels)
    print(f"{n} samples ({', '.join(subsets)}), {THREAT}, {args.threads} thread(s), min of {args.repeats}")

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def passes() -> None:  # what PGD costs in the network alone: steps × (forward + backward), batches of 256
        for start in range(0, n, 256):
            for _ in range(THREAT.steps):
                p = pixels[start : start + 256].clone().requires_grad_(True)
                logits, _ = net(p)
                torch.autograd.grad(logits.sum(), p)

    network = best(passes)
    for name in ("msp", "mahalanobis"):
        spec = get_registry().get("methods", name)
        method = load_factory(spec.factory)(**spec.params)
        method.fit(ctx)
        _, loss = OBJECTIVES[name].build(method, ctx)
        seconds = best(lambda: attack_score(net, loss, pixels, direction=-1, threat=THREAT, generator=torch.Generator().manual_seed(0)))
        print(f"{name:12s} PGD-{THREAT.steps}: {1e3 * seconds / n:.3f} ms/sample ({seconds:.2f} s), forward+backward share {network / seconds:.0%}")


if __name__ == "__main__":
    main()
