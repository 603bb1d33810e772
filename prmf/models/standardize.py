"""Per-feature z-score standardization held inside the model (``standardize: zscore``).

The statistics are buffers of the model (``standardizer.mean_{m}`` /
``standardizer.std_{m}``, persistent, so they are in ``state_dict`` and a saved
``model.pt`` is self-contained: whoever loads it standardizes new inputs with
the statistics of the data the model was trained on).

:func:`standardization_stats` computes them from the training rows;
:meth:`FeatureStandardizer.set_stats` copies them into the model. The model
applies the standardizer in :meth:`~prmf.models.base.MultimodalModel.prepare_inputs`
*before* modality dropout and input masking, so an absent (or dropped)
modality is still an all-zero input afterwards, exactly as without
standardization; the VAE's reconstruction targets are the standardized
inputs.

Which values count (both for the mean and the std): rows where the modality is
present and whose features are not all zero (MERBench's extractors write an
all-zero vector for a clip without a face or transcript: such a row is an
absent modality whatever the ``present`` mask says); for frame-level features
only the valid frames (``t < lengths[n]``) of those rows. Accumulation is in
float64, two passes (mean, then the mean squared deviation; population std,
``ddof=0``), the result float32.

Std floor: ``std_j = max(std_j, std_floor * s)`` with ``s = sqrt(mean_j
std_j**2)`` the modality's overall scale (the RMS of its per-dimension stds).
A relative floor treats features in any units alike, and it only touches
dimensions that are (nearly) constant in the training data: with the default
``1e-3`` such a dimension is amplified at most ``1000 / s`` times, so a value
at test time that differs from the training constant cannot turn into an
arbitrarily large input, while every dimension with a spread above
``0.1 %`` of the modality's scale is divided by its own std. If every
dimension is constant (``s == 0``) the std is 1 (the features are only
centred), and a modality without any usable row keeps the identity
(mean 0, std 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .encoders import length_mask

STANDARDIZE_MODES = ("none", "zscore")
#: float64 values read per chunk by :func:`standardization_stats` (128 MiB)
_CHUNK_VALUES = 1 << 24


class FeatureStandardizer(nn.Module):
    """``x_m -> (x_m - mean_m) / std_m`` per modality, with the statistics as buffers.

    Buffers ``mean_{m}`` and ``std_{m}`` ``[D_m]`` (persistent), initialised to
    0 and 1 (the identity) until :meth:`set_stats` fills them.

    ``forward(xs, lengths)``: ``xs[m]`` ``[B, D_m]`` or ``[B, T, D_m]`` ->
    the same shapes, standardized; frames at positions ``>= lengths[m][b]`` of
    a frame-level input are set to 0 (they were zero padding and stay so).
    """

    def __init__(self, input_dims: Sequence[int]) -> None:
        super().__init__()
        self.input_dims = [int(d) for d in input_dims]
        for m, dim in enumerate(self.input_dims):
            self.register_buffer(f"mean_{m}", torch.zeros(dim))
            self.register_buffer(f"std_{m}", torch.ones(dim))

    def stats(self, m: int) -> tuple[Tensor, Tensor]:
        """``(mean_m, std_m)`` buffers of modality ``m``."""
        return getattr(self, f"mean_{m}"), getattr(self, f"std_{m}")

    def set_stats(self, stats: Sequence[tuple[np.ndarray | Tensor, np.ndarray | Tensor]]) -> None:
        """Copy ``[(mean_m [D_m], std_m [D_m]) for m]`` into the buffers (device and dtype kept).

        Raises ``ValueError`` on a wrong count or shape, a non-finite value or
        a std that is not > 0.
        """
        if len(stats) != len(self.input_dims):
            raise ValueError(f"got statistics for {len(stats)} modalities, the model has {len(self.input_dims)}")
        for m, (mean, std) in enumerate(stats):
            mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float64)
            std_t = torch.as_tensor(np.asarray(std), dtype=torch.float64)
            for name, value in (("mean", mean_t), ("std", std_t)):
                if tuple(value.shape) != (self.input_dims[m],):
                    raise ValueError(f"modality {m}: {name} has shape {tuple(value.shape)}, "
                                     f"expected ({self.input_dims[m]},)")
                if not torch.isfinite(value).all():
                    raise ValueError(f"modality {m}: {name} has non-finite values")
            if not (std_t > 0).all():
                raise ValueError(f"modality {m}: std must be > 0")
            buf_mean, buf_std = self.stats(m)
            with torch.no_grad():
                buf_mean.copy_(mean_t)
                buf_std.copy_(std_t)

    def forward(self, xs: Sequence[Tensor], lengths: Sequence[Tensor | None] | None = None) -> list[Tensor]:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]`` -> standardized, same shapes."""
        out: list[Tensor] = []
        for m, x in enumerate(xs):
            mean, std = self.stats(m)
            z = (x - mean) / std
            n = None if lengths is None else lengths[m]
            if x.dim() == 3 and n is not None:
                valid = length_mask(n.to(x.device), x.shape[1]).unsqueeze(-1)  # [B, T, 1]
                z = torch.where(valid, z, z.new_zeros(()))
            out.append(z)
        return out

    def extra_repr(self) -> str:
        return f"input_dims={self.input_dims}"


