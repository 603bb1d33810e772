"""Step 5 of the method: the training objective.

::

    task  = CE(logits, labels) + MSE(valence) over samples with a valence label
    aux   = kl_weight       * KL(q_m || N(0, I))          (VAE models only)
          + recon_weight    * MSE(recon_m, target_m)      (models with decoders)
          + cross_kl_weight * SymKL(q_i, q_j), i < j      (VAE models only)
    total = task + aux

Reductions (all restricted to the mask ``out.present`` actually used):

* ``ce``: mean over the batch (``labels == -100`` are ignored, as in
  ``F.cross_entropy``).
* ``valence_mse``: mean of ``(pred - y)**2`` over samples whose valence label
  is not NaN; 0 (with a zero gradient) when the batch has none.
* ``kl``: per (sample, modality) the KL summed over the ``H`` latent
  dimensions, averaged over the present (sample, modality) entries.
* ``recon``: per (sample, modality) the squared error averaged over the
  ``D_m`` feature dimensions, averaged over the present entries.
* ``cross_kl``: per (sample, pair i<j) the symmetric KL
  ``0.5 * (KL(q_i||q_j) + KL(q_j||q_i))`` summed over dimensions, averaged over
  the (sample, pair) entries where both modalities are present.

An empty selection (e.g. no present entry) gives 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prmf.config import require_keys
from prmf.models.output import ModelOutput

TERM_KEYS = ("loss", "ce", "valence_mse", "kl", "recon", "cross_kl")
#: arm keys of the auxiliary terms' weights
WEIGHT_KEYS = ("kl_weight", "recon_weight", "cross_kl_weight")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (same shape, bool); 0 when the mask is empty."""
    total = torch.where(mask, values, values.new_zeros(())).sum()
    return total / mask.sum().clamp(min=1).to(values.dtype)


def masked_valence_mse(pred: Tensor, target: Tensor) -> Tensor:
    """MSE between ``pred`` ``[B]`` and ``target`` ``[B]`` over non-NaN targets (scalar)."""
    target = target.to(device=pred.device, dtype=pred.dtype)
    known = ~torch.isnan(target)
    # Unknown targets are replaced by 0 before the subtraction so that neither the
    # value nor the gradient can become NaN; _masked_mean then drops them.
    diff = pred - torch.where(known, target, target.new_zeros(()))
    return _masked_mean(diff.square(), known)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last dim (nats).

    ``mu``, ``logvar`` ``[..., H]`` -> ``[...]``; equals
    ``0.5 * sum(mu**2 + exp(logvar) - 1 - logvar)``.
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """``KL(N(mu_p, var_p) || N(mu_q, var_q))`` for diagonal Gaussians, summed over the last dim."""
    return 0.5 * (
        logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q).square()) / logvar_q.exp() - 1.0
    ).sum(dim=-1)


def symmetric_gaussian_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """``0.5 * (KL(p||q) + KL(q||p))`` summed over the last dim (nats).

    The log-variance terms cancel, leaving
    ``0.25 * sum((var_p + d**2) / var_q + (var_q + d**2) / var_p - 2)`` with
    ``d = mu_p - mu_q``.
    """
    d2 = (mu_p - mu_q).square()
    return 0.25 * (
        (logvar_p.exp() + d2) * torch.exp(-logvar_q) + (logvar_q.exp() + d2) * torch.exp(-logvar_p) - 2.0
    ).sum(dim=-1)


