"""Mahalanobis and ViM refuse a training split their estimators cannot be fitted on.

Mahalanobis (Lee et al. 2018, §2.1) needs within-class scatter for its tied
covariance; ViM (Wang et al. 2022, §3) needs training features that leave a
residual outside the D-dimensional principal subspace. Without them the old
code printed AUROCs from an all-zero precision (every score −0.0) or from
``alpha`` ≈ 1e15 as if they were results.
"""

import numpy as np
import pytest

from rbx_posthoc.mahalanobis import Mahalanobis
from rbx_posthoc.vim import ViM
from robustbench_x.api import Dataset, Model
from robustbench_x.errors import JobError
from robustbench_x.testing.doubles import ArrayContext, make_outputs


class Named(Dataset):
    name = "tiny-folder"


class LinearHead(Model):
    def __init__(self, w, b):
        self.w, self.b = w, b

    def linear_head(self):
        return self.w, self.b


def context(train, labels, test):
    train, test = np.asarray(train, float), np.asarray(test, float)
    c = int(max(labels)) + 1
    outputs = {"train": make_outputs(np.zeros((len(train), c)), train, labels), "id": make_outputs(np.zeros((len(test), c)), test)}
    return ArrayContext(outputs, dataset=Named())


TEST = np.array([[0.5, 0.1, 0.0], [3.0, -1.0, 2.0]])


def test_mahalanobis_one_image_per_class_is_refused():
    ctx = context([[0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [1.0, 3.0, 2.0]], [0, 1, 2], TEST)
    with pytest.raises(JobError, match=r"(?s)dataset 'tiny-folder'.*3 labelled train images in 3 classes.*no within-class scatter.*at least 2 distinct train images"):
        Mahalanobis().fit(ctx)


def test_mahalanobis_identical_images_per_class_are_refused():
    """Two copies of each image: enough images, but the within-class scatter is still exactly 0."""
    ctx = context([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [4.0, 1.0, 0.0], [4.0, 1.0, 0.0]], [0, 0, 1, 1], TEST)
    with pytest.raises(JobError, match=r"(?s)dataset 'tiny-folder'.*within-class scatter is 0"):
        Mahalanobis().fit(ctx)


def test_mahalanobis_with_some_scatter_is_fitted():
    """One class with two distinct images is enough for a (rank-1) tied covariance: pinv handles the rest."""
    ctx = context([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [4.0, 1.0, 0.0]], [0, 0, 1], TEST)
    method = Mahalanobis()
    method.fit(ctx)
    assert np.isfinite(method.score(ctx, "id")["score"]).all()


def vim_context(n_train, d=6, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(3, d)), rng.normal(size=3)
    h = rng.normal(size=(n_train, d))
    if rank is not None:  # features confined to a rank-dimensional affine subspace through the origin u
        u = -np.linalg.pinv(w) @ b
        h = u + rng.normal(size=(n_train, rank)) @ rng.normal(size=(rank, d))
    test = rng.normal(size=(4, d))
    outputs = {"train": make_outputs(h @ w.T + b, h, np.arange(n_train) % 3), "id": make_outputs(test @ w.T + b, test)}
    return ArrayContext(outputs, model=LinearHead(w, b), dataset=Named())


def test_vim_fewer_train_images_than_principal_dim_is_refused():
    """d = 6, D = 3: three train features span at most 3 directions around u, so the residual is 0."""
    with pytest.raises(JobError, match=r"(?s)dataset 'tiny-folder'.*3 train images.*principal subspace of D=3.*more than D=3 train images"):
        ViM().fit(vim_context(3))


def test_vim_features_inside_the_principal_subspace_are_refused():
    """Many train images whose features span only 2 directions around u: the residual norm is round-off."""
    with pytest.raises(JobError, match=r"(?s)dataset 'tiny-folder'.*residual.*round-off"):
        ViM().fit(vim_context(40, rank=2))


def test_vim_normal_fit_passes():
    ctx = vim_context(40)
    method = ViM()
    method.fit(ctx)
    assert np.isfinite(method.score(ctx, "id")["score"]).all()


def test_heat_gmm_one_image_per_class_is_refused_before_training():
    from rbx_heat.method import HEAT

    ctx = context([[0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [1.0, 3.0, 2.0]], [0, 1, 2], TEST)
    with pytest.raises(JobError, match=r"(?s)heat: dataset 'tiny-folder'.*3 labelled train images in 3 classes.*at least 2 distinct train images"):
        HEAT(energies=["gmm"]).fit(ctx)


def test_heat_gmm_prior_refuses_zero_scatter():
    from rbx_heat.priors import fit_gmm

    z = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="within-class scatter of the 4 training features is 0"):
        fit_gmm(z, np.array([0, 0, 1, 1]))
    assert fit_gmm(z + [[0.0, 0.1], [0.0, -0.1], [0.1, 0.0], [-0.1, 0.0]], np.array([0, 0, 1, 1]))["jitter"][0] == 1e-12
