"""Robustness metrics against the paper's definitions (docs/metrics.md#imagenet-c-corruption-errors) and a
direct port of the reference code (hendrycks/robustness ``ImageNet-P/test.py``)."""

import numpy as np
import pytest
from scipy.stats import rankdata

from rbx_robustness import definitions as R
from rbx_robustness import tables as T

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

# The "Average" column of docs/metrics.md#alexnet-normalisers.
AVERAGE = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500, "speckle_noise": 0.845388,
    "gaussian_blur": 0.787108, "spatter": 0.717512, "saturate": 0.658248,
}  # fmt: skip


def test_constant_name_lists():
    assert len(T.IMAGENET_C_TEST) == 15 and len(T.IMAGENET_C_EXTRA) == 4
    assert set(T.ALEXNET_ERR) == set(T.IMAGENET_C_TEST) | set(T.IMAGENET_C_EXTRA)
    assert len(T.IMAGENET_P_TEST) == 10
    assert set(T.ALEXNET_FP) == set(T.ALEXNET_UT5D) == set(T.IMAGENET_P_TEST) | set(T.IMAGENET_P_EXTRA)
    assert "spatter" in T.CIFAR_P_TEST and "snow" not in T.CIFAR_P_TEST
    assert set(T.CIFAR_P_TEST) - {"spatter"} == set(T.IMAGENET_P_TEST) - {"snow"}
    assert T.ALEXNET_CLEAN_ERR == 0.4348
    assert T.ALEXNET_FP["gaussian_noise"] == 0.23653 and T.ALEXNET_UT5D["scale"] == 4.48


def test_alexnet_table_averages_match_the_average_column():
    assert set(AVERAGE) == set(T.ALEXNET_ERR)
    for corruption, row in T.ALEXNET_ERR.items():
        assert len(row) == 5
        assert abs(np.mean(row) - AVERAGE[corruption]) < 1e-6, corruption
    # docs/metrics.md: the mean of the 15 test averages is 0.788993 (unnormalised AlexNet mean error).
    assert R.mce(T.ALEXNET_ERR, None) == pytest.approx(0.788993, abs=1e-6)


# --------------------------------------------------------------------------
# CE, mCE, relative mCE
# --------------------------------------------------------------------------

MODEL = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.2, 0.2, 0.2, 0.2, 0.2]}
BASE = {"a": [0.3, 0.4, 0.5, 0.6, 0.7], "b": [0.4, 0.4, 0.5, 0.6, 0.6]}


def test_ce_and_mce_by_hand():
    # CE_a = (0.1+0.2+0.3+0.4+0.5) / (0.3+0.4+0.5+0.6+0.7) = 1.5 / 2.5 = 0.6
    # CE_b = (5 * 0.2) / (0.4+0.4+0.5+0.6+0.6)          = 1.0 / 2.5 = 0.4
    # mCE  = (0.6 + 0.4) / 2 = 0.5   (displayed 50.0)
    assert R.ce(MODEL["a"], BASE["a"]) == pytest.approx(0.6)
    assert R.ce(MODEL["b"], BASE["b"]) == pytest.approx(0.4)
    assert R.mce(MODEL, BASE, corruptions=("a", "b")) == pytest.approx(0.5)
    # unnormalised mean corruption error: (mean_a 0.3 + mean_b 0.2) / 2 = 0.25
    assert R.mce(MODEL, None, corruptions=("a", "b")) == pytest.approx(0.25)