class TrainingLoss:
    """The training objective of every arm (module docstring), from a :class:`ModelOutput`.

    The task terms (CE + valence MSE) apply to every model; the weighted
    auxiliary terms only to the outputs that carry them (``mu``/``logvar``:
    VAE models; ``recons``: models with decoders), so for the baseline the loss
    is the task loss.

    ``__call__(out, labels [B] int64, valence [B] float (NaN unknown))`` ->
    ``(total, terms)``; ``terms`` holds Python floats for ``loss, ce,
    valence_mse, kl, recon, cross_kl`` (the auxiliary terms unweighted, 0.0
    when the model does not produce them).
    """

    def __init__(self, *, kl_weight: float, recon_weight: float, cross_kl_weight: float) -> None:
        for name, value in (("kl_weight", kl_weight), ("recon_weight", recon_weight),
                            ("cross_kl_weight", cross_kl_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.kl_weight = float(kl_weight)
        self.recon_weight = float(recon_weight)
        self.cross_kl_weight = float(cross_kl_weight)
        self._pairs: dict[tuple[int, str], Tensor] = {}

    @classmethod
    def from_arm(cls, arm: Mapping[str, Any]) -> TrainingLoss:
        """The loss of a resolved arm (:func:`prmf.config.resolve_arm`): its ``kl_weight``,
        ``recon_weight`` and ``cross_kl_weight``; a missing one is a :class:`ValueError` naming it."""
        require_keys(arm, WEIGHT_KEYS, "the loss")
        return cls(**{key: float(arm[key]) for key in WEIGHT_KEYS})

    def _pair_index(self, num_modalities: int, device: torch.device) -> Tensor:
        """``[2, P]`` indices of the modality pairs ``i < j`` (cached)."""
        key = (num_modalities, str(device))
        if key not in self._pairs:
            self._pairs[key] = torch.triu_indices(num_modalities, num_modalities, offset=1, device=device)
        return self._pairs[key]

    def kl_term(self, mu: Tensor, logvar: Tensor, present: Tensor) -> Tensor:
        """Mean KL to ``N(0, I)`` over present (sample, modality) entries (scalar).

        ``mu``, ``logvar`` ``[B, M, H]``, ``present`` ``[B, M]``.
        """
        return _masked_mean(kl_to_standard_normal(mu, logvar), present)

    def recon_term(self, recons: list[Tensor], targets: list[Tensor], present: Tensor) -> Tensor:
        """Mean per-dimension squared error over present (sample, modality) entries (scalar)."""
        err = torch.stack(
            [F.mse_loss(r, t.to(r.dtype), reduction="none").mean(dim=-1) for r, t in zip(recons, targets)],
            dim=1,
        )  # [B, M]
        return _masked_mean(err, present)

    def cross_kl_term(self, mu: Tensor, logvar: Tensor, present: Tensor) -> Tensor:
        """Mean symmetric KL over (sample, pair) entries with both modalities present (scalar).

        ``mu``, ``logvar`` ``[B, M, H]``, ``present`` ``[B, M]``.
        """
        if mu.shape[1] < 2:
            return mu.new_zeros(())
        i, j = self._pair_index(mu.shape[1], mu.device)
        sym = symmetric_gaussian_kl(mu[:, i], logvar[:, i], mu[:, j], logvar[:, j])  # [B, P]
        return _masked_mean(sym, present[:, i] & present[:, j])

    def terms(self, out: ModelOutput, labels: Tensor, valence: Tensor) -> tuple[Tensor, Tensor]:
        """Total loss (scalar tensor, differentiable) and the detached terms ``[6]`` in :data:`TERM_KEYS` order.

        Nothing here waits for the device, so a training loop can sum the terms
        on the GPU and read them once per epoch.
        """
        ce = F.cross_entropy(out.logits, labels.to(out.logits.device))
        val_mse = masked_valence_mse(out.valence, valence)
        total, kl, recon, cross_kl = self.add_auxiliary(ce + val_mse, out)
        return total, torch.stack([total, ce, val_mse, kl, recon, cross_kl]).detach()

    def add_auxiliary(self, total: Tensor, out: ModelOutput) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``total`` plus the weighted KL, cross-KL and reconstruction terms the model produces.

        Returns ``(total, kl, recon, cross_kl)``, the terms unweighted (0 where the
        model has no such output). MERBench's loop adds CE and valence MSE itself,
        so the MERBench adapter calls this with a zero ``total``.
        """
        zero = total.new_zeros(())
        kl = recon = cross_kl = zero
        if out.mu is not None and out.logvar is not None:
            mu, logvar = out.mu, out.logvar  # [B, M, H]
            kl = self.kl_term(mu, logvar, out.present)
            cross_kl = self.cross_kl_term(mu, logvar, out.present)
            total = total + self.kl_weight * kl + self.cross_kl_weight * cross_kl
        if out.recons is not None and out.targets is not None:
            recon = self.recon_term(out.recons, out.targets, out.present)
            total = total + self.recon_weight * recon
        return total, kl, recon, cross_kl

    def __call__(self, out: ModelOutput, labels: Tensor, valence: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Total loss (scalar tensor, differentiable) and the logged terms as Python floats."""
        total, values = self.terms(out, labels, valence)
        return total, dict(zip(TERM_KEYS, values.tolist()))
