"""Every rbx_uncertainty method on the embedded default (built-in CNN + embedded digits) through ModelContext.

The CNN and the Deep Ensemble's members load the shipped weights (no
training). Budgets are reduced (T, epochs) so the file stays fast: this checks plumbing and output contracts, the
definitions are checked in the per-method files.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from robustbench_x.metrics.failure import failure_auroc

SUBSETS = ("id", "ood/photos")


def _methods():
    from rbx_uncertainty.confidnet import ConfidNet
    from rbx_uncertainty.ensemble import DeepEnsemble
    from rbx_uncertainty.mc_dropout import MCDropout
    from rbx_uncertainty.trust_score import TrustScore

    return {
        "mc_dropout": MCDropout(T=8),
        # K = 5, the paper's: the members ship with the built-in CNN; averaging over members is
        # checked on a hand case in test_uncertainty_ensemble.py.
        "deep_ensemble": DeepEnsemble(K=5),
        "trust_score": TrustScore(),
        "confidnet": ConfidNet(epochs=5),
    }


@pytest.mark.parametrize("name", ["mc_dropout", "deep_ensemble", "trust_score", "confidnet"])
def test_method_fits_and_scores_the_embedded_default(ctx, name):
    method = _methods()[name]
    method.fit(ctx)
    results = {subset: method.score(ctx, subset) for subset in SUBSETS}
    for subset, out in results.items():
        n = len(ctx.outputs(subset))
        assert {"score", "confidence", "prediction"} <= set(out)
        for key, value in out.items():
            assert len(value) == n, (subset, key)
            if key == "prediction":
                assert value.dtype == np.int64
                if name in ("trust_score", "confidnet"):  # the classifier's own prediction
                    np.testing.assert_array_equal(value, ctx.outputs(subset).logits.argmax(1))
            else:
                assert value.dtype == np.float64, (subset, key)
                assert np.isfinite(value).all(), (subset, key)
    if name != "deep_ensemble":
        id_out, labels = results["id"], ctx.outputs("id").labels
        correct = id_out["prediction"] == labels
        assert np.isfinite(failure_auroc(id_out["confidence"], correct))
    if name == "confidnet":
        assert ((results["id"]["confidence"] > 0) & (results["id"]["confidence"] < 1)).all()


def test_mc_dropout_leaves_the_real_model_untouched(ctx):
    from rbx_uncertainty.mc_dropout import MCDropout

    net = ctx.model.module
    before = copy.deepcopy(net.state_dict())
    a = MCDropout(T=4).score(ctx, "id")
    b = MCDropout(T=4).score(ctx, "id")
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running stats included
    assert not any(m.training for m in net.modules())
    np.testing.assert_array_equal(a["probs"], b["probs"])
    assert a["mutual_information"].max() > 0


def test_confidnet_phase3_finetunes_a_clone(ctx):
    from rbx_uncertainty.confidnet import ConfidNet

    net = ctx.model.module
    before = copy.deepcopy(net.state_dict())
    method = ConfidNet(epochs=2, finetune_epochs=1, finetune_lr=1e-4)
    method.fit(ctx)
    assert any(k.startswith("encoder.") for k in method.state)
    assert method.state["finetune_val_ap_error"].shape == (2,)  # epoch 0 (phase-2 head) and epoch 1
    assert method.state["finetune_val_loss"].shape == (2,)
    assert int(method.state["finetune_selected_epoch"][0]) in (0, 1)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # the classifier is untouched
    out = method.score(ctx, "id")
    assert np.isfinite(out["confidence"]).all() and ((out["confidence"] > 0) & (out["confidence"] < 1)).all()
    np.testing.assert_array_equal(out["prediction"], ctx.outputs("id").logits.argmax(1))
