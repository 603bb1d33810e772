"""Step 1b of the method: per-modality decoders for the reconstruction loss.

Modality ``m``'s decoder maps its latent sample ``z_m`` ``[B, H]`` back to the
modality's input space ``[B, D_m]`` with a 3-layer MLP
``Linear(H,H)-ReLU-Linear(H,H)-ReLU-Linear(H,D_m)`` (no output activation).
For frame-level modalities the target is the length-masked time-mean of the
input (see :func:`prmf.models.encoders.masked_time_mean`), so the output is
always a vector. :class:`ModalityDecoders` holds the decoders of all
modalities; the two ``H x H`` layers run as
:class:`~prmf.models.stacked.StackedLinear` (one batched GEMM each), the
output layers are per-modality ``nn.Linear``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .stacked import StackedLinear


class ModalityDecoders(nn.Module):
    """Decoders of all modalities.

    ``z`` ``[B, M, H]`` -> reconstructions, a list of ``[B, D_m]`` (same
    units as the input features).
    """

    def __init__(self, hidden_dim: int, output_dims: list[int]) -> None:
        super().__init__()
        m = len(output_dims)
        self.hidden = nn.Sequential(
            StackedLinear(m, hidden_dim, hidden_dim),
            nn.ReLU(),
            StackedLinear(m, hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.outputs = nn.ModuleList(nn.Linear(hidden_dim, dim) for dim in output_dims)

    def forward(self, z: Tensor) -> list[Tensor]:
        """``z`` ``[B, M, H]`` -> ``[recon_m [B, D_m] for m]``."""
        hidden = self.hidden(z.transpose(0, 1))  # [M, B, H]
        return [out(h) for out, h in zip(self.outputs, hidden.unbind(0))]

    def __len__(self) -> int:
        return len(self.outputs)

