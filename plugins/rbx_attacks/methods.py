"""Attacks as methods of the ``adversarial`` suites.

An attack method is a :class:`AttackMethod`: the suite's evaluator
(:mod:`rbx_attacks.evaluate`) gives it the model on [0, 1] inputs
(:class:`rbx_attacks.inputs.UnitInputModel`), the threat model and the number
of classes, and it returns its sequence of named attacks, which
:func:`rbx_attacks.sequence.run_sequence` runs as AutoAttack runs its own.

* ``pgd-10`` (:class:`PGDMethod`): our PGD (:mod:`rbx_attacks.pgd`) on the
  cross-entropy, 10 steps of ε/4, one random start. No extra dependency.
* ``autoattack-standard`` and its four attacks one at a time (``apgd-ce``,
  ``apgd-t``, ``fab-t``, ``square``), :class:`AutoAttackMethod`: the attack
  objects of ``pyautoattack`` 0.2.0 (PyPI; algorithmically identical to
  fra31/auto-attack at a39220048b3c9f2cca9a4d3a54604793c68eca7e) built by its
  ``AutoAttack(version="standard")``, so every setting is the reference's:
  APGD-CE 100 iterations 1 restart; APGD-T 100 iterations, 9 target classes;
  FAB-T 100 iterations, 9 targets; Square 5,000 queries, p_init 0.8; the
  per-attack seed set as the reference sets it. Needs ≥ 10 classes for the
  targeted attacks (the 9 targets are the 2nd..10th highest clean logits).
* ``apgd-ce-t-20`` (:class:`APGDMethod`): a cheaper configuration with its own
  name, never called AutoAttack: APGD-CE then APGD-T with 20 iterations each,
  1 restart, min(9, C − 1) target classes (C = number of classes; targeted DLR
  needs C ≥ 4). Built fresh with ``n_iter=20``: APGD fixes its step-size
  checkpoints from ``n_iter`` in the constructor, so lowering ``n_iter`` on a
  built attack would keep the 100-iteration schedule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from robustbench_x.api import Context, Method
from rbx_attacks.pgd import pgd
from rbx_attacks.sequence import Attack
from rbx_attacks.threat import Budget

#: The order of AutoAttack "standard" (fra31/auto-attack ``_set_version('standard')``).
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
#: Attacks of "standard" that attack 9 target classes: they need 10 classes.
TARGETED = {"apgd-t", "fab-t"}


class Unsupported(Exception):
    """The attack cannot run on this model (too few classes): the reason is reported as the metrics' error."""


class AttackMethod(Method):
    """Base of the attack methods. ``norm`` / ``eps``: the threat model; None
    takes the suite's norm and the dataset's protocol ε (:mod:`rbx_attacks.protocol`).
    ``batch_size``: samples per attack call (AutoAttack's default, 250)."""

    def __init__(self, norm: str | None = None, eps: float | str | None = None, batch_size: int = 250, **params: Any) -> None:
        super().__init__(norm=norm, eps=eps, batch_size=batch_size, **params)
        self.batch_size = int(batch_size)

    def budget(self, suite_norm: str, protocol_budget: Budget | None) -> Budget | None:
        """This method's threat model: its own ``norm``/``eps`` where given, else the protocol's."""
        norm = self.params.get("norm") or suite_norm
        eps = self.params.get("eps")
        if eps is not None:
            return Budget.parse(norm, eps)
        if protocol_budget is not None and protocol_budget.norm == norm:
            return protocol_budget
        return None

    def attacks(self, model: torch.nn.Module, budget: Budget, num_classes: int, seed: int, device: str, ctx: Context) -> list[tuple[str, Attack]]:
        raise NotImplementedError

    def check(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context) -> None:
        """Checks of the defence on the first batch, before any attack (none by default)."""

    def check_after(self, robust_after: dict[str, float], clean: float, ctx: Context) -> None:
        """Checks of the result, given the robust accuracy after each attack in order (none by default)."""

    def score(self, ctx: Context, subset: str):
        """Per sample of ``subset`` (batches of ``ctx.loader``): ``prediction``
        (clean), ``adversarial_prediction`` and ``perturbation_norm``, under the
        method's own threat model or the ℓ∞ protocol of the dataset (by name).
        The adversarial suites use :meth:`attacks` through their evaluator."""
        from rbx_attacks.evaluate import score_subset

        return score_subset(self, ctx, subset)


