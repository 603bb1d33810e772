"""Shared plumbing of both model families: input checks, optional feature
standardization, modality dropout, input masking and the epoch-driven dropout
schedule (``set_epoch``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .modality_dropout import ModalityDropout, mask_inputs
from .standardize import STANDARDIZE_MODES, FeatureStandardizer


class MultimodalModel(nn.Module):
    """Base class: ``forward(xs, present, lengths)`` -> :class:`ModelOutput`.

    Subclasses call :meth:`prepare_inputs` first; it standardizes the inputs
    (``standardize="zscore"``), applies modality dropout (training only) and
    zeroes the inputs of absent modalities.

    ``standardizer`` is a :class:`FeatureStandardizer` with ``standardize="zscore"``
    (its statistics are buffers in ``state_dict``; fill them with
    ``model.standardizer.set_stats(standardization_stats(...))``), else
    ``None`` (and ``state_dict`` has no such entries).
    """

    def __init__(
        self,
        input_dims: list[int],
        frame_level: list[bool] | None,
        *,
        use_modality_dropout: bool,
        modality_dropout_max: float,
        warmup_epochs: int,
        modality_dropout_unit: str,
        standardize: str,
    ) -> None:
        super().__init__()
        if standardize not in STANDARDIZE_MODES:
            raise ValueError(f"standardize must be one of {STANDARDIZE_MODES}, got {standardize!r}")
        if len(input_dims) < 1:
            raise ValueError("input_dims must name at least one modality")
        if frame_level is None:
            frame_level = [False] * len(input_dims)
        if len(frame_level) != len(input_dims):
            raise ValueError(
                f"frame_level has {len(frame_level)} entries for {len(input_dims)} modalities"
            )
        self.input_dims = [int(d) for d in input_dims]
        self.frame_level = [bool(f) for f in frame_level]
        self.num_modalities = len(input_dims)
        self.modality_dropout = ModalityDropout(
            self.num_modalities, use_modality_dropout, p_max=modality_dropout_max, warmup_epochs=warmup_epochs,
            unit=modality_dropout_unit,
        )
        self.standardizer = FeatureStandardizer(self.input_dims) if standardize == "zscore" else None

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Set the modality-dropout rate for 0-based ``epoch`` of ``total_epochs``."""
        self.modality_dropout.set_epoch(epoch, total_epochs)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Draw every random number of a training forward pass from ``generator``.

        Input and hidden dropout, modality dropout and the VAE's sampling then
        use ``generator`` (on the model's device) instead of torch's global
        RNG, so several models trained in one process (a packed fold job,
        :func:`prmf.train.train_pack`) each follow their own stream, in
        whatever order their steps run. ``None``: back to the global RNG.
        """
        for module in self.modules():
            if module is not self and hasattr(module, "generator"):
                module.generator = generator

    @property
    def modality_dropout_rate(self) -> float:
        """Current ``p(e)``; 0.0 when modality dropout is switched off."""
        return self.modality_dropout.rate

    def prepare_inputs(
        self,
        xs: list[Tensor],
        present: Tensor,
        lengths: list[Tensor | None] | None,
    ) -> tuple[list[Tensor], Tensor, list[Tensor | None]]:
        """Check shapes, standardize, drop modalities (training), zero absent inputs.

        Standardization comes first, so the absent and dropped modalities are
        zeroed *after* it (an absent input is all zeros, not standardized zeros).

        Returns ``(xs, present, lengths)`` with ``present`` ``[B, M]`` bool the
        mask actually used.
        """
        if len(xs) != self.num_modalities:
            raise ValueError(f"expected {self.num_modalities} modality inputs, got {len(xs)}")
        if present.dim() != 2 or present.shape[1] != self.num_modalities:
            raise ValueError(f"present must be [B, {self.num_modalities}], got {tuple(present.shape)}")
        if lengths is None:
            lengths = [None] * self.num_modalities
        if len(lengths) != self.num_modalities:
            raise ValueError(f"lengths has {len(lengths)} entries for {self.num_modalities} modalities")
        for m, (x, is_frames) in enumerate(zip(xs, self.frame_level)):
            want = 3 if is_frames else 2
            if x.dim() != want or x.shape[-1] != self.input_dims[m]:
                raise ValueError(
                    f"modality {m}: expected a {want}-d input with last dim "
                    f"{self.input_dims[m]}, got {tuple(x.shape)}"
                )
        if present.dtype != torch.bool:
            present = present.bool()
        if self.standardizer is not None:
            xs = self.standardizer(xs, lengths)
        present = self.modality_dropout(present)
        xs, lengths = mask_inputs(xs, present, lengths)
        return xs, present, lengths
