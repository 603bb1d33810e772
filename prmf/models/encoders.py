"""Step 1 of the method: the per-modality encoders.

Every modality ``m`` has its own encoder. Two families, each one module for
all ``M`` modalities:

* :class:`ModalityEncoders` (deterministic) returns ``h`` ``[B, M, H]``:
  MERBench's ``MLPEncoder`` for utterance-level ``[B, D_m]`` features
  (input dropout, three Linear+ReLU layers) and :class:`LSTMEncoder` for
  frame-level ``[B, T, D_m]`` features;
* :class:`VariationalEncoders` returns ``(z, mu, logvar, std)``, each
  ``[B, M, H]``: a shared 2-layer ReLU MLP (whose first layer, for a
  frame-level modality, is the :class:`LSTMEncoder` with a ReLU), then
  ``mu`` and ``logvar`` heads and the reparameterised sample.

:class:`MLPEncoder` is MERBench's ``MLPEncoder`` for one input as plain
``nn.Linear`` layers; the ``attention`` fusion uses it as its
``attention_mlp``.

The layers whose shape is the same in every modality (the ``H x H`` layers,
the ``mu``/``logvar`` heads) run for all modalities in one batched GEMM
(:class:`~prmf.models.stacked.StackedLinear`); each modality still has its own
weights. The first layer of an utterance-level modality reads the wide input
with an :class:`~prmf.models.linear.InputMajorLinear`.

Frame-level pooling: :class:`LSTMEncoder` is MERBench's ``LSTMEncoder``
(one-layer LSTM, dropout on its final hidden state, ``linear_1 = Linear(H, H)``
without activation) with one deliberate difference: it runs on a
``pack_padded_sequence`` built from ``lengths``, so its final hidden state is
the one at the **last valid frame** and frames at positions ``>= lengths[b]``
never influence sample ``b``. MERBench runs the LSTM over the whole padded
``[B, T, D]`` tensor and takes the state after frame ``T``, i.e. after the
padding (its docstring asks for the padding to be put in front for that
reason).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from .dropout import FastDropout
from .linear import InputMajorLinear
from .stacked import StackedLinear

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


class MLPEncoder(nn.Module):
    """MERBench's ``MLPEncoder`` for one input: dropout, then three Linear+ReLU layers.

    ::

        y = ReLU(linear_3(ReLU(linear_2(ReLU(linear_1(Dropout(x)))))))
            linear_1: in -> H; linear_2, linear_3: H -> H

    ``x`` ``[B, in]`` -> ``[B, H]``. (The per-modality encoders of
    :class:`ModalityEncoders` compute the same function with stacked layers.)
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = FastDropout(dropout)
        self.linear_1 = nn.Linear(input_dim, hidden_dim)
        self.linear_2 = nn.Linear(hidden_dim, hidden_dim)
        self.linear_3 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, in]`` -> ``[B, H]``."""
        h = torch.relu(self.linear_1(self.dropout(x)))
        h = torch.relu(self.linear_2(h))
        return torch.relu(self.linear_3(h))


class LSTMEncoder(nn.Module):
    """MERBench's frame-level ``LSTMEncoder``, run on the valid frames only.

    ::

        h_n = LSTM(x[:, :lengths])          last valid hidden state   [B, H]
        y   = linear_1(Dropout(h_n))        linear_1: H -> H, no activation

    One layer, ``batch_first``, no dropout on the input frames (as MERBench).
    ``x`` ``[B, T, D]`` with ``lengths`` ``[B]`` (int, frames) -> ``y`` ``[B, H]``.
    Lengths are clamped to ``[1, T]`` (a zero-length sample, e.g. an absent
    modality whose frames were zeroed, is encoded from its first frame).
    Parameters: ``4 (D H + H H + 2 H)`` in the LSTM plus ``H H + H``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden_dim, num_layers=1, batch_first=True)
        self.dropout = FastDropout(dropout)
        self.linear_1 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, T, D]``, ``lengths`` ``[B]`` (``None``: all ``T``) -> ``[B, H]``."""
        batch, max_len = x.shape[0], x.shape[1]
        if lengths is None:
            lengths = torch.full((batch,), max_len, dtype=torch.int64)
        # pack_padded_sequence requires CPU int64 lengths.
        lengths = lengths.to(device="cpu", dtype=torch.int64).clamp(1, max_len)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        # With enforce_sorted=False PyTorch returns h_n in the original batch order.
        _, (h_n, _) = self.lstm(packed)
        return self.linear_1(self.dropout(h_n[-1]))


class InputStage(nn.Module):
    """The part of modality ``m``'s encoder that depends on its input shape.

    Utterance-level (``frames=False``): ``ReLU(Linear(D_m, H)(FastDropout(x)))``
    (the dropout and ``linear_1`` of MERBench's ``MLPEncoder``, weight stored
    input-major; ``linear``).
    Frame-level: the whole :class:`LSTMEncoder` (``lstm``), whose own
    ``linear_1`` is its last layer; ``relu_frames`` adds a ReLU on its output
    (the variational family, where it is the first layer of the shared MLP;
    MERBench's deterministic ``LSTMEncoder`` has no activation there).

    ``x`` ``[B, D_m]`` or ``[B, T, D_m]`` (+ ``lengths`` ``[B]``) -> ``[B, H]``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float, frames: bool,
                 relu_frames: bool) -> None:
        super().__init__()
        self.lstm = LSTMEncoder(input_dim, hidden_dim, dropout) if frames else None
        self.dropout = None if frames else FastDropout(dropout)
        self.linear = None if frames else InputMajorLinear(input_dim, hidden_dim)
        self.relu_frames = bool(relu_frames)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, D_m]`` / ``[B, T, D_m]`` -> ``[B, H]``."""
        if self.lstm is not None:
            h = self.lstm(x, lengths)
            return torch.relu(h) if self.relu_frames else h
        return torch.relu(self.linear(self.dropout(x)))


def input_stages(input_dims: list[int], frame_level: list[bool], hidden_dim: int, dropout: float,
                 relu_frames: bool) -> nn.ModuleList:
    """One :class:`InputStage` per modality."""
    return nn.ModuleList(
        InputStage(dim, hidden_dim, dropout, frames, relu_frames) for dim, frames in zip(input_dims, frame_level)
    )


class ModalityEncoders(nn.Module):
    """Deterministic encoders of all modalities.

    ::

        utterance-level m (MERBench MLPEncoder):
            h_m = ReLU(L3_m(ReLU(L2_m(ReLU(L1_m(Dropout(x_m)))))))   L1_m: D_m -> H, L2_m, L3_m: H -> H
        frame-level m (MERBench LSTMEncoder):
            h_m = linear_1_m(Dropout(LSTM_m(x_m, lengths_m)))      no activation

    ``L2``/``L3`` of the utterance-level modalities are :class:`StackedLinear`
    layers (one batched GEMM each).

    ``forward(xs, lengths)``: ``xs[m]`` ``[B, D_m]`` or ``[B, T, D_m]`` ->
    ``h`` ``[B, M, H]``.
    """

    def __init__(self, input_dims: list[int], frame_level: list[bool], hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.inputs = input_stages(input_dims, frame_level, hidden_dim, dropout, relu_frames=False)
        self.mlp_index = [m for m, frames in enumerate(frame_level) if not frames]
        k = len(self.mlp_index)
        self.hidden = (
            nn.Sequential(StackedLinear(k, hidden_dim, hidden_dim), nn.ReLU(),
                          StackedLinear(k, hidden_dim, hidden_dim), nn.ReLU())
            if k else None
        )

    def forward(self, xs: list[Tensor], lengths: list[Tensor | None]) -> Tensor:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]``, ``lengths[m]`` ``[B]`` or None -> ``[B, M, H]``."""
        first = [stage(x, n) for stage, x, n in zip(self.inputs, xs, lengths)]
        if self.hidden is None:
            return torch.stack(first, dim=1)
        if len(self.mlp_index) == len(first):
            return self.hidden(torch.stack(first, dim=0)).transpose(0, 1)  # [M, B, H] -> [B, M, H]
        hidden = self.hidden(torch.stack([first[m] for m in self.mlp_index], dim=0)).unbind(0)
        for k, m in enumerate(self.mlp_index):
            first[m] = hidden[k]
        return torch.stack(first, dim=1)


