"""TrustScore (Jiang et al. 2018) against docs/methods.md#trust_score, on points whose distances are checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rbx_uncertainty.trust_score import TrustScore, density_filter, trust_score
from robustbench_x.testing import ArrayContext, make_outputs


def _ctx(train_x, train_y, test_x, test_pred, num_classes):
    train_x = np.asarray(train_x, dtype=np.float64)
    logits = np.eye(num_classes)[np.asarray(test_pred)] * 5.0  # argmax = the prediction we want
    train_logits = np.eye(num_classes)[np.asarray(train_y)]
    return ArrayContext(
        {
            "train": make_outputs(train_logits, features=train_x, labels=train_y),
            "id": make_outputs(logits, features=np.asarray(test_x, dtype=np.float64)),
        },
        num_classes=num_classes,
    )


# Points on the line y = 0: class 0 at x = 0, 1.5, 5; class 1 at x = 10, 12, 15.
LINE_X = [[0, 0], [1.5, 0], [5, 0], [10, 0], [12, 0], [15, 0]]
LINE_Y = [0, 0, 0, 1, 1, 1]


def test_two_classes_on_a_line_uses_the_second_neighbour():
    # test point x = 2: distances to class 0 are 2, 0.5, 3 → 2nd NN = 2 (the 1st, 0.5, is skipped);
    # to class 1 are 8, 10, 13 → 2nd NN = 10.
    ctx = _ctx(LINE_X, LINE_Y, [[2, 0], [2, 0]], [0, 1], 2)
    out = TrustScore().score(ctx, "id")
    assert out["score"][0] == pytest.approx(10 / 2)  # predicted 0: d(other)=10 / d(pred)=2
    assert out["score"][1] == pytest.approx(2 / 10)  # predicted 1: d(other)=2 / d(pred)=10
    assert out["score"][0] != pytest.approx(8 / 0.5)  # what the 1st neighbour would give
    np.testing.assert_array_equal(out["confidence"], out["score"])
    np.testing.assert_array_equal(out["prediction"], [0, 1])
    assert out["score"].dtype == np.float64 and out["prediction"].dtype == np.int64


def test_training_point_does_not_match_itself():
    # x = 1.5 is a class-0 training point: 1st NN is itself (0), the 2nd is x = 0 at 1.5; class 1: 8.5, 10.5 → 10.5.
    out = TrustScore().score(_ctx(LINE_X, LINE_Y, [[1.5, 0]], [0], 2), "id")
    assert out["score"][0] == pytest.approx(10.5 / 1.5)


def test_numerator_is_the_closest_other_class():
    # add class 2 above the line at (2, 3), (2, 4), (2, 6): distances from (2, 0) are 3, 4, 6 → 2nd NN = 4.
    x = LINE_X + [[2, 3], [2, 4], [2, 6]]
    y = LINE_Y + [2, 2, 2]
    out = TrustScore().score(_ctx(x, y, [[2, 0]], [0], 3), "id")
    assert out["score"][0] == pytest.approx(min(10, 4) / 2)


def test_min_dist_guards_zero_distance():
    d = np.array([[0.0, 3.0]])
    assert trust_score(d, np.array([0]), min_dist=1e-12)[0] == pytest.approx(3e12)
    assert trust_score(d, np.array([0]), min_dist=1.0)[0] == pytest.approx(3.0)


def test_density_filter_removes_the_alpha_fraction_of_lowest_density():
    x = np.array([[0.0], [1.0], [2.0], [100.0]])
    # k = 2 (the point itself is the 1st neighbour): radii 1, 1, 1, 98; 75th percentile (linear) = 25.25.
    np.testing.assert_array_equal(density_filter(x, k=2, alpha=0.25), x[:3])
    np.testing.assert_array_equal(density_filter(x, k=2, alpha=0.0), x)


def test_density_filtering_changes_the_class_distance():
    # class 0: 0, 1, 2, 100 ; class 1: 50, 51, 52, 53 ; test point at 99 predicted 0.
    x = [[0], [1], [2], [100], [50], [51], [52], [53]]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    ctx = _ctx(x, y, [[99]], [0], 2)
    plain = TrustScore().score(ctx, "id")["score"][0]
    # unfiltered: class 0 distances 99, 98, 97, 1 → 2nd NN 97; class 1: 49, 48, 47, 46 → 47.
    assert plain == pytest.approx(47 / 97)
    filtered = TrustScore(k=2, alpha=0.25, filtering="density").score(ctx, "id")["score"][0]
    # class 0 keeps 0, 1, 2 (the outlier 100 is dropped) → 2nd NN 98; class 1 radii all 1 → kept: 47.
    assert filtered == pytest.approx(47 / 98)


def test_invalid_settings():
    with pytest.raises(ValueError):
        TrustScore(filtering="uncertainty")
    with pytest.raises(ValueError, match="at least 2"):
        TrustScore().fit(_ctx([[0, 0], [1, 1], [2, 2]], [0, 0, 1], [[0, 0]], [0], 2))
