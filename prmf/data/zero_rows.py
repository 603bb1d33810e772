"""MERBench's missing-modality convention: an all-zero feature row means "absent".

MERBench's feature extractors write ``np.zeros(dim)`` (utterance level) or
``np.zeros((1, dim))`` (frame level) when a clip has no detected face or an
empty transcript. Real MER2023 feature folders therefore hold such rows, and
they mean "this modality is absent for this sample", not "a feature vector
that happens to be zero". :func:`flag_zero_rows` turns them into the store's
``missing`` mask, so every model masks them exactly as it masks a dropped
modality (``dataset.zero_rows: missing``, the default). With
``dataset.zero_rows: error`` nothing is flagged and validation reports the
rows as fatal.
"""

from __future__ import annotations

import numpy as np

from prmf.data.store import FeatureStore

ZERO_ROW_POLICIES: tuple[str, ...] = ("missing", "error")


def zero_rows(x: np.ndarray) -> np.ndarray:
    """``[N]`` bool: rows of ``x`` (``[N, D]`` or ``[N, T, D]``) whose every value is 0.

    Frame level: every frame (padding included, which is zero) is zero. NaN
    counts as non-zero, so a NaN row is left to the ``finite`` check.
    """
    flat = x.reshape(x.shape[0], -1)
    return ~np.any(flat != 0, axis=1)


def flag_zero_rows(store: FeatureStore, policy: str = "missing") -> dict[str, int]:
    """Flag all-zero rows of every modality as missing (in place) under ``policy="missing"``.

    Returns the number of newly flagged rows per modality (all 0 under
    ``policy="error"``, which leaves the store untouched for validation to
    report).
    """
    if policy not in ZERO_ROW_POLICIES:
        raise ValueError(f"dataset.zero_rows must be one of {ZERO_ROW_POLICIES}, got {policy!r}")
    flagged: dict[str, int] = {}
    for m, x in store.features.items():
        miss = np.asarray(store.missing.get(m, np.zeros(len(store), bool)), dtype=bool)
        if policy == "missing":
            zero = zero_rows(x)
            flagged[m] = int((zero & ~miss).sum())
            miss = miss | zero
        else:
            flagged[m] = 0
        store.missing[m] = miss
    return flagged
