"""First-party post-hoc scoring methods: scores computed from a trained
classifier without retraining it.

This module only *lists* the methods (:class:`~robustbench_x.api.MethodSpec`
records with lazy ``"rbx_posthoc.<module>:<Class>"`` factories); it imports
neither torch, nor scikit-learn, nor the method modules, so ``rbx list`` stays
cheap. A job builds a method as ``factory(**spec.params)``.

===============================  ====================  =========================================
name                             module                definition (``docs/methods.md#<name>``)
===============================  ====================  =========================================
``msp``                          :mod:`.logit`         max softmax probability
``maxlogit``                     :mod:`.logit`         max logit
``energy``                       :mod:`.logit`         ``T·logsumexp(z/T)``, T = 1
``temperature_scaling``          :mod:`.temperature`   softmax(z/T), T minimises val NLL
``temperature_scaling-lbfgs``    :mod:`.temperature`   the reference script's L-BFGS fit of T
``odin``                         :mod:`.odin`          temperature + input perturbation
``gradnorm``                     :mod:`.gradnorm`      closed-form ``‖Cp−1‖₁‖h‖₁``
``mahalanobis``                  :mod:`.mahalanobis`   *vanilla* penultimate-layer variant
``knn``                          :mod:`.knn`           −(squared) distance to k-th neighbour
``vim``                          :mod:`.vim`           energy − α·virtual logit
``react``                        :mod:`.react`         energy of clipped features
===============================  ====================  =========================================

Every method returns ``score`` (higher = more in-distribution) and
``confidence`` (the same ranking, used as a confidence scoring function for
failure prediction, as FD-Shifts does), plus ``probs`` / ``prediction`` where
the method defines them.
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec

__all__ = ["rbx_methods"]

_SCORE = ("score", "confidence")


def _spec(name: str, module_attr: str, **kwargs) -> MethodSpec:
    return MethodSpec(name=name, factory=f"rbx_posthoc.{module_attr}", **kwargs)


@hookimpl
def rbx_methods() -> list[MethodSpec]:
    """The post-hoc methods this plugin provides; ``params`` are the defaults."""
    return [
        _spec(
            "msp",
            "logit:MSP",
            requires={"logits"},
            outputs={*_SCORE, "probs", "prediction"},
            params={},
            summary="Maximum softmax probability max_c softmax(z)_c, emitted minus 1 (same order, no tie where it rounds to 1).",
            paper="Hendrycks & Gimpel, ICLR 2017",
        ),
        _spec(
            "maxlogit",
            "logit:MaxLogit",
            requires={"logits"},
            outputs={*_SCORE, "prediction"},
            params={},
            summary="Maximum logit max_c z_c.",
            paper="Hendrycks et al., ICML 2022",
        ),
        _spec(
            "energy",
            "logit:Energy",
            requires={"logits"},
            outputs={*_SCORE, "prediction"},
            params={"temperature": 1.0},
            summary="Negative free energy T*logsumexp(z/T), T = 1.",
            paper="Liu et al., NeurIPS 2020",
        ),
        _spec(
            "temperature_scaling",
            "temperature:TemperatureScaling",
            requires={"logits", "val_split"},
            outputs={*_SCORE, "probs", "prediction"},
            params={"t_min": 0.01, "t_max": 100.0},
            summary="softmax(z/T), T the minimiser of the validation NLL (bounded search on log T in [t_min, t_max]); score = max softmax(z/T) - 1.",
            paper="Guo et al., ICML 2017",
        ),
        _spec(
            "temperature_scaling-lbfgs",
            "temperature:TemperatureScalingLBFGS",
            requires={"logits", "val_split"},
            outputs={*_SCORE, "probs", "prediction"},
            params={"init_temperature": 1.5, "lr": 0.01, "max_iter": 200, "line_search_fn": None},
            summary="softmax(z/T), T from the reference script's single L-BFGS step (T0 1.5, lr 0.01, 200 iterations).",
            paper="Guo et al., ICML 2017",
            deviations=(
                "Reproduces gpleiss/temperature_scaling's fit (one L-BFGS step, lr 0.01, no line search), which can stop "
                "short of the validation-NLL minimiser the paper defines; temperature_scaling is the minimiser.",
            ),
        ),
        _spec(
            "odin",
            "odin:ODIN",
            requires={"logits", "input_grad"},
            outputs={*_SCORE, "prediction"},
            params={"temperature": 1000.0, "epsilon": 0.0014},
            deviations=(
                "Fixed T = 1000 and ε = 0.0014 on every dataset; the paper tunes both per dataset on OOD validation data.",
            ),
            summary="Max softmax(f(x~)/T) after a signed-gradient input step x~ = x - eps*sign(g)/std.",
            paper="Liang, Li & Srikant, ICLR 2018",
        ),
        _spec(
            "gradnorm",
            "gradnorm:GradNorm",
            requires={"logits", "features", "linear_head"},
            outputs=set(_SCORE),
            params={"temperature": 1.0},
            summary="L1 norm of the last-layer weight gradient of sum_c -log softmax(z/T)_c, in closed form.",
            paper="Huang, Geng & Li, NeurIPS 2021",
        ),
        _spec(
            "mahalanobis",
            "mahalanobis:Mahalanobis",
            requires={"features", "train_split"},
            outputs=set(_SCORE),
            params={},
            summary=(
                "Vanilla Mahalanobis (ViM-repo variant): -min_c Mahalanobis distance of the penultimate "
                "features to the class means, tied covariance; no input preprocessing, no layer ensemble."
            ),
            paper="Lee et al., NeurIPS 2018 (vanilla variant as in Wang et al., CVPR 2022)",
            deviations=(
                "The vanilla variant (penultimate layer only, no input preprocessing, no feature ensemble with a "
                "logistic-regression detector), as the ViM and OpenOOD baselines run it, not the paper's full method.",
            ),
        ),
        _spec(
            "knn",
            "knn:KNN",
            check="rbx_posthoc.knn:check",
            requires={"features", "train_split"},
            outputs=set(_SCORE),
            params={"k": 50},
            deviations=(
                "Fixed k = 50, the paper's CIFAR-10 value, on every dataset; OpenOOD v1.5 can search k in {50, …, 1000} "
                "on OOD validation data, so its numbers differ where the search picks another k.",
            ),
            summary="Minus the squared L2 distance to the k-th nearest L2-normalised training feature.",
            paper="Sun, Ming, Zhu & Li, ICML 2022",
        ),
        _spec(
            "vim",
            "vim:ViM",
            requires={"logits", "features", "linear_head", "train_split"},
            outputs=set(_SCORE),
            params={"dim": None},
            deviations=(
                "Fitted (principal subspace and alpha) on the whole train split, where the paper uses a random 200,000-image "
                "ImageNet subset; the principal dimension is fixed by the feature size, where OpenOOD v1.5 can search it in "
                "{256, 1000} on OOD validation data.",
            ),
            summary="Virtual-logit matching: logsumexp(z) - alpha*||(h-u) projected on the residual subspace||.",
            paper="Wang, Li, Feng & Zhang, CVPR 2022",
        ),
        _spec(
            "react",
            "react:ReAct",
            requires={"features", "linear_head", "val_split"},
            outputs={*_SCORE, "prediction"},
            params={"percentile": 90.0},
            deviations=(
                "The clipping threshold is the 90th percentile of the whole val split's activations (the official code stops "
                "after about 2,000 validation images); fixed at 90 where OpenOOD v1.5 can search {85, 90, 95, 99} on OOD "
                "validation data.",
            ),
            summary="Energy of the logits recomputed from features clipped at the 90th percentile of val activations.",
            paper="Sun, Guo & Li, NeurIPS 2021",
        ),
    ]