class PGDMethod(AttackMethod):
    """PGD on the cross-entropy (Madry et al., ICLR 2018, §2; MadryLab/cifar10_challenge
    ``pgd_attack.py``): ``steps`` steps of ``step_ratio · ε``, random start in
    the ball, ``restarts`` random restarts (a sample counts as broken if any
    restart breaks it). Defaults 10 steps of ε/4 (2/255 at ε = 8/255, the
    usual CIFAR PGD-10 evaluation) and 1 restart."""

    def __init__(self, steps: int = 10, step_ratio: float = 0.25, restarts: int = 1, **params: Any) -> None:
        super().__init__(steps=steps, step_ratio=step_ratio, restarts=restarts, **params)
        self.steps, self.step_ratio, self.restarts = int(steps), float(step_ratio), int(restarts)

    def attacks(self, model, budget, num_classes, seed, device, ctx):
        if num_classes < 2:
            raise Unsupported(f"PGD needs at least 2 classes; the model has {num_classes}")
        generator = torch.Generator(device=device).manual_seed(int(seed))

        def loss_for(y: torch.Tensor):
            return lambda z: F.cross_entropy(model(z), y, reduction="none")

        def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            best, open_ = None, torch.ones(len(x), dtype=torch.bool, device=x.device)
            for _ in range(self.restarts):
                with torch.enable_grad():
                    adv = pgd(loss_for(y), x, norm=budget.norm, eps=budget.eps, steps=self.steps,
                              step_size=self.step_ratio * budget.eps, random_start=True, generator=generator)
                hit = model(adv).argmax(1) != y
                if best is None:
                    best = adv
                else:  # a later restart only replaces the samples no earlier one broke
                    best[open_ & hit] = adv[open_ & hit]
                open_ &= ~hit
            return best

        return [(f"pgd-{self.steps}", attack)]


def _autoattack(model, budget: Budget, seed: int, device: str):
    from pyautoattack import AutoAttack

    return AutoAttack(model, norm=budget.norm, eps=budget.eps, version="standard", seed=int(seed), device=device)


def _standard_attack(adversary, name: str) -> Attack:
    """One attack of ``adversary`` (built with version="standard"), called as
    ``run_standard_evaluation`` calls it (seed set before every call)."""

    def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if name == "apgd-ce":
            adversary.apgd.loss = "ce"
            adversary.apgd.seed = adversary.get_seed()
            return adversary.apgd.perturb(x, y)
        if name == "apgd-t":
            adversary.apgd_targeted.seed = adversary.get_seed()
            return adversary.apgd_targeted.perturb(x, y)
        if name == "fab-t":
            adversary.fab.targeted = True
            adversary.fab.n_restarts = 1
            adversary.fab.seed = adversary.get_seed()
            return adversary.fab.perturb(x, y)
        if name == "square":
            adversary.square.seed = adversary.get_seed()
            return adversary.square.perturb(x, y)
        raise ValueError(f"unknown AutoAttack attack {name!r}; known: {', '.join(STANDARD)}")

    return attack


