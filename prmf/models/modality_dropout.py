"""Step 0 of the method: progressive modality dropout and input masking.

During training a *drop mode* -- a non-empty proper subset of the modalities
(for M = 3 in the order audio, text, video: A, T, V, A+T, A+V, T+V) -- is
removed with probability ``p(e)``. Two granularities (``unit``):

* ``"batch"`` (the author's code, which draws once per call with Python's
  ``random``): one draw decides whether the whole batch is hit, one draw picks
  the mode, and that mode is applied to every sample of the batch;
* ``"sample"``: every sample is hit independently with probability ``p(e)``
  and draws its own mode.

Either way only present modalities can be dropped and a sample is never left
without a modality: if the mode covers every present modality of a sample,
that sample keeps its mask. The draws use torch's RNG on the mask's device
(never Python's ``random``), so ``torch.manual_seed`` fixes them and a GPU
step never waits for the host. ``p(e)`` grows linearly after a warm-up
(:func:`dropout_rate`).

Dropped / absent modalities are then handled identically by every model: the
mask ``present`` is updated and the inputs are zeroed (:func:`mask_inputs`).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn


def drop_modes(num_modalities: int) -> Tensor:
    """All non-empty proper subsets of the modalities as a bool table ``[K, M]``.

    ``K = 2**M - 2``; rows ordered by subset size, then lexicographically
    (M = 3: ``{0}, {1}, {2}, {0,1}, {0,2}, {1,2}``). ``True`` = dropped.
    """
    rows = [
        [m in subset for m in range(num_modalities)]
        for size in range(1, num_modalities)
        for subset in combinations(range(num_modalities), size)
    ]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(rows), num_modalities)


DROPOUT_UNITS = ("batch", "sample")


def apply_modality_dropout(
    present: Tensor,
    p: float | Tensor,
    *,
    unit: str,
    generator: torch.Generator | None = None,
    modes: Tensor | None = None,
) -> Tensor:
    """Randomly drop modalities, per sample or per batch.

    Args:
        present: ``[B, M]`` bool mask of available modalities.
        p: probability of a hit (one of the ``2**M - 2`` modes is then chosen
            uniformly); a float, or a 0-d tensor on ``present``'s device (then
            the random numbers are always drawn, so the call can be captured
            in a CUDA graph and the rate changed between replays).
        generator: optional ``torch.Generator`` (on ``present``'s device);
            ``None`` uses torch's global RNG, so ``torch.manual_seed`` makes
            training reproducible.
        modes: optional precomputed :func:`drop_modes` table ``[K, M]`` on
            ``present``'s device (avoids rebuilding it every step).
        unit: ``"sample"`` -- ``B`` hit draws and ``B`` mode draws, one per
            sample; ``"batch"`` -- one hit draw and one mode draw for the whole
            batch (the mode is the same for every row; a row whose present
            modalities it would all remove keeps its mask). Both draw the same
            kernels whatever ``p``, and neither reads a value back to the host.
            No default: the study's (``modality_dropout_unit``) is in the
            config schema.

    Returns:
        New ``[B, M]`` bool mask (``present`` is not modified). When ``M < 2``,
        or a float ``p <= 0``, the input mask is returned and no random number
        is drawn.
    """
    if unit not in DROPOUT_UNITS:
        raise ValueError(f"modality_dropout_unit must be one of {DROPOUT_UNITS}, got {unit!r}")
    batch, num_modalities = present.shape
    if num_modalities < 2 or (not isinstance(p, Tensor) and p <= 0):
        return present
    if modes is None:
        modes = drop_modes(num_modalities).to(present.device)
    device = present.device
    draws = batch if unit == "sample" else 1
    hit = torch.rand(draws, generator=generator, device=device) < p  # [B] or [1]
    choice = torch.randint(modes.shape[0], (draws,), generator=generator, device=device)
    drop = modes[choice] & hit.unsqueeze(1)  # [B, M] or [1, M] (broadcast over the batch)
    dropped = present & ~drop
    keeps_some = dropped.any(dim=1, keepdim=True)
    return torch.where(keeps_some, dropped, present)


def dropout_rate(epoch: float, warmup: int, total_epochs: int, p_max: float) -> float:
    """Progressive schedule ``p(e)``.

    ``0`` for ``e < warmup``, then ``p_max * (e - warmup) / (E - warmup)``,
    clipped to ``[0, p_max]``; if ``E <= warmup`` the rate jumps to ``p_max``
    at ``e = warmup``. ``epoch`` is 0-based, ``E = total_epochs``.
    """
    if epoch < warmup:
        return 0.0
    if total_epochs <= warmup:
        return float(p_max)
    frac = (epoch - warmup) / (total_epochs - warmup)
    return float(p_max) * min(1.0, max(0.0, frac))


class ModalityDropout(nn.Module):
    """Holds the schedule and applies :func:`apply_modality_dropout` in training.

    ``enabled=False`` makes it the identity with ``rate == 0.0``. The rate is
    set by :meth:`set_epoch` (until then it is 0). In eval mode the mask is
    returned unchanged whatever the rate. ``unit`` (``"batch"``, the author's
    granularity, or ``"sample"``) is passed to :func:`apply_modality_dropout`.
    """

    def __init__(self, num_modalities: int, enabled: bool, *, p_max: float, warmup_epochs: int,
                 unit: str) -> None:
        super().__init__()
        if not 0.0 <= p_max <= 1.0:
            raise ValueError(f"modality_dropout_max must be in [0, 1], got {p_max!r}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
        if unit not in DROPOUT_UNITS:
            raise ValueError(f"modality_dropout_unit must be one of {DROPOUT_UNITS}, got {unit!r}")
        self.unit = unit
        self.enabled = bool(enabled)
        self.p_max = float(p_max)
        self.warmup_epochs = int(warmup_epochs)
        self.rate = 0.0
        #: set by :class:`prmf.train.GraphedSteps`: draw from the device-side rate every step
        self.graph_safe = False
        #: the draws' source (None: torch's global RNG); see MultimodalModel.set_generator
        self.generator: torch.Generator | None = None
        self.register_buffer("modes", drop_modes(num_modalities), persistent=False)
        self.register_buffer("rate_tensor", torch.zeros(()), persistent=False)

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Update the current rate ``p(epoch)`` (0-based epoch)."""
        self.rate = (
            dropout_rate(epoch, self.warmup_epochs, total_epochs, self.p_max) if self.enabled else 0.0
        )
        self.rate_tensor.fill_(self.rate)

    def forward(self, present: Tensor) -> Tensor:
        """``present`` ``[B, M]`` bool -> mask after dropout ``[B, M]``."""
        if not self.training or not self.enabled:
            return present
        if self.graph_safe:  # same kernels whatever the rate: a captured graph stays valid
            return apply_modality_dropout(present, self.rate_tensor, modes=self.modes, unit=self.unit,
                                          generator=self.generator)
        if self.rate <= 0:
            return present
        return apply_modality_dropout(present, self.rate, modes=self.modes, unit=self.unit,
                                      generator=self.generator)

    def extra_repr(self) -> str:
        return (f"enabled={self.enabled}, p_max={self.p_max}, warmup_epochs={self.warmup_epochs}, "
                f"unit={self.unit}")


def mask_inputs(
    xs: list[Tensor], present: Tensor, lengths: list[Tensor | None]
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Zero the inputs of absent modalities.

    Args:
        xs: per modality ``[B, D_m]`` or ``[B, T, D_m]``.
        present: ``[B, M]`` bool mask.
        lengths: per modality ``[B]`` frame counts or ``None``.

    Returns:
        ``(xs, lengths)`` where absent entries are replaced by zeros (with
        ``torch.where``, so even NaN inputs are removed) and the length of an
        absent frame-level entry is set to 1. The result does not depend on the
        values an absent modality holds.
    """
    masked_xs: list[Tensor] = []
    masked_lengths: list[Tensor | None] = []
    for m, (x, length) in enumerate(zip(xs, lengths)):
        keep = present[:, m]
        # nothing to mask: skip a full copy of the input (checked on CPU only: on a GPU the
        # check would make the host wait for the device every step)
        if keep.device.type == "cpu" and bool(keep.all()):
            masked_xs.append(x)
            masked_lengths.append(length)
            continue
        keep_x = keep.reshape(keep.shape + (1,) * (x.dim() - 1))
        masked_xs.append(torch.where(keep_x, x, x.new_zeros(())))
        if length is not None:
            length = torch.where(keep.to(length.device), length, torch.ones_like(length))
        masked_lengths.append(length)
    return masked_xs, masked_lengths
