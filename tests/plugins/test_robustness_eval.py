"""The robustness evaluators on tiny fake datasets, against the paper's formulas
computed by hand; the specs, the reader wrappers and the embedded datasets."""

from __future__ import annotations


import numpy as np
import pytest

from rbx_robustness.definitions import flip_probability, ut5d
from rbx_robustness.tables import ALEXNET_CLEAN_ERR, ALEXNET_ERR, ALEXNET_FP, ALEXNET_UT5D, IMAGENET_C_TEST, IMAGENET_P_TEST

from robustbench_x.api import Dataset, Method, Outputs, load_factory
from robustbench_x.evaluation import Evaluation
from robustbench_x.registry import get_registry
from robustbench_x.testing import ArrayContext

C = 10  # classes


class ArgmaxMethod(Method):
    """prediction = argmax of the logits, score = max logit (MSP-like, no model)."""

    def score(self, ctx, subset):
        logits = np.asarray(ctx.outputs(subset).logits)
        return {"prediction": logits.argmax(1), "score": logits.max(1)}


class FakeDataset(Dataset):
    task = "classification"
    classes = [str(i) for i in range(C)]

    def __init__(self, names, benchmark):
        self.name, self._names, self.robustness_benchmark = "fake", list(names), benchmark

    def subsets(self):
        return list(self._names)


def _subset_outputs(rng, n: int, wrong: int, prefix: str, shift: float = 0.0) -> Outputs:
    """n samples, the first ``wrong`` misclassified; max logit lowered by ``shift``."""
    labels = rng.integers(0, C, n)
    logits = rng.normal(0, 0.1, (n, C)).astype(np.float32)
    predicted = labels.copy()
    predicted[:wrong] = (labels[:wrong] + 1 + rng.integers(0, C - 1, wrong)) % C
    logits[np.arange(n), predicted] += 5.0 - shift
    return Outputs(logits=logits, features=logits, labels=labels, sample_ids=np.array([f"{prefix}{i}" for i in range(n)]))


def _run(suite_name: str, outputs: dict, benchmark):
    registry = get_registry()
    suite = registry.get("suites", suite_name)
    specs = [registry.get("metrics", m) for m in suite.metrics]
    ctx = ArrayContext(outputs, dataset=FakeDataset(outputs, benchmark))
    ctx.wants = frozenset({"prediction"})
    rows, columns = load_factory(suite.evaluator)(Evaluation(method=ArgmaxMethod(), ctx=ctx, suite=suite, metric_specs=specs, method_name="argmax"))
    return {(s, m): (v, n, err) for s, m, v, _hib, n, err in rows}, columns, ctx


def _fake_imagenet_c(rng, n=8, with_id=True):
    errors, outputs = {}, {}
    if with_id:
        outputs["id"] = _subset_outputs(rng, n, 1, "id/")
        errors["id"] = 1 / n
    for c in IMAGENET_C_TEST:
        for s in range(1, 6):
            wrong = int(rng.integers(0, n + 1))
            outputs[f"c/{c}/{s}"] = _subset_outputs(rng, n, wrong, f"{c}/{s}/", shift=0.5 * s)
            errors[(c, s)] = wrong / n
    return outputs, errors


def test_mce_through_the_evaluator_equals_the_hand_formula():
    rng = np.random.default_rng(0)
    outputs, errors = _fake_imagenet_c(rng)
    rows, columns, ctx = _run("corruption", outputs, "imagenet-c")
    assert "score" in ctx.wants  # detection-auroc asked the method for its score

    # mCE = mean_c  sum_s E_s,c / sum_s E^AlexNet_s,c   (Hendrycks & Dietterich 2019, §4.1)
    ces = {c: sum(errors[(c, s)] for s in range(1, 6)) / sum(ALEXNET_ERR[c]) for c in IMAGENET_C_TEST}
    hand_mce = sum(ces.values()) / 15
    # relative mCE = mean_c  sum_s (E_s,c - E_clean) / sum_s (E^AlexNet_s,c - 0.4348)
    clean = errors["id"]
    hand_rel = sum(sum(errors[(c, s)] - clean for s in range(1, 6)) / sum(a - ALEXNET_CLEAN_ERR for a in ALEXNET_ERR[c]) for c in IMAGENET_C_TEST) / 15
    hand_unnorm = np.mean([np.mean([errors[(c, s)] for s in range(1, 6)]) for c in IMAGENET_C_TEST])

    assert rows[("all", "mce")][0] == pytest.approx(hand_mce, rel=1e-12)
    assert rows[("all", "relative-mce")][0] == pytest.approx(hand_rel, rel=1e-12)
    assert rows[("all", "mce-unnormalised")][0] == pytest.approx(hand_unnorm, rel=1e-12)
    assert rows[("all", "clean-error")][0] == pytest.approx(clean)
    assert rows[("all", "mce")][1] == 75 * 8 and rows[("all", "relative-mce")][1] == 76 * 8
    for c in IMAGENET_C_TEST:
        assert rows[(f"c/{c}", "ce")][0] == pytest.approx(ces[c], rel=1e-12)
        assert rows[(f"c/{c}", "corruption-error")][0] == pytest.approx(np.mean([errors[(c, s)] for s in range(1, 6)]))
        for s in range(1, 6):
            assert rows[(f"c/{c}/{s}", "error")][0] == pytest.approx(errors[(c, s)])
            value, n, err = rows[(f"c/{c}/{s}", "detection-auroc")]
            assert err is None and 0 <= value <= 1 and n == 16
    assert all(err is None for _, _, err in rows.values())
    assert len(columns["sample_id"]) == 76 * 8 and set(columns["subset"]) == set(outputs)


