"""Rank-based training losses for retrieval: SmoothAP, ROADMAP's SupAP and
calibration loss, HAPPIER's H-AP surrogate and cluster loss (torch).

Sources (read, not copied; the numbers below are theirs):

* **SmoothAP**: Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the
  Path Towards Large-Scale Image Retrieval", ECCV 2020, Eq. 7; as implemented
  in ROADMAP's ``roadmap/losses/smooth_rank_ap.py`` (``SmoothAP``: a sigmoid
  of temperature ``tau = 0.01`` replaces the Heaviside for every item,
  positives included), config ``roadmap/config/loss/smoothap.yaml``.
* **ROADMAP**: Ramzi, Thome, Rambour, Audebert, Bitot, "Robust and
  Decomposable Average Precision for Image Retrieval", NeurIPS 2021,
  Sec. 3.1 (SupAP, Eq. 4-5) and Sec. 3.2 (calibration loss, Eq. 6); code
  elias-ramzi/ROADMAP@fed37d7, ``roadmap/losses/smooth_rank_ap.py``
  (``step_rank``, ``SupAP``) and ``roadmap/losses/calibration_loss.py``;
  defaults ``roadmap/config/loss/roadmap.yaml``: SupAP ``tau = 0.01,
  rho = 100, offset = 1.44, delta = 0.05`` (``start = 0.5``), calibration
  ``pos_margin = 0.9, neg_margin = 0.6``, both with weight 1.
* **HAPPIER**: Ramzi, Audebert, Thome, Rambour, Bitot, "Hierarchical Average
  Precision Training for Pertinent Image Retrieval", ECCV 2022, Sec. 3.1
  (H-AP, Eq. 2-3), Sec. 3.2 (the smooth rank and the cluster loss); code
  elias-ramzi/HAPPIER@5af91b3, ``happier/losses/hap_loss.py`` (``HAPLoss``,
  ``SmoothRankHAP.quick_forward``), ``happier/losses/cluster_loss.py``,
  ``happier/engine/compute_relevance_on_the_fly.py`` (``get_relevances_pop``);
  defaults ``happier/config/loss/HAPPIER.yaml``: H-AP loss weight 0.9 with the
  SupAP step above and ``with_hrank=False`` (the H-rank keeps the exact
  Heaviside), cluster loss weight 0.1 with temperature 0.05 on the finest
  level. HAPPIER's code pins torch 1.8.1, hence this reimplementation.

**Include-self convention.** Both official losses rank a batch against
itself (``quick_forward``): the query stays in its own retrieval set as a
positive of the highest relevance, so the training AP of a query counts
itself. ``include_self=True`` (the default for training) reproduces that;
the retrieval *metrics* of :mod:`rbx_retrieval.definitions` exclude the query,
and ``include_self=False`` gives the textbook value (the tests check it
against scikit-learn). The Heaviside is 1 at 0 in both codes.

All functions take a similarity matrix ``scores`` ``(B, B)`` (row = query,
column = item: dot products of L2-normalised embeddings) and return one value
per query; the losses are ``1 - mean``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "tau_sigmoid",
    "heaviside",
    "supap_step",
    "shared_levels",
    "pop_relevances",
    "rank_ap",
    "smooth_ap",
    "sup_ap",
    "exact_ap",
    "h_ap",
    "calibration_loss",
    "cluster_loss",
    "SUPAP_DEFAULTS",
]

#: ``roadmap/config/loss/roadmap.yaml`` (SupAP) and ``happier/config/loss/HAPPIER.yaml`` (HAPLoss).
SUPAP_DEFAULTS = {"tau": 0.01, "rho": 100.0, "offset": 1.44, "delta": 0.05, "start": 0.5}


def tau_sigmoid(t: torch.Tensor, tau: float) -> torch.Tensor:
    """``sigmoid(t / tau)`` with the argument clamped to +-50 as in both codes."""
    return 1.0 / (1.0 + (-t / tau).clamp(-50, 50).exp())


def heaviside(t: torch.Tensor) -> torch.Tensor:
    """Step function, 1 at 0 (``torch.heaviside(t, 1)`` in both codes); no gradient."""
    return (t >= 0).to(t.dtype)


def supap_step(t: torch.Tensor, *, tau: float, rho: float, offset: float | None, delta: float | None, start: float) -> torch.Tensor:
    """SupAP's surrogate of ``H(t)`` for an item ranked against a *more relevant*
    one (``t = s_j - s_k``): ``sigmoid(t / tau)`` for ``t <= 0``;
    ``start + sigmoid(t / tau)`` for ``0 < t <= delta``; ``rho (t - delta) +
    offset`` beyond (``offset`` None: ``sigmoid(delta / tau) + start``, the
    continuous choice). With the defaults it is >= the Heaviside everywhere, so
    the smoothed rank over-counts and SupAP <= AP (ROADMAP Sec. 3.1)."""
    low = tau_sigmoid(t, tau)
    if delta is None:
        high = rho * t + offset
        return torch.where(t > 0, high, low)
    if offset is None:
        offset = float(tau_sigmoid(torch.tensor(delta, dtype=torch.float64), tau)) + start
    mid = start + low
    high = rho * (t - delta) + offset
    return torch.where(t <= 0, low, torch.where(t <= delta, mid, high))


def shared_levels(labels: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` number of hierarchy columns two samples agree on (HAPPIER's
    ``create_label_matrix``); ``labels`` is ``(B,)`` or ``(B, L)``."""
    if labels.ndim == 1:
        labels = labels[:, None]
    return (labels[:, None, :] == labels[None, :, :]).sum(-1)


