"""First-party plugin for adversarial robustness: attacks as methods, the
``adversarial`` (ℓ∞) and ``adversarial-l2`` suites, the RobustBench protocol
as data and its ``model_info`` JSON files.

Registers (specs only; torch and pyautoattack load when a job runs):

* suites ``adversarial`` and ``adversarial-l2`` (task ``classification``,
  method output ``adversarial_prediction``, evaluator
  :mod:`rbx_attacks.evaluate`, page :mod:`rbx_attacks.page`); datasets take
  part when they provide ``attack_protocol`` (a threat model in
  :mod:`rbx_attacks.protocol`);
* metrics ``clean-accuracy`` and ``robust-accuracy`` (kind ``adversarial``,
  :mod:`rbx_attacks.metrics`);
* methods (:mod:`rbx_attacks.methods`): ``pgd-10`` (no extra dependency),
  ``apgd-ce-t-20``, ``autoattack-standard`` and its white-box attacks alone,
  ``apgd-ce``, ``apgd-t``, ``fab-t`` (optional extra ``attacks``:
  ``pyautoattack``); Square runs inside ``autoattack-standard`` only (alone,
  its 5,000 queries would cost the embedded default run about a minute);
* dataset types ``cifar10`` and ``cifar100`` (the binary releases,
  :mod:`rbx_attacks.cifar`).

:mod:`rbx_attacks.pgd` is the attack core other plugins may import (PGD in an
ℓ∞ or ℓ2 ball, the projection, the :class:`~rbx_attacks.threat.Budget`
record). :mod:`rbx_attacks.robustbench` imports RobustBench's published
``model_info`` files and exports measured results in their shape
(``python -m rbx_attacks.robustbench``).
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec, MethodSpec, MetricSpec, SuiteSpec

_M = "rbx_attacks.methods"
_AA = ("pyautoattack",)
_INSTALL = "pip install 'robustbench_x[attacks]'"
_NEEDS = {"input_grad"}
_OUT = {"adversarial_prediction"}
_AA_PAPER = "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, ICML 2020"
TOKEN = "attack_protocol"

METRICS = [
    MetricSpec("clean-accuracy", "adversarial", "rbx_attacks.metrics:correct", True, 100, "accuracy on the clean images of the attacked samples",
               "mean of 1[clean prediction = label] over the protocol's samples", check_cases="rbx_attacks.metrics:check_cases"),
    MetricSpec("robust-accuracy", "adversarial", "rbx_attacks.metrics:correct", True, 100,
               "robust accuracy: correct on the clean image and on every attack of the sequence within the threat model",
               "mean of 1[adversarial prediction = label]; a sample is robust iff no attack in the sequence found a misclassified point "
               "in the ε-ball ∩ [0,1] (AutoAttack's robust_flags); per attack: subset after/<attack>", check_cases="rbx_attacks.metrics:check_cases"),
]

#: How a dataset comes to have a threat model: the fix of the refusal of one that has none.
_HINT = ("store the images as a type with a threat model: `type: cifar10` or `cifar100` (root: the binary release's folder) "
         "or `type: imagenet` (a wnid tree), or run the built-in embedded-digits; for other images, register a dataset type "
         "that provides attack_protocol and an attack with its own eps as a plugin (docs/datasets.md#adversarial-suites-on-other-images)")
_SUITE = {"method_output": "adversarial_prediction", "metrics": ("clean-accuracy", "robust-accuracy"), "headline": ("robust-accuracy", "clean-accuracy"),
          "subsets": ("id",), "dataset_requires": {TOKEN}, "dataset_hint": _HINT, "evaluator": "rbx_attacks.evaluate:evaluate", "renderer": "rbx_attacks.page:render"}
SUITES = [
    SuiteSpec("adversarial", summary="clean and robust accuracy under an ℓ∞ threat model (RobustBench: CIFAR 8/255, ImageNet 4/255), per attack", **_SUITE),
    SuiteSpec("adversarial-l2", summary="clean and robust accuracy under an ℓ2 threat model (RobustBench: CIFAR-10 0.5), per attack", **_SUITE),
]


def _aa(name: str, attacks: tuple[str, ...], summary: str) -> MethodSpec:
    return MethodSpec(name, f"{_M}:AutoAttackMethod", requires=_NEEDS, outputs=_OUT, params={"attacks": list(attacks)}, summary=summary,
                      paper=_AA_PAPER, packages=_AA, install=_INSTALL)


METHODS = [
    MethodSpec("pgd-10", f"{_M}:PGDMethod", requires=_NEEDS, outputs=_OUT, params={"steps": 10, "step_ratio": 0.25, "restarts": 1},
               summary="PGD on the cross-entropy: 10 steps of ε/4, 1 random start (no extra dependency)",
               paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018", stochastic=True),
    MethodSpec("apgd-ce-t-20", f"{_M}:APGDMethod", requires=_NEEDS, outputs=_OUT, params={"n_iter": 20, "n_target_classes": 9},
               summary="APGD-CE then APGD-T, 20 iterations each, 1 restart, min(9, C-1) targets: a cheaper sequence, not AutoAttack",
               paper=_AA_PAPER, packages=_AA, install=_INSTALL,
               deviations=("20 iterations per attack instead of AutoAttack's 100, no FAB-T and no Square, and min(9, C − 1) target classes: "
                           "a cheaper sequence that can only over-estimate AutoAttack's robust accuracy.",)),
    _aa("autoattack-standard", ("apgd-ce", "apgd-t", "fab-t", "square"),
        "AutoAttack version='standard': APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries); needs ≥ 10 classes"),
    _aa("apgd-ce", ("apgd-ce",), "APGD on the cross-entropy, AutoAttack 'standard' settings (100 iterations, 1 restart)"),
    _aa("apgd-t", ("apgd-t",), "APGD on the targeted DLR loss, AutoAttack 'standard' settings (100 iterations, 9 targets); needs ≥ 10 classes"),
    _aa("fab-t", ("fab-t",), "targeted FAB, AutoAttack 'standard' settings (100 iterations, 9 targets); needs ≥ 10 classes"),
]

DATASETS = [
    DatasetSpec("cifar10", factory="rbx_attacks.cifar:build_cifar10", provides={TOKEN, "train_split"}, option_keys={"root", "label_space"}, required_keys={"root"},
                option_types={"root": "path", "label_space": "str"}, label_space="cifar10",
                summary="CIFAR-10, binary release: <root>/test_batch.bin (+ data_batch_1..5.bin as train); RobustBench's adversarial protocol"),
    DatasetSpec("cifar100", factory="rbx_attacks.cifar:build_cifar100", provides={TOKEN, "train_split"}, option_keys={"root", "label_space"}, required_keys={"root"},
                option_types={"root": "path", "label_space": "str"}, label_space="cifar100",
                summary="CIFAR-100, binary release: <root>/test.bin (+ train.bin), fine labels; RobustBench's adversarial protocol"),
]


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES


@hookimpl
def rbx_methods():
    return METHODS


@hookimpl
def rbx_datasets():
    return DATASETS
