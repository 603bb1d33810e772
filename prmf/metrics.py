"""Emotion and valence metrics (MERBench's), with unknown valence ignored.

- ``f1``: weighted F1 over the emotion classes (scikit-learn's ``average="weighted"``,
  ``zero_division=0``; computed here from a confusion matrix with numpy because
  importing scikit-learn costs ~1.3 s in every training job — the unit tests check
  equality with ``sklearn.metrics.f1_score``)
- ``acc``: accuracy
- ``val_mse``: mean squared error of valence over samples whose label is known
  (finite); ``None`` when a set has no valence labels (MER2023's test3), never
  an MSE against a placeholder.

Diagnostics of the robustness evaluation (:mod:`prmf.robustness`):

- ``ece``: expected calibration error of class probabilities
  (:func:`expected_calibration_error`)
- :func:`auroc` of a score for positives vs negatives, :func:`spearman` rank
  correlation (scikit-learn / SciPy, imported when called)
"""

from __future__ import annotations

from collections.abc import Sequence

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


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Standard ECE (Guo et al. 2017) of class probabilities ``[N, C]``; NaN for no samples.

    Confidence = max probability, prediction = its class; ``n_bins`` equal-width
    bins ``(i/B, (i+1)/B]`` (the first also takes 0); ECE = ``sum_b |B_b| / N *
    |acc(B_b) - conf(B_b)|``.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        sel = bins == b
        ece += sel.sum() / len(labels) * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """AUROC of a score for positives vs negatives (``sklearn.metrics.roc_auc_score``); NaN if a side is empty."""
    from sklearn.metrics import roc_auc_score

    negatives, positives = np.asarray(negatives, float).ravel(), np.asarray(positives, float).ravel()
    if len(negatives) == 0 or len(positives) == 0:
        return float("nan")
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (``scipy.stats.spearmanr``); NaN if undefined (constant or < 2 finite points)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)
