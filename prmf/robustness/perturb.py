"""Perturbations of a split's inputs: CPM-Net random missing masks and Gaussian feature noise."""

from __future__ import annotations

import numpy as np

from prmf.robustness.config import NOISE_SCOPES


# ------------------------------------------------------------------ masks
def cpm_missing_mask(n: int, m: int, rate: float, rng: np.random.Generator | int) -> np.ndarray:
    """CPM-Net style random missing mask: ``present`` ``[n, m]`` bool.

    The number of dropped entries is ``K = round(rate * n * m)``, capped at
    ``n * (m - 1)`` so that every sample keeps at least one modality. How many
    modalities each sample loses is drawn as ``Binomial(m - 1, K / (n (m - 1)))``
    and then adjusted (random samples +-1, within ``0..m-1``) until the counts
    sum to ``K`` exactly; which modalities a sample loses is uniform. The
    achieved rate is therefore ``K / (n m)``, within ``1 / (2 n m)`` of
    ``rate`` whenever ``rate <= (m - 1) / m``.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    present = np.ones((n, m), dtype=bool)
    if n == 0 or m < 2:
        return present
    max_drop = m - 1
    k = min(int(round(rate * n * m)), n * max_drop)
    if k == 0:
        return present
    drops = rng.binomial(max_drop, k / (n * max_drop), size=n)
    diff = k - int(drops.sum())
    while diff != 0:
        room = np.flatnonzero(drops < max_drop) if diff > 0 else np.flatnonzero(drops > 0)
        pick = rng.choice(room, size=min(abs(diff), len(room)), replace=False)
        drops[pick] += 1 if diff > 0 else -1
        diff = k - int(drops.sum())
    ranks = rng.random((n, m)).argsort(axis=1).argsort(axis=1)
    return ranks >= drops[:, None]


def combine_available(present: np.ndarray, available: np.ndarray,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """``present & available``; with ``rng``, a sample left with nothing keeps one random available modality."""
    out = present & available
    if rng is not None:
        empty = np.flatnonzero(~out.any(1) & available.any(1))
        for i in empty:
            out[i, rng.choice(np.flatnonzero(available[i]))] = True
    return out


# ------------------------------------------------------------------ noise
def feature_rms(x: np.ndarray, lengths: np.ndarray | None = None, scope: str = "sample") -> np.ndarray:
    """Root mean square of features ``[N, D]`` / ``[N, T, D]`` over valid frames.

    ``scope="sample"``: ``[N]`` one value per sample; ``"modality"``: ``[N]``
    filled with the RMS over all (non-zero) samples.
    """
    x = np.asarray(x, dtype=np.float64)
    sq = x ** 2
    if x.ndim == 3:
        if lengths is None:
            count = np.full(len(x), x.shape[1] * x.shape[2], dtype=np.float64)
        else:
            count = np.clip(np.asarray(lengths), 1, None).astype(np.float64) * x.shape[2]
        total = sq.sum(axis=(1, 2))
    else:
        count = np.full(len(x), x.shape[1], dtype=np.float64)
        total = sq.sum(axis=1)
    if scope == "sample":
        return np.sqrt(total / count)
    if scope == "modality":
        nonzero = total > 0
        value = np.sqrt(total[nonzero].sum() / count[nonzero].sum()) if nonzero.any() else 0.0
        return np.full(len(x), value)
    raise ValueError(f"scope must be one of {NOISE_SCOPES}, got {scope!r}")


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, lengths: np.ndarray | None = None,
              scope: str = "sample") -> np.ndarray:
    """``x`` plus Gaussian noise with ``std = rms / 10**(snr_db / 20)`` (padding frames untouched)."""
    x = np.asarray(x, dtype=np.float32)
    std = (feature_rms(x, lengths, scope) / 10.0 ** (snr_db / 20.0)).astype(np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32) * std.reshape(-1, *([1] * (x.ndim - 1)))
    if x.ndim == 3 and lengths is not None:
        noise *= (np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
    return x + noise
