"""Cost of the attacks of rbx_attacks on the built-in CNN: seconds per sample
and the share of time spent in the model's forward and backward passes.

Usage::

    PYTHONPATH=plugins python benchmarks/attack_cost.py [--n 64] [--standard-n 32] [--threads 1] [--skip-standard]

Models: the built-in CNN with its shipped weights on the embedded digits 0-5
(6 classes: ``pgd-10``, ``apgd-ce-t-20``, ``apgd-ce``) and on the ten digits of
``embedded-digits-hier`` (10 classes, the only built-in model AutoAttack
``standard`` can run on: its 9 target classes need 10). Threat model ℓ∞
ε = 0.1 (the digits' default). Each configuration runs once on the first
``--n`` test digits (``--standard-n`` for ``standard``, whose Square attack
makes 5,000 queries per robust sample); the table gives the wall time, seconds
per sample, robust accuracy, and the shares of the wall time inside the
network's forward pass and inside its backward pass (timed at the network's
input and output with identity autograd functions: the backward share is the
time between the gradient reaching the logits and leaving the input). The
rest is the attacks' own arithmetic and Python.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


class _Mark(torch.autograd.Function):
    """Identity whose backward notes the time (``clock[tag]``)."""

    @staticmethod
    def forward(ctx, x, clock, tag):
        ctx.clock, ctx.tag = clock, tag
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.clock[ctx.tag] = time.perf_counter()
        if ctx.tag == "in" and "out" in ctx.clock:
            ctx.clock["backward"] += ctx.clock["in"] - ctx.clock.pop("out")
        return grad, None, None


class Timed(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.clock = {"forward": 0.0, "backward": 0.0}

    def forward(self, x):
        start = time.perf_counter()
        if torch.is_grad_enabled() and x.requires_grad:
            out = _Mark.apply(self.net(_Mark.apply(x, self.clock, "in")), self.clock, "out")
        else:
            out = self.net(x)
        self.clock["forward"] += time.perf_counter() - start
        return out


class _Ctx:
    def record(self, key, value):
        pass


def _setup(dataset_name, subset, n):
    from robustbench_x.api import load_factory
    from robustbench_x.registry import get_registry
    from rbx_attacks import inputs

    registry = get_registry()
    dataset = load_factory(registry.get("datasets", dataset_name).factory)(name=dataset_name, options={}, config_file=None)
    model = load_factory(registry.get("models", "builtin-cnn").factory)(arch=None, options={}, dataset=dataset, log=lambda *a: None)
    mean, std = inputs.normalisation(model.transform())
    source = dataset.samples(subset)
    (x, y, _), = inputs.unit_batches(source, list(range(min(n, len(source)))), inputs.inverted_transform(model.transform(), mean, std), batch_size=10**6)
    net = Timed(inputs.UnitInputModel(model.module, mean, std).eval())
    return net, x, torch.as_tensor(y), len(dataset.classes)


def _run(label, method, net, x, y, classes):
    from rbx_attacks.sequence import run_sequence
    from rbx_attacks.threat import Budget

    net.clock.update(forward=0.0, backward=0.0)
    attacks = method.attacks(net, Budget("Linf", 0.1), classes, 0, "cpu", _Ctx())
    start = time.perf_counter()
    result = run_sequence(net, x, y, attacks, batch_size=250)
    wall = time.perf_counter() - start
    robust = float(np.mean(result.adversarial_prediction == y.numpy()))
    print(f"| {label} | {len(x)} | {wall:.2f} | {wall / len(x):.4f} | {100 * robust:.1f} | "
          f"{100 * net.clock['forward'] / wall:.0f} % | {100 * net.clock['backward'] / wall:.0f} % |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--standard-n", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-standard", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from rbx_attacks.methods import APGDMethod, AutoAttackMethod, PGDMethod

    print(f"torch {torch.__version__}, {args.threads} thread(s), ℓ∞ ε = 0.1")
    print("| configuration | samples | wall s | s / sample | robust acc % | forward | backward |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    net, x, y, classes = _setup("embedded-digits", "id", args.n)
    _run("pgd-10 (digits 0-5)", PGDMethod(), net, x, y, classes)
    _run("apgd-ce-t-20 (digits 0-5)", APGDMethod(n_iter=20), net, x, y, classes)
    _run("apgd-ce (digits 0-5)", AutoAttackMethod(attacks=("apgd-ce",)), net, x, y, classes)
    if not args.skip_standard:
        net, x, y, classes = _setup("embedded-digits-hier", "query", args.standard_n)
        _run("pgd-10 (digits 0-9)", PGDMethod(), net, x, y, classes)
        _run("autoattack-standard (digits 0-9)", AutoAttackMethod(), net, x, y, classes)


if __name__ == "__main__":
    main()
