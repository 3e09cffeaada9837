"""KNN: minus the squared L2 distance to the k-th nearest normalised training feature."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from rbx_posthoc.knn import KNN
from robustbench_x.testing.doubles import ArrayContext, make_outputs

RNG = np.random.default_rng(0)
TRAIN = RNG.normal(size=(10, 3))
TEST = RNG.normal(size=(4, 3)) * 5.0


def context(train=TRAIN, test=TEST):
    return ArrayContext(
        {"train": make_outputs(np.zeros((len(train), 2)), train), "id": make_outputs(np.zeros((len(test), 2)), test)}
    )


def normalise(x):
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-10)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_score_is_minus_squared_kth_distance(k):
    out = KNN(k=k).score(context(), "id")
    train, test = normalise(TRAIN), normalise(TEST)
    brute = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)  # squared, as faiss IndexFlatL2
    expected = -np.sort(brute, axis=1)[:, k - 1]
    np.testing.assert_allclose(out["score"], expected, rtol=1e-5, atol=1e-6)
    # sklearn's plain distances, squared, give the same numbers
    dist, _ = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)
    np.testing.assert_allclose(out["score"], -dist[:, k - 1] ** 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["confidence"], out["score"])
    assert out["score"].dtype == np.float64


def test_scale_invariant_because_features_are_normalised():
    a = KNN(k=3).score(context(), "id")["score"]
    b = KNN(k=3).score(context(test=TEST * 100.0), "id")["score"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_zero_feature_does_not_produce_nan():
    test = np.zeros((1, 3))
    out = KNN(k=2).score(context(test=test), "id")["score"]
    # a zero vector stays at the origin: squared distance 1 to every unit-norm train feature
    np.testing.assert_allclose(out, [-1.0], rtol=1e-5)


def test_k_larger_than_train_raises_with_a_fix_a_user_can_follow():
    # no option sets k: the fix is a larger train split or a registered variant
    with pytest.raises(ValueError, match=r"k=11 nearest neighbours need at least 11 training images, the train split has 10; to run it, give the dataset a train split of at least 11 images, or register a variant with a smaller k \(at most 10\) as a plugin \(docs/plugins.md#a-variant-with-other-parameters\)"):
        KNN(k=11).fit(context())


def test_default_k_is_50():
    assert KNN().k == 50
