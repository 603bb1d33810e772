"""Seeded, stratified K-fold split of the train split (MERBench's CV, made reproducible)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from prmf.data.store import FeatureStore


def make_folds(store: FeatureStore, n_folds: int = 5, seed: int = 0) -> dict:
    """Stratify the train split by emotion into ``n_folds`` folds.

    Returns a JSON-ready dict: ``{"n_folds", "seed", "store_hash", "folds": [{"fold", "train",
    "val"}]}`` with sample *names* (not row indices), so folds stay valid if the store is
    rewritten in another order.
    """
    from sklearn.model_selection import StratifiedKFold  # lazy: ~1.5 s import, not needed to read folds

    idx = store.indices("train")
    labels = store.labels[idx]
    smallest = int(np.bincount(labels).min(initial=0)) if len(labels) else 0
    present = np.bincount(labels)[np.bincount(labels) > 0]
    if len(present) and present.min() < n_folds:
        raise ValueError(
            f"cv.folds={n_folds} but the rarest emotion in train has only {int(present.min())} "
            f"sample(s); lower cv.folds or add data (smallest count {smallest})"
        )
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    names = store.names[idx]
    folds = []
    for k, (tr, va) in enumerate(skf.split(np.zeros(len(idx)), labels)):
        folds.append({"fold": k, "train": sorted(map(str, names[tr])), "val": sorted(map(str, names[va]))})
    return {"n_folds": n_folds, "seed": seed, "store_hash": store.content_hash, "folds": folds}


def write_folds(path: str | Path, folds: dict) -> None:
    """Write ``folds.json`` atomically (raises :class:`prmf.atomic.OutputError`)."""
    from prmf.atomic import write_text

    write_text(path, json.dumps(folds, indent=1) + "\n")


def read_folds(path: str | Path) -> dict:
    """Read ``folds.json``; ``ValueError`` naming the file when it is not one."""
    try:
        folds = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a folds file (invalid JSON: {err}); delete it and run Snakemake again "
                         "(the make_folds rule rebuilds it; outside Snakemake: `prmf folds`)") from err
    if not isinstance(folds, dict) or not isinstance(folds.get("folds"), list):
        raise ValueError(f"{path}: not a folds file (no 'folds' list); delete it and run Snakemake again "
                         "(the make_folds rule rebuilds it; outside Snakemake: `prmf folds`)")
    return folds