class AutoAttackMethod(AttackMethod):
    """AutoAttack "standard" (Croce & Hein, "Reliable evaluation of adversarial
    robustness with an ensemble of diverse parameter-free attacks", ICML 2020,
    §4; fra31/auto-attack ``autoattack/autoattack.py``), or a part of its
    sequence (``attacks``), with the reference's settings for each attack."""

    def __init__(self, attacks: tuple[str, ...] | list[str] = STANDARD, **params: Any) -> None:
        super().__init__(attacks=list(attacks), **params)
        self.sequence = tuple(attacks)
        unknown = [a for a in self.sequence if a not in STANDARD]
        if unknown:
            raise ValueError(f"unknown AutoAttack attacks {unknown}; known: {', '.join(STANDARD)}")

    def attacks(self, model, budget, num_classes, seed, device, ctx):
        targeted = [a for a in self.sequence if a in TARGETED]
        if targeted and num_classes < 10:
            raise Unsupported(
                f"AutoAttack 'standard' runs {' and '.join(targeted)} on 9 target classes (the 2nd to 10th highest logits) and needs "
                f"at least 10 classes; the model has {num_classes}. A reduced configuration has its own name: apgd-ce-t-20 (min(9, C-1) targets)")
        if num_classes < 2:
            raise Unsupported(f"AutoAttack needs at least 2 classes; the model has {num_classes}")
        adversary = _autoattack(model, budget, seed, device)
        return [(name, _standard_attack(adversary, name)) for name in self.sequence]

    def check(self, model, x, y, ctx):
        """The reference's checks before attacking (``run_standard_evaluation``:
        a randomised defence, probabilities instead of logits, a defence that
        computes gradients in its forward pass), their warnings recorded."""
        from pyautoattack import checks

        warnings = _Warnings()
        checks.funcs.update(dict.fromkeys(checks.funcs, 0))  # the reference's counters are module-global and never reset
        checks.check_randomized(model, x, y, logger=warnings)
        checks.check_range_output(model, x, logger=warnings)
        checks.check_dynamic(model, x, False, logger=warnings)
        warnings.record(ctx, "autoattack checks")

    def check_after(self, robust_after, clean, ctx):
        """The reference's check after the sequence: Square (black-box) breaking
        points the white-box attacks left is a sign of gradient masking."""
        from pyautoattack import checks

        warnings = _Warnings()
        checks.check_square_sr({"clean": clean, **robust_after}, logger=warnings)
        warnings.record(ctx, "autoattack square check")


class _Warnings:
    """A logger for pyautoattack's checks that keeps their messages for the job's diagnostics."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message: str) -> None:
        self.messages.append(message.split(" See ")[0])  # the reference's pointer to its own flags_doc.md

    def record(self, ctx, key: str) -> None:
        if self.messages:
            ctx.record(key, "; ".join(self.messages))


class APGDMethod(AttackMethod):
    """APGD-CE then APGD-T (Croce & Hein, ICML 2020, §3 and §4; fra31/auto-attack
    ``autoattack/autopgd_base.py``), ``n_iter`` iterations each, 1 restart,
    ``min(n_target_classes, C - 1)`` target classes; otherwise AutoAttack's
    settings (rho 0.75, 1 EOT iteration)."""

    def __init__(self, n_iter: int = 20, n_target_classes: int = 9, **params: Any) -> None:
        super().__init__(n_iter=n_iter, n_target_classes=n_target_classes, **params)
        self.n_iter, self.n_target_classes = int(n_iter), int(n_target_classes)

    def attacks(self, model, budget, num_classes, seed, device, ctx):
        if num_classes < 4:
            raise Unsupported(f"APGD-T's targeted DLR loss uses the 3rd and 4th highest logits and needs at least 4 classes; the model has {num_classes}")
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

        targets = min(self.n_target_classes, num_classes - 1)
        ctx.record("target_classes", targets)
        common = {"n_iter": self.n_iter, "norm": budget.norm, "n_restarts": 1, "eps": budget.eps, "seed": int(seed),
                  "eot_iter": 1, "rho": 0.75, "device": device}
        ce = APGDAttack(model, loss="ce", **common)
        targeted = APGDAttack_targeted(model, n_target_classes=targets, **common)

        def run(attack) -> Attack:
            return lambda x, y: attack.perturb(x, y)

        return [(f"apgd-ce-{self.n_iter}", run(ce)), (f"apgd-t-{self.n_iter}", run(targeted))]
