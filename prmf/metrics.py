"""Emotion and valence metrics (MERBench's), with unknown valence ignored.

- ``f1``: weighted F1 over the emotion classes (scikit-learn's ``average="weighted"``,
  ``zero_division=0``; computed here from a confusion matrix with numpy because
  importing scikit-learn costs ~1.3 s in every training job — the unit tests check
  equality with ``sklearn.metrics.f1_score``)
- ``acc``: accuracy
- ``val_mse``: mean squared error of valence over samples whose label is known
  (finite); ``None`` when a set has no valence labels (MER2023's test3), never
  an MSE against a placeholder.
"""

from __future__ import annotations

import numpy as np


def weighted_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """Support-weighted mean of per-class F1 over the classes present in ``labels`` or ``pred``.

    Identical to ``sklearn.metrics.f1_score(labels, pred, average="weighted", zero_division=0)``.
    """
    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 0.0
    classes, inv = np.unique(np.concatenate([labels, pred]), return_inverse=True)
    k = len(classes)
    y, p = inv[: len(labels)], inv[len(labels):]
    tp = np.bincount(y[y == p], minlength=k).astype(float)
    support = np.bincount(y, minlength=k).astype(float)
    predicted = np.bincount(p, minlength=k).astype(float)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def valence_mse(pred: np.ndarray, true: np.ndarray) -> float | None:
    """MSE over samples with a finite valence label; ``None`` if there are none."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    known = np.isfinite(true)
    if not known.any():
        return None
    return float(np.mean((pred[known] - true[known]) ** 2))


def emotion_metrics(pred: np.ndarray, labels: np.ndarray, val_pred=None, val_true=None) -> dict:
    """``{"f1", "acc", "val_mse", "n"}`` for predicted vs true class indices ``[N]``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    out = {
        "f1": weighted_f1(pred, labels),
        "acc": float(np.mean(pred == labels)) if len(labels) else 0.0,
        "val_mse": None,
        "n": int(len(labels)),
    }
    if val_pred is not None and val_true is not None:
        out["val_mse"] = valence_mse(val_pred, val_true)
    return out


def selection_score(metrics: dict, valence_weight: float = 0.25) -> float:
    """MERBench's model-selection score: ``f1 - w * val_mse`` (F1 alone without valence)."""
    if metrics.get("val_mse") is None:
        return float(metrics["f1"])
    return float(metrics["f1"] - valence_weight * metrics["val_mse"])