def test_relative_mce_by_hand_subtracts_clean_error_per_severity():
    clean, base_clean = 0.05, 0.25
    # RelCE_a = Σ(e − 0.05) / Σ(b − 0.25) = (1.5 − 5·0.05) / (2.5 − 5·0.25) = 1.25 / 1.25 = 1.0
    # RelCE_b = (1.0 − 0.25) / (2.5 − 1.25) = 0.75 / 1.25 = 0.6
    # relative mCE = (1.0 + 0.6) / 2 = 0.8
    assert R.relative_ce(MODEL["a"], BASE["a"], clean, base_clean) == pytest.approx(1.0)
    assert R.relative_ce(MODEL["b"], BASE["b"], clean, base_clean) == pytest.approx(0.6)
    got = R.relative_mce(MODEL, BASE, clean, base_clean, corruptions=("a", "b"))
    assert got == pytest.approx(0.8)
    # The "subtract once from the sum" misreading gives (1.5−0.05)/(2.5−0.25) = 0.6444… for a.
    assert R.relative_ce(MODEL["a"], BASE["a"], clean, base_clean) != pytest.approx(1.45 / 2.25)


def test_alexnet_scores_exactly_one():
    assert R.mce(T.ALEXNET_ERR, T.ALEXNET_ERR) == pytest.approx(1.0, abs=1e-12)
    assert R.relative_mce(T.ALEXNET_ERR, T.ALEXNET_ERR, T.ALEXNET_CLEAN_ERR, T.ALEXNET_CLEAN_ERR) == pytest.approx(
        1.0, abs=1e-12
    )
    for c in T.IMAGENET_C_TEST:
        assert R.ce(T.ALEXNET_ERR[c], T.ALEXNET_ERR[c]) == pytest.approx(1.0)


def test_mce_uses_only_the_15_test_corruptions_by_default():
    errors = {c: list(T.ALEXNET_ERR[c]) for c in T.IMAGENET_C_ALL}
    errors["saturate"] = [1.0] * 5  # an extra corruption must not move mCE
    assert R.mce(errors, T.ALEXNET_ERR) == pytest.approx(1.0)
    assert R.mce(errors, T.ALEXNET_ERR, corruptions=T.IMAGENET_C_ALL) > 1.0


def test_errors_by_corruption_accepts_tuples_and_subset_names():
    flat = {("a", s): e for s, e in zip(range(1, 6), MODEL["a"])}
    flat.update({f"c/b/{s}": e for s, e in zip(range(1, 6), MODEL["b"])})
    grouped = R.errors_by_corruption(flat)
    assert grouped == {"a": MODEL["a"], "b": MODEL["b"]}
    del flat[("a", 3)]
    with pytest.raises(ValueError, match=r"lacks severities \[3\]"):
        R.errors_by_corruption(flat)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: R.ce([0.1, 0.2, 0.3, 0.4], BASE["a"]), "exactly 5 errors"),
        (lambda: R.ce([10, 20, 30, 40, 50], BASE["a"]), "divided by 100"),
        (lambda: R.ce(MODEL["a"], [0, 0, 0, 0, 0]), "sum to 0"),
        (lambda: R.mce({"a": MODEL["a"]}, BASE, corruptions=("a", "b")), r"errors has no entry for \['b'\]"),
        (lambda: R.mce(MODEL, {"a": BASE["a"]}, corruptions=("a", "b")), r"baseline has no entry for \['b'\]"),
        (lambda: R.mce(MODEL, BASE, corruptions="a"), "single string"),
        (lambda: R.relative_ce(MODEL["a"], BASE["a"], 0.05, 0.9), "non-positive denominator"),
        (lambda: R.relative_mce(MODEL, None, 0.1, 0.4348), "needs a baseline"),
        (lambda: R.ce({"1": 0.1}, BASE["a"]), "got a mapping"),
    ],
)
def test_ce_family_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------
# Flip probability
# --------------------------------------------------------------------------


def reference_flip_prob(predictions, noise, difficulty=1):
    """Port of ImageNet-P/test.py::flip_prob."""
    result = 0
    step_size = 1 if noise else difficulty
    for vid_preds in predictions:
        result_for_vid = []
        for i in range(step_size):
            prev_pred = vid_preds[i]
            for pred in vid_preds[i::step_size][1:]:
                result_for_vid.append(int(prev_pred != pred))
                if not noise:
                    prev_pred = pred
        result += np.mean(result_for_vid) / len(predictions)
    return result