def test_mce_is_only_normalised_on_complete_imagenet_c():
    rng = np.random.default_rng(1)
    outputs, errors = _fake_imagenet_c(rng, with_id=False)
    # another benchmark: the unnormalised mean only, never called mCE
    rows, _, _ = _run("corruption", dict(outputs), "cifar-c")
    assert ("all", "mce-unnormalised") in rows and ("all", "mce") not in rows and ("all", "relative-mce") not in rows
    assert not any(m == "ce" for _, m in rows) and ("all", "clean-error") not in rows
    assert not any(m == "detection-auroc" for _, m in rows)  # no clean id to detect against
    # ImageNet-C without clean_root: mCE yes, relative mCE says why not
    rows, _, _ = _run("corruption", dict(outputs), "imagenet-c")
    assert rows[("all", "mce")][2] is None
    value, _, err = rows[("all", "relative-mce")]
    assert np.isnan(value) and "clean_root" in err


def test_a_tree_missing_a_corruption_fails_the_aggregates_naming_it():
    """mCE, relative mCE and the unnormalised mean need the whole 15 x 5 grid: a partial
    tree gives failed rows that say what is missing, never a value under the benchmark's
    name; the per-corruption values stay."""
    rng = np.random.default_rng(4)
    outputs, errors = _fake_imagenet_c(rng)
    partial = {k: v for k, v in outputs.items() if not k.startswith("c/fog/") and k != "c/snow/3"}
    for bench in ("imagenet-c", "cifar-c"):
        rows, _, _ = _run("corruption", partial, bench)
        names = ("mce-unnormalised", "mce", "relative-mce") if bench == "imagenet-c" else ("mce-unnormalised",)
        for metric in names:
            value, n, err = rows[("all", metric)]
            assert np.isnan(value) and err.startswith("metric undefined: needs all 15 ImageNet-C test corruptions x severities 1-5; "
                                                      "missing snow (severity 3), fog (all severities)"), (bench, metric, err)
        assert ("all", "mce") not in rows if bench == "cifar-c" else True
        # per-corruption values stay available, including the one with a missing severity
        assert rows[("c/snow", "corruption-error")][0] == pytest.approx(np.mean([errors[("snow", s)] for s in (1, 2, 4, 5)]))
        assert rows[("c/brightness/2", "error")][0] == pytest.approx(errors[("brightness", 2)])
        assert not any(subset.startswith("c/fog") for subset, _ in rows)


def _sequences(rng, name: str, m: int, t: int):
    logits = rng.normal(0, 1, (m, t, 7)).astype(np.float32)
    logits[:, :, 2] += 1.5  # a dominant class, so that predictions flip now and then
    labels = np.repeat(rng.integers(0, 7, m), t)
    ids = np.array([f"{name}/cls/img{k}#{j}" for k in range(m) for j in range(t)])
    flat = logits.reshape(m * t, 7)
    order = rng.permutation(m * t)  # frames in any order: the evaluator regroups them by id
    return logits, Outputs(logits=flat[order], features=flat[order], labels=labels[order], sample_ids=ids[order])


