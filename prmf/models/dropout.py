"""Dropout with a cheaper keep-mask than ``nn.Dropout``.

Every dropout of the models (on the wide input features and on hidden
layers) is a :class:`FastDropout`. ``nn.Dropout`` draws one ``bernoulli_``
sample per entry; :func:`bernoulli_keep_mask` reads four 16-bit uniforms from
each 64-bit draw of torch's generator, a quarter of the draws. Timings of a
training step: ``benchmarks/bench_train.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def bernoulli_keep_mask(shape: torch.Size, p: float, device: torch.device,
                        generator: torch.Generator | None = None) -> Tensor:
    """Bool mask of ``shape``, each entry True (kept) with probability ``1 - p``.

    Draws full-range 64-bit integers from torch's global RNG and reads each as
    four independent uniform 16-bit integers ``u`` on ``[-32768, 32767]``;
    ``keep = u >= round(p * 65536) - 32768``. One draw serves four entries
    (``torch.rand`` and ``nn.Dropout``'s ``bernoulli_`` draw one per entry);
    ``p`` is quantised to a multiple of ``1/65536`` (error <= 7.7e-6).
    ``generator``: draw from it instead of torch's global RNG.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None, generator=generator)
    uniform16 = words.view(torch.int16)[:n].view(shape)
    return uniform16 >= round(p * 65536) - 32768


class FastDropout(nn.Module):
    """Inverted dropout ``x * keep / (1 - p)``, a drop-in for ``nn.Dropout(p)``.

    Same semantics as ``nn.Dropout(p)`` (identity in eval mode, kept entries
    scaled by ``1 / (1 - p)``) with the keep-mask from
    :func:`bernoulli_keep_mask` (torch's global RNG, so ``torch.manual_seed``
    makes it reproducible, or :attr:`generator` when set, see
    :meth:`prmf.models.MultimodalModel.set_generator`). ``x`` ``[..., D]`` -> same shape.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[..., D]`` -> ``[..., D]``."""
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = bernoulli_keep_mask(x.shape, self.p, x.device, self.generator)
        # The bool mask viewed as uint8: float * uint8 is a vectorised CPU kernel (float * bool
        # is not). In-place scaling of the fresh product: one [.., D] temporary instead of two
        # (autograd-safe: the product is not saved).
        return (x * keep.view(torch.uint8)).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