class VariationalEncoders(nn.Module):
    """Variational encoders of all modalities.

    ::

        utterance-level m:  s_m = ReLU(L1_m(Dropout(x_m)))              L1_m: D_m -> H
        frame-level m:      s_m = ReLU(LSTMEncoder_m(x_m, lengths_m))
                                = ReLU(linear_1_m(Dropout(LSTM_m(x_m))))  linear_1_m: H -> H
        all m:              s_m = ReLU(L2_m(s_m))                       L2_m: H -> H
                            [mu_m | logvar_m] = L3_m(s_m)               L3_m: H -> 2H (the two heads)
                            logvar_m = clamp(logvar_m, -10, 10); std_m = exp(logvar_m / 2)
                            z_m = mu_m + eps * std_m (training), mu_m (eval); eps ~ N(0, I)

    ``L1 -> ReLU -> L2 -> ReLU`` is the shared 2-layer MLP (for a frame-level
    modality the LSTM encoder's ``linear_1`` plays ``L1``; there is no second
    ``H x H`` projection after it); ``L3``'s first
    ``H`` output columns are the ``mu`` head, the last ``H`` the ``logvar``
    head. ``L2``/``L3`` are :class:`StackedLinear`. ``eps`` comes from
    torch's global RNG.

    ``forward(xs, lengths)`` -> ``(z, mu, logvar, std)``, each ``[B, M, H]``.
    """

    def __init__(self, input_dims: list[int], frame_level: list[bool], hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.hidden_dim = int(hidden_dim)
        self.inputs = input_stages(input_dims, frame_level, hidden_dim, dropout, relu_frames=True)
        m = len(self.inputs)
        self.shared = nn.Sequential(StackedLinear(m, hidden_dim, hidden_dim), nn.ReLU())
        self.heads = StackedLinear(m, hidden_dim, 2 * hidden_dim)
        #: the reparameterisation noise's source (None: torch's global RNG); see MultimodalModel.set_generator
        self.generator: torch.Generator | None = None

    def forward(
        self, xs: list[Tensor], lengths: list[Tensor | None]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]`` -> ``(z, mu, logvar, std)``, each ``[B, M, H]``."""
        first = [stage(x, n) for stage, x, n in zip(self.inputs, xs, lengths)]
        heads = self.heads(self.shared(torch.stack(first, dim=0))).transpose(0, 1)  # [B, M, 2H]
        mu, logvar = heads.split(self.hidden_dim, dim=-1)
        logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        std = torch.exp(0.5 * logvar)
        if self.training:
            # a contiguous draw: randn_like would keep std's transposed strides, and torch's CPU
            # normal_ fills a non-contiguous tensor element by element
            eps = torch.randn(std.shape, dtype=std.dtype, device=std.device, generator=self.generator)
            z = mu + eps * std
        else:
            z = mu
        return z, mu, logvar, std
