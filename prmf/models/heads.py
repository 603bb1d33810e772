"""Step 4 of the method: prediction heads.

Both model families use MERBench's heads: one ``Linear(H, C)`` for the emotion
logits and one ``Linear(H, 1)`` for valence, on the fused representation.
"""

from __future__ import annotations

from torch import Tensor, nn


class PredictionHeads(nn.Module):
    """``h`` ``[B, H]`` -> ``(logits [B, C], valence [B])`` with one Linear layer each."""

    def __init__(self, hidden_dim: int, n_classes: int) -> None:
        super().__init__()
        self.emotion = nn.Linear(hidden_dim, n_classes)
        self.valence = nn.Linear(hidden_dim, 1)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` ``[B, H]`` -> ``(logits [B, C], valence [B])``."""
        return self.emotion(h), self.valence(h).squeeze(-1)