def _used_values(x: np.ndarray, rows: np.ndarray, n: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of ``x[rows]`` and a bool mask of the entries that count.

    Utterance-level ``x`` ``[N, D]`` -> ``([r, D], [r, 1])``; frame-level
    ``[N, T, D]`` -> ``([r, T, D], [r, T, 1])`` (valid frames of rows that are
    not all zero over their valid frames).
    """
    v = np.asarray(x[rows], dtype=np.float64)
    if v.ndim == 2:
        return v, (v != 0).any(axis=1)[:, None]
    steps = np.arange(v.shape[1])
    valid = steps[None, :] < (v.shape[1] if n is None else np.asarray(n)[rows][:, None])  # [r, T]
    nonzero = ((v != 0).any(axis=2) & valid).any(axis=1)  # [r]
    return v, (valid & nonzero[:, None])[:, :, None]


def standardization_stats(
    xs: Sequence[np.ndarray],
    present: np.ndarray,
    lengths: Sequence[np.ndarray | None] | None = None,
    std_floor: float = 1e-3,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-modality, per-dimension mean and std of the training features.

    Args:
        xs: per modality ``[N, D_m]`` or ``[N, T, D_m]`` (zero padded) features
            of the rows to fit on (e.g. the training rows of a fold).
        present: ``[N, M]`` bool, False where the modality is absent.
        lengths: per modality ``[N]`` valid frame counts, ``None`` for an
            utterance-level modality (or for all); a frame-level modality
            without lengths uses all ``T`` frames.
        std_floor: relative floor: ``std_j >= std_floor * sqrt(mean_j std_j**2)``
            (see the module docstring).

    Returns:
        ``[(mean_m, std_m) for m]``, float32 arrays ``[D_m]`` for
        :meth:`FeatureStandardizer.set_stats`. Rows where the modality is
        absent or all zero (frame-level: frames beyond ``lengths``) are left out.

    Raises:
        ValueError: on mismatched shapes, a negative floor or non-finite
            statistics (e.g. NaN features in a present row).
    """
    present = np.asarray(present, dtype=bool)
    if present.ndim != 2 or present.shape[1] != len(xs):
        raise ValueError(f"present must be [N, {len(xs)}], got {present.shape}")
    if not std_floor > 0:
        raise ValueError(f"std_floor must be > 0, got {std_floor!r}")
    if lengths is None:
        lengths = [None] * len(xs)
    stats: list[tuple[np.ndarray, np.ndarray]] = []
    for m, (x, n) in enumerate(zip(xs, lengths)):
        if x.shape[0] != present.shape[0]:
            raise ValueError(f"modality {m}: {x.shape[0]} rows, present has {present.shape[0]}")
        dim = x.shape[-1]
        rows = np.flatnonzero(present[:, m])
        step = max(1, _CHUNK_VALUES // int(np.prod(x.shape[1:])))
        chunks = [rows[i:i + step] for i in range(0, len(rows), step)]
        total, count = np.zeros(dim), 0
        for idx in chunks:
            v, used = _used_values(x, idx, n)
            total += np.where(used, v, 0.0).reshape(-1, dim).sum(axis=0)
            count += int(used.sum())
        if count == 0:
            stats.append((np.zeros(dim, np.float32), np.ones(dim, np.float32)))
            continue
        mean = total / count
        squares = np.zeros(dim)
        for idx in chunks:
            v, used = _used_values(x, idx, n)
            squares += np.where(used, np.square(v - mean), 0.0).reshape(-1, dim).sum(axis=0)
        std = np.sqrt(squares / count)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError(f"modality {m}: non-finite statistics (non-finite features in present rows?)")
        scale = float(np.sqrt(np.mean(np.square(std))))
        std = np.maximum(std, std_floor * scale) if scale > 0 else np.ones(dim)
        # a float32 std stays > 0 even for a modality whose scale is below float32's range
        std32 = np.maximum(std.astype(np.float32), np.finfo(np.float32).tiny)
        stats.append((mean.astype(np.float32), std32))
    return stats