def test_flip_probability_and_ut5d_through_the_evaluator():
    rng = np.random.default_rng(2)
    grids, outputs = {}, {}
    for name, t in (("gaussian_noise", 31), ("rotate", 31), ("translate", 41)):
        grids[name], outputs[f"p/{name}"] = _sequences(rng, name, 4, t)
    rows, columns, _ = _run("perturbation", outputs, "imagenet-p")
    for name, logits in grids.items():
        noise = name == "gaussian_noise"
        fp = flip_probability(logits.argmax(-1), noise=noise)
        assert rows[(f"p/{name}", "flip-probability")][0] == pytest.approx(fp, abs=1e-15)
        assert rows[(f"p/{name}", "ut5d")][0] == pytest.approx(ut5d(logits, noise=noise), abs=1e-12)
        assert rows[(f"p/{name}", "flip-rate")][0] == pytest.approx(fp / ALEXNET_FP[name], rel=1e-12)
        assert rows[(f"p/{name}", "flip-probability")][1] == logits.shape[0] * logits.shape[1]
    # 3 of the 10 test perturbations: mFR / mT5D are failed rows naming the 7 missing; unnormalised means stay
    for metric in ("mfr", "mt5d"):
        value, _, err = rows[("all", metric)]
        assert np.isnan(value) and "needs all 10 ImageNet-P test perturbations; missing shot_noise, motion_blur, zoom_blur" in err
    fps = [rows[(f"p/{n}", "flip-probability")][0] for n in grids]
    assert rows[("all", "mfp-unnormalised")][0] == pytest.approx(np.mean(fps))
    # noise rule: frame 0 is only a reference; temporal: frame 0 too
    sub = columns["subset"] == "p/gaussian_noise"
    assert np.isnan(columns["flip"][sub & (columns["frame"] == 0)]).all()
    assert not np.isnan(columns["flip"][sub & (columns["frame"] > 0)]).any()


def test_mfr_and_mt5d_on_complete_imagenet_p():
    rng = np.random.default_rng(3)
    grids, outputs = {}, {}
    for name in IMAGENET_P_TEST:
        grids[name], outputs[f"p/{name}"] = _sequences(rng, name, 2, 41 if name == "translate" else 31)
    rows, _, _ = _run("perturbation", outputs, "imagenet-p")
    fp = {n: flip_probability(g.argmax(-1), noise="noise" in n) for n, g in grids.items()}
    ut = {n: ut5d(g, noise="noise" in n) for n, g in grids.items()}
    # mFR = mean_p FP_p / FP_p^AlexNet; mT5D = mean_p uT5D_p / uT5D_p^AlexNet (10 test perturbations)
    assert rows[("all", "mfr")][0] == pytest.approx(np.mean([fp[n] / ALEXNET_FP[n] for n in IMAGENET_P_TEST]), rel=1e-12)
    assert rows[("all", "mt5d")][0] == pytest.approx(np.mean([ut[n] / ALEXNET_UT5D[n] for n in IMAGENET_P_TEST]), rel=1e-12)
    assert rows[("all", "mfp-unnormalised")][0] == pytest.approx(np.mean(list(fp.values())), rel=1e-12)
    assert rows[("p/tilt", "t5d")][0] == pytest.approx(ut["tilt"] / ALEXNET_UT5D["tilt"], rel=1e-12)
    # another benchmark: unnormalised only
    rows, _, _ = _run("perturbation", outputs, "embedded-digits-p")
    assert ("all", "mfr") not in rows and ("all", "mt5d") not in rows and not any(m in ("flip-rate", "t5d") for _, m in rows)


def test_ut5d_needs_five_classes():
    rng = np.random.default_rng(4)
    _, out = _sequences(rng, "rotate", 2, 31)
    out = Outputs(logits=out.logits[:, :4], features=out.features, labels=np.minimum(out.labels, 3), sample_ids=out.sample_ids)
    rows, _, _ = _run("perturbation", {"p/rotate": out}, None)
    assert rows[("p/rotate", "flip-probability")][2] is None
    value, _, err = rows[("p/rotate", "ut5d")]
    assert np.isnan(value) and "at least 5 classes" in err


def test_cure_accuracy_per_challenge_and_level():
    rng = np.random.default_rng(5)
    wrong = {"id": 0, "c/Noise/1": 1, "c/Noise/2": 3, "c/Haze/5": 8}
    outputs = {s: _subset_outputs(rng, 8, k, f"{s}/") for s, k in wrong.items()}
    rows, _, _ = _run("cure", outputs, "cure-tsr")
    for s, k in wrong.items():
        assert rows[(s, "accuracy")][0] == pytest.approx(1 - k / 8) and rows[(s, "error")][0] == pytest.approx(k / 8)
    assert rows[("c/Noise", "challenge-accuracy")][0] == pytest.approx(np.mean([7 / 8, 5 / 8]))
    assert rows[("c/Haze", "challenge-accuracy")][0] == pytest.approx(0.0)
    assert {s for s, m in rows if m == "detection-auroc"} == {"c/Noise/1", "c/Noise/2", "c/Haze/5"}