def pop_relevances(levels: torch.Tensor, n_levels: int, alpha: float = 1.0, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HAPPIER's ``pop`` relevance of every item for every query: ``w(l) /
    count_q(l)`` with ``w(l) = (l / (L - 1))^alpha`` (``w = l`` for ``L = 2``;
    ``L = 1`` uses ``w = l``) and ``count_q(l)`` the number of items of the
    query's retrieval set sharing ``l`` levels with it; level 0 has weight 0.
    ``mask`` (bool ``(B, B)``): the items of each query's retrieval set."""
    levels = levels.long()
    if mask is None:
        mask = torch.ones_like(levels, dtype=torch.bool)
    scale = max(n_levels - 1, 1)
    weights = torch.tensor([(lv / scale) ** alpha for lv in range(n_levels + 1)], dtype=torch.float64, device=levels.device)
    weights[0] = 0.0
    counts = torch.zeros(levels.shape[0], n_levels + 1, dtype=torch.float64, device=levels.device)
    counts.scatter_add_(1, levels * mask, mask.to(torch.float64))
    table = torch.where(counts > 0, weights[None, :] / counts.clamp_min(1.0), torch.zeros_like(counts))
    return torch.gather(table, 1, levels) * mask


def rank_ap(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    *,
    step,
    include_self: bool = True,
    smooth_positives: bool = False,
    grade: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-query (hierarchical) AP from ranks, the common core of every loss here.

    ``relevance`` ``(B, B)`` >= 0: 0 for an irrelevant item. For a relevant
    item ``k`` of query ``q``: ``rank(k) = 1 + sum_{j != k} r_jk`` where
    ``r_jk = step(s_qj - s_qk)`` if ``j`` is *less* relevant than ``k`` (SupAP /
    HAPPIER: only those are smoothed) and ``H(s_qj - s_qk)`` otherwise
    (``smooth_positives=True``: ``step`` for every ``j``, SmoothAP); "less
    relevant" compares ``grade`` (default: the relevance; HAPPIER compares the
    shared-level counts, which can order items differently from ``pop``
    relevances when a level is sparsely populated);
    ``H-rank(k) = rel(k) + sum_{j != k} min(rel(k), rel(j)) H(s_qj - s_qk)``;
    ``AP_q = sum_k H-rank(k) / rank(k) / sum_k rel(k)`` (HAPPIER Eq. 3). With
    binary relevance ``1 / |P|`` that is ``(1/|P|) sum_k rank+(k) / rank(k)``,
    the AP (ROADMAP Eq. 2); with ``smooth_positives`` the positives' rank+
    uses ``step`` too (SmoothAP Eq. 7).
    """
    b = scores.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    member = ~eye if not include_self else torch.ones_like(eye)
    rel = relevance.to(scores.dtype) * member
    # diff[q, k, j] = s_qj - s_qk
    diff = scores[:, None, :] - scores[:, :, None]
    exact = heaviside(diff)
    smooth = step(diff)
    if smooth_positives:
        ranked = smooth
    else:
        g = rel if grade is None else grade.to(scores.dtype)
        less_relevant = g[:, None, :] < g[:, :, None]
        ranked = torch.where(less_relevant, smooth, exact)
    others = member[:, None, :] & ~eye[None, :, :]  # j in the set and j != k
    rank = 1.0 + (ranked * others).sum(-1)
    pair_min = torch.minimum(rel[:, None, :], rel[:, :, None])
    above = smooth if smooth_positives else exact
    hrank = rel + (above * pair_min * others).sum(-1)
    total = rel.sum(-1)
    return ((hrank / rank) * (rel > 0)).sum(-1) / total


def _binary(labels: torch.Tensor, include_self: bool) -> torch.Tensor:
    same = (labels[:, None] == labels[None, :]).to(torch.float64)
    if not include_self:
        same = same * ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same / same.sum(-1, keepdim=True).clamp_min(1.0)


def exact_ap(scores: torch.Tensor, labels: torch.Tensor, *, include_self: bool = True) -> torch.Tensor:
    """Per-query AP with the exact Heaviside (ROADMAP's ``HeavisideAP``, for testing)."""
    return rank_ap(scores, _binary(labels, include_self), step=heaviside, include_self=include_self)


def sup_ap(scores: torch.Tensor, labels: torch.Tensor, *, include_self: bool = True, **params) -> torch.Tensor:
    """ROADMAP's SupAP per query (``params``: :data:`SUPAP_DEFAULTS` overrides)."""
    p = {**SUPAP_DEFAULTS, **params}
    return rank_ap(scores, _binary(labels, include_self), step=lambda t: supap_step(t, **p), include_self=include_self)


def smooth_ap(scores: torch.Tensor, labels: torch.Tensor, *, tau: float = 0.01, include_self: bool = True) -> torch.Tensor:
    """SmoothAP per query: a sigmoid of temperature ``tau`` for every item."""
    return rank_ap(
        scores, _binary(labels, include_self), step=lambda t: tau_sigmoid(t, tau), include_self=include_self, smooth_positives=True
    )


def h_ap(scores: torch.Tensor, hierarchy: torch.Tensor, *, alpha: float = 1.0, include_self: bool = True, smooth: bool = True, **params) -> torch.Tensor:
    """HAPPIER's H-AP per query from ``hierarchy`` ``(B, L)`` labels (column 0
    finest): relevance ``pop`` over the shared-level counts, the SupAP step for
    less relevant items (``smooth=False``: the exact H-AP)."""
    n_levels = hierarchy.shape[1] if hierarchy.ndim == 2 else 1
    levels = shared_levels(hierarchy)
    member = torch.ones_like(levels, dtype=torch.bool)
    if not include_self:
        member &= ~torch.eye(len(levels), dtype=torch.bool, device=levels.device)
    rel = pop_relevances(levels, n_levels, alpha, mask=member)
    p = {**SUPAP_DEFAULTS, **params}
    step = (lambda t: supap_step(t, **p)) if smooth else heaviside
    return rank_ap(scores, rel, step=step, include_self=include_self, grade=levels)


def calibration_loss(scores: torch.Tensor, labels: torch.Tensor, *, pos_margin: float = 0.9, neg_margin: float = 0.6) -> torch.Tensor:
    """ROADMAP's calibration loss: pytorch-metric-learning's ``ContrastiveLoss``
    on dot-product similarity over every pair ``i != j`` of the batch,
    ``[pos_margin - s]_+`` for positives and ``[s - neg_margin]_+`` for
    negatives, each averaged over its non-zero terms (the library's default
    ``AvgNonZeroReducer``), then summed."""
    b = scores.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    same = (labels[:, None] == labels[None, :]) & off
    diff = (labels[:, None] != labels[None, :]) & off
    total = scores.new_zeros(())
    for terms in (F.relu(pos_margin - scores[same]), F.relu(scores[diff] - neg_margin)):
        nonzero = terms > 0
        if nonzero.any():
            total = total + terms[nonzero].mean()
    return total


def cluster_loss(embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, *, temperature: float = 0.05) -> torch.Tensor:
    """HAPPIER's cluster loss: cross-entropy of the cosine to L2-normalised
    class proxies divided by ``temperature`` (a normalised-softmax loss on the
    finest level)."""
    logits = embeddings @ F.normalize(proxies, dim=1).T
    return F.cross_entropy(logits / temperature, labels)
