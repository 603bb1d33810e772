"""Fold health: did a cross-validation fold learn anything at all?

On real data with badly scaled features some folds of some arms never learn:
their best validation accuracy stays near (or below) what always predicting
the most frequent class would give, and their best epoch comes early. Means
over folds and seeds hide this, so each fold is assessed once, after
training, and the verdict travels with it (``metrics.json`` -> ``"health"``,
then ``summary.json`` -> ``"health"``, then a marker in the tables).

A fold is **collapsed** when

1. its best validation accuracy is not above the majority-class rate of its
   validation part plus a margin (``best_val_acc <= majority_rate + margin``,
   compared with a tolerance of :data:`THRESHOLD_TOL` so that a value exactly
   at the threshold, such as ``0.30`` for ``0.25 + 0.05``, counts as collapsed
   whatever the float rounding), or
2. any recorded training loss of its history is non-finite (NaN or ±inf).

Epochs in the reason texts are 1-based, as in the training log
(``epoch   7/100 ...``); ``metrics.json``'s ``best_epoch`` stays 0-based.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_MARGIN = 0.05
"""Default accuracy margin above the majority-class rate (a fraction, 5 points).

Why 0.05: a model that learned nothing scores about the majority-class rate
(always the majority class) or less (one other class, or noise); it exceeds
that rate only by chance. The standard error of an accuracy near ``p`` over
``N`` validation samples is ``sqrt(p (1 - p) / N)``: about 0.017 for a
MER2023 fold (``N`` ≈ 675, ``p`` ≈ 0.26), so 0.05 is ≈ 3 standard errors and
a chance excess above it is unlikely. Healthy folds of this study are tens of
points above the majority rate, so 0.05 does not flag a weak but learning
model. Folds that learned a little (e.g. 0.45 against a 0.26 majority rate)
are *not* flagged by this margin; raise it to catch those too.
"""

THRESHOLD_TOL = 1e-9
"""Absolute tolerance of the threshold comparison (accuracies are ``k / N`` fractions)."""


def majority_rate(labels: np.ndarray, n_classes: int) -> float:
    """Share of the most frequent class in ``labels``.

    Args:
        labels: ``[N]`` int class indices in ``[0, n_classes)``, ``N >= 1``.
        n_classes: number of emotion classes.

    Returns:
        ``max_c count(labels == c) / N``, a fraction in ``(0, 1]``.

    Raises:
        ValueError: for an empty array, a non-1-D array or labels outside
            ``[0, n_classes)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array [N], got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("no validation labels: the majority-class rate is undefined")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels outside [0, {n_classes}): min {labels.min()}, max {labels.max()}")
    counts = np.bincount(labels.astype(np.int64), minlength=n_classes)
    return float(counts.max() / labels.size)


def assess_fold(
    val_labels: np.ndarray,
    best_val_acc: float,
    history_losses: Sequence[float | None],
    n_classes: int,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any]:
    """The health of one trained fold (see the module docstring for the rule).

    Args:
        val_labels: ``[N]`` int class indices of the fold's validation part.
        best_val_acc: the fold's best validation accuracy (the highest
            ``val_acc`` over its epochs, or that of the kept model), a
            fraction in ``[0, 1]``.
        history_losses: ``[E]`` training loss of each epoch run, in epoch
            order (``train_loss`` of the history rows); ``None`` entries (not
            recorded) are skipped.
        n_classes: number of emotion classes (``len(class_names)``).
        margin: accuracy margin (fraction) above the majority-class rate,
            default :data:`DEFAULT_MARGIN`.

    Returns:
        JSON-ready dict: ``collapsed`` (bool), ``reasons`` (list of str, empty
        when healthy), ``majority_rate`` (float), ``best_val_acc`` (float, or
        ``None`` when it was not finite) and ``margin`` (float).

    Raises:
        ValueError: for bad ``val_labels`` (see :func:`majority_rate`) or a
            margin outside ``[0, 1)``.
    """
    if not 0.0 <= float(margin) < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    margin = float(margin)
    majority = majority_rate(val_labels, n_classes)
    acc = float(best_val_acc)
    reasons: list[str] = []
    if not math.isfinite(acc):
        reasons.append(f"best val acc is {acc}")
    elif acc <= majority + margin + THRESHOLD_TOL:
        reasons.append(f"best val acc {acc:.3f} <= majority-class rate {majority:.3f} + {margin:g}")
    bad = [epoch for epoch, loss in enumerate(history_losses, start=1)
           if loss is not None and not math.isfinite(float(loss))]
    if bad:
        more = f" ({len(bad)} of {len(history_losses)} epochs)" if len(bad) > 1 else ""
        reasons.append(f"non-finite training loss at epoch {bad[0]}{more}")
    return {
        "collapsed": bool(reasons),
        "reasons": reasons,
        "majority_rate": majority,
        "best_val_acc": acc if math.isfinite(acc) else None,
        "margin": margin,
    }


def health_line(arm: str, seed: int, fold: int, health: Mapping[str, Any]) -> str:
    """One log line for a fold's :func:`assess_fold` result.

    ``"fold 3 of exp4 seed 0 COLLAPSED: best val acc 0.262 <= majority-class rate 0.258 + 0.05"``
    (several reasons joined by ``"; "``) or
    ``"fold 3 of exp4 seed 0 healthy: best val acc 0.812 (majority 0.258)"``.
    """
    where = f"fold {fold} of {arm} seed {seed}"
    if health.get("collapsed"):
        return f"{where} COLLAPSED: {'; '.join(health.get('reasons') or ['(no reason given)'])}"
    acc = health.get("best_val_acc")
    acc_text = "?" if acc is None else f"{acc:.3f}"
    return f"{where} healthy: best val acc {acc_text} (majority {health['majority_rate']:.3f})"
