"""Tests of robustbench_x.metrics.calibration: loops, scikit-learn and hand-worked cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss

from robustbench_x.metrics.calibration import brier, ece, nll, reliability_bins

ALL = [ece, nll, brier, reliability_bins]


def make_probs(seed, n, c, temperature=1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, c)) / temperature
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    # Labels agree with the argmax about 60 % of the time.
    labels = np.where(rng.uniform(size=n) < 0.6, probs.argmax(axis=1), rng.integers(0, c, n))
    return probs, labels


# --------------------------------------------------------------------------- references


def loop_ece(probs, labels, n_bins=15):
    """Direct transcription of gpleiss ``_ECELoss`` (bins (lower, upper]) plus conf == 0 in bin 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = probs.max(axis=1)
    acc = probs.argmax(axis=1) == labels
    total = 0.0
    for b in range(n_bins):
        lower, upper = edges[b], edges[b + 1]
        members = [i for i in range(len(conf)) if (lower < conf[i] <= upper) or (b == 0 and conf[i] == 0.0)]
        if members:
            gap = abs(np.mean(acc[members]) - np.mean(conf[members]))
            total += len(members) / len(conf) * gap
    return total


def loop_brier(probs, labels):
    total = 0.0
    for i in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            total += (probs[i, c] - (1.0 if labels[i] == c else 0.0)) ** 2
    return total / probs.shape[0]


# --------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize("seed,n,c", [(0, 1, 2), (1, 7, 3), (2, 100, 10), (3, 1000, 5), (4, 257, 100)])
@pytest.mark.parametrize("n_bins", [1, 10, 15, 20])
def test_ece_against_loop(seed, n, c, n_bins):
    probs, labels = make_probs(seed, n, c)
    assert ece(probs, labels, n_bins=n_bins) == pytest.approx(loop_ece(probs, labels, n_bins), abs=1e-12)


def test_ece_against_loop_with_edge_confidences():
    # Confidences exactly on bin edges (k/10 with 10 bins) and exactly 1.
    rng = np.random.default_rng(5)
    conf = np.linspace(0.0, 1.0, 11)[rng.integers(5, 11, 300)]
    probs = np.stack([conf, 1.0 - conf], axis=1)
    labels = rng.integers(0, 2, 300)
    edges_bins = 10
    assert ece(probs, labels, n_bins=edges_bins) == pytest.approx(loop_ece(probs, labels, edges_bins), abs=1e-12)
    assert ece(probs, labels) == pytest.approx(loop_ece(probs, labels), abs=1e-12)


@pytest.mark.parametrize("seed,n,c", [(0, 1, 2), (1, 50, 3), (2, 1000, 10)])
def test_nll_against_sklearn(seed, n, c):
    probs, labels = make_probs(seed, n, c)
    assert nll(probs, labels) == pytest.approx(log_loss(labels, probs, labels=np.arange(c)), abs=1e-10)


@pytest.mark.parametrize("seed,n,c", [(0, 1, 2), (1, 50, 3), (2, 300, 10)])
def test_brier_against_loop(seed, n, c):
    probs, labels = make_probs(seed, n, c)
    assert brier(probs, labels) == pytest.approx(loop_brier(probs, labels), abs=1e-12)


# --------------------------------------------------------------------------- hand-worked cases


def test_ece_hand():
    # 15 bins of width 1/15. Confidences / correctness:
    #  s1 0.90 correct, s2 0.88 wrong   -> bin (0.8667, 0.9333]: |1 - 1.78| = 0.78 (sum form)
    #  s3 0.62 correct                  -> bin (0.6, 0.6667]:    |1 - 0.62| = 0.38
    #  s4 1.00 correct                  -> bin (0.9333, 1]:      |1 - 1|    = 0
    #  s5 0.42 wrong                    -> bin (0.4, 0.4667]:    |0 - 0.42| = 0.42
    # ECE = sum_b (n_b / N) |acc_b - conf_b| = (1/N) sum_b |sum correct - sum conf|
    #     = (0.78 + 0.38 + 0 + 0.42) / 5 = 0.316.
    probs = np.array(
        [
            [0.90, 0.05, 0.05],
            [0.12, 0.88, 0.00],
            [0.62, 0.28, 0.10],
            [1.00, 0.00, 0.00],
            [0.42, 0.33, 0.25],
        ]
    )
    labels = np.array([0, 0, 0, 0, 2])
    assert ece(probs, labels) == pytest.approx(0.316)


def test_ece_bin_membership_upper_edge_inclusive():
    # 2 bins: (0, 0.5] and (0.5, 1]. s1 = [0.5, 0.5] label 0: conf 0.5, argmax 0 -> correct,
    # goes to the FIRST bin (upper edge inclusive); s2 = [0.7, 0.3] label 1: wrong, conf 0.7.
    # ECE = 1/2 |1 - 0.5| + 1/2 |0 - 0.7| = 0.6.
    # (With [lower, upper) membership both would share bin 2: |0.5 - 0.6| = 0.1.)
    probs = np.array([[0.5, 0.5], [0.7, 0.3]])
    labels = np.array([0, 1])
    assert ece(probs, labels, n_bins=2) == pytest.approx(0.6)
    bins = reliability_bins(probs, labels, n_bins=2)
    np.testing.assert_array_equal(bins["count"], [1, 1])


def test_confidence_one_goes_to_last_bin():
    # A single-column row has confidence exactly 1 = the top edge, which is in the
    # last bin (upper edge inclusive). Correct, so ECE = |1 - 1| = 0. (A confidence
    # of exactly 0, which the rule puts in the first bin, cannot come from a row
    # that sums to 1.)
    probs = np.array([[1.0], [1.0]])
    labels = np.array([0, 0])
    assert ece(probs, labels) == 0.0
    bins = reliability_bins(probs, labels)
    assert bins["count"][-1] == 2 and bins["count"][:-1].sum() == 0


