"""First-party uncertainty and failure-prediction methods: sampling-based
predictive uncertainty (MC Dropout, Deep Ensembles) and failure predictors
(TrustScore, ConfidNet).

This module only *lists* the methods (:class:`~robustbench_x.api.MethodSpec`
records with lazy ``"rbx_uncertainty.<module>:<Class>"`` factories). It imports
neither torch, nor scikit-learn, nor the method modules, so ``rbx list`` stays
cheap. A job builds a method as ``factory(**spec.params)``.

=================  ======================  ==============================================
name               module                  definition (``docs/methods.md#<name>``)
=================  ======================  ==============================================
``mc_dropout``     :mod:`.mc_dropout`      mean of T softmaxes with dropout on
``deep_ensemble``  :mod:`.ensemble`        mean of K members' softmaxes
``trust_score``    :mod:`.trust_score`     2nd-NN distance ratio, one KDTree per class
``confidnet``      :mod:`.confidnet`       MLP regressing the true-class probability
=================  ======================  ==============================================

Every method returns ``score`` (higher = more in-distribution) and
``confidence`` (higher = more likely correct) as float64 arrays, and
``prediction`` (int64). The sampling methods also return the averaged
``probs`` and three per-sample uncertainty columns, ``entropy``,
``mutual_information`` and ``variation_ratio`` (higher = *more uncertain*;
they are extra columns, outside :data:`robustbench_x.api.METHOD_OUTPUTS`).
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec

__all__ = ["rbx_methods"]

_SCORE = ("score", "confidence", "prediction")


def _spec(name: str, module_attr: str, **kwargs) -> MethodSpec:
    return MethodSpec(name=name, factory=f"rbx_uncertainty.{module_attr}", **kwargs)


@hookimpl
def rbx_methods() -> list[MethodSpec]:
    """The uncertainty methods this plugin provides; ``params`` are the defaults."""
    return [
        _spec(
            "mc_dropout",
            "mc_dropout:MCDropout",
            requires={"dropout"},
            outputs={*_SCORE, "probs"},
            # T = 50: ConfidNet `test.py --samples` default (docs/methods.md#mc_dropout).
            params={"T": 50, "score": "entropy", "confidence": "msp", "batch_size": 128, "max_rows": 1024},
            summary=(
                "T stochastic passes with only the dropout modules in train mode; p = mean of the T softmaxes; "
                "score = -H[p], confidence = max p; entropy, mutual information and variation ratio as extra columns."
            ),
            paper="Gal & Ghahramani, ICML 2016",
            stochastic=True,
        ),
        _spec(
            "deep_ensemble",
            "ensemble:DeepEnsemble",
            requires={"ensemble"},
            outputs={*_SCORE, "probs"},
            params={"K": 5, "score": "entropy", "confidence": "msp", "batch_size": 128},
            summary=(
                "K independently trained members; p = mean of their softmaxes (not logits); "
                "score = -H[p], confidence = max p; entropy and mutual information as extra columns."
            ),
            paper="Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017",
            deviations=("Members are plain cross-entropy networks, without the paper's optional adversarial training.",),
        ),
        _spec(
            "trust_score",
            "trust_score:TrustScore",
            requires={"logits", "features", "train_split"},
            outputs=set(_SCORE),
            params={"k": 10, "alpha": 0.0, "filtering": "none", "min_dist": 1e-12},
            summary=(
                "d(closest other class) / (d(predicted class) + min_dist), d_c = distance of the penultimate "
                "features to the 2nd nearest training point of class c (one KDTree per class)."
            ),
            paper="Jiang, Kim, Guan & Gupta, NeurIPS 2018",
        ),
        _spec(
            "confidnet",
            "confidnet:ConfidNet",
            requires={"logits", "features", "train_split", "val_split", "grad"},
            outputs=set(_SCORE),
            params={
                "epochs": 100,
                "lr": 1e-4,
                "batch_size": 128,
                "weighting": 1.0,
                "eval_every": 1,
                "feature_dropout": 0.0,
                "finetune_epochs": 0,
                "finetune_lr": 1e-6,
            },
            summary=(
                "MLP d-400-400-400-400-1 on the frozen penultimate features trained by MSE between sigmoid(c) "
                "and the true-class probability; epoch chosen by validation AP-error, ties by validation loss; "
                "confidence = sigmoid(c)."
            ),
            paper="Corbière, Thome, Bar-Hen, Cord & Pérez, NeurIPS 2019",
            stochastic=True,
            deviations=(
                "CPU budget: the head trains for 100 epochs instead of the paper's 500.",
                "The epoch is chosen by validation AP-error with ties (a constant AP-error included) broken by validation "
                "loss; the paper selects by AP-error alone and the official code leaves the choice to the user.",
                "The head trains on the train split's cached, un-augmented features with the encoder's dropout off and "
                "its epoch is chosen on the dataset's val split (official phase 2: augmented inputs, encoder dropout on, "
                "10 % of train held out for the choice); the cloned-encoder fine-tuning phase is off by default.",
            ),
        ),
    ]
