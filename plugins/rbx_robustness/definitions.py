"""Corruption and perturbation robustness: ImageNet-C CE / mCE / relative mCE,
ImageNet-P flip probability / FR / mFR and top-5 distance / uT5D / T5D / mT5D,
and the CIFAR-10/100-C and -P conventions (pure numpy, vectorised).

Definitions follow Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019, §4.1–4.2 and
App. C–E, and the reference code in hendrycks/robustness
(``ImageNet-C/test.py``, ``ImageNet-P/test.py``, ``ImageNet-P/cifar-p-eval.py``).
The project reference is ``docs/metrics.md#imagenet-c-corruption-errors``.

Conventions
-----------
* Errors, flip probabilities and normalised scores are **fractions** (AlexNet
  scores 1.0; display x100). Lower is better for every function here.
* ImageNet-C errors are given per corruption as a sequence of the five top-1
  errors at severities 1..5 (``{"fog": [e1, e2, e3, e4, e5], ...}``);
  :func:`errors_by_corruption` builds that dict from a flat
  ``{(corruption, severity): error}`` or ``{"c/<corruption>/<severity>": error}``
  mapping.
* ``baseline`` is the normaliser table (``ALEXNET_ERR``, ``ALEXNET_FP``,
  ``ALEXNET_UT5D``). ``baseline=None`` returns the **unnormalised** mean
  (mean error, mean FP, mean uT5D): the convention for CIFAR-10/100-C (AugMix
  ``cifar.py::test_c``) and CIFAR-10/100-P, which have no AlexNet normaliser
  (docs/metrics.md#cifar-c-and-cifar-p). It is *not* an mCE and must not be labelled as one.
* Only the 15 ImageNet-C test corruptions (10 ImageNet-P test perturbations)
  enter the means by default; the extras are for validation (paper App. B).

Bad input raises ``ValueError`` with a message saying what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rbx_robustness.tables import SEVERITIES, IMAGENET_C_TEST, ALEXNET_ERR, ALEXNET_CLEAN_ERR, IMAGENET_P_TEST, CIFAR_P_TEST, ALEXNET_FP, ALEXNET_UT5D

__all__ = [
    "errors_by_corruption",
    "ce",
    "mce",
    "relative_ce",
    "relative_mce",
    "is_noise",
    "frame_pairs",
    "flip_probability",
    "flip_rate",
    "mfr",
    "top5_from_logits",
    "top5_distance_sigma",
    "top5_distance",
    "top5_distance_from_logits",
    "ut5d",
    "t5d",
    "mt5d",
]

_TOP = 5  # the "top-5" of the top-5 distance
_CHUNK = 8192  # rows per block when ranking logits

# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _fraction(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0.0 or v > 1.0:
        raise ValueError(
            f"{name} must be an error fraction in [0, 1], got {v!r}"
            + (" (percentages must be divided by 100)" if 1.0 < v <= 100.0 else "")
        )
    return v


def _severity_row(values, name: str) -> np.ndarray:
    """Five error fractions for severities 1..5."""
    if isinstance(values, Mapping):
        raise ValueError(
            f"{name} must be a sequence of the {len(SEVERITIES)} errors at severities 1..5, got a mapping; "
            "use errors_by_corruption() to convert {(corruption, severity): error}"
        )
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if arr.shape != (len(SEVERITIES),):
        raise ValueError(
            f"{name} must hold exactly {len(SEVERITIES)} errors (severities 1..5, as in the paper), "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        hint = " (percentages must be divided by 100)" if np.isfinite(arr).all() and arr.max() <= 100 else ""
        raise ValueError(f"{name} must be error fractions in [0, 1], got {arr.tolist()}{hint}")
    return arr


def _names(names: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of names, not the single string {names!r}")
    out = tuple(names)
    if not out:
        raise ValueError(f"{what} is empty; at least one name is required")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} contains duplicates: {list(out)}")
    return out


def _require_keys(table: Mapping, keys: Sequence[str], table_name: str) -> None:
    if not isinstance(table, Mapping):
        raise ValueError(f"{table_name} must be a mapping name -> value(s), got {type(table).__name__}")
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"{table_name} has no entry for {missing}; it has {sorted(table)}")


# --------------------------------------------------------------------------
# ImageNet-C: CE, mCE, relative CE, relative mCE (docs/metrics.md#imagenet-c-corruption-errors)
# --------------------------------------------------------------------------


def errors_by_corruption(flat: Mapping) -> dict[str, list[float]]:
    """Group a flat ``{(corruption, severity): error}`` mapping by corruption.

    Keys may also be subset names ``"c/<corruption>/<severity>"``. Every
    corruption present must have all five severities 1..5. Returns
    ``{corruption: [e1, e2, e3, e4, e5]}`` for :func:`ce` / :func:`mce`.
    """
    if not isinstance(flat, Mapping):
        raise ValueError(f"expected a mapping (corruption, severity) -> error, got {type(flat).__name__}")
    grouped: dict[str, dict[int, float]] = {}
    for key, value in flat.items():
        if isinstance(key, str):
            parts = key.split("/")
            if len(parts) != 3 or parts[0] != "c":
                raise ValueError(f"key {key!r} is neither (corruption, severity) nor 'c/<corruption>/<severity>'")
            corruption, severity = parts[1], parts[2]
        elif isinstance(key, tuple) and len(key) == 2:
            corruption, severity = key
        else:
            raise ValueError(f"key {key!r} is neither (corruption, severity) nor 'c/<corruption>/<severity>'")
        try:
            s = int(severity)
        except (TypeError, ValueError):
            raise ValueError(f"key {key!r}: severity {severity!r} is not an integer") from None
        if s not in SEVERITIES or str(severity).strip() != str(s):
            raise ValueError(f"key {key!r}: severity must be one of {SEVERITIES}, got {severity!r}")
        row = grouped.setdefault(str(corruption), {})
        if s in row:
            raise ValueError(f"severity {s} of {corruption!r} is given twice")
        row[s] = _fraction(value, f"error of {corruption!r} at severity {s}")
    out: dict[str, list[float]] = {}
    for corruption, row in grouped.items():
        missing = [s for s in SEVERITIES if s not in row]
        if missing:
            raise ValueError(f"{corruption!r} lacks severities {missing}; CE needs all of 1..5")
        out[corruption] = [row[s] for s in SEVERITIES]
    return out


def ce(errors_by_severity: Sequence[float], baseline_by_severity: Sequence[float]) -> float:
    """Corruption Error ``CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c}`` (paper §4.1).

    Both arguments are the top-1 errors (fractions) at severities 1..5 of the
    model and of the baseline (``ALEXNET_ERR[c]``). Equal to the ratio of the
    mean errors because every severity has the same number of images.
    """
    e = _severity_row(errors_by_severity, "errors_by_severity")
    b = _severity_row(baseline_by_severity, "baseline_by_severity")
    denominator = b.sum()
    if denominator <= 0:
        raise ValueError("baseline errors sum to 0; a CE normaliser must have a positive error")
    return float(e.sum() / denominator)


def mce(
    errors: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]] | None,
    corruptions: Iterable[str] = IMAGENET_C_TEST,
) -> float:
    """Mean Corruption Error over ``corruptions`` (default: the 15 test ones).

    ``errors[c]`` (and ``baseline[c]``) are the errors at severities 1..5.
    With ``baseline=ALEXNET_ERR`` this is the paper's mCE: ``mean_c CE_c``,
    AlexNet = 1.0. With ``baseline=None`` it returns the **unnormalised mean
    corruption error** ``mean_c mean_s E_{s,c}`` instead (CIFAR-10/100-C
    convention, docs/metrics.md#cifar-c-and-cifar-p), which is not normalised by anything.
    Corruptions in ``errors`` outside ``corruptions`` are ignored.
    """
    names = _names(corruptions, "corruptions")
    _require_keys(errors, names, "errors")
    if baseline is None:
        return float(np.mean([_severity_row(errors[c], f"errors[{c!r}]").mean() for c in names]))
    _require_keys(baseline, names, "baseline")
    return float(np.mean([ce(errors[c], baseline[c]) for c in names]))


def relative_ce(
    errors_by_severity: Sequence[float],
    baseline_by_severity: Sequence[float],
    clean_error: float,
    baseline_clean_error: float,
) -> float:
    """Relative CE ``Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean)``.

    The clean error is subtracted **per severity** (five times), which is what
    reproduces the paper's Table 2 (docs/metrics.md#imagenet-c-corruption-errors); subtracting it once from
    the sum is a misreading. The value is negative when the model's corrupted
    error is below its clean error. For AlexNet use
    ``baseline_clean_error=ALEXNET_CLEAN_ERR`` (0.4348).
    """
    e = _severity_row(errors_by_severity, "errors_by_severity")
    b = _severity_row(baseline_by_severity, "baseline_by_severity")
    clean = _fraction(clean_error, "clean_error")
    base_clean = _fraction(baseline_clean_error, "baseline_clean_error")
    denominator = float((b - base_clean).sum())
    if denominator <= 0:
        raise ValueError(
            f"the baseline's corruption errors do not exceed its clean error ({base_clean}); "
            "relative CE is undefined for a non-positive denominator"
        )
    return float((e - clean).sum() / denominator)


def relative_mce(
    errors: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    clean_error: float,
    baseline_clean_error: float,
    corruptions: Iterable[str] = IMAGENET_C_TEST,
) -> float:
    """Relative mCE: mean of :func:`relative_ce` over ``corruptions`` (default the 15
    test ones). ``clean_error`` is the model's clean top-1 error; with
    ``baseline=ALEXNET_ERR`` pass ``baseline_clean_error=ALEXNET_CLEAN_ERR``.
    AlexNet itself scores 1.0."""
    if baseline is None:
        raise ValueError("relative mCE needs a baseline table (e.g. ALEXNET_ERR); it has no unnormalised form")
    names = _names(corruptions, "corruptions")
    _require_keys(errors, names, "errors")
    _require_keys(baseline, names, "baseline")
    return float(np.mean([relative_ce(errors[c], baseline[c], clean_error, baseline_clean_error) for c in names]))


# --------------------------------------------------------------------------
# ImageNet-P: flip probability, FR, mFR (docs/metrics.md#imagenet-p-flip-rate-and-top-5-distance)
# --------------------------------------------------------------------------


def is_noise(perturbation: str) -> bool:
    """``ImageNet-P/test.py`` rule: a perturbation is a noise sequence iff its name
    contains ``"noise"`` (gaussian_noise, shot_noise, speckle_noise and their
    ``_2`` / ``_3`` difficulty folders). Noise sequences compare every frame with
    the first (clean) frame, all others compare frames ``j`` and ``j − d``."""
    if not isinstance(perturbation, str):
        raise ValueError(f"perturbation must be a name, got {perturbation!r}")
    return "noise" in perturbation


def _check_flags(noise, difficulty) -> int:
    if not isinstance(noise, (bool, np.bool_)):
        raise ValueError(f"noise must be True or False (see is_noise()), got {noise!r}")
    if isinstance(difficulty, (bool, np.bool_)) or not isinstance(difficulty, (int, np.integer)) or difficulty < 1:
        raise ValueError(f"difficulty must be a positive integer (1, 2 or 3 in the paper), got {difficulty!r}")
    return int(difficulty)


def frame_pairs(n: int, noise: bool, difficulty: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(ref, cur)`` of the compared frames, as ``ImageNet-P/test.py`` walks them.

    Noise: every frame ``j ≥ 1`` against frame 0 (``step_size = 1`` whatever the
    difficulty, which for noise selects the ``<p>_<d>`` data folder instead).
    Temporal: for each offset ``i < d`` the walk over ``preds[i::d]`` compares
    consecutive elements, i.e. every frame ``j ≥ d`` with frame ``j − d``.
    """
    if noise:
        cur = np.arange(1, n)
        ref = np.zeros_like(cur)
    else:
        cur = np.arange(difficulty, n)
        ref = cur - difficulty
    if cur.size == 0:
        need = 2 if noise else difficulty + 1
        raise ValueError(f"sequences of {n} frame(s) have no frame pair to compare; need at least {need} frames")
    return ref, cur


