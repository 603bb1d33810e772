"""Prediction NPZ files: every array plain (no object arrays), loadable with ``allow_pickle=False``.

Fold file (``fold{k}/predictions.npz``), for each evaluated set ``S`` in
val/test1/test2/test3, arrays prefixed ``S_``::

    S_names [N] str       S_labels [N] int64      S_valence_true [N] float32 (NaN unknown)
    S_logits [N, C]       S_probs [N, C]          S_pred [N] int64
    S_valence [N]         S_fusion_weights [N, M] S_uncertainty [N, M]  (NaN where the model has none)

plus ``splits``, ``class_names``, ``modalities`` (str arrays) and ``args_json``
(0-d str: the run's arguments as JSON).

Split file (one set, no prefix): the same arrays without ``S_`` — used for
our per-run ``predictions_{split}.npz`` and for the MERBench-named exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from prmf.atomic import npz_bytes, write_bytes

FIELDS = ("names", "labels", "valence_true", "logits", "probs", "pred", "valence", "fusion_weights", "uncertainty")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _arrays(p: Any) -> dict[str, np.ndarray]:
    """The plain arrays of a ``prmf.train.Predictions``-like object."""
    logits = np.asarray(p.logits, dtype=np.float32)
    return {
        "names": np.asarray(p.names).astype(str),
        "labels": np.asarray(p.labels, dtype=np.int64),
        "valence_true": np.asarray(p.valence_true, dtype=np.float32),
        "logits": logits,
        "probs": softmax(logits.astype(np.float64)).astype(np.float32) if logits.size else logits,
        "pred": logits.argmax(1).astype(np.int64) if logits.size else np.zeros(0, np.int64),
        "valence": np.asarray(p.valence, dtype=np.float32),
        "fusion_weights": np.asarray(p.fusion_weights, dtype=np.float32),
        "uncertainty": np.asarray(p.uncertainty, dtype=np.float32),
    }


def _meta(class_names, modalities, args: Mapping) -> dict[str, np.ndarray]:
    return {
        "class_names": np.asarray(list(class_names)).astype(str),
        "modalities": np.asarray(list(modalities)).astype(str),
        "args_json": np.asarray(json.dumps(args, sort_keys=True, default=str)),
    }


def fold_payload(preds: Mapping[str, Any], class_names, modalities, args: Mapping) -> bytes:
    """The bytes of a fold file holding several sets (see :func:`write_predictions`)."""
    arrays = _meta(class_names, modalities, args)
    arrays["splits"] = np.asarray(list(preds)).astype(str)
    for split, p in preds.items():
        for k, v in _arrays(p).items():
            arrays[f"{split}_{k}"] = v
    return npz_bytes(arrays)


def _save(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    write_bytes(path, npz_bytes(arrays))


def write_predictions(path: str | Path, preds: Mapping[str, Any], class_names, modalities, args: Mapping) -> None:
    """Write a fold file holding several sets (``preds``: set name -> Predictions), atomically."""
    from prmf.atomic import write_bytes

    write_bytes(path, fold_payload(preds, class_names, modalities, args))


def write_split_predictions(path: str | Path, arrays: Mapping[str, np.ndarray], class_names, modalities,
                            args: Mapping) -> None:
    """Write one set's arrays (keys of ``FIELDS``) as a split file, atomically."""
    missing = [k for k in FIELDS if k not in arrays]
    if missing:
        raise KeyError(f"{path}: prediction arrays missing {missing}")
    _save(path, {**{k: np.asarray(arrays[k]) for k in FIELDS}, **_meta(class_names, modalities, args)})


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load an NPZ with ``allow_pickle=False`` into a plain dict."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_fold_predictions(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """``({set: {field: array}}, meta)`` of a fold file; meta has class_names, modalities, args."""
    z = load_npz(path)
    sets = {s: {k: z[f"{s}_{k}"] for k in FIELDS} for s in z["splits"].tolist()}
    meta = {"class_names": z["class_names"].tolist(), "modalities": z["modalities"].tolist(),
            "args": json.loads(str(z["args_json"]))}
    return sets, meta