PREDS = np.array(
    [
        [3, 3, 5, 3, 3, 5],  # seq 0
        [1, 2, 2, 2, 1, 1],  # seq 1
    ]
)


def test_flip_probability_noise_by_hand():
    # Noise: frames 2..6 against frame 1.
    # seq 0: 3 5 3 3 5 vs 3 -> flips at 5, 5 -> 2/5
    # seq 1: 2 2 2 1 1 vs 1 -> flips 2, 2, 2   -> 3/5
    # FP = (2/5 + 3/5) / 2 = 0.5
    assert R.flip_probability(PREDS, noise=True) == pytest.approx(0.5)
    # Difficulty does not change the noise comparison (it selects the <p>_<d> data folder).
    assert R.flip_probability(PREDS, noise=True, difficulty=2) == pytest.approx(0.5)


def test_flip_probability_temporal_by_hand():
    # Temporal d=1: consecutive frames.
    # seq 0: (3,3) (3,5) (5,3) (3,3) (3,5) -> 3 flips / 5
    # seq 1: (1,2) (2,2) (2,2) (2,1) (1,1) -> 2 flips / 5
    # FP = (3/5 + 2/5) / 2 = 0.5
    assert R.flip_probability(PREDS, noise=False) == pytest.approx(0.5)
    # Temporal d=2: frame j vs frame j-2, i.e. pairs (1,3) (2,4) (3,5) (4,6).
    # seq 0: (3,5) (3,3) (5,3) (3,5) -> 3 flips / 4
    # seq 1: (1,2) (2,2) (2,1) (2,1) -> 3 flips / 4
    # FP = 0.75
    assert R.flip_probability(PREDS, noise=False, difficulty=2) == pytest.approx(0.75)
    # difficulty 3: pairs (1,4) (2,5) (3,6): seq 0: (3,3) (3,3) (5,5) -> 0; seq 1: (1,2) (2,1) (2,1) -> 3/3
    assert R.flip_probability(PREDS, noise=False, difficulty=3) == pytest.approx(0.5)


@pytest.mark.parametrize("noise, difficulty", [(True, 1), (False, 1), (False, 2), (False, 3), (True, 3)])
def test_flip_probability_matches_reference_code(noise, difficulty):
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 4, size=(17, 31))
    assert R.flip_probability(preds, noise, difficulty) == pytest.approx(
        reference_flip_prob(preds, noise, difficulty), abs=1e-12
    )


def test_flip_rate_and_mfr():
    assert R.flip_rate(0.1, 0.2) == pytest.approx(0.5)
    assert R.mfr(dict(T.ALEXNET_FP), T.ALEXNET_FP) == pytest.approx(1.0)
    fps = {p: 0.5 * T.ALEXNET_FP[p] for p in T.IMAGENET_P_TEST}
    assert R.mfr(fps, T.ALEXNET_FP) == pytest.approx(0.5)
    cifar = {p: 0.01 * (i + 1) for i, p in enumerate(T.CIFAR_P_TEST)}
    assert R.mfr(cifar, None, perturbations=T.CIFAR_P_TEST) == pytest.approx(0.055)
    with pytest.raises(ValueError, match=r"has no entry for \['snow'\]"):
        R.mfr(cifar, T.ALEXNET_FP)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: R.flip_probability(PREDS[0], True), "shape"),
        (lambda: R.flip_probability(PREDS, "noise"), "True or False"),
        (lambda: R.flip_probability(PREDS, False, difficulty=0), "positive integer"),
        (lambda: R.flip_probability(PREDS[:, :2], False, difficulty=2), "at least 3 frames"),
        (lambda: R.flip_probability(PREDS + 0.5, True), "integer class indices"),
    ],
)
def test_flip_probability_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_is_noise_rule():
    assert [p for p in T.IMAGENET_P_ALL if R.is_noise(p)] == ["gaussian_noise", "shot_noise", "speckle_noise"]
    assert R.is_noise("gaussian_noise_2")