def flip_probability(predictions, noise: bool, difficulty: int = 1) -> float:
    """Flip probability ``FP`` of ``m`` sequences of ``n`` frames (paper §4.2).

    ``predictions`` is an ``(m, n)`` integer array of top-1 predictions (e.g.
    ``logits.argmax(-1)``) in frame order. Noise (``noise=True``):
    ``FP = 1/(m(n−1)) Σ_i Σ_{j≥2} 1[f(x_j) ≠ f(x_1)]``. Temporal: each frame is
    compared with the frame ``difficulty`` steps earlier, ``1[f(x_j) ≠ f(x_{j−d})]``
    over ``j > d`` (the offset walk of ``ImageNet-P/test.py::flip_prob``; ``d = 1``
    is the standard setting). Each sequence contributes the mean over its pairs
    and sequences are averaged, as in ``test.py`` (identical to the pooled mean
    since all sequences have ``n`` frames). Returns a fraction.
    """
    d = _check_flags(noise, difficulty)
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError(f"predictions must be an (m sequences, n frames) array, got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("predictions hold no sequence")
    if p.dtype.kind not in "iu":
        if p.dtype.kind == "f" and np.isfinite(p).all() and np.all(p == np.round(p)):
            p = p.astype(np.int64)
        else:
            raise ValueError(f"predictions must be integer class indices, got dtype {p.dtype}; pass logits.argmax(-1)")
    ref, cur = frame_pairs(p.shape[1], bool(noise), d)
    return float((p[:, cur] != p[:, ref]).mean(axis=1).mean())


def _normalised_mean(values: Mapping[str, float], baseline, names, what: str) -> float:
    names = _names(names, "perturbations")
    _require_keys(values, names, what)
    if baseline is not None:
        _require_keys(baseline, names, "baseline")
    out = []
    for p in names:
        v = float(values[p])
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{what}[{p!r}] must be a finite non-negative number, got {values[p]!r}")
        if baseline is not None:
            b = float(baseline[p])
            if not np.isfinite(b) or b <= 0:
                raise ValueError(f"baseline[{p!r}] must be a positive number, got {baseline[p]!r}")
            v /= b
        out.append(v)
    return float(np.mean(out))


def flip_rate(fp: float, baseline_fp: float) -> float:
    """Flip Rate ``FR_p = FP_p / FP^AlexNet_p`` (use ``ALEXNET_FP[p]``, a fraction)."""
    v = _fraction(fp, "fp")
    b = _fraction(baseline_fp, "baseline_fp")
    if b <= 0:
        raise ValueError("baseline_fp must be > 0")
    return v / b


def mfr(
    flip_probabilities: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    perturbations: Iterable[str] = IMAGENET_P_TEST,
) -> float:
    """mFR: mean flip rate over ``perturbations`` (default the 10 ImageNet-P test ones).

    ``flip_probabilities[p]`` are FP fractions at difficulty 1. With
    ``baseline=ALEXNET_FP`` this is the paper's mFR (AlexNet = 1.0). With
    ``baseline=None`` it returns the **unnormalised mean flip probability**
    (CIFAR-P: pass ``perturbations=CIFAR_P_TEST``; no normaliser is documented).
    There is no relative mFR.
    """
    for p, v in flip_probabilities.items() if isinstance(flip_probabilities, Mapping) else ():
        _fraction(v, f"flip_probabilities[{p!r}]")
    return _normalised_mean(flip_probabilities, baseline, perturbations, "flip_probabilities")


# --------------------------------------------------------------------------
# Top-5 distance, uT5D, T5D, mT5D (docs/metrics.md#imagenet-p-flip-rate-and-top-5-distance)
# --------------------------------------------------------------------------


def top5_from_logits(logits) -> np.ndarray:
    """The 5 top-ranked classes of every row of ``logits`` (``(..., C)``), best first.

    Ties are broken like ``scipy.stats.rankdata(-logits, method='ordinal')``
    (the ranking ``ImageNet-P/test.py`` uses): among equal scores the lower
    class index ranks first. Returns an ``(..., 5)`` int64 array.
    """
    x = np.asarray(logits)
    if x.ndim < 1 or x.dtype.kind not in "biuf":
        raise ValueError(f"logits must be a numeric array (..., C), got dtype {x.dtype} shape {x.shape}")
    c = x.shape[-1]
    if c < _TOP:
        raise ValueError(f"the top-5 distance needs at least 5 classes, got {c}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, c)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        raise ValueError("logits contain NaN or infinite values")
    out = np.empty((flat.shape[0], _TOP), dtype=np.int64)
    for start in range(0, flat.shape[0], _CHUNK):
        block = flat[start : start + _CHUNK]
        block = block if block.dtype.kind == "f" else block.astype(np.float64)  # exact for |int| < 2**53
        neg = -block  # ascending sort of -x = descending x; stable sort keeps lower index first on ties
        if c == _TOP:
            out[start : start + len(block)] = np.argsort(neg, axis=1, kind="stable")
            continue
        fifth = np.partition(block, c - _TOP, axis=1)[:, c - _TOP]  # 5th largest value per row
        above = block >= fifth[:, None]
        simple = above.sum(axis=1) == _TOP  # no tie across the top-5 boundary
        rows = np.flatnonzero(simple)
        if rows.size:
            idx = np.nonzero(above[rows])[1].reshape(-1, _TOP)  # ascending class index
            order = np.argsort(np.take_along_axis(neg[rows], idx, axis=1), axis=1, kind="stable")
            out[start + rows] = np.take_along_axis(idx, order, axis=1)
        rows = np.flatnonzero(~simple)
        if rows.size:
            out[start + rows] = np.argsort(neg[rows], axis=1, kind="stable")[:, :_TOP]
    return out.reshape(*lead, _TOP)


def _distance_top5(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    """``Σ_{i=1..5} |(i−1) − min(σ(i)−1, 5)|`` from the top-5 lists of both rankings.

    ``σ(i) − 1`` is the 0-based position in ``b`` of the class ranked ``i``-th
    in ``a``; capped at 5 it only depends on ``b``'s top 5 (5 when absent).
    """
    match = top_a[..., :, None] == top_b[..., None, :]  # (..., 5, 5)
    pos = np.where(match.any(axis=-1), match.argmax(axis=-1), _TOP)
    return np.abs(np.arange(_TOP) - pos).sum(axis=-1)


def top5_distance_sigma(sigma) -> np.ndarray | int:
    """Top-5 distance of ``σ = π(x)⁻¹ ∘ π(x′)`` (paper App. C), ``σ`` 1-based.

    ``sigma[..., i−1] = σ(i)`` is the rank in the second ranking of the class
    ranked ``i``-th in the first; each row must be a permutation of ``1..C``.
    Closed form of ``ImageNet-P/test.py::dist``:
    ``d = Σ_{i=1..5} |(i−1) − min(σ(i)−1, 5)|``, equal to the paper's
    ``Σ_{i=1..5} Σ_{j=min(i,σ(i))+1..max(i,σ(i))} 1[1 ≤ j−1 ≤ 5]``.
    Returns an int for a single ``σ`` and an int64 array otherwise.
    """
    s = np.asarray(sigma)
    if s.ndim < 1 or s.dtype.kind not in "iu":
        raise ValueError(f"sigma must be an integer array (..., C), got dtype {s.dtype} shape {s.shape}")
    c = s.shape[-1]
    if c < _TOP:
        raise ValueError(f"sigma must have at least 5 entries, got {c}")
    if not np.array_equal(np.sort(s, axis=-1), np.broadcast_to(np.arange(1, c + 1), s.shape)):
        raise ValueError("every sigma must be a permutation of 1..C (1-based ranks)")
    d = np.abs(np.arange(_TOP) - np.minimum(s[..., :_TOP].astype(np.int64) - 1, _TOP)).sum(axis=-1)
    return int(d) if d.ndim == 0 else d


def _top_of_ranking(r, name: str) -> np.ndarray:
    arr = np.asarray(r)
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array (C,) or (N, C) of class indices, got dtype {arr.dtype} shape {arr.shape}")
    if arr.shape[-1] < _TOP:
        raise ValueError(f"{name} must list at least the top 5 classes, got {arr.shape[-1]}")
    if (arr < 0).any():
        raise ValueError(f"{name} contains negative class indices")
    srt = np.sort(arr, axis=-1)
    if (np.diff(srt, axis=-1) == 0).any():
        raise ValueError(f"{name}: a ranking must not list a class twice")
    return arr[..., :_TOP].astype(np.int64)


def top5_distance(ranking_a, ranking_b) -> np.ndarray | int:
    """Top-5 distance ``d(π(x), π(x′))`` from ranking ``a`` (the reference frame,
    ``x``) to ranking ``b`` (``x′``).

    A ranking lists class indices best first (``ranking[0]`` is the top-1
    class), shape ``(C,)`` or ``(N, C)`` for ``N`` pairs. Only the top 5 of each
    ranking matter, so truncated rankings of length ``k ≥ 5`` are accepted.
    The distance is not symmetric: ``a`` is the earlier (temporal) or the clean
    (noise) frame, as ``perm1`` in ``ImageNet-P/test.py::ranking_dist``.
    """
    a = _top_of_ranking(ranking_a, "ranking_a")
    b = _top_of_ranking(ranking_b, "ranking_b")
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"ranking_a and ranking_b describe different numbers of pairs: {a.shape} vs {b.shape}")
    d = _distance_top5(a, b)
    return int(d) if d.ndim == 0 else d


def top5_distance_from_logits(logits_a, logits_b) -> np.ndarray | int:
    """:func:`top5_distance` of the rankings of two logit arrays ``(C,)`` or ``(N, C)``
    (ties ranked as ``rankdata(-logits, 'ordinal')``)."""
    a, b = np.asarray(logits_a), np.asarray(logits_b)
    if a.shape != b.shape:
        raise ValueError(f"logits_a and logits_b must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (1, 2):
        raise ValueError(f"logits must be (C,) or (N, C), got shape {a.shape}")
    d = _distance_top5(top5_from_logits(a), top5_from_logits(b))
    return int(d) if d.ndim == 0 else d


def ut5d(logits, noise: bool, difficulty: int = 1) -> float:
    """Unnormalised top-5 distance of ``m`` sequences of ``n`` frames.

    ``logits`` is ``(m, n, C)`` in frame order. Noise: mean over sequences and
    frames ``j > 1`` of ``d(π(x_1), π(x_j))``; temporal: of ``d(π(x_{j−d}), π(x_j))``
    (``ImageNet-P/test.py::ranking_dist`` with the same offset walk as
    :func:`flip_probability`). Per-sequence means averaged over sequences.
    """
    d = _check_flags(noise, difficulty)
    x = np.asarray(logits)
    if x.ndim != 3:
        raise ValueError(f"logits must be an (m sequences, n frames, C classes) array, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("logits hold no sequence")
    ref, cur = frame_pairs(x.shape[1], bool(noise), d)
    top = top5_from_logits(x)  # (m, n, 5)
    return float(_distance_top5(top[:, ref], top[:, cur]).mean(axis=1).mean())


def t5d(ut5d_value: float, baseline_ut5d: float) -> float:
    """Top-5 distance normalised by the baseline's: ``uT5D^f_p / uT5D^AlexNet_p``
    (use ``ALEXNET_UT5D[p]``)."""
    v, b = float(ut5d_value), float(baseline_ut5d)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"ut5d_value must be a finite non-negative number, got {ut5d_value!r}")
    if not np.isfinite(b) or b <= 0:
        raise ValueError(f"baseline_ut5d must be a positive number, got {baseline_ut5d!r}")
    return v / b


def mt5d(
    ut5ds: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    perturbations: Iterable[str] = IMAGENET_P_TEST,
) -> float:
    """mT5D: mean of :func:`t5d` over ``perturbations`` (default the 10 test ones).

    With ``baseline=ALEXNET_UT5D`` this is the paper's mT5D (AlexNet = 1.0);
    with ``baseline=None`` the **unnormalised mean uT5D** (CIFAR-P)."""
    return _normalised_mean(ut5ds, baseline, perturbations, "ut5ds")