def test_malformed_sequences_are_reported():
    from robustbench_x.errors import PluginError
    from rbx_robustness.evaluate import sequence_grid

    grid, seqs = sequence_grid(["a#1", "b#0", "a#0", "b#1"])
    assert seqs == ["a", "b"] and grid.tolist() == [[2, 0], [1, 3]]
    with pytest.raises(PluginError, match="not '<sequence id>#<frame>'"):
        sequence_grid(["a#0", "b"])
    with pytest.raises(PluginError, match="different lengths"):
        sequence_grid(["a#0", "a#1", "b#0"])
    with pytest.raises(PluginError, match="expected 0..1"):
        sequence_grid(["a#0", "a#2"])
    with pytest.raises(PluginError, match="occurs twice"):
        sequence_grid(["a#0", "a#0"])


def test_metric_functions_reject_missing_inputs():
    """The leaderboard may call a robustness metric with prediction= / labels=: a ValueError, never a TypeError."""
    registry = get_registry()
    for name in registry.get("suites", "perturbation").metrics + registry.get("suites", "corruption").metrics:
        spec = registry.get("metrics", name)
        if spec.kind != "robustness":
            continue
        with pytest.raises(ValueError):
            load_factory(spec.fn)(prediction=np.zeros(3, int), labels=np.zeros(3, int))


def test_specs_follow_the_readers():
    import importlib

    import rbx_robustness

    for module, (keys, required) in rbx_robustness.READER_KEYS.items():
        reader = importlib.import_module(f"rbx_robustness.readers.{module}")
        assert set(reader.OPTION_KEYS) == keys and set(reader.REQUIRED_KEYS) == required, module
    registry = get_registry()
    for name, space in (("imagenet-c", "imagenet-1k"), ("imagenet-p", "imagenet-1k"), ("cifar-c", "cifar10"), ("cifar100-p", "cifar100")):
        spec = registry.get("datasets", name)
        assert spec.label_space == space and "label_space" in spec.option_keys
    for suite, token in (("corruption", "corruptions"), ("perturbation", "perturbations"), ("cure", "cure")):
        assert registry.get("suites", suite).dataset_requires == {token}
    hib = {s.name: s.higher_is_better for s in registry.specs("metrics") if s.fn.startswith("rbx_robustness") or s.name == "detection-auroc"}
    assert {k for k, v in hib.items() if v} == {"detection-auroc", "challenge-accuracy"}


def test_embedded_datasets_share_the_training_data_and_cache_their_arrays(shared_cache):
    from rbx_datasets.embedded import EmbeddedDigits
    from rbx_robustness.embedded import C_IMAGES, P_SEQUENCES, SIZE, EmbeddedDigitsC, EmbeddedDigitsP

    base = EmbeddedDigits()
    c = EmbeddedDigitsC()
    for split in ("train", "val"):
        assert c.fingerprint(split) == base.fingerprint(split)
        assert c.samples(split) is not None and len(c.samples(split)) == len(base.samples(split))
    assert c.classes == base.classes
    assert c.subsets()[:3] == ["train", "val", "id"] and len(c.subsets()) == 3 + 75
    image, label, sid = c.samples("c/snow/5")[0]
    assert image.size == (SIZE, SIZE) and image.mode == "L" and sid.startswith("snow/5/digits/")
    assert len(c.samples("id")) == C_IMAGES
    assert c.samples("id").labels.tolist() == c.samples("c/fog/1").labels.tolist()
    path = c.cache_path()
    assert path.parent == shared_cache / "embedded-c" and path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as z:
        assert z["fog"].shape == (5, C_IMAGES, SIZE, SIZE) and z["fog"].dtype == np.uint8
    # a fresh instance reads the cache: same data, same fingerprints
    assert EmbeddedDigitsC().fingerprint("c/fog/3") == c.fingerprint("c/fog/3")

    p = EmbeddedDigitsP()
    assert p.fingerprint("train") == base.fingerprint("train")
    frames = p.samples("p/translate")
    assert len(frames) == 41 * P_SEQUENCES and frames[42][2].endswith("#1")
    assert p.cache_path().parent == shared_cache / "embedded-p"
    # translate frame 20 is the clean image (shift 0)
    ids = frames.ids
    k = ids.index(ids[0].split("#")[0] + "#20")
    assert np.array_equal(frames.images[k], p.samples("id").images[0])
