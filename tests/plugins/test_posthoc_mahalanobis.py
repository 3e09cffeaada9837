"""Vanilla Mahalanobis against an explicit computation on a 2-class 2-D toy."""

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance

from rbx_posthoc.mahalanobis import Mahalanobis
from robustbench_x.testing.doubles import ArrayContext, make_outputs

# Class-centred offsets shared by both classes (they sum to zero).
OFFSETS = np.array([[2.0, 1.0], [-2.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
MEANS = np.array([[0.0, 0.0], [4.0, 0.0]])
# Tied MLE second moment of the offsets, by hand: sum(x*x)/4 = 10/4, sum(y*y)/4 = 1, sum(x*y)/4 = 2/4.
SIGMA = np.array([[2.5, 0.5], [0.5, 1.0]])
TEST = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.0], [10.0, -2.0], [-1.0, 0.5]])


def toy_context(extra_dim=False, unlabelled=0):
    train = np.concatenate([MEANS[0] + OFFSETS, MEANS[1] + OFFSETS])
    labels = np.array([0] * 4 + [1] * 4)
    test = TEST
    if unlabelled:
        train = np.concatenate([train, np.full((unlabelled, 2), 100.0)])
        labels = np.concatenate([labels, -np.ones(unlabelled, dtype=int)])
    if extra_dim:  # a dead feature: zero everywhere, covariance is singular
        train = np.concatenate([train, np.zeros((len(train), 1))], axis=1)
        test = np.concatenate([test, np.zeros((len(test), 1))], axis=1)
    logits = np.zeros((len(train), 2))
    return ArrayContext(
        {"train": make_outputs(logits, train, labels), "id": make_outputs(np.zeros((len(test), 2)), test)}
    )


def expected_scores(points=TEST):
    precision = np.linalg.inv(SIGMA)
    d = [[(x - m) @ precision @ (x - m) for m in MEANS] for x in points]
    return -np.min(d, axis=1)


def test_tied_covariance_is_the_mle_second_moment():
    centred = np.concatenate([OFFSETS, OFFSETS])
    ec = EmpiricalCovariance(assume_centered=True).fit(centred)
    np.testing.assert_allclose(ec.covariance_, SIGMA)


def test_scores_match_explicit_inverse():
    ctx = toy_context()
    method = Mahalanobis()
    method.fit(ctx)
    np.testing.assert_allclose(method.state["means"], MEANS)
    np.testing.assert_allclose(method.state["precision"], np.linalg.inv(SIGMA), rtol=1e-12)
    out = method.score(ctx, "id")
    np.testing.assert_allclose(out["score"], expected_scores(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["confidence"], out["score"])
    assert out["score"][0] == pytest.approx(0.0) and out["score"][1] == pytest.approx(0.0)
    # no 1/2 factor: (10,-2) is closest to mu_1, distance d^T P d with d = (6,-2)
    d = np.array([6.0, -2.0])
    assert out["score"][3] == pytest.approx(-(d @ np.linalg.inv(SIGMA) @ d))


def test_unlabelled_train_rows_are_ignored():
    out = Mahalanobis().score(toy_context(unlabelled=3), "id")
    np.testing.assert_allclose(out["score"], expected_scores(), rtol=1e-10, atol=1e-12)


def test_singular_covariance_uses_pseudo_inverse():
    # With a dead feature the covariance is singular; inv fails, pinv ignores the null direction.
    ctx = toy_context(extra_dim=True)
    method = Mahalanobis()
    method.fit(ctx)
    out = method.score(ctx, "id")
    assert np.all(np.isfinite(out["score"]))
    np.testing.assert_allclose(out["score"], expected_scores(), rtol=1e-10, atol=1e-12)
