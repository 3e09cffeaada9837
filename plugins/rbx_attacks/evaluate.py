"""Evaluator of the ``adversarial`` suites: clean and robust accuracy of a model
under a threat model, and the robust accuracy after each attack of the method's
sequence.

For one job (model × dataset × attack method × seed):

1. the threat model: the suite's norm (``adversarial``: ℓ∞, ``adversarial-l2``:
   ℓ2) with the method's own ε, else the dataset type's protocol ε
   (:mod:`rbx_attacks.protocol`);
2. the samples: the ``id`` subset, or the protocol's list (ImageNet's 5,000);
3. the [0, 1] images: the protocol's preprocessing, else the model's transform
   inverted; the model's normalisation moves inside the attacked network
   (:mod:`rbx_attacks.inputs`);
4. the attack sequence (:mod:`rbx_attacks.methods`), run as AutoAttack runs its
   own (:mod:`rbx_attacks.sequence`), in chunks of 2,000 samples.

It returns ``clean-accuracy`` and ``robust-accuracy`` on subset ``id`` and
``robust-accuracy`` after each attack (subset ``after/<attack>``), and per
sample: ``label``, ``prediction`` (clean), ``adversarial_prediction``,
``robust``, ``perturbation_norm`` (of the stored adversarial example, in the
threat model's norm; 0 where none was found), ``broken_by`` (the first attack
that broke the sample, ``clean`` if the clean image is misclassified, empty if
robust) and ``robust_after/<attack>``. The clean and adversarial inputs are
saved as float32 arrays (``input``, ``adversarial_input``), never quantised to
8 bits, so every number and the ε-ball can be checked from the stored files.

The threat model is recorded as the job's diagnostics (``norm``, ``eps``,
``eps_label``) with the attack sequence (``attacks``) and the largest stored
perturbation (``max_perturbation``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from robustbench_x.api import torch_threads
from robustbench_x.errors import JobError, PluginError
from robustbench_x.evaluation import Evaluation, MetricValue, UNDEFINED
from rbx_attacks import inputs, protocol
from rbx_attacks.methods import AttackMethod, Unsupported
from rbx_attacks.metrics import correct
from rbx_attacks.sequence import run_sequence

#: The norm each suite attacks in.
SUITE_NORMS = {"adversarial": "Linf", "adversarial-l2": "L2"}
SUBSET = "id"
CHUNK = 2000


def evaluate(ev: Evaluation) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    method, ctx = ev.method, ev.ctx
    if not isinstance(method, AttackMethod):
        raise PluginError(f"method '{ev.method_name}' is not an attack (rbx_attacks.methods.AttackMethod); the adversarial suites run attacks only")
    norm = SUITE_NORMS.get(ev.suite.name, "Linf")
    proto = protocol.protocol_for(ev.dataset_type)
    budget = method.budget(norm, proto.budget(norm) if proto else None)
    if budget is None:
        return _undefined(ev, f"no {norm} threat model for dataset type '{ev.dataset_type}' (rbx_attacks.protocol knows "
                              f"{', '.join(k for k, p in protocol.PROTOCOLS.items() if norm in p.eps)}); register the method with an explicit eps")
    ctx.record("norm", budget.norm)
    ctx.record("eps", budget.eps)
    ctx.record("eps_label", budget.eps_label)
    if SUBSET not in ev.dataset.subsets():
        raise JobError(f"dataset '{ev.dataset.name}' has no '{SUBSET}' subset to attack")
    model = ctx.model
    mean, std = inputs.normalisation(model.transform())
    net = model.module
    was_training = net.training
    attacked = inputs.UnitInputModel(net, mean, std).to(ev.device).eval()
    try:
        try:
            attacks = method.attacks(attacked, budget, int(ctx.num_classes or model.num_classes), ctx.seed, ev.device, ctx)
        except Unsupported as exc:
            return _undefined(ev, str(exc))
        ctx.record("attacks", ",".join(name for name, _ in attacks))
        source = ev.dataset.samples(SUBSET)
        indices = list(range(len(source)))
        if proto is not None and proto.sample_list is not None:
            listed = protocol.sample_list(proto.sample_list)
            indices = protocol.select(_sample_ids(source, ctx), listed)
            if len(indices) != len(listed):
                raise JobError(f"dataset '{ev.dataset.name}' holds {len(indices)} of the {len(listed)} images listed in {proto.sample_list.name} "
                               f"({protocol.IMAGENET_IDS_SOURCE}); point its test split at the ImageNet validation set in <wnid>/<file> layout")
        to_unit, as_protocol = _to_unit(proto, model, source, indices, mean, std, ctx)
        if proto is not None and proto.robustbench and budget == proto.budget(norm):
            # comparable with RobustBench's leaderboard (the page and the export use it) only on the protocol's own inputs
            ctx.record("protocol" if as_protocol else "protocol (not comparable)", proto.robustbench)
        # One thread on CPU: a small model's many small steps are several times slower with two threads on a busy machine.
        with torch_threads(1) if ev.device == "cpu" else contextlib.nullcontext():
            return _attack_all(ev, attacked, attacks, budget, source, indices, to_unit, method.batch_size)
    finally:
        net.train(was_training)


def _attack_all(ev, attacked, attacks, budget, source, indices, to_unit, batch_size):
    parts: dict[str, list] = {k: [] for k in ("label", "sample_id", "clean", "adv", "broken_by", "x", "x_adv")}
    after: dict[str, list] = {name: [] for name, _ in attacks}
    for start in range(0, len(indices), CHUNK):
        xs, ys, ids = zip(*inputs.unit_batches(source, indices[start:start + CHUNK], to_unit))
        x = torch.cat(xs).to(ev.device)
        y = torch.as_tensor(np.concatenate(ys)).to(ev.device)
        if start == 0:
            ev.method.check(attacked, x[:batch_size], y[:batch_size], ev.ctx)
        result = run_sequence(attacked, x, y, attacks, batch_size)
        parts["label"].append(y.cpu().numpy())
        parts["sample_id"] += [i for chunk in ids for i in chunk]
        parts["clean"].append(result.clean_prediction)
        parts["adv"].append(result.adversarial_prediction)
        parts["broken_by"].append(result.broken_by)
        parts["x"].append(x.cpu().numpy().astype(np.float32))
        parts["x_adv"].append(result.adversarial_input.cpu().numpy().astype(np.float32))
        for name in after:
            after[name].append(result.robust_after[name])
    label = np.concatenate(parts["label"])
    clean, adv = np.concatenate(parts["clean"]), np.concatenate(parts["adv"])
    x, x_adv = np.concatenate(parts["x"]), np.concatenate(parts["x_adv"])
    ids = np.asarray(parts["sample_id"])
    delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    norm = np.abs(delta).max(axis=1) if budget.norm == "Linf" else np.sqrt((delta**2).sum(axis=1))
    ev.arrays.save("input", x, ids)
    ev.arrays.save("adversarial_input", x_adv, ids)
    ev.ctx.record("max_perturbation", float(norm.max()) if len(norm) else 0.0)
    robust = correct(adv, label)
    columns = {
        "sample_id": ids,
        "subset": np.full(len(ids), SUBSET),
        "label": label,
        "prediction": clean,
        "adversarial_prediction": adv,
        "robust": robust.astype(bool),
        "perturbation_norm": norm,
        "broken_by": np.concatenate(parts["broken_by"]),
    }
    n = len(label)
    metrics = [MetricValue(SUBSET, "clean-accuracy", float(correct(clean, label).mean()), True, n, None),
               MetricValue(SUBSET, "robust-accuracy", float(robust.mean()), True, n, None)]
    robust_after = {}
    for name, flags in after.items():
        flag = np.concatenate(flags)
        columns[f"robust_after/{name}"] = flag
        robust_after[name] = float(flag.mean())
        metrics.append(MetricValue(f"after/{name}", "robust-accuracy", robust_after[name], True, n, None))
    if n:
        ev.method.check_after(robust_after, metrics[0].value, ev.ctx)
    return metrics, columns


def _to_unit(proto, model, source, indices, mean, std, ctx):
    """``(to_unit, as_protocol)``: the protocol's preprocessing when the model
    takes images of its shape (RobustBench's models do), else the model's own
    transform, inverted; the choice is recorded (``preprocessing``)."""
    own = inputs.inverted_transform(model.transform(), mean, std)
    if proto is None or not proto.preprocessing or not indices:
        ctx.record("preprocessing", "model transform")
        return own, False
    pre = inputs.preprocessing(proto.preprocessing)
    image = source[indices[0]][0]
    if tuple(pre(image).shape) == tuple(own(image).shape):
        ctx.record("preprocessing", proto.preprocessing)
        return pre, True
    ctx.record("preprocessing", f"model transform (the model does not take {proto.preprocessing}'s {tuple(pre(image).shape)})")
    return own, False


def _sample_ids(source, ctx) -> list[str]:
    """The subset's sample ids without decoding images where the source allows it
    (:class:`robustbench_x.sources.FileSource`: paths relative to its root)."""
    files, root = getattr(source, "files", None), getattr(source, "root", None)
    if files is not None and root is not None:
        return [str(f.relative_to(root)) for f in files]
    return [str(s) for s in ctx.outputs(SUBSET).sample_ids]


def score_subset(method: AttackMethod, ctx, subset: str, device: str = "cpu") -> dict[str, np.ndarray]:
    """:meth:`AttackMethod.score`: the method's sequence on ``ctx.loader(subset)``,
    its normalised batches mapped back to [0, 1]."""
    proto = protocol.protocol_for(ctx.dataset.name)
    budget = method.budget("Linf", proto.budget("Linf") if proto else None)
    if budget is None:
        raise PluginError(f"no threat model for dataset '{ctx.dataset.name}': register the attack method with norm and eps parameters")
    model = ctx.model
    mean, std = inputs.normalisation(model.transform())
    net = model.module
    was_training = net.training
    attacked = inputs.UnitInputModel(net, mean, std).to(device).eval()
    m, s = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)
    try:
        with torch_threads(1) if device == "cpu" else contextlib.nullcontext():
            try:
                attacks = method.attacks(attacked, budget, int(ctx.num_classes or model.num_classes), ctx.seed, device, ctx)
            except Unsupported as exc:
                raise PluginError(str(exc)) from None
            x = torch.cat([xb.to(device).float() for xb, _ in ctx.loader(subset)]) * s + m
            y = torch.as_tensor(np.asarray(ctx.outputs(subset).labels)).to(device)
            result = run_sequence(attacked, x.clamp(0.0, 1.0), y.clamp_min(0), attacks, method.batch_size)
    finally:
        net.train(was_training)
    delta = (result.adversarial_input - x.clamp(0.0, 1.0)).flatten(1).double()
    size = delta.abs().amax(1) if budget.norm == "Linf" else delta.norm(dim=1)
    return {"prediction": result.clean_prediction, "adversarial_prediction": result.adversarial_prediction,
            "perturbation_norm": size.cpu().numpy()}


def _undefined(ev: Evaluation, reason: str) -> tuple[list[MetricValue], dict[str, np.ndarray]]:
    """The job cannot attack here (too few classes, no threat model): every metric
    row carries the reason; nothing per sample."""
    error = UNDEFINED + str(reason)
    rows = [MetricValue(SUBSET, spec.name, float("nan"), spec.higher_is_better, 0, error) for spec in ev.metric_specs]
    return rows, {"sample_id": np.asarray([], dtype=str), "subset": np.asarray([], dtype=str)}
