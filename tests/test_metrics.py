"""Metrics against hand-computed values and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from prmf.metrics import emotion_metrics, selection_score, valence_mse, weighted_f1


def test_weighted_f1_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    # class 0: tp 2, support 3, predicted 2 -> F1 = 4/5; class 1: tp 1, s 2, p 2 -> 1/2;
    # class 2: tp 1, s 1, p 2 -> 2/3; weighted = (3*0.8 + 2*0.5 + 1*2/3) / 6
    assert weighted_f1(pred, labels) == pytest.approx((2.4 + 1.0 + 2 / 3) / 6)


def test_weighted_f1_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 6, 50)
        pred = np.where(rng.random(50) < 0.6, labels, rng.integers(0, 6, 50))
        pred[:3] = 7  # a class never in labels
        assert weighted_f1(pred, labels) == pytest.approx(
            f1_score(labels, pred, average="weighted", zero_division=0), abs=1e-12)


def test_emotion_metrics_and_missing_valence():
    labels, pred = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
    m = emotion_metrics(pred, labels, np.array([1.0, 2.0, 0.0, 0.0]), np.array([0.0, np.nan, 2.0, np.nan]))
    assert m["acc"] == accuracy_score(labels, pred) == 0.75
    assert m["val_mse"] == pytest.approx((1 + 4) / 2)  # NaN labels ignored
    assert m["n"] == 4
    assert emotion_metrics(pred, labels, np.zeros(4), np.full(4, np.nan))["val_mse"] is None


def test_valence_mse_none_without_labels():
    assert valence_mse(np.zeros(3), np.full(3, np.nan)) is None
    assert valence_mse(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(5.0)


def test_selection_score():
    assert selection_score({"f1": 0.8, "val_mse": 0.4}) == pytest.approx(0.7)
    assert selection_score({"f1": 0.8, "val_mse": None}) == pytest.approx(0.8)
    assert selection_score({"f1": 0.8, "val_mse": 0.4}, 0.5) == pytest.approx(0.6)
