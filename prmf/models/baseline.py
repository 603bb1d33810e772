"""MERBench's ``attention`` model (the baseline; "Robust v1" with modality dropout).

::

    h       = ModalityEncoders(x)  (MERBench MLPEncoder per modality,
              LSTMEncoder for frame-level m)                        [B, M, H]
    h_m     = 0 for absent m
    fused,w = AttentionWeightFusion(h, present)                    [B, H], [B, M]
    logits  = Linear(H, C)(fused); valence = Linear(H, 1)(fused)
"""

from __future__ import annotations

from torch import Tensor

from .base import MultimodalModel
from .encoders import ModalityEncoders
from .fusion import AttentionWeightFusion
from .heads import PredictionHeads
from .output import ModelOutput


class AttentionBaseline(MultimodalModel):
    """MERBench ``attention`` fusion with optional modality dropout.

    ``fusion_weights`` in the output are the raw (unnormalised) attention
    weights, 0 for absent modalities; ``uncertainty``/``mus``/... are ``None``.
    """

    def __init__(
        self,
        input_dims: list[int],
        n_classes: int,
        frame_level: list[bool] | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.4,
        use_modality_dropout: bool = False,
        modality_dropout_max: float = 0.5,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__(input_dims, frame_level, use_modality_dropout, modality_dropout_max, warmup_epochs)
        self.encoders = ModalityEncoders(self.input_dims, self.frame_level, hidden_dim, dropout)
        self.fusion = AttentionWeightFusion(self.num_modalities, hidden_dim, dropout)
        self.heads = PredictionHeads(hidden_dim, n_classes)

    def forward(
        self,
        xs: list[Tensor],
        present: Tensor,
        lengths: list[Tensor | None] | None = None,
    ) -> ModelOutput:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]``, ``present`` ``[B, M]`` -> :class:`ModelOutput`."""
        xs, present, lengths = self.prepare_inputs(xs, present, lengths)
        h = self.encoders(xs, lengths)  # [B, M, H]
        fused, weights = self.fusion(h, present)
        logits, valence = self.heads(fused)
        return ModelOutput(logits=logits, valence=valence, present=present, fusion_weights=weights)
