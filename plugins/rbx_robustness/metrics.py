"""Metric functions of the robustness suites (pure numpy, no torch).

The definitions are those of :mod:`rbx_robustness.definitions`
(Hendrycks & Dietterich, ICLR 2019; ``docs/metrics.md#imagenet-c-corruption-errors``); this module only gives them the calling conventions of the suites'
evaluators (:mod:`rbx_robustness.evaluate`), which compute the inputs:

============================  =================================================================
kind / who calls it           keyword arguments
============================  =================================================================
``error`` (classification)    ``prediction``, ``labels`` (the harness, any labelled subset)
corruption aggregates         ``errors`` = {subset name: top-1 error} over ``id`` and ``c/<c>/<s>``
                              (``clean_error`` = error on ``id`` or None; ``corruption`` = a name
                              for the per-corruption ones)
perturbation, per sequence    ``predictions`` (m, T) int, ``top5`` (m, T, 5) int rankings,
                              ``perturbation`` = name (noise rule: name contains "noise")
perturbation aggregates       ``values`` = {perturbation: FP or uT5D}, ``perturbations`` = the
                              names averaged
CURE                          ``accuracies`` = {subset: accuracy}, ``challenge`` = a name
============================  =================================================================

Every robustness function is keyword-only and raises ``ValueError`` when its inputs are
missing or malformed (the runner then records "metric undefined" and the
leaderboard, which may call a function with ``prediction=`` / ``labels=`` to
bootstrap it, shows no interval). Values are fractions, except uT5D (a mean
distance in 0..15).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robustbench_x.metrics.classification import accuracy
from rbx_robustness.tables import ALEXNET_CLEAN_ERR, ALEXNET_ERR, ALEXNET_FP, ALEXNET_UT5D, IMAGENET_C_TEST, IMAGENET_P_TEST
from rbx_robustness.definitions import ce, errors_by_corruption, flip_probability, is_noise, mce, mfr, mt5d, relative_mce
from rbx_robustness.evaluate import unnormalised_corruptions, ut5d_from_top5

__all__ = [
    "top1_error",
    "corrupted_errors",
    "clean_error",
    "corruption_error",
    "ce_alexnet",
    "mce_alexnet",
    "mce_unnormalised",
    "relative_mce_alexnet",
    "flip_probability_metric",
    "ut5d_metric",
    "flip_rate_alexnet",
    "t5d_alexnet",
    "mfr_alexnet",
    "mt5d_alexnet",
    "mfp_unnormalised",
    "mut5d_unnormalised",
    "challenge_accuracy",
]


def _need(value, name: str, what: str, given: Mapping):
    if value is None:
        extra = f" (got only {', '.join(sorted(given))})" if given else ""
        raise ValueError(f"{what} needs '{name}'{extra}; it is computed by the robustness suites' evaluator (rbx_robustness.evaluate)")
    return value


# --------------------------------------------------------------------------- corruption


def top1_error(prediction, labels) -> float:
    """Top-1 error ``1 − accuracy`` (the ImageNet-C paper's E); lower is better."""
    return 1.0 - accuracy(prediction, labels)


def corrupted_errors(errors: Mapping[str, float]) -> dict[tuple[str, int | str], float]:
    """``{(corruption, severity): error}`` from the ``c/<corruption>/<severity>`` keys of ``errors``
    (severity an int when it is one, else the string, as CURE-OR's levels)."""
    out: dict[tuple[str, int | str], float] = {}
    for key, value in errors.items():
        parts = str(key).split("/")
        if len(parts) != 3 or parts[0] != "c":
            continue
        level: int | str = int(parts[2]) if parts[2].isdigit() else parts[2]
        v = float(value)
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"error of {key!r} must be a fraction in [0, 1], got {value!r}")
        out[(parts[1], level)] = v
    return out


def _by_corruption(errors: Mapping[str, float]) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for (corruption, _level), value in sorted(corrupted_errors(errors).items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        grouped.setdefault(corruption, []).append(value)
    if not grouped:
        raise ValueError("no corrupted subset (c/<corruption>/<severity>) among the errors")
    return grouped


def clean_error(*, errors=None, clean_error=None, **given) -> float:
    """The top-1 error on the clean ``id`` subset."""
    if clean_error is None and errors is not None:
        clean_error = errors.get("id")
    value = _need(clean_error, "clean_error", "clean-error", given)
    v = float(value)
    if not np.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"clean_error must be a fraction in [0, 1], got {value!r}")
    return v


def corruption_error(*, errors=None, corruption=None, **given) -> float:
    """Mean top-1 error of ``corruption`` over its severities present (unnormalised)."""
    grouped = _by_corruption(_need(errors, "errors", "corruption-error", given))
    name = _need(corruption, "corruption", "corruption-error", given)
    if name not in grouped:
        raise ValueError(f"no subset of corruption {name!r}; corruptions present: {sorted(grouped)}")
    return float(np.mean(grouped[name]))


def ce_alexnet(*, errors=None, corruption=None, **given) -> float:
    """CE_c normalised by AlexNet: ``Σ_s E_s,c / Σ_s E^AlexNet_s,c`` (needs severities 1..5)."""
    name = _need(corruption, "corruption", "ce", given)
    flat = {k: v for k, v in corrupted_errors(_need(errors, "errors", "ce", given)).items() if k[0] == name}
    if name not in ALEXNET_ERR:
        raise ValueError(f"no AlexNet ImageNet-C error for corruption {name!r}")
    return ce(errors_by_corruption(flat)[name], ALEXNET_ERR[name])


