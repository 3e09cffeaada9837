"""`rbx run --suite certified-segmentation` on the embedded scenes with the built-in
1-Lipschitz segmenter: CRPA(0) equals clean pixel accuracy, the stored numbers are
recomputed from the stored class gaps and masks, and an ℓ2 PGD attack on the pixel-wise
margin loss never leaves fewer correct pixels than certified, at every ε of the grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustbench_x.evaluation import ArrayStore
from robustbench_x.results import read_results


def _pgd_l2(net, x, mask, eps, steps=10, ignore=255):
    """ℓ2 PGD inside [0, 1] that lowers the top-1 margins of the still-correct pixels (a margin
    loss clamped at -0.05, so flipped pixels stop pulling; the summed cross-entropy is dominated
    by the already-wrong pixels and barely flips any)."""
    delta = torch.zeros_like(x, requires_grad=True)
    step = 2.5 * eps / steps
    valid = (mask != ignore).float()
    target = torch.where(mask != ignore, mask, torch.zeros_like(mask))
    for _ in range(steps):
        logits = net(x + delta)
        true = logits.gather(1, target[:, None])[:, 0]
        other = logits.masked_fill(torch.nn.functional.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).bool(), -1e9).amax(1)
        loss = -((true - other).clamp_min(-0.05) * valid).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += step * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta *= torch.clamp(eps / norm.clamp_min(1e-12), max=1.0)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return (x + delta).detach()


def test_certified_segmentation_end_to_end_and_never_beaten_by_pgd(cli, tmp_path):
    from rbx_lipschitz.certificates import certified_pixel_count, class_gaps, pixel_flip_costs
    from rbx_lipschitz.grid import SEGMENTATION_GRID, parse_eps
    from rbx_lipschitz.segmenter import build
    from rbx_segmentation.scenes import build as scenes

    out = tmp_path / "store"
    result = cli("--quiet", "run", "--suite", "certified-segmentation", "--out", str(out), "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.out)["failed"] == 0
    frame = read_results(out)
    rows = frame[(frame["status"] == "ok") & (frame["model"] == "lipschitz-segnet")]
    values = rows.set_index(["subset", "metric"])["value"]
    job = rows.iloc[0]
    from robustbench_x.results import read_scores

    scores = read_scores(out, "certified-segmentation", "lipschitz-segnet", "embedded-scenes", "lipschitz-pixel-margin", job["config_hash"])
    assert values[("test/l2/0", "certified-pixel-accuracy")] == pytest.approx(scores["pixel_accuracy"].mean(), abs=1e-15)
    grid = [(t, parse_eps(t)) for t in SEGMENTATION_GRID]
    crpa = [values[(f"test/l2/{t}", "certified-pixel-accuracy")] for t, _ in grid]
    assert crpa == sorted(crpa, reverse=True) and crpa[0] > crpa[-1]  # the certificate weakens as ε grows
    wc = [values[(f"test/l2/{t}", "worst-case-iou")] for t, _ in grid]
    assert wc == sorted(wc, reverse=True)
    r = [values[("test", f"robustness@{a}")] for a in (25, 50, 75)]
    assert 0 < r[0] <= r[1] <= r[2]

    # recompute from the stored class gaps and the dataset's masks
    arrays = ArrayStore(out / "arrays" / "suite=certified-segmentation" / "model=lipschitz-segnet" / "dataset=embedded-scenes"
                        / "method=lipschitz-pixel-margin" / job["config_hash"])
    gaps, ids = arrays.load("test-class-margin")
    dataset = scenes(name="embedded-scenes", options={}, config_file=None)
    source = dataset.samples("test")
    assert ids.tolist() == [source[i][2] for i in range(len(source))]
    model = build(dataset=dataset, log=lambda m: None)
    L = model.lipschitz_constant
    assert scores["lipschitz_constant"].iloc[0] == L and 0.5 < L <= 1.001
    picks = range(0, len(source), 15)  # 8 images: the test budget
    x = torch.stack([model.transform()(source[i][0]) for i in picks])
    masks = torch.stack([torch.as_tensor(source[i][1]) for i in picks])
    with torch.no_grad():
        logits = model.module(x)
    np.testing.assert_allclose(gaps[list(picks)], np.stack([class_gaps(z) for z in logits.numpy()]), atol=1e-5)
    clean = ((logits.argmax(1) == masks) & (masks != 255)).flatten(1).sum(1).numpy()
    for text, eps in grid:
        certified = np.array([certified_pixel_count(pixel_flip_costs(class_gaps(z.double().numpy()), m.numpy())[0], eps, L) for z, m in zip(logits, masks)])
        stored = scores.set_index("sample_id")[f"certified-pixel-accuracy@{text}"]
        valid = (masks != 255).flatten(1).sum(1).numpy()
        np.testing.assert_allclose(certified / valid, stored.loc[[source[i][2] for i in picks]].to_numpy())
        if eps == 0:
            np.testing.assert_array_equal(certified, clean)  # CRPA(0) = clean pixel accuracy
            continue
        x_adv = _pgd_l2(model.module, x, masks, eps)
        assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps * (1 + 1e-5)
        with torch.no_grad():
            attacked = ((model.module(x_adv).argmax(1) == masks) & (masks != 255)).flatten(1).sum(1).numpy()
        assert (attacked >= certified).all(), f"eps {text}: PGD left fewer correct pixels than certified"
        if eps == grid[-1][1]:
            assert certified.sum() < clean.sum()  # the certificate is not vacuous on the grid
    # nor is the attack: the network is far more robust than its certificate, but a larger budget breaks it
    x_far = _pgd_l2(model.module, x, masks, 16.0)
    with torch.no_grad():
        broken = ((model.module(x_far).argmax(1) == masks) & (masks != 255)).flatten(1).sum(1).numpy()
    assert broken.sum() < 0.8 * clean.sum()