# --------------------------------------------------------------------------
# Top-5 distance
# --------------------------------------------------------------------------


def paper_top5_distance(sigma):
    """The paper's double sum, literally: Σ_{i=1..5} Σ_{j=min(i,σ(i))+1..max(i,σ(i))} 1[1 ≤ j−1 ≤ 5]."""
    total = 0
    for i in range(1, 6):
        s = int(sigma[i - 1])
        for j in range(min(i, s) + 1, max(i, s) + 1):
            if 1 <= j - 1 <= 5:
                total += 1
    return total


def sigma_from(prefix, c=1000):
    """σ as a sequence σ(1), σ(2), … : the given prefix, then the identity."""
    sigma = np.arange(1, c + 1)
    sigma[: len(prefix)] = prefix
    return sigma


def rotated(c=1000):
    # (2, 3, 4, 5, 6, …, 1000, 1)
    return np.concatenate([np.arange(2, c + 1), [1]])


PAPER_EXAMPLES = [
    ("identity", sigma_from([]), 0),
    ("swap 1 2", sigma_from([2, 1]), 2),
    ("3 1 2", sigma_from([3, 1, 2]), 4),
    ("rotate", rotated(), 5),
    ("swap 5 6", sigma_from([1, 2, 3, 4, 6, 5]), 1),
    ("4 to 6", sigma_from([1, 2, 3, 5, 6, 4]), 2),
    ("reverse 5", sigma_from([5, 4, 3, 2, 1]), 12),
]


def rankings_for(sigma, seed=0):
    """A ranking pair (class indices best first) whose σ is ``sigma``.

    σ(i) is the rank in b of the class ranked i-th in a: b[σ(i) − 1] = a[i − 1].
    """
    c = len(sigma)
    a = np.random.default_rng(seed).permutation(c)
    b = np.empty_like(a)
    b[np.asarray(sigma) - 1] = a
    return a, b


def logits_for(ranking):
    logits = np.empty(len(ranking), dtype=np.float32)
    logits[ranking] = np.arange(len(ranking), 0, -1)
    return logits


@pytest.mark.parametrize("name, sigma, expected", PAPER_EXAMPLES, ids=[e[0] for e in PAPER_EXAMPLES])
def test_paper_worked_examples(name, sigma, expected):
    assert sorted(sigma.tolist()) == list(range(1, 1001))
    assert paper_top5_distance(sigma) == expected
    assert R.top5_distance_sigma(sigma) == expected
    a, b = rankings_for(sigma, seed=len(name))
    assert R.top5_distance(a, b) == expected
    assert R.top5_distance_from_logits(logits_for(a), logits_for(b)) == expected


