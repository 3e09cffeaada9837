"""Tests of robustbench_x.metrics.classification."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, zero_one_loss

from robustbench_x.metrics.classification import accuracy, errors


def test_accuracy_hand():
    # 3 of 4 predictions match.
    assert accuracy([0, 1, 2, 2], [0, 1, 2, 1]) == pytest.approx(0.75)
    assert accuracy(np.array([5]), np.array([5])) == 1.0
    assert accuracy(np.array([5]), np.array([4])) == 0.0


def test_accuracy_from_scores_argmax_first_on_ties():
    # Row 0 argmax 1 (correct); row 1 tie between classes 0 and 2 -> class 0 (wrong);
    # row 2 argmax 2 (correct). 2/3.
    scores = np.array([[0.1, 3.0, -1.0], [2.0, 0.0, 2.0], [0.0, 0.0, 9.0]])
    assert accuracy(scores, [1, 2, 2]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 100), (2, 10_000)])
def test_accuracy_against_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    pred = np.where(rng.uniform(size=n) < 0.7, labels, rng.integers(0, 10, n))
    got = accuracy(pred, labels)
    assert isinstance(got, float)
    assert got == pytest.approx(accuracy_score(labels, pred), abs=1e-15)
    logits = rng.normal(size=(n, 10))
    assert accuracy(logits, labels) == pytest.approx(accuracy_score(labels, logits.argmax(1)), abs=1e-15)


def test_accepts_memmap_and_integral_floats(tmp_path):
    mm = np.memmap(tmp_path / "p.bin", dtype=np.int32, mode="w+", shape=(4,))
    mm[:] = [1, 2, 3, 4]
    assert accuracy(mm, np.array([1.0, 2.0, 0.0, 4.0])) == pytest.approx(0.75)


def test_bad_input():
    with pytest.raises(ValueError, match="labels is empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="labels out of range"):
        accuracy([0, 1], [0, -2])
    with pytest.raises(ValueError, match="labels out of range"):
        errors([0, 1], [0, -2])
    with pytest.raises(ValueError, match="prediction out of range"):
        accuracy([0, -1], [0, 1])
    with pytest.raises(ValueError, match=r"labels out of range: got values in \[0, 3\], expected \[0, 3\)"):
        accuracy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="labels must contain integer class indices"):
        accuracy([0, 1], [0.5, 1])
    with pytest.raises(ValueError, match="prediction must contain integer class indices"):
        accuracy([0.2, 1], [0, 1])
    with pytest.raises(ValueError, match="prediction contains NaN or inf"):
        accuracy(np.array([[np.nan, 0.0]]), [0])
    with pytest.raises(ValueError, match=r"prediction must be 1-D class indices or 2-D \(N, C\) scores"):
        accuracy(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="labels must be a 1-D array"):
        accuracy([0, 1], [[0, 1]])


def test_errors_hand():
    # Wrong at positions 1 and 3; the label -1 (a class the model does not know) is always wrong.
    assert errors([0, 1, 2, 2, 3], [0, 2, 2, -1, 3]) == 2.0
    assert errors(np.array([[0.0, 1.0], [1.0, 0.0]]), [1, -1]) == 1.0


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 100), (2, 10_000)])
def test_errors_and_accuracy_count_new_class_samples_as_failures_like_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    pred = np.where(rng.uniform(size=n) < 0.7, labels, rng.integers(0, 10, n))
    labels = np.where(rng.uniform(size=n) < 0.3, -1, labels)  # new-class samples
    got = errors(pred, labels)
    assert isinstance(got, float)
    assert got == zero_one_loss(labels, pred, normalize=False) >= np.count_nonzero(labels == -1)
    assert accuracy(pred, labels) == pytest.approx(accuracy_score(labels, pred), abs=1e-15)
    assert got == pytest.approx((1 - accuracy(pred, labels)) * n, abs=1e-9)
