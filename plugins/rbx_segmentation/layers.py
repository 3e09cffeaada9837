"""Rank-1 ensemble layers, with the member-major batch layout.

**Layout** (both layers): a batch of ``M · b`` rows is member-major, row ``j``
belongs to member ``j // b``: ``[all b images for member 0, all for member 1,
…]``. At evaluation the input batch is tiled as ``x.repeat(M, 1, 1, 1)``
(:func:`tile_members`); in training the mini-batch is split into ``M``
contiguous chunks, one per member, as Wen et al.'s "paper" strategy (each
member sees different images, no tiling in training).

* :class:`BatchConv2d` -- BatchEnsemble (Wen, Tran & Ba, "BatchEnsemble: an
  Alternative Approach to Efficient Ensemble and Lifelong Learning", ICLR
  2020, §3, eq. 3-5): a shared kernel ``W`` and per-member rank-1 factors,
  ``y = (W ⊛ (x ∘ r_i)) ∘ s_i + b_i``. ``r, s ~ N(1, 0.5)`` and a per-member
  bias, as torch-uncertainty's ``layers.BatchConv2d``
  (ENSTA-U2IS-AI/torch-uncertainty, ``torch_uncertainty/layers/batch_ensemble.py``).
* :class:`LPBNNConv2d` -- LP-BNN (Franchi et al., "Encoding the latent
  posterior of Bayesian Neural Networks for uncertainty quantification",
  arXiv 2012.02818, §3): BatchEnsemble whose per-member input scalings are
  the frozen ``α_i`` (``N(1, 0.5)``) passed through a small auto-encoder,
  ``e_i = ReLU(enc(α_i))``, ``α̂_i = dec(e_i)``, and
  ``y = (W ⊛ (x ∘ α̂_i)) ∘ γ_i + b_i``; latent size 32. As the official conv
  layer (giannifranchi/LP_BNN, ``networks/LPBNN_layers.py``,
  ``Ensemble_Conv2d.forward``), the decoder reads the encoder's embedding
  ``e_i``, not a sample ``μ + σ·ε``: it draws a sample, then overwrites the
  decoded scalings with the decoder applied to the embedding, so ``α̂`` is
  deterministic (training and evaluation alike) and differs per member. The
  variational part lives in the loss only: the layer's extra loss is
  ``MSE(α̂, α) + KL(N(μ(e), σ²(e)) ‖ N(0, I))`` (:attr:`LPBNNConv2d.latent_loss`),
  and the network adds the sum over its LP-BNN layers divided by (number of
  LP-BNN layers + 1), the official training loop's weighting
  (:meth:`rbx_segmentation.net.SegNet.latent_loss`). One departure, towards
  the paper: separate mean and log-variance layers (the official forward
  computes both with ``encoder_fcmean`` and leaves ``encoder_fcvar`` unused).
  Only the official fully-connected layer (``Ensemble_FC``) decodes a sample.
  A sampled decoder (the paper's §3 reading) collapsed on the built-in
  network: the KL term drove ``μ`` to 0 and ``σ`` to 1 in every layer, the
  decoded scalings became one vector shared by all members plus noise.

torch-uncertainty's LP-BNN layer (``layers/bayesian/lpbnn.py``, 0.8) tiles
its per-member vectors with ``alpha.repeat((b, 1))``, which is *interleaved*
(row ``j`` gets member ``j % M``), while its models tile inputs member-major;
with ``b % M == 0`` every copy of an image then meets the same member and the
ensemble collapses to one network. Here both the inputs and the per-member
vectors use :func:`member_rows`, and ``tests/plugins/test_segmentation_methods.py``
checks that members differ on the same input.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BatchConv2d", "LPBNNConv2d", "member_rows", "tile_members", "LATENT"]

#: LP-BNN latent size (the official ``hidden_size``).
LATENT = 32


def member_rows(per_member: torch.Tensor, rows: int) -> torch.Tensor:
    """``(M, C)`` per-member vectors -> ``(rows, C, 1, 1)``, member-major (row ``j`` -> member ``j // (rows / M)``)."""
    m = per_member.shape[0]
    if rows % m:
        raise ValueError(f"a batch of {rows} rows cannot be split among {m} members; use a multiple of {m}")
    return per_member.repeat_interleave(rows // m, dim=0)[:, :, None, None]


def tile_members(x: torch.Tensor, m: int) -> torch.Tensor:
    """The evaluation layout: every image once per member, member-major."""
    return x.repeat(m, *([1] * (x.dim() - 1)))


class BatchConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, *, members: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.members = members
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.r = nn.Parameter(torch.empty(members, cin))
        self.s = nn.Parameter(torch.empty(members, cout))
        self.bias = nn.Parameter(torch.empty(members, cout))
        nn.init.normal_(self.r, 1.0, 0.5)
        nn.init.normal_(self.s, 1.0, 0.5)
        bound = 1 / math.sqrt(cin * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = self.conv(x * member_rows(self.r, n))
        return y * member_rows(self.s, n) + member_rows(self.bias, n)


class LPBNNConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, *, members: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.members = members
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.alpha = nn.Parameter(torch.empty(members, cin), requires_grad=False)
        self.gamma = nn.Parameter(torch.empty(members, cout))
        self.bias = nn.Parameter(torch.empty(members, cout))
        self.encoder = nn.Linear(cin, LATENT)
        self.mean = nn.Linear(LATENT, LATENT)
        self.logvar = nn.Linear(LATENT, LATENT)
        self.decoder = nn.Linear(LATENT, cin)
        nn.init.normal_(self.alpha, 1.0, 0.5)
        nn.init.normal_(self.gamma, 1.0, 0.5)
        bound = 1 / math.sqrt(cin * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)
        #: ``MSE(α̂, α) + KL`` of the last training-mode pass (0 before any).
        self.latent_loss = torch.zeros(())

    def decoded_alpha(self) -> torch.Tensor:
        """``(M, cin)`` per-member scalings ``dec(ReLU(enc(α)))``; in training mode also sets :attr:`latent_loss`."""
        e = F.relu(self.encoder(self.alpha))
        alpha_hat = self.decoder(e)
        if self.training:
            mu, logvar = self.mean(e), self.logvar(e)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            self.latent_loss = F.mse_loss(alpha_hat, self.alpha) + kl
        return alpha_hat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = self.conv(x * member_rows(self.decoded_alpha(), n))
        return y * member_rows(self.gamma, n) + member_rows(self.bias, n)