def test_top5_distance_is_vectorised_over_pairs():
    pairs = [rankings_for(s, seed=i) for i, (_, s, _) in enumerate(PAPER_EXAMPLES)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    expected = [e for _, _, e in PAPER_EXAMPLES]
    np.testing.assert_array_equal(R.top5_distance(a, b), expected)
    np.testing.assert_array_equal(R.top5_distance(a[:, :7], b[:, :5]), expected)  # only the top 5 matter
    la = np.stack([logits_for(r) for r in a])
    lb = np.stack([logits_for(r) for r in b])
    np.testing.assert_array_equal(R.top5_distance_from_logits(la, lb), expected)
    np.testing.assert_array_equal(R.top5_distance_sigma(np.stack([s for _, s, _ in PAPER_EXAMPLES])), expected)


def test_closed_form_equals_paper_sum_on_random_permutations():
    rng = np.random.default_rng(1)
    for c in (5, 6, 10, 50):
        for _ in range(200):
            sigma = rng.permutation(c) + 1
            assert R.top5_distance_sigma(sigma) == paper_top5_distance(sigma)


def reference_ranking_dist(ranks, noise, difficulty=1):
    """Port of ImageNet-P/test.py::ranking_dist (mode 'top5'), ranks from rankdata."""
    c = ranks.shape[-1]
    cum_sum_top5 = np.cumsum(np.asarray([0] + [1] * 5 + [0] * (c - 1 - 5)))

    def dist(sigma):
        return np.sum(np.abs(cum_sum_top5[:5] - cum_sum_top5[sigma - 1][:5]))

    result = 0
    step_size = 1 if noise else difficulty
    for vid_ranks in ranks:
        result_for_vid = []
        for i in range(step_size):
            perm1 = vid_ranks[i]
            perm1_inv = np.argsort(perm1)
            for rank in vid_ranks[i::step_size][1:]:
                perm2 = rank
                result_for_vid.append(dist(perm2[perm1_inv]))
                if not noise:
                    perm1 = perm2
                    perm1_inv = np.argsort(perm1)
        result += np.mean(result_for_vid) / len(ranks)
    return result


@pytest.mark.parametrize("noise, difficulty", [(True, 1), (False, 1), (False, 2)])
def test_ut5d_matches_reference_code_with_ties(noise, difficulty):
    rng = np.random.default_rng(2)
    m, n, c = 6, 11, 20
    base = rng.normal(size=(m, 1, c))
    logits = np.round(base + 0.4 * rng.normal(size=(m, n, c)), 1)  # rounding creates ties
    logits[0, 3] = 0.0  # an all-tied frame
    ranks = np.array([[rankdata(-frame, method="ordinal") for frame in vid] for vid in logits])
    expected = reference_ranking_dist(ranks, noise, difficulty)
    assert R.ut5d(logits, noise, difficulty) == pytest.approx(expected, abs=1e-12)
    assert R.ut5d(logits.astype(np.float32), noise, difficulty) == pytest.approx(
        reference_ranking_dist(
            np.array([[rankdata(-f, method="ordinal") for f in v] for v in logits.astype(np.float32)]),
            noise,
            difficulty,
        ),
        abs=1e-12,
    )


def test_top5_from_logits_breaks_ties_like_rankdata_ordinal():
    logits = np.array([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 2.0, 1.0], [0.0] * 8, [5, 4, 3, 2, 1, 1, 1, 0]])
    top = R.top5_from_logits(logits)
    for row, t in zip(logits, top):
        order = np.argsort(rankdata(-row, method="ordinal"))[:5]
        np.testing.assert_array_equal(t, order)
    np.testing.assert_array_equal(top[0], [1, 2, 4, 5, 6])


def test_t5d_and_mt5d():
    assert R.t5d(2.385, 4.77) == pytest.approx(0.5)
    assert R.mt5d(dict(T.ALEXNET_UT5D), T.ALEXNET_UT5D) == pytest.approx(1.0)
    half = {p: T.ALEXNET_UT5D[p] / 2 for p in T.IMAGENET_P_TEST}
    assert R.mt5d(half, T.ALEXNET_UT5D) == pytest.approx(0.5)
    assert R.mt5d({p: 1.0 for p in T.CIFAR_P_TEST}, None, T.CIFAR_P_TEST) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: R.top5_distance(np.arange(4), np.arange(4)), "at least the top 5"),
        (lambda: R.top5_distance(np.array([0, 0, 1, 2, 3, 4]), np.arange(6)), "twice"),
        (lambda: R.top5_distance(np.arange(6)[None].repeat(2, 0), np.arange(6)), "different numbers"),
        (lambda: R.top5_distance_sigma(np.arange(6)), "permutation of 1..C"),
        (lambda: R.top5_distance_from_logits(np.full(6, np.nan), np.zeros(6)), "NaN"),
        (lambda: R.ut5d(np.zeros((2, 6)), True), "shape"),
        (lambda: R.t5d(1.0, 0.0), "positive"),
    ],
)
def test_top5_family_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
