"""Tests of prmf.health (fold health) and of the run health in prmf.aggregate, with hand-computed numbers."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from prmf.aggregate import aggregate_run, run_health
from prmf.health import DEFAULT_MARGIN, assess_fold, health_line, majority_rate
from prmf.predictions import write_predictions

# 8 labels over 6 classes: counts 3, 1, 2, 2, 0, 0 -> majority rate 3/8 = 0.375
LABELS = np.array([0, 0, 0, 1, 2, 2, 3, 3])


def _labels(majority: int, n: int) -> np.ndarray:
    """``[n]`` labels: ``majority`` of class 0, the rest spread over classes 1..5 (each fewer than ``majority``)."""
    rest = np.arange(n - majority) % 5 + 1
    labels = np.concatenate([np.zeros(majority, dtype=np.int64), rest])
    assert np.bincount(labels).max() == majority
    return labels


# --------------------------------------------------------------------------- majority rate


def test_majority_rate_by_hand() -> None:
    assert majority_rate(LABELS, 6) == 0.375
    assert majority_rate(np.array([4]), 6) == 1.0
    assert majority_rate(np.array([1, 2, 1, 2]), 3) == 0.5  # a tie: still the top count
    assert majority_rate(_labels(7, 20), 6) == 0.35


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([], dtype=np.int64), "no validation labels: the majority-class rate is undefined"),
    (np.array([0, 6]), r"labels outside \[0, 6\): min 0, max 6$"),
    (np.array([-1, 0]), r"labels outside \[0, 6\): min -1, max 0$"),
    (np.array([[0, 1]]), r"labels must be a 1-D array \[N\], got shape \(1, 2\)"),
    (np.array([0.0, 1.0]), "labels must be integer class indices, got dtype float64"),
])
def test_majority_rate_rejects_bad_labels(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        majority_rate(labels, 6)


# --------------------------------------------------------------------------- assess_fold


def test_healthy_fold() -> None:
    health = assess_fold(LABELS, 0.812, [1.9, 1.2, 0.8], n_classes=6)
    assert health == {"collapsed": False, "reasons": [], "majority_rate": 0.375, "best_val_acc": 0.812,
                      "margin": DEFAULT_MARGIN}
    assert DEFAULT_MARGIN == 0.05
    json.dumps(health, allow_nan=False)  # JSON-ready


def test_collapsed_below_majority() -> None:
    # 0.262 <= 0.375 + 0.05 = 0.425
    health = assess_fold(LABELS, 0.262, [1.8, 1.79], n_classes=6)
    assert health["collapsed"] is True
    assert health["reasons"] == ["best val acc 0.262 <= majority-class rate 0.375 + 0.05"]


@pytest.mark.parametrize(
    ("majority", "n", "correct", "collapsed"),
    [
        (5, 20, 6, True),   # 0.30 == 0.25 + 0.05: at the threshold -> collapsed
        (5, 20, 7, False),  # 0.35 > 0.30 -> healthy
        (7, 20, 8, True),   # 0.40 == 0.35 + 0.05, although 0.35 + 0.05 == 0.39999999999999997 in floats
        (7, 20, 9, False),  # 0.45 > 0.40
    ],
)
def test_borderline_at_threshold(majority: int, n: int, correct: int, collapsed: bool) -> None:
    health = assess_fold(_labels(majority, n), correct / n, [1.0], n_classes=6)
    assert health["majority_rate"] == majority / n
    assert health["collapsed"] is collapsed


def test_margin_argument() -> None:
    # majority 0.375: 0.45 is healthy with margin 0.05 (threshold 0.425), collapsed with 0.10 (0.475)
    assert assess_fold(LABELS, 0.45, [], 6)["collapsed"] is False
    health = assess_fold(LABELS, 0.45, [], 6, margin=0.1)
    assert health["collapsed"] is True and health["margin"] == 0.1
    assert health["reasons"] == ["best val acc 0.450 <= majority-class rate 0.375 + 0.1"]
    assert assess_fold(LABELS, 0.376, [], 6, margin=0.0)["collapsed"] is False
    assert assess_fold(LABELS, 0.375, [], 6, margin=0.0)["collapsed"] is True
    with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got -0.01"):
        assess_fold(LABELS, 0.9, [], 6, margin=-0.01)
    with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got 1.0"):
        assess_fold(LABELS, 0.9, [], 6, margin=1.0)


def test_nan_loss() -> None:
    losses = [1.9, 1.5, 1.2, 1.0, 0.9, 0.8, math.nan, 0.7]
    health = assess_fold(LABELS, 0.812, losses, n_classes=6)
    assert health["collapsed"] is True
    assert health["reasons"] == ["non-finite training loss at epoch 7"]  # 1-based, as in the training log


def test_inf_losses_and_low_accuracy_give_both_reasons() -> None:
    losses = [1.9, math.inf, np.float32("nan"), -math.inf, None]  # None: not recorded, skipped
    health = assess_fold(LABELS, 0.18, losses, n_classes=6)
    assert health["reasons"] == [
        "best val acc 0.180 <= majority-class rate 0.375 + 0.05",
        "non-finite training loss at epoch 2 (3 of 5 epochs)",
    ]
    assert assess_fold(LABELS, 0.9, [1.0, None], 6)["collapsed"] is False


def test_nan_accuracy_is_collapsed_and_json_safe() -> None:
    health = assess_fold(LABELS, math.nan, [1.0], 6)
    assert health["collapsed"] is True and health["best_val_acc"] is None
    assert health["reasons"] == ["best val acc is nan"]
    json.dumps(health, allow_nan=False)


# --------------------------------------------------------------------------- health_line


def test_health_line() -> None:
    labels = _labels(258, 1000)  # majority 0.258
    healthy = assess_fold(labels, 0.812, [1.0], 6)
    assert health_line("exp4", 0, 3, healthy) == "fold 3 of exp4 seed 0 healthy: best val acc 0.812 (majority 0.258)"
    collapsed = assess_fold(labels, 0.262, [1.0, math.nan], 6)
    assert health_line("exp4", 0, 3, collapsed) == (
        "fold 3 of exp4 seed 0 COLLAPSED: best val acc 0.262 <= majority-class rate 0.258 + 0.05; "
        "non-finite training loss at epoch 2"
    )


# --------------------------------------------------------------------------- run health (aggregate)


def _info(fold: int, health: dict | None, best_epoch: int = 4, epochs_run: int = 10) -> dict:
    info = {"arm": "exp4", "seed": 0, "fold": fold, "best_epoch": best_epoch, "epochs_run": epochs_run,
            "seconds": 1.0, "metrics": {}}
    return info | ({"health": health} if health is not None else {})


def test_run_health() -> None:
    bad = assess_fold(LABELS, 0.2, [1.0], 6)
    good = assess_fold(LABELS, 0.8, [1.0], 6)
    infos = [_info(0, good, 9, 15), _info(1, bad, 0, 6), _info(2, None, 3, 9), _info(3, bad, 1, 7)]
    assert run_health(infos) == {
        "folds": 4,
        "collapsed_folds": [1, 3],
        "n_collapsed": 2,
        "unknown_folds": [2],
        "collapsed_reasons": [bad["reasons"], bad["reasons"]],
        "best_epochs": [9, 0, 3, 1],
        "epochs_run": [15, 6, 9, 7],
    }
    assert run_health([_info(0, good), _info(1, good)])["collapsed_folds"] == []


def _fold_files(tmp: Path, healths: list[dict | None]) -> tuple[list[Path], list[Path]]:
    """Two-class fold files: fold k validates samples v{2k}, v{2k+1}; every fold predicts test1 (t0, t1)."""
    preds, metrics = [], []
    for fold, health in enumerate(healths):
        def pred(names: list[str], labels: list[int], logits: list[list[float]]) -> SimpleNamespace:
            n = len(names)
            return SimpleNamespace(names=np.array(names), labels=np.array(labels), logits=np.array(logits),
                                   valence_true=np.zeros(n), valence=np.zeros(n),
                                   fusion_weights=np.full((n, 1), np.nan), uncertainty=np.full((n, 1), np.nan))

        sets = {"val": pred([f"v{2 * fold}", f"v{2 * fold + 1}"], [0, 1], [[2.0, 0.0], [0.0, 1.0]]),
                "test1": pred(["t0", "t1"], [0, 1], [[1.0, 0.0], [0.0, 1.0]])}
        path = tmp / f"fold{fold}" / "predictions.npz"
        write_predictions(path, sets, ["neutral", "happy"], ["audio"], {"fold": fold})
        info = _info(fold, health, best_epoch=fold, epochs_run=5 + fold)
        info["metrics"] = {"val": {"f1": 1.0, "acc": 1.0, "val_mse": 0.0, "n": 2},
                           "test1": {"f1": 1.0, "acc": 1.0, "val_mse": 0.0, "n": 2}}
        (tmp / f"fold{fold}" / "metrics.json").write_text(json.dumps(info))
        preds.append(path)
        metrics.append(tmp / f"fold{fold}" / "metrics.json")
    return preds, metrics


ARM = {"arm": "exp4", "export_name": "attention_robust_v2", "display_name": "P-RMF", "model": "prmf"}


def test_aggregate_run_writes_health(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = assess_fold(np.array([0, 1]), 0.5, [0.7, math.nan], 2)
    good = assess_fold(np.array([0, 1]), 1.0, [0.7, 0.5], 2)
    preds, metrics = _fold_files(tmp_path, [good, bad, None])
    with caplog.at_level(logging.WARNING, logger="prmf.aggregate"):
        summary = aggregate_run(preds, metrics, ARM, 0, "synthetic", ["a"], tmp_path / "summary.json",
                                tmp_path / "run", tmp_path / "exports", timestamp=1.0)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["health"] == {
        "folds": 3, "collapsed_folds": [1], "n_collapsed": 1, "unknown_folds": [2],
        "collapsed_reasons": [["best val acc 0.500 <= majority-class rate 0.500 + 0.05",
                               "non-finite training loss at epoch 2"]],
        "best_epochs": [0, 1, 2], "epochs_run": [5, 6, 7],
    }
    # the rest of the summary is untouched
    assert summary["epochs_run"] == [5, 6, 7]
    assert [row["best_epoch"] for row in summary["per_fold"]["cv"]] == [0, 1, 2]
    assert summary["metrics"]["cv"]["acc"] == 1.0 and summary["metrics"]["test1"]["acc"] == 1.0
    assert [r.getMessage() for r in caplog.records] == [
        "fold 1 of exp4 seed 0 COLLAPSED: best val acc 0.500 <= majority-class rate 0.500 + 0.05; "
        "non-finite training loss at epoch 2"
    ]


def test_aggregate_run_old_metrics_without_health(tmp_path: Path) -> None:
    preds, metrics = _fold_files(tmp_path, [None, None])
    summary = aggregate_run(preds, metrics, ARM, 1, "synthetic", ["a"], tmp_path / "summary.json",
                            tmp_path / "run", tmp_path / "exports", timestamp=1.0)
    assert summary["health"] == {"folds": 2, "collapsed_folds": [], "n_collapsed": 0, "unknown_folds": [0, 1],
                                 "collapsed_reasons": [], "best_epochs": [0, 1], "epochs_run": [5, 6]}
