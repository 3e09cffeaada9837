"""Detection metrics of kind ``detection`` (``docs/metrics.md#detection``).

Called by the suite's evaluator as ``fn(tp=, fp=, fn=)`` with per-frame
counts (1-D integer arrays, one entry per frame, from
:func:`rbx_detection.matching.match_frame`). Counts are summed over the frames
first (a micro average: ours; the CURE-TSD papers, Temel et al., arXiv
1902.06857 and 1908.11262, report one precision and recall per condition
without saying how frames are pooled):

* precision ``P = TP / (TP + FP)``, undefined without any detection;
* recall ``R = TP / (TP + FN)``, undefined without any ground-truth sign;
* ``F_beta = (1 + beta^2) P R / (beta^2 P + R)``, computed as
  ``(1 + beta^2) TP / ((1 + beta^2) TP + beta^2 FN + FP)`` so that it is 0,
  not undefined, when P or R is 0 or P is undefined (no detection at all);
  F0.5 weighs precision higher, F2 recall.

An undefined value raises ``ValueError`` with the reason (the evaluator
turns it into a ``failed`` row).
"""

from __future__ import annotations

import numpy as np


def _totals(tp, fp, fn) -> tuple[int, int, int]:
    arrays = [np.asarray(a) for a in (tp, fp, fn)]
    if any(a.ndim != 1 for a in arrays) or len({len(a) for a in arrays}) != 1:
        raise ValueError(f"tp, fp and fn must be 1-D arrays of one length (one entry per frame), got shapes {[a.shape for a in arrays]}")
    if not len(arrays[0]):
        raise ValueError("no frame to score (empty counts)")
    for name, a in zip(("tp", "fp", "fn"), arrays):
        if not np.issubdtype(a.dtype, np.integer) or (a < 0).any():
            raise ValueError(f"{name} must hold non-negative integer counts")
    return tuple(int(a.sum()) for a in arrays)  # type: ignore[return-value]


def precision(*, tp, fp, fn) -> float:
    t, f, _ = _totals(tp, fp, fn)
    if t + f == 0:
        raise ValueError("metric undefined: no detection in these frames (precision needs at least one)")
    return t / (t + f)


def recall(*, tp, fp, fn) -> float:
    t, _, m = _totals(tp, fp, fn)
    if t + m == 0:
        raise ValueError("metric undefined: no ground-truth sign in these frames (recall needs at least one)")
    return t / (t + m)


def f_beta(beta: float, *, tp, fp, fn) -> float:
    t, f, m = _totals(tp, fp, fn)
    b2 = beta * beta
    denominator = (1 + b2) * t + b2 * m + f
    if denominator == 0:
        raise ValueError("metric undefined: neither a detection nor a ground-truth sign in these frames")
    return (1 + b2) * t / denominator


def f_half(*, tp, fp, fn) -> float:
    return f_beta(0.5, tp=tp, fp=fp, fn=fn)


def f_two(*, tp, fp, fn) -> float:
    return f_beta(2.0, tp=tp, fp=fp, fn=fn)


def check_cases() -> tuple[dict, dict, list[tuple[str, dict]]]:
    """Inputs for the conformance kit: 50 frames with 1-2 signs each, every sign
    found and nothing else (perfect) versus about a third found among as many
    false alarms (random); and input every metric must reject."""
    rng = np.random.default_rng(0)
    signs = rng.integers(1, 3, 50)
    found = rng.binomial(signs, 0.35)
    perfect = {"tp": signs, "fp": np.zeros(50, dtype=np.int64), "fn": np.zeros(50, dtype=np.int64)}
    rand = {"tp": found, "fp": rng.integers(0, 3, 50), "fn": signs - found}
    bad = [
        ("mismatched lengths", {"tp": signs, "fp": signs[:10], "fn": signs}),
        ("no frames", {"tp": np.zeros(0, np.int64), "fp": np.zeros(0, np.int64), "fn": np.zeros(0, np.int64)}),
        ("negative counts", {"tp": -signs, "fp": signs, "fn": signs}),
    ]
    return perfect, rand, bad
