"""A real multi-view data set through the pipeline's own path, no downloads.

scikit-learn ships the UCI handwritten digits (``load_digits``: 8x8 images,
real measurements, not generated). Digits 0-5 stand in for the six emotion
classes, and each image is cut into three *views* of pixel rows, written as a
MERBench feature folder on scales that differ by orders of magnitude (as
hubert, LLM and CLIP features do on MER2023), with a few of MERBench's
all-zero "absent" rows. The test runs ``prepare_dataset -> make_folds ->
train_fold`` for two of the study's arms with per-fold z-scores and checks
that the fold ensemble reaches an accuracy far above chance on the held-out
test split. Nothing here is tuned to this data: the arms take the default
study's settings (config/config.yaml), only the epoch budget is shorter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prmf.config import PACKAGE_ROOT, load_config, resolve_arm
from prmf.data.folds import make_folds
from prmf.data.prepare import prepare_dataset
from prmf.data.store import EMOTIONS, read_store
from prmf.train import train_fold

#: pixel rows of each view and the scale it is written on
VIEWS = {"audio": (slice(0, 3), 0.01), "text": (slice(3, 6), 100.0), "video": (slice(6, 8), 1.0)}
FEATURES = {"audio": "digits-rows0-2-UTT", "text": "digits-rows3-5-UTT", "video": "digits-rows6-7-UTT"}
CHANCE = 1.0 / 6


def write_digits_as_merbench(root: Path, seed: int = 0) -> Path:
    """Digits 0-5 as a MERBench folder: label-6way.npz + features/<view>/<sample>.npy."""
    from sklearn.datasets import load_digits

    images, target = load_digits(return_X_y=True)
    keep = target < 6
    images, target = images[keep].reshape(-1, 8, 8), target[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(target))
    n = len(order)
    bounds = {"train": (0, int(0.6 * n)), "test1": (int(0.6 * n), int(0.75 * n)),
              "test2": (int(0.75 * n), int(0.85 * n)), "test3": (int(0.85 * n), n)}
    for feat in FEATURES.values():
        (root / "features" / feat).mkdir(parents=True, exist_ok=True)
    corpora = {}
    for split, (lo, hi) in bounds.items():
        corpus = {}
        for k, i in enumerate(order[lo:hi]):
            name = f"digit_{i:05d}"
            corpus[name] = {"emo": EMOTIONS[int(target[i])], "val": -10.0}  # no valence: MERBench's -10
            for m, (rows, scale) in VIEWS.items():
                x = images[i, rows].reshape(-1).astype(np.float32) * scale
                if (m == "video" and k % 25 == 3) or (m == "text" and k % 40 == 7):
                    x = np.zeros_like(x)  # MERBench's absent vector
                np.save(root / "features" / FEATURES[m] / f"{name}.npy", x)
        corpora[f"{split}_corpus"] = corpus
    np.savez(root / "label-6way.npz", **{k: np.array(v, dtype=object) for k, v in corpora.items()})
    return root


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    root = write_digits_as_merbench(tmp / "digits-merbench")
    dataset = {"name": "digits", "source": "merbench", "root": str(root), "modalities": ["audio", "text", "video"],
               "features": FEATURES, "frame_level": [], "max_frames": None, "zero_rows": "missing"}
    prepare_dataset(dataset, tmp / "features.h5", workers=1)
    return read_store(tmp / "features.h5")


@pytest.mark.parametrize("arm_name", ["baseline", "exp4"])
def test_real_digits_reach_far_above_chance(digits_store, arm_name, capsys):
    store = digits_store
    assert store.missing["video"].sum() > 0 and store.missing["text"].sum() > 0
    cfg = load_config(PACKAGE_ROOT / "config" / "config.yaml")
    arm = {**resolve_arm(cfg, arm_name), "epochs": 25, "early_stop": 8, "standardize": "zscore"}
    folds = make_folds(store, 2, 0)
    logits = []
    for fold in range(2):
        res = train_fold(store, folds, fold, arm, seed=0, device="cpu")
        assert not res.health["collapsed"], res.health
        logits.append(res.predictions["test1"].logits)
        labels = res.predictions["test1"].labels
    acc = float((np.mean(logits, axis=0).argmax(1) == labels).mean())
    with capsys.disabled():
        print(f"\n[real data] sklearn digits 0-5 as 3 views, {arm_name} + z-score, 2 folds: "
              f"test1 accuracy {acc:.3f} (chance {CHANCE:.3f}, n={len(labels)})")
    assert acc >= 0.85
