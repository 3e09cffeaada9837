"""AUAC and AUFC: threshold-swept accuracy / failure areas (``docs/metrics.md#auac-and-aufc``).

Origin. Prabhushankar & AlRegib, "Counterfactual Gradients-based
Quantification of Prediction Trust in Neural Networks", IEEE MIPR 2024
(arXiv 2405.13758), Table I (reproduced as ``figs/Quantitative.png`` in
olivesgatech/GradTrust at ``5942ee86b033``): "AUAC / AUFC" per confidence
method on the 50,000 ImageNet validation images, for 14 torchvision models.

What is verified and what is not:

* **Verified** (Table I): the two names; one pair per (model, method); both
  are displayed as percentages; the top-2 of *both* are bolded per model, so
  both are higher-is-better; AUAC > AUFC in every one of the 126 cells, by
  about 0.2 to 5.5 points.
* **Not verified**: the definitions. The repository has no metric code
  (``demo.py`` computes per-image scores only) and the paper's text could not
  be retrieved (only abstracts and summaries were found). The expansions
  "area under the accuracy curve" / "area under the failure curve" are our
  reading of the acronyms. ``docs/metrics.md#auac-and-aufc`` notes that Table I's AUAC values
  exceed ``a + a·ln(1/a)`` (≈ 0.888 for AlexNet), the largest possible area
  under an accuracy-vs-coverage curve, so AUAC is not ``1 − AURC`` nor any
  selective-accuracy area over coverage; an area over a *threshold* axis on a
  rescaled score has no such bound.

**Our definitions** (the harness's own; do not compare with Table I as if
they were the paper's). Let ``s = (c − min c)/(max c − min c) ∈ [0, 1]`` be
the confidence min-max rescaled over the evaluated set; a sample is
*retained* at threshold ``t`` iff ``s ≥ t`` and *rejected* iff ``s < t``.

* ``AUAC = ∫₀¹ acc(t) dt``, ``acc(t)`` = accuracy of the retained samples
  (never empty on [0, 1]: the most confident sample has ``s = 1``).
* ``AUFC = ∫₀¹ fail(t) dt``, ``fail(t)`` = fraction of failures
  (misclassified samples) among the rejected samples, i.e. the precision of
  "reject = predicted failure" (the rejected set is empty only at ``t = 0``,
  a null set). Higher = the rejected samples are mostly failures.

Both integrands are step functions that change only at the distinct rescaled
values ``0 = u_0 < u_1 < … < u_m = 1``; for ``t ∈ (u_{j−1}, u_j]`` the retained
set is ``{s ≥ u_j}`` and the rejected set ``{s ≤ u_{j−1}}``, so the integrals
are computed **exactly** as ``Σ_j (u_j − u_{j−1})·acc_j`` (no grid, no
interpolation). Tied confidences are always retained or rejected together;
both metrics are invariant to increasing affine maps of the confidence.

Caveat on AUFC: for an uninformative confidence AUFC tends to the error rate
``r`` while AUAC tends to the accuracy ``1 − r``; Table I's AUFC tracks its
AUAC within a few points for every method, including near-uninformative ones
(e.g. Purview on AlexNet: 50.14 / 48.92), which this AUFC cannot reproduce.
The paper's AUFC is therefore probably a different quantity; this one is
kept because it is well defined and complementary to AUAC.

Degenerate input: when every confidence is equal the rescaling is undefined;
the functions return the values of an uninformative ranking, AUAC = accuracy
and AUFC = error rate.

Conventions as the rest of :mod:`robustbench_x.metrics`: ``confidence`` higher
= more confident; ``correct`` bool or 0/1; fractions returned as Python
floats (display ×100); bad input raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auac", "aufc", "coverage_curves"]


def _validate(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence)
    if conf.dtype.kind not in "biuf":
        raise ValueError(f"confidence must be a numeric array, got dtype {conf.dtype}")
    if conf.ndim != 1:
        raise ValueError(f"confidence must be a 1-D array, got shape {conf.shape}")
    if conf.size == 0:
        raise ValueError("confidence is empty; at least one sample is required")
    conf = conf.astype(np.float64, copy=False)
    if not np.isfinite(conf).all():
        raise ValueError("confidence contains NaN or inf; scores must be finite")
    ok = np.asarray(correct)
    if ok.ndim != 1:
        raise ValueError(f"correct must be a 1-D array, got shape {ok.shape}")
    if ok.dtype != bool:
        if ok.dtype.kind not in "iuf" or not np.all((ok == 0) | (ok == 1)):
            raise ValueError("correct must be a bool array or contain only 0 and 1")
        ok = ok == 1
    if ok.size != conf.size:
        raise ValueError(f"confidence and correct must have the same length, got {conf.size} and {ok.size}")
    return conf, ok


def coverage_curves(confidence, correct) -> dict[str, np.ndarray]:
    """The step curves behind AUAC / AUFC.

    Returns ``thresholds`` ``u_1..u_m`` (the distinct rescaled confidences
    above 0), ``widths`` ``u_j − u_{j−1}``, ``accuracy`` of the retained set
    ``{s ≥ u_j}`` and ``failure`` fraction of the rejected set ``{s < u_j}``;
    all empty when the confidence is constant.
    """
    conf, ok = _validate(confidence, correct)
    lo, hi = conf.min(), conf.max()
    if hi == lo:
        empty = np.zeros(0)
        return {"thresholds": empty, "widths": empty, "accuracy": empty, "failure": empty}
    s = (conf - lo) / (hi - lo)
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    n_correct = np.bincount(inverse, weights=ok.astype(np.float64), minlength=values.size)
    n_wrong = counts - n_correct
    # Retained at u_j: groups j..m (suffix sums); rejected at u_j: groups 0..j−1 (prefix sums).
    ret_n = np.cumsum(counts[::-1])[::-1]
    ret_correct = np.cumsum(n_correct[::-1])[::-1]
    rej_n = np.cumsum(counts)[:-1]
    rej_wrong = np.cumsum(n_wrong)[:-1]
    values[0], values[-1] = 0.0, 1.0  # exact ends despite rounding in the rescaling
    return {
        "thresholds": values[1:],
        "widths": np.diff(values),
        "accuracy": ret_correct[1:] / ret_n[1:],
        "failure": rej_wrong / rej_n,
    }


def auac(confidence, correct) -> float:
    """Area under the accuracy-of-retained-samples vs threshold curve (rescaled confidence).

    Our definition (module docstring); Table I of GradTrust (MIPR 2024) reports
    a metric of this name whose definition is not published.
    """
    curves = coverage_curves(confidence, correct)
    if curves["widths"].size == 0:
        return float(np.mean(np.asarray(_validate(confidence, correct)[1], dtype=np.float64)))
    return float(np.dot(curves["widths"], curves["accuracy"]))


def aufc(confidence, correct) -> float:
    """Area under the failure-fraction-of-rejected-samples vs threshold curve (rescaled confidence).

    Our definition (module docstring); **not** expected to reproduce Table I of
    GradTrust (MIPR 2024), whose AUFC definition is not published.
    """
    curves = coverage_curves(confidence, correct)
    if curves["widths"].size == 0:
        return float(1.0 - np.mean(np.asarray(_validate(confidence, correct)[1], dtype=np.float64)))
    return float(np.dot(curves["widths"], curves["failure"]))
