"""Per-modality layers of equal shape, evaluated together.

Every modality has its own weights, but many of its layers have the same
shape in all modalities (the ``H x H`` hidden layers of the encoders and
decoders, the ``mu``/``logvar`` heads, the attention projections). A
:class:`StackedLinear` holds ``M`` such layers as one ``[M, in, out]`` weight
and applies them with one batched GEMM (``torch.baddbmm``) to inputs stacked
as ``[M, B, in]``: the same numbers as ``M`` separate ``nn.Linear`` layers,
with one kernel (and one autograd node) instead of ``M``, forward and
backward. Timings of a training step: ``benchmarks/bench_train.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .linear import init_like_linear


class StackedLinear(nn.Module):
    """``M`` independent linear layers ``y_m = x_m @ weight[m] + bias[m]``.

    ``weight`` ``[M, in, out]`` (slice ``m`` is ``nn.Linear.weight.T`` of
    layer ``m``), ``bias`` ``[M, 1, out]``; each slice is initialised as
    ``nn.Linear(in, out)`` is (uniform on ``±1/sqrt(in)``).

    ``x`` ``[M, B, in]`` -> ``[M, B, out]``.
    """

    def __init__(self, num_layers: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_layers = int(num_layers)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.num_layers, self.in_features, self.out_features))
        self.bias = nn.Parameter(torch.empty(self.num_layers, 1, self.out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default for every slice: ``U(-1/sqrt(in), 1/sqrt(in))``."""
        init_like_linear(self.weight, self.bias, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[M, B, in]`` -> ``[M, B, out]``."""
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, in_features={self.in_features}, out_features={self.out_features}"
