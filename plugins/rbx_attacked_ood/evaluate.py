"""The evaluator of the ``ood-attacked`` suite: OOD detection with the test samples attacked.

For one job (model × dataset × method) and every subset of the suite (``id``
and each ``ood/*``):

1. the clean scores: ``method.score(ctx, subset)`` on the cached outputs;
2. the subset's inputs, mapped to [0, 1] pixels, attacked by PGD
   (:mod:`rbx_attacked_ood.attack`) on the method's declared objective
   (:mod:`rbx_attacked_ood.objectives`): ``id`` samples pushed to look OOD
   (the objective lowered), ``ood/*`` samples pushed to look ID (raised);
3. the model's outputs for the attacked inputs, and the method's own
   ``score`` on them (:class:`~rbx_attacked_ood.substitute.SubstitutedContext`).

Then per OOD subset, AUROC and FPR@95TPR (``robustbench_x.metrics.ood``, ID
positive) on four pairings of the same samples: clean/clean (``auroc``),
attacked ID/clean OOD (``auroc-id-attacked``), clean ID/attacked OOD
(``auroc-ood-attacked``) and attacked/attacked (``auroc-attacked``); the clean
values are recomputed in the same job, so the comparison is paired.

Per-sample columns: ``score`` and ``prediction`` (clean), ``score_attacked``,
``prediction_attacked``, ``perturbation_norm`` (achieved, in pixel units) and
``objective`` (``own score`` / ``transfer``); the attacked pixels are saved as
float32 ``adversarial_pixels`` (``ev.arrays``), rows in table order.
"""

from __future__ import annotations

import numpy as np
import torch

from rbx_attacked_ood.attack import THREAT, DifferentiableModel, attack_score, perturbation_norm
from rbx_attacked_ood.objectives import objective_for
from rbx_attacked_ood.substitute import SubstitutedContext
from robustbench_x.api import Outputs, load_factory, torch_threads
from robustbench_x.errors import JobError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED, validate_outputs

__all__ = ["evaluate", "PAIRINGS", "attacked_subset"]

#: metric-name suffix → (attack the ID scores?, attack the OOD scores?)
PAIRINGS = {"": (False, False), "-id-attacked": (True, False), "-ood-attacked": (False, True), "-attacked": (True, True)}

#: Largest |cached − recomputed| logit gap tolerated before the job refuses to attack.
LOGIT_TOLERANCE = 1e-3


def _inputs(ctx, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y in ctx.loader(subset, batch_size=256):
        xs.append(torch.as_tensor(x).float())
        ys.append(torch.as_tensor(y))
    if not xs:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys)


