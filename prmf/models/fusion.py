"""Step 2 of the method: fusing the per-modality representations.

All fusions work on stacked tensors (modalities on dim 1) and an explicit
boolean mask ``present`` ``[B, M]``; an absent modality always gets weight
exactly 0 and receives no gradient through the fusion. The one exception is
the author's ``dropped_modality: std_1e6`` rule, which calls
:class:`UncertaintyWeightedFusion` without a mask after setting the std of the
absent entries to ``1e6`` (:func:`std_for_fusion`), so they keep a small
nonzero weight.

* :class:`UncertaintyWeightedFusion` -- P-RMF's proxy modality: a softmax over
  inverse uncertainties of the *present* modalities (``fusion: uncertainty``),
  or a masked product of Gaussians with a standard-normal prior expert
  (``fusion: precision``).
* :class:`MaskedMeanFusion` -- uniform mean over present modalities (the proxy
  of the deterministic P-RMF ablation, Exp5).
* :class:`AttentionWeightFusion` -- MERBench's ``attention`` fusion (raw,
  unnormalised weights predicted by an ``MLPEncoder`` and ``fc_att`` from the
  concatenated hidden vectors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import MLPEncoder

FUSION_MODES = ("uncertainty", "precision")
UNCERTAINTY_MODES = ("std", "variance")
UNCERTAINTY_EPS = 1e-6
#: the std the author's code gives an absent / dropped modality (``dropped_modality: std_1e6``)
DROPPED_STD = 1e6


def modality_uncertainty(std: Tensor, mode: str) -> Tensor:
    """Per-sample, per-modality uncertainty ``u`` ``[B, M]`` from ``std`` ``[B, M, H]``.

    ``mode="std"``: ``u = mean_h std`` (the seed code's form);
    ``mode="variance"``: ``u = mean_h std**2`` (the paper's form).
    """
    if mode == "std":
        return std.mean(dim=-1)
    if mode == "variance":
        return std.square().mean(dim=-1)
    raise ValueError(f"uncertainty must be one of {UNCERTAINTY_MODES}, got {mode!r}")


def std_for_fusion(std: Tensor, present: Tensor) -> Tensor:
    """The author's rule: ``std`` ``[B, M, H]`` with every absent entry (``present`` ``[B, M]``
    False) replaced by :data:`DROPPED_STD` (``1e6``); present entries unchanged.

    Used only to compute the fusion weights (``dropped_modality: std_1e6``); the
    losses keep reading the encoder's own ``logvar``.
    """
    return torch.where(present.unsqueeze(-1), std, std.new_full((), DROPPED_STD))


class UncertaintyWeightedFusion(nn.Module):
    """Builds the proxy modality from the posteriors of the present modalities.

    ``fusion="uncertainty"`` (the paper's)::

        u_m   = modality_uncertainty(std_m)                        [B, M]
        w     = softmax_m((1 / (u_m + 1e-6)) / tau), absent -> -inf  [B, M]
        proxy = sum_m w_m * mu_m                                    [B, H]

    ``fusion="precision"`` (masked product of Gaussians per dimension, with a
    standard-normal prior expert of precision 1 and mean 0)::

        prec_m = 1 / std_m**2 (0 for absent)                        [B, M, H]
        total  = 1 + sum_m prec_m                                   [B, H]
        proxy  = sum_m prec_m * mu_m / total                        [B, H]
        w_m    = mean_h (prec_m / total)                            [B, M]

    i.e. for precision fusion the reported weight of a modality is its share of
    the *total* precision (prior included) averaged over the ``H`` dimensions,
    so the weights of a sample sum to less than 1 (the remainder is the prior's
    share). ``tau`` is only used by the softmax form.

    A sample with no present modality gets all-zero weights and a zero proxy
    (the prior mean, for precision fusion).

    ``present=None`` fuses every modality without a mask (the author's
    ``std_1e6`` rule, whose absent entries arrive with ``std = 1e6`` from
    :func:`std_for_fusion`: ``u = 1e6`` (``1e12`` for ``variance``), softmax
    logit ``1 / (u + 1e-6) / tau`` ~ ``1e-6 / tau``, a small but nonzero weight).
    """

    def __init__(self, fusion: str, uncertainty: str, tau: float) -> None:
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
        if uncertainty not in UNCERTAINTY_MODES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTY_MODES}, got {uncertainty!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.fusion = fusion
        self.uncertainty = uncertainty
        self.tau = float(tau)

    def forward(self, mu: Tensor, std: Tensor, present: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Fuse posteriors ``N(mu, std**2)``.

        Args:
            mu: ``[B, M, H]`` posterior means.
            std: ``[B, M, H]`` posterior standard deviations (> 0).
            present: ``[B, M]`` bool modality mask, or ``None``: no mask, every
                modality takes part with the weight its ``std`` gives it.

        Returns:
            ``(proxy [B, H], weights [B, M], uncertainty [B, M])``; weights and
            uncertainty are exactly 0 where ``present`` is False.
        """
        u = modality_uncertainty(std, self.uncertainty)
        if present is None:  # no mask: every modality takes part (an all-True mask changes nothing)
            present = torch.ones(u.shape, dtype=torch.bool, device=u.device)
        u = u.masked_fill(~present, 0.0)
        if self.fusion == "uncertainty":
            logits = (1.0 / (u + UNCERTAINTY_EPS)) / self.tau
            logits = logits.masked_fill(~present, float("-inf"))
            # Rows with no present modality: softmax over zeros, then zeroed below.
            any_present = present.any(dim=1, keepdim=True)
            logits = torch.where(any_present, logits, logits.new_zeros(()))
            weights = F.softmax(logits, dim=1).masked_fill(~present, 0.0)
            proxy = (weights.unsqueeze(-1) * mu).sum(dim=1)
        else:
            mask = present.unsqueeze(-1)  # [B, M, 1]
            precision = torch.where(mask, std.pow(-2), std.new_zeros(()))  # [B, M, H]
            total = 1.0 + precision.sum(dim=1)  # [B, H], prior expert has precision 1
            proxy = (precision * mu).sum(dim=1) / total  # prior mean 0 adds nothing
            weights = (precision / total.unsqueeze(1)).mean(dim=-1)
        return proxy, weights, u


class MaskedMeanFusion(nn.Module):
    """Uniform mean over the present modalities.

    ``h`` ``[B, M, H]``, ``present`` ``[B, M]`` -> ``(proxy [B, H], weights [B, M])``
    with ``weights = present / n_present`` (0 for absent modalities, all zero
    for a sample with no present modality).
    """

    def forward(self, h: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` ``[B, M, H]``, ``present`` ``[B, M]`` -> ``(proxy, weights)``."""
        mask = present.to(h.dtype)
        weights = mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        proxy = (weights.unsqueeze(-1) * h).sum(dim=1)
        return proxy, weights


class AttentionWeightFusion(nn.Module):
    """MERBench's ``attention`` fusion, layer for layer, with a modality mask.

    ::

        cat   = [h_1, ..., h_M] (absent h_m zeroed)                  [B, M*H]
        a     = MLPEncoder(M*H, H)(cat)                               [B, H]   (attention_mlp)
              = ReLU(L3(ReLU(L2(ReLU(L1(Dropout(cat)))))))    L1: M*H -> H; L2, L3: H -> H
        w     = Linear(H, M)(a) * present                             [B, M]   (fc_att, raw, no softmax)
        fused = sum_m w_m * h_m                                       [B, H]

    MERBench's ``attention`` has ``attention_mlp = MLPEncoder(3H, H, dropout)``
    and ``fc_att = Linear(H, 3)``; the only difference is the mask (MERBench
    has none: a missing modality there is an all-zero input vector, encoded
    like any other).
    """

    def __init__(self, num_modalities: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_mlp = MLPEncoder(num_modalities * hidden_dim, hidden_dim, dropout)
        self.fc_att = nn.Linear(hidden_dim, num_modalities)

    def forward(self, h: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` ``[B, M, H]``, ``present`` ``[B, M]`` -> ``(fused [B, H], weights [B, M])``."""
        h = h.masked_fill(~present.unsqueeze(-1), 0.0)
        weights = self.fc_att(self.attention_mlp(h.flatten(start_dim=1)))
        weights = weights.masked_fill(~present, 0.0)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)
        return fused, weights
