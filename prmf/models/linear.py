"""A Linear layer for wide inputs whose weight is stored input-major.

``nn.Linear`` stores its weight as ``[out, in]`` and autograd computes the
weight gradient as ``g^T x`` ``[out, B] @ [B, in]``. For the first layer of an
encoder (``in`` = 1024 / 5120 / 768 feature dims, ``out`` = 128 hidden units,
batch 32) that is the largest matrix product of a training step. With the
weight stored as ``[in, out]`` autograd computes the same numbers as
``x^T g`` ``[in, B] @ [B, out]``, the operand order CPU BLAS runs faster for
these shapes; the forward is ``x @ W``. Seconds per training step:
``benchmarks/bench_train.py`` (its "floor" rows time the model's matrix
products alone).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def init_like_linear(weight: Tensor, bias: Tensor, in_features: int) -> None:
    """``nn.Linear``'s default initialisation, whatever the layout: weight and bias ``U(-1/sqrt(in), 1/sqrt(in))``."""
    bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -bound, bound)


class InputMajorLinear(nn.Module):
    """``y = x @ weight + bias`` with ``weight`` ``[in_features, out_features]``.

    The same function and initialisation as ``nn.Linear(in_features,
    out_features)`` (weight and bias uniform on ``±1/sqrt(in_features)``);
    only the weight's memory layout differs: ``weight`` here is
    ``nn.Linear.weight.T``.

    ``x`` ``[..., in]`` -> ``[..., out]``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.in_features, self.out_features))
        self.bias = nn.Parameter(torch.empty(self.out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default: ``U(-1/sqrt(in), 1/sqrt(in))`` for weight and bias."""
        init_like_linear(self.weight, self.bias, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, in]`` (or ``[..., in]``) -> ``[B, out]``."""
        if x.dim() == 2:
            return torch.addmm(self.bias, x, self.weight)
        return torch.matmul(x, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
