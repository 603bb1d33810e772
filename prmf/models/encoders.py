"""Step 1 of the method: per-modality encoders.

Two families share one calling convention ``encoder(x, lengths=None)``:

* deterministic encoders return a hidden vector ``h`` ``[B, H]``:
  :class:`MLPEncoder` (utterance-level ``[B, D]`` features, MERBench's encoder)
  and :class:`LSTMEncoder` (frame-level ``[B, T, D]`` features);
* variational encoders return ``(z, mu, logvar, std)``, each ``[B, H]``:
  :class:`VariationalMLPEncoder` and :class:`VariationalLSTMEncoder`.

Frame-level pooling: the LSTM encoders run on a ``pack_padded_sequence`` and
return the **last valid hidden state** ``h_n`` of the (single-layer) LSTM, so
frames at positions ``>= lengths[b]`` never influence sample ``b``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

LOGVAR_MIN = -10.0
LOGVAR_MAX = 10.0


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Valid-frame mask ``[B, T]`` (bool) from ``lengths`` ``[B]`` (frames)."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def masked_time_mean(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean over the valid frames of ``x`` ``[B, T, D]`` -> ``[B, D]``.

    ``lengths`` ``[B]`` counts valid frames (``None``: all ``T`` frames valid).
    Padding is excluded with ``torch.where``, so even non-finite padding values
    cannot leak into the mean. A zero length gives a zero vector.
    """
    if lengths is None:
        return x.mean(dim=1)
    lengths = lengths.to(x.device)
    mask = length_mask(lengths, x.shape[1]).unsqueeze(-1)  # [B, T, 1]
    total = torch.where(mask, x, x.new_zeros(())).sum(dim=1)  # [B, D]
    count = lengths.clamp(min=1).to(x.dtype).unsqueeze(1)  # [B, 1]
    return total / count


def bernoulli_keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """Bool mask of ``shape``, each entry True (kept) with probability ``1 - p``.

    Draws full-range 64-bit integers from torch's global RNG and reads each as
    four independent uniform 16-bit integers ``u`` on ``[-32768, 32767]``;
    ``keep = u >= round(p * 65536) - 32768``. One draw serves four entries,
    about 3x cheaper on CPU than ``torch.rand`` and 6x cheaper than
    ``nn.Dropout``'s ``bernoulli_``; ``p`` is quantised to a multiple of
    ``1/65536`` (error <= 7.7e-6).
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    uniform16 = words.view(torch.int16)[:n].view(shape)
    return uniform16 >= round(p * 65536) - 32768


class InputDropout(nn.Module):
    """Inverted dropout for wide input features: ``x * keep / (1 - p)``.

    Same semantics as ``nn.Dropout(p)`` (identity in eval mode, kept entries
    scaled by ``1 / (1 - p)``) with the keep-mask from
    :func:`bernoulli_keep_mask` (torch's global RNG, so ``torch.manual_seed``
    makes it reproducible). ``x`` ``[..., D]`` -> same shape.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[..., D]`` -> ``[..., D]``."""
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = bernoulli_keep_mask(x.shape, self.p, x.device)
        # The bool mask viewed as uint8: float * uint8 takes torch's fast path (about 4x
        # faster on CPU than float * bool). In-place scaling of the fresh product: one
        # [.., D] temporary instead of two (autograd-safe: the product is not saved).
        return (x * keep.view(torch.uint8)).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLPEncoder(nn.Module):
    """MERBench's ``MLPEncoder``: input dropout, then three Linear+ReLU layers.

    (:class:`InputDropout` is a faster drop-in for MERBench's ``nn.Dropout``.)

    ``x`` ``[B, D]`` -> ``h`` ``[B, H]`` (``H = hidden_dim``).
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            InputDropout(dropout),
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, D]`` -> ``[B, H]``; ``lengths`` is accepted and ignored."""
        return self.net(x)


class LSTMEncoder(nn.Module):
    """Frame-level encoder: input dropout, one-layer LSTM, last valid hidden state.

    ``x`` ``[B, T, D]`` with ``lengths`` ``[B]`` (int, frames) -> ``h`` ``[B, H]``.
    Lengths are clamped to ``[1, T]`` (a zero-length sample, e.g. an absent
    modality whose frames were zeroed, is encoded from its first frame).
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = InputDropout(dropout)
        self.lstm = nn.LSTM(input_dim, hidden_dim, num_layers=1, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, T, D]``, ``lengths`` ``[B]`` (``None``: all ``T``) -> ``[B, H]``."""
        batch, max_len = x.shape[0], x.shape[1]
        if lengths is None:
            lengths = torch.full((batch,), max_len, dtype=torch.int64)
        # pack_padded_sequence requires CPU int64 lengths.
        lengths = lengths.to(device="cpu", dtype=torch.int64).clamp(1, max_len)
        packed = pack_padded_sequence(
            self.dropout(x), lengths, batch_first=True, enforce_sorted=False
        )
        # With enforce_sorted=False PyTorch returns h_n in the original batch order.
        _, (h_n, _) = self.lstm(packed)
        return h_n[-1]


class GaussianHead(nn.Module):
    """Shared 2-layer ReLU MLP, then ``mu`` and ``logvar`` heads, then sampling.

    ``h`` ``[B, D_in]`` -> ``(z, mu, logvar, std)``, each ``[B, H]``.
    ``logvar`` is clamped to ``[-10, 10]``, ``std = exp(logvar / 2)``;
    ``z = mu + eps * std`` with ``eps ~ N(0, I)`` (torch's global RNG) in
    training mode and ``z = mu`` in eval mode.
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.mu = nn.Linear(hidden_dim, hidden_dim)
        self.logvar = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``h`` ``[B, D_in]`` -> ``(z, mu, logvar, std)``, each ``[B, H]``."""
        shared = self.shared(h)
        mu = self.mu(shared)
        logvar = self.logvar(shared).clamp(LOGVAR_MIN, LOGVAR_MAX)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn_like(std) * std if self.training else mu
        return z, mu, logvar, std


class VariationalMLPEncoder(nn.Module):
    """Input dropout -> :class:`GaussianHead` on the utterance-level vector.

    ``x`` ``[B, D]`` -> ``(z, mu, logvar, std)``, each ``[B, H]``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = InputDropout(dropout)
        self.head = GaussianHead(input_dim, hidden_dim)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x`` ``[B, D]`` -> ``(z, mu, logvar, std)``; ``lengths`` is ignored."""
        return self.head(self.dropout(x))


class VariationalLSTMEncoder(nn.Module):
    """Frame-level variational encoder: :class:`LSTMEncoder` (with its input
    dropout) -> :class:`GaussianHead` on the last valid hidden state.

    ``x`` ``[B, T, D]``, ``lengths`` ``[B]`` -> ``(z, mu, logvar, std)``, each ``[B, H]``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.lstm = LSTMEncoder(input_dim, hidden_dim, dropout)
        self.head = GaussianHead(hidden_dim, hidden_dim)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x`` ``[B, T, D]``, ``lengths`` ``[B]`` -> ``(z, mu, logvar, std)``."""
        return self.head(self.lstm(x, lengths))