def test_perfectly_calibrated_bin_gives_zero():
    # 25 samples at confidence 0.64 (bin (0.6, 0.6667]) with exactly 16 correct:
    # acc = 16/25 = 0.64 = conf, so the only non-empty bin has gap 0.
    probs = np.tile([0.64, 0.36], (25, 1))
    labels = np.r_[np.zeros(16, dtype=int), np.ones(9, dtype=int)]
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_nll_hand_and_clipping():
    # -mean(log 0.8, log 0.5) = (0.22314 + 0.69315) / 2.
    probs = np.array([[0.8, 0.2], [0.5, 0.5]])
    assert nll(probs, [0, 1]) == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2)
    # A zero probability on the true class is clipped at 1e-12: -log(1e-12) = 27.631...
    assert nll(np.array([[1.0, 0.0]]), [1]) == pytest.approx(-math.log(1e-12))


def test_brier_hand():
    # torch-uncertainty BrierScore docstring examples (sum over classes, mean over samples):
    # [[0.8, 0.2], [0.3, 0.7]], y = [0, 1]: (0.04 + 0.04 + 0.09 + 0.09) / 2 = 0.13.
    assert brier(np.array([[0.8, 0.2], [0.3, 0.7]]), [0, 1]) == pytest.approx(0.13)
    # [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], y = [0, 2]:
    # (0.16 + 0.09 + 0.01 + 0.04 + 0.25 + 0.49) / 2 = 0.52 (not divided by C = 3).
    assert brier(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]), [0, 2]) == pytest.approx(0.52)
    # Confidently wrong: (1 - 0)^2 + (0 - 1)^2 = 2, the maximum.
    assert brier(np.array([[1.0, 0.0]]), [1]) == pytest.approx(2.0)


def test_reliability_bins_structure():
    probs, labels = make_probs(6, 500, 4)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert set(bins) == {"bin_lower", "bin_upper", "confidence", "accuracy", "count"}
    for v in bins.values():
        assert isinstance(v, np.ndarray) and v.shape == (10,)
    np.testing.assert_allclose(bins["bin_lower"], np.arange(10) / 10)
    np.testing.assert_allclose(bins["bin_upper"], np.arange(1, 11) / 10)
    assert bins["count"].sum() == 500
    empty = bins["count"] == 0
    assert empty[:2].all()  # max prob of 4 classes is >= 0.25, so bins 0-1 are empty
    assert np.isnan(bins["confidence"][empty]).all() and np.isnan(bins["accuracy"][empty]).all()
    filled = ~empty
    assert np.all(bins["confidence"][filled] > bins["bin_lower"][filled])
    assert np.all(bins["confidence"][filled] <= bins["bin_upper"][filled])
    recomputed = np.sum(bins["count"][filled] / 500 * np.abs(bins["accuracy"][filled] - bins["confidence"][filled]))
    assert recomputed == pytest.approx(ece(probs, labels, n_bins=10), abs=1e-12)


# --------------------------------------------------------------------------- input handling


def test_float32_memmap_and_float_labels(tmp_path):
    probs, labels = make_probs(7, 400, 10)
    p32 = probs.astype(np.float32)
    mm = np.memmap(tmp_path / "p.bin", dtype=np.float32, mode="w+", shape=p32.shape)
    mm[:] = p32
    for fn in (ece, nll, brier):
        expected = fn(p32.astype(np.float64), labels)
        got = fn(mm, labels.astype(np.float64))
        assert isinstance(got, float)
        assert got == pytest.approx(expected, abs=1e-12)
        assert fn(p32.tolist(), labels.tolist()) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_bad_input(fn):
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match=r"probs must be a 2-D array of shape \(N, C\)"):
        fn(probs[0], labels)
    with pytest.raises(ValueError, match="probs is empty"):
        fn(np.zeros((0, 2)), np.array([], dtype=int))
    with pytest.raises(ValueError, match="probs contains NaN or inf"):
        fn(np.array([[np.nan, 0.3], [0.4, 0.6]]), labels)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        fn(np.array([[1.2, -0.2], [0.4, 0.6]]), labels)
    with pytest.raises(ValueError, match=r"each row of probs must sum to 1 \(within 0.001\).*row 1"):
        fn(np.array([[0.7, 0.3], [0.4, 0.5]]), labels)
    with pytest.raises(ValueError, match=r"labels out of range: got values in \[0, 2\], expected \[0, 2\)"):
        fn(probs, [0, 2])
    with pytest.raises(ValueError, match="labels out of range"):
        fn(probs, [-1, 0])
    with pytest.raises(ValueError, match="labels must contain integer class indices"):
        fn(probs, [0.5, 1.0])
    with pytest.raises(ValueError, match="same number of samples, got 2 and 3"):
        fn(probs, [0, 1, 1])
    with pytest.raises(ValueError, match="labels is empty"):
        fn(probs, [])
    with pytest.raises(ValueError, match="probs must be a numeric array"):
        fn(np.array([["a", "b"]]), [0])


def test_row_sum_tolerance():
    # Within 1e-3 is accepted (float32 softmax rounding), beyond is rejected.
    ok = np.array([[0.6995, 0.3]])
    assert ece(ok, [0]) >= 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        ece(np.array([[0.698, 0.3]]), [0])


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True, "15"])
def test_bad_n_bins(n_bins):
    probs = np.array([[0.7, 0.3]])
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        ece(probs, [0], n_bins=n_bins)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        reliability_bins(probs, [0], n_bins=n_bins)