def mce_alexnet(*, errors=None, **given) -> float:
    """The paper's mCE: mean of AlexNet-normalised CE over the 15 test corruptions (all 5 severities each)."""
    flat = {k: v for k, v in corrupted_errors(_need(errors, "errors", "mce", given)).items() if k[0] in IMAGENET_C_TEST}
    return mce(errors_by_corruption(flat), ALEXNET_ERR)


def mce_unnormalised(*, errors=None, **given) -> float:
    """Mean over :func:`unnormalised_corruptions` of the mean error over severities
    (AugMix ``cifar.py::test_c``; equal to 1 − mean accuracy when every subset has the same size)."""
    grouped = _by_corruption(_need(errors, "errors", "mce-unnormalised", given))
    return float(np.mean([np.mean(grouped[c]) for c in unnormalised_corruptions(grouped)]))


def relative_mce_alexnet(*, errors=None, clean_error=None, **given) -> float:
    """Relative mCE normalised by AlexNet (clean error 0.4348), over the 15 test corruptions."""
    errors = _need(errors, "errors", "relative-mce", given)
    if clean_error is None:
        clean_error = errors.get("id")
    clean = _need(clean_error, "clean_error", "relative-mce (the clean 'id' subset's error)", given)
    flat = {k: v for k, v in corrupted_errors(errors).items() if k[0] in IMAGENET_C_TEST}
    return relative_mce(errors_by_corruption(flat), ALEXNET_ERR, float(clean), ALEXNET_CLEAN_ERR)


# --------------------------------------------------------------------------- perturbation


def _perturbation(perturbation, what: str, given) -> str:
    name = _need(perturbation, "perturbation", what, given)
    if not isinstance(name, str) or not name:
        raise ValueError(f"perturbation must be a name, got {perturbation!r}")
    return name


def flip_probability_metric(*, predictions=None, perturbation=None, **given) -> float:
    """Flip probability of ``predictions`` ``(m, T)`` (difficulty 1, noise rule by name)."""
    p = _need(predictions, "predictions", "flip-probability", given)
    return flip_probability(p, noise=is_noise(_perturbation(perturbation, "flip-probability", given)), difficulty=1)


def ut5d_metric(*, top5=None, perturbation=None, **given) -> float:
    """uT5D from the ``(m, T, 5)`` top-5 rankings of the model's logits (difficulty 1)."""
    top = _need(top5, "top5", "ut5d", given)
    return ut5d_from_top5(top, is_noise(_perturbation(perturbation, "ut5d", given)))[0]


def _baseline(table: Mapping[str, float], name: str, what: str) -> float:
    if name not in table:
        raise ValueError(f"no AlexNet {what} for perturbation {name!r}; known: {sorted(table)}")
    return float(table[name])


def flip_rate_alexnet(*, predictions=None, perturbation=None, **given) -> float:
    """FR_p = FP_p / FP_p^AlexNet."""
    name = _perturbation(perturbation, "flip-rate", given)
    base = _baseline(ALEXNET_FP, name, "flip probability")
    return flip_probability_metric(predictions=predictions, perturbation=name, **given) / base


def t5d_alexnet(*, top5=None, perturbation=None, **given) -> float:
    """T5D_p = uT5D_p / uT5D_p^AlexNet."""
    name = _perturbation(perturbation, "t5d", given)
    base = _baseline(ALEXNET_UT5D, name, "uT5D")
    return ut5d_metric(top5=top5, perturbation=name, **given) / base


def _values(values, what: str, given) -> dict[str, float]:
    v = _need(values, "values", what, given)
    if not isinstance(v, Mapping) or not v:
        raise ValueError(f"{what}: values must be a non-empty mapping perturbation -> value")
    return {str(k): float(x) for k, x in v.items()}


def mfr_alexnet(*, values=None, **given) -> float:
    """mFR over the 10 ImageNet-P test perturbations (``values`` = flip probabilities)."""
    return mfr(_values(values, "mfr", given), ALEXNET_FP, IMAGENET_P_TEST)


def mt5d_alexnet(*, values=None, **given) -> float:
    """mT5D over the 10 ImageNet-P test perturbations (``values`` = uT5D)."""
    return mt5d(_values(values, "mt5d", given), ALEXNET_UT5D, IMAGENET_P_TEST)


def _names(perturbations, values: Mapping[str, float]) -> list[str]:
    names = list(perturbations) if perturbations is not None else sorted(values)
    if not names:
        raise ValueError("no perturbation to average")
    return names


def mfp_unnormalised(*, values=None, perturbations=None, **given) -> float:
    """Mean flip probability over ``perturbations`` (default: every key of ``values``), unnormalised."""
    v = _values(values, "mfp-unnormalised", given)
    return mfr(v, None, _names(perturbations, v))


def mut5d_unnormalised(*, values=None, perturbations=None, **given) -> float:
    """Mean uT5D over ``perturbations`` (default: every key of ``values``), unnormalised."""
    v = _values(values, "mut5d-unnormalised", given)
    return mt5d(v, None, _names(perturbations, v))


# --------------------------------------------------------------------------- CURE


def challenge_accuracy(*, accuracies=None, challenge=None, **given) -> float:
    """Mean top-1 accuracy of ``challenge`` over its levels (subsets ``c/<challenge>/<level>``)."""
    acc = _need(accuracies, "accuracies", "challenge-accuracy", given)
    name = _need(challenge, "challenge", "challenge-accuracy", given)
    values = [float(v) for k, v in acc.items() if str(k).startswith(f"c/{name}/") and str(k).count("/") == 2]
    if not values:
        raise ValueError(f"no subset c/{name}/<level> among {sorted(acc)}")
    if not all(np.isfinite(values)) or min(values) < 0 or max(values) > 1:
        raise ValueError(f"accuracies of {name!r} must be fractions in [0, 1], got {values}")
    return float(np.mean(values))
