"""Pixel failure prediction: the area under the risk-coverage curve over pixels.

Same definition as the harness's classification ``aurc``
(``robustbench_x.metrics.failure.aurc``, FD-Shifts style): thresholds are the
distinct confidences (a tie group is accepted whole), a point at coverage 0
takes the risk of the most confident group, linear trapezoid from coverage 0
to 1. Pixels stream into an
:class:`~rbx_segmentation.metrics.curves.OrderedHistogram`, so confidences are
grouped at 12 significant bits (relative step 2**-11): identical to the exact
value when the confidences differ at that precision, and a tie otherwise
(hence the methods' confidences bounded by 1 are emitted minus 1).
"""

from __future__ import annotations

import numpy as np

from rbx_segmentation.metrics.curves import OrderedHistogram

__all__ = ["RiskCoverageAccumulator", "pixel_aurc"]


class RiskCoverageAccumulator:
    def __init__(self, mantissa_bits: int = 11) -> None:
        self.histogram = OrderedHistogram(mantissa_bits)

    def update(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        confidence, correct = np.asarray(confidence), np.asarray(correct)
        if confidence.shape != correct.shape:
            raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} must have the same shape")
        self.histogram.add(confidence, ~correct.astype(bool))  # the error is the "positive"

    def aurc(self) -> float:
        _, errors, right = self.histogram.curve()
        if errors.size == 0:
            raise ValueError("no pixel to score (empty or all ignored)")
        accepted = errors + right
        risk = errors / accepted
        coverage = np.r_[0.0, accepted / accepted[-1]]
        risk = np.r_[risk[:1], risk]
        return float(np.sum(np.diff(coverage) * (risk[1:] + risk[:-1]) / 2.0))


def pixel_aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """AURC over every pixel of ``confidence`` / ``correct`` (any matching shapes; drop ignored
    pixels first). A fraction, lower is better; shown x1000 like the classification AURC."""
    acc = RiskCoverageAccumulator()
    acc.update(confidence, correct)
    return acc.aurc()
