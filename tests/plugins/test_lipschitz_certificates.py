"""Certificates of rbx_lipschitz.certificates against exact oracles: a linear
1-Lipschitz classifier's closed-form distance to its decision boundary, hand-counted
pixel budgets, a brute-force worst-case IoU, and the reference code's ε = 0 rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rbx_lipschitz.certificates import (
    certified_mask,
    certified_pixel_count,
    certified_radius,
    class_gaps,
    class_flip_costs,
    pixel_flip_costs,
    robustness_curve,
    robustness_radius,
    top1_margin,
    worst_case_iou,
)


def _orthonormal_rows(rng, k: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return q.T  # (k, d), orthonormal rows: ||W||_2 = 1, ||w_i - w_j|| = sqrt(2)


def test_radius_of_a_linear_1_lipschitz_classifier_is_its_exact_distance_to_the_boundary():
    rng = np.random.default_rng(0)
    w, b = _orthonormal_rows(rng, 5, 12), rng.normal(size=5)
    assert np.linalg.norm(w, 2) == pytest.approx(1.0)
    x = rng.normal(size=(200, 12))
    logits = x @ w.T + b
    labels = logits.argmax(axis=1)
    labels[::4] = (labels[::4] + 1) % 5  # some wrong predictions
    radius = certified_radius(top1_margin(logits, labels), 1.0)
    for i in range(len(x)):
        y = labels[i]
        if logits[i].argmax() != y:
            assert radius[i] == 0
            continue
        # closed form: the nearest point where class j overtakes y is at distance (f_y - f_j) / ||w_y - w_j||
        exact = min((logits[i, y] - logits[i, j]) / np.linalg.norm(w[y] - w[j]) for j in range(5) if j != y)
        assert radius[i] == pytest.approx(exact, rel=1e-12)
        # and the bound is tight: just beyond it along the worst direction the prediction changes
        j = min((j for j in range(5) if j != y), key=lambda j: logits[i, y] - logits[i, j])
        direction = (w[j] - w[y]) / np.linalg.norm(w[j] - w[y])
        assert (w @ (x[i] + radius[i] * (1 - 1e-9) * direction) + b).argmax() == y
        assert (w @ (x[i] + radius[i] * (1 + 1e-9) * direction) + b).argmax() != y


def test_certified_accuracy_at_zero_is_clean_accuracy_and_the_boundary_is_strict():
    radius = np.array([0.0, 0.5, 0.5, 1.0, 0.0])
    correct = np.array([True, True, False, True, False])
    assert certified_mask(radius, correct, 0.0).tolist() == correct.tolist()  # even the tie (radius 0, correct)
    assert certified_mask(radius, correct, 0.5).tolist() == [False, False, False, True, False]  # radius == eps is not robust
    assert certified_mask(radius, correct, 0.49).tolist() == [False, True, False, True, False]
    # the Lipschitz constant divides the radius; sqrt(2) for the global (vector) constant
    assert certified_radius(np.array([2.0, -1.0]), 2.0).tolist() == pytest.approx([1 / math.sqrt(2), 0.0])
    with pytest.raises(ValueError, match="Lipschitz"):
        certified_radius(np.ones(2), 0.0)


def _reference_crpa(logits: np.ndarray, target: np.ndarray, eps: float, lip: float, ignore: int) -> float:
    """The rule of deel-ai-papers/robust-segmentation src/robustness/pixel_acc.py (5de9c22), in numpy."""
    pred = logits.argmax(0)
    top = np.sort(logits, axis=0)
    margin = (top[-1] - top[-2]) * (pred == target)
    c = np.sqrt(np.cumsum(np.sort((margin.ravel() ** 2) / 2)))
    return float((c >= eps * lip).sum() / (target != ignore).sum())


def test_certified_pixels_hand_count_and_the_reference_eps_zero_bug():
    # 1 x 2 x 3 map, two classes; the logit gap per pixel is the difference of the two maps
    logits = np.array([[[3.0, 0.0, 1.0], [0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0], [2.0, 0.5, 5.0]]])  # (C=2, H=2, W=3)
    target = np.array([[0, 1, 1], [1, 255, 1]])
    costs, valid = pixel_flip_costs(class_gaps(logits), target, ignore_index=255)
    # correct pixels: (0,0) gap 3, (0,1) gap 1, (1,0) gap 2, (1,2) gap 5; (0,2) wrong; (1,1) void
    assert sorted(costs.tolist()) == [0.5, 2.0, 4.5, 12.5] and valid == 5
    assert certified_pixel_count(costs, 0.0, 1.0) == 4  # eps = 0: every correct pixel = clean pixel accuracy 4/5
    # budget (L eps)^2 = 1: the cheapest (0.5) goes, cumulative 2.5 > 1 keeps the other three
    assert certified_pixel_count(costs, 1.0, 1.0) == 3
    assert certified_pixel_count(costs, math.sqrt(2.5), 1.0) == 2  # exactly enough for 0.5 + 2.0: both flip (tie = flip)
    assert certified_pixel_count(costs, 1.0, 10.0) == 0  # L scales the budget
    # the reference counts cost >= eps L: at eps = 0 every pixel, wrong and void ones included
    assert _reference_crpa(logits, target, 0.0, 1.0, 255) == pytest.approx(6 / 5)
    assert certified_pixel_count(costs, 1.0, 1.0) / valid <= _reference_crpa(logits, target, 1.0, 1.0, 255)


def _brute_force_wc_iou(images, budget):
    """Enumerate every affordable set of flips per image (any subset, not only the cheapest)."""
    options = []
    for tp, tn, union in images:
        per = []
        for mask_a in itertools.product([0, 1], repeat=len(tp)):
            ca = sum(c for c, m in zip(tp, mask_a) if m)
            for mask_d in itertools.product([0, 1], repeat=len(tn)):
                if ca + sum(c for c, m in zip(tn, mask_d) if m) <= budget:
                    per.append((len(tp) - sum(mask_a), union + sum(mask_d)))
        options.append(per)
    return min(sum(n for n, _ in combo) / sum(d for _, d in combo) for combo in itertools.product(*options))


def test_worst_case_iou_is_the_exact_pooled_minimum_and_below_the_per_image_heuristic():
    rng = np.random.default_rng(3)
    for trial in range(12):
        images = []
        for _ in range(3):
            tp = np.sort(rng.uniform(0, 1, rng.integers(0, 4)))
            tn = np.sort(rng.uniform(0, 1, rng.integers(0, 4)))
            images.append((tp, tn, len(tp) + int(rng.integers(0, 3))))
        if sum(u for *_, u in images) == 0:
            continue
        eps = float(rng.uniform(0.3, 1.2))
        clean, worst = worst_case_iou(images, eps, 1.0)
        assert worst == pytest.approx(_brute_force_wc_iou(images, eps**2), abs=1e-12), trial
        assert worst <= clean
        assert worst_case_iou(images, 0.0, 1.0) == (clean, clean)

    # the reference minimises each image's own ratio, then pools numerators and denominators
    a = (np.full(4, 0.1), np.full(8, 0.01), 5)  # 4 cheap TPs, 8 cheap TNs, one FP
    b = (np.full(100, 9.0), np.zeros(0), 100)  # out of reach: 100 / 100
    budget = 0.4
    own = [min(((len(tp) - m, u + n) for m in range(len(tp) + 1) for n in range(len(tn) + 1)
                if tp[:m].sum() + tn[:n].sum() <= budget + 1e-12), key=lambda p: p[0] / p[1]) for tp, tn, u in (a, b)]
    heuristic = sum(p[0] for p in own) / sum(p[1] for p in own)
    assert heuristic == pytest.approx(100 / 105)  # image a alone is worst at 0 / 5
    _, worst = worst_case_iou([a, b], math.sqrt(budget), 1.0)
    assert worst == pytest.approx(101 / 113)  # pooled: break 3 TPs and add 8 FPs in image a
    assert worst < heuristic


def test_class_flip_costs_leave_void_pixels_out():
    logits = np.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]])  # pred: [[0,1],[1,0]]
    target = np.array([[0, 255], [1, 1]])
    tp, tn, union = class_flip_costs(class_gaps(logits), target, k=0, ignore_index=255)
    # class 0: TP (0,0) gap 2; FP (1,1); TN (1,0) gap -3; the void pixel counts nowhere
    assert tp.tolist() == [2.0] and tn.tolist() == [4.5] and union == 2


def test_robustness_radius_reads_the_averaged_curve():
    logits = np.zeros((2, 1, 4))
    logits[0, 0] = [1.0, 2.0, 3.0, 4.0]  # gaps 1..4 against class 1 at 0
    curve = robustness_curve(class_gaps(logits))
    assert curve.tolist() == pytest.approx(np.cumsum([0.5, 2.0, 4.5, 8.0]).tolist())
    assert robustness_radius(curve, 0.5, 1.0) == pytest.approx(math.sqrt(2.5))  # index floor(0.5 * 3) = 1
    assert robustness_radius(curve, 1.0, 2.0) == pytest.approx(math.sqrt(15.0) / 2)
