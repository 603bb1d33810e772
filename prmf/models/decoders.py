"""Step 1b of the method: per-modality decoders for the reconstruction loss.

A :class:`ModalityDecoder` maps a latent sample ``z`` ``[B, H]`` back to the
modality's input space ``[B, D_m]``. For frame-level modalities the target is
the length-masked time-mean of the input (see
:func:`prmf.models.encoders.masked_time_mean`), so the decoder output is always
a vector.
"""

from __future__ import annotations

from torch import Tensor, nn


class ModalityDecoder(nn.Module):
    """3-layer MLP ``Linear(H,H)-ReLU-Linear(H,H)-ReLU-Linear(H,D_m)``.

    ``z`` ``[B, H]`` -> reconstruction ``[B, D_m]`` (same units as the input
    features; no output activation).
    """

    def __init__(self, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, H]`` -> ``[B, D_m]``."""
        return self.net(z)