def attacked_subset(ev: Evaluation, subset: str, objective, generator: torch.Generator, threat=THREAT):
    """``(attacked outputs, attacked model-ready inputs, labels, adversarial pixels, achieved norms)`` of one subset."""
    ctx, model = ev.ctx, ev.model
    cached = ctx.outputs(subset)
    x, y = _inputs(ctx, subset)
    if len(x) != len(cached):
        raise JobError(f"subset '{subset}': the loader gave {len(x)} inputs but the cache holds {len(cached)} outputs")
    net = DifferentiableModel(model, x.shape[1])
    pixels = net.pixels(x)
    if len(pixels) and (pixels.min() < -1e-4 or pixels.max() > 1 + 1e-4):
        raise JobError(
            f"model '{model.name}': subset '{subset}' inputs mapped back through the normalisation of the model's transform span "
            f"[{float(pixels.min()):.3g}, {float(pixels.max()):.3g}], not [0, 1]; the loader must give the model's transform of each image"
        )
    pixels = pixels.clamp(0.0, 1.0)
    with torch.no_grad():
        logits = torch.cat([net(pixels[s : s + 512])[0] for s in range(0, len(pixels), 512)]) if len(pixels) else torch.zeros(0)
    gap = float((logits.cpu() - torch.from_numpy(np.array(cached.logits, dtype=np.float32))).abs().max()) if len(pixels) else 0.0
    if not gap <= LOGIT_TOLERANCE * (1.0 + float(np.abs(cached.logits).max(initial=0.0))):
        raise JobError(f"model '{model.name}': feature_extractor()+head() on subset '{subset}' differ from the cached logits by {gap:.3g}; the attack would not target the evaluated model")
    _score, loss_t = objective.build(ev.method, ctx)
    direction = -1 if subset == "id" else 1
    adv = attack_score(net, loss_t, pixels, direction=direction, threat=threat, generator=generator)
    with torch.no_grad():
        parts = [net(adv[s : s + 512]) for s in range(0, len(adv), 512)]
    adv_logits = torch.cat([p[0] for p in parts]).cpu().numpy() if parts else np.zeros((0, cached.logits.shape[1]), np.float32)
    adv_features = torch.cat([p[1] for p in parts]).cpu().numpy() if parts else np.zeros((0, cached.features.shape[1]), np.float32)
    outputs = Outputs(logits=adv_logits.astype(np.float32), features=adv_features.astype(np.float32), labels=np.asarray(cached.labels), sample_ids=np.asarray(cached.sample_ids))
    return outputs, net.normalise(adv).to(x.dtype), y, adv.cpu(), perturbation_norm(adv.cpu(), pixels.cpu(), threat.norm)


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    ctx, name = ev.ctx, ev.method_name
    objective = objective_for(name, ev.model.provides)
    if objective.build is None:
        raise JobError(f"method '{name}' is not attacked: {objective.reason}")
    if "input_grad" not in ev.model.provides:
        raise JobError(f"model '{ev.model.name}' is not differentiable with respect to its input (no 'input_grad'); the attacked OOD suite needs it")
    subsets = ev.subsets()
    if "id" not in subsets or not any(s.startswith("ood/") for s in subsets):
        raise JobError(f"dataset '{ev.dataset.name}' needs an 'id' subset and at least one 'ood/*' subset for the attacked OOD suite")
    clean, attacked, columns = {}, {}, []
    for index, subset in enumerate(subsets):
        cached = ctx.outputs(subset)
        clean[subset] = validate_outputs(ev.method.score(ctx, subset), cached, name, subset, "score")
        # one stream per (seed, subset), on the job's device (a CUDA draw differs from a CPU one)
        generator = torch.Generator(device=ev.device).manual_seed(int(ctx.seed) * 1009 + index)
        with torch_threads(1):  # batches of a few hundred small images: more threads only add synchronisation
            outputs, inputs, labels, adv, norms = attacked_subset(ev, subset, objective, generator)
        swapped = SubstitutedContext(ctx, {subset: outputs}, {subset: (inputs, labels)})
        attacked[subset] = validate_outputs(ev.method.score(swapped, subset), outputs, name, subset, "score")
        columns.append((subset, clean[subset], attacked[subset], norms, adv))
    metrics = _metrics(ev, clean, attacked)
    table = _table(columns, objective.kind)
    pixels = np.concatenate([c[4].numpy().astype(np.float32) for c in columns])
    ev.arrays.save("adversarial_pixels", pixels, table["sample_id"])
    ctx.record("threat", THREAT.short)  # the page's header reads it back: results say what attacked them
    for subset in subsets:
        ctx.record(f"mean score shift {subset}", float(np.mean(attacked[subset]["score"] - clean[subset]["score"])))
    return metrics, table


def _metrics(ev: Evaluation, clean, attacked) -> list[MetricValue]:
    out = []
    for spec in ev.metric_specs:
        base, suffix = _split(spec.name)
        if suffix is None:
            continue
        id_attacked, ood_attacked = PAIRINGS[suffix]
        fn = load_factory(spec.fn)
        score_id = (attacked if id_attacked else clean)["id"]["score"]
        for subset in clean:
            if not subset.startswith("ood/"):
                continue
            score_ood = (attacked if ood_attacked else clean)[subset]["score"]
            n = len(score_id) + len(score_ood)
            try:
                out.append(MetricValue(subset, spec.name, float(fn(score_id=score_id, score_ood=score_ood)), spec.higher_is_better, n, None))
            except ValueError as exc:
                out.append(MetricValue(subset, spec.name, float("nan"), spec.higher_is_better, n, UNDEFINED + str(exc)))
    return out


def _split(metric: str) -> tuple[str, str | None]:
    for suffix in sorted(PAIRINGS, key=len, reverse=True):
        if suffix and metric.endswith(suffix):
            return metric[: -len(suffix)], suffix
    return metric, ""


def _table(columns, kind: str) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for subset, clean, attacked, norms, _adv in columns:
        n = len(clean["score"])
        part = {
            "sample_id": clean["sample_id"],
            "subset": np.full(n, subset, dtype=object),
            "label": clean["label"],
            "prediction": clean["prediction"],
            "score": clean["score"],
            "score_attacked": attacked["score"],
            "prediction_attacked": attacked["prediction"],
            "perturbation_norm": norms.astype(np.float64),
            "objective": np.full(n, kind, dtype=object),
        }
        for key, value in part.items():
            parts.setdefault(key, []).append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}
