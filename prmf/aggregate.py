"""Combine the folds of one arm x seed run (MERBench's protocol).

- cv metrics = mean over folds of each fold's held-out metrics at its best epoch;
  the cv prediction file holds the out-of-fold predictions of all folds.
- test metrics = the fold models' logits averaged (valence, fusion weights and
  uncertainties averaged too), then argmax.
- fold health: ``summary.json``'s ``"health"`` collects the folds'
  :func:`prmf.health.assess_fold` verdicts (``metrics.json`` -> ``"health"``);
  see :func:`run_health`. Collapsed folds still count in every mean.

Writes ``summary.json``, ``predictions_{split}.npz`` and the MERBench-named
exports ``{split}_features:..._model:{export_name}+utt+None_f1:..._acc:..._val:..._{ts}.npz``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from prmf.atomic import write_text
from prmf.health import health_line
from prmf.metrics import emotion_metrics
from prmf.predictions import FIELDS, read_fold_predictions, softmax, write_split_predictions
from prmf.merbench_results import format_result_name, merbench_val_for_name

log = logging.getLogger(__name__)

TEST_SPLITS = ("test1", "test2", "test3")
METRIC_KEYS = ("f1", "acc", "val_mse")


def _mean_metrics(rows: list[dict]) -> dict:
    out = {}
    for k in METRIC_KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    out["n"] = int(sum(r.get("n", 0) for r in rows))
    return out


def _ensemble(sets: list[dict[str, np.ndarray]], split: str, paths: Sequence) -> dict[str, np.ndarray]:
    ref = sets[0]["names"]
    for s, p in zip(sets, paths):
        if not np.array_equal(s["names"], ref):
            raise ValueError(f"{p}: {split} sample order differs from {paths[0]}; the folds were trained on "
                             "different feature stores — rerun the study")
    logits = np.mean([s["logits"] for s in sets], axis=0)
    out = {
        "names": ref, "labels": sets[0]["labels"], "valence_true": sets[0]["valence_true"],
        "logits": logits.astype(np.float32),
        "probs": softmax(logits.astype(np.float64)).astype(np.float32),
        "pred": logits.argmax(1).astype(np.int64),
    }
    for k in ("valence", "fusion_weights", "uncertainty"):
        out[k] = np.mean([s[k] for s in sets], axis=0).astype(np.float32)
    return out


def _metrics_of(arrays: dict[str, np.ndarray]) -> dict:
    return emotion_metrics(arrays["pred"], arrays["labels"], arrays["valence"], arrays["valence_true"])


def run_health(infos: Sequence[dict]) -> dict:
    """Fold health of one run from its folds' ``metrics.json`` dicts (in fold order).

    Returns ``{"folds": K, "collapsed_folds": [fold, ...], "n_collapsed": n,
    "unknown_folds": [fold, ...], "collapsed_reasons": [[reason, ...], ...],
    "best_epochs": [K], "epochs_run": [K]}``: fold indices are the folds'
    own ``"fold"`` values; ``collapsed_reasons`` is aligned with
    ``collapsed_folds``; ``best_epochs`` (0-based, as in ``metrics.json``) and
    ``epochs_run`` are aligned with the folds (``None`` where a fold lacks
    them). A fold whose ``metrics.json`` has no ``"health"`` dict (written
    before fold health existed) is unknown: listed in ``unknown_folds``,
    not counted as collapsed.
    """
    collapsed, reasons, unknown = [], [], []
    for info in infos:
        health = info.get("health")
        if not isinstance(health, dict) or "collapsed" not in health:
            unknown.append(info["fold"])
        elif health["collapsed"]:
            collapsed.append(info["fold"])
            reasons.append(list(health.get("reasons") or []))
    return {
        "folds": len(infos),
        "collapsed_folds": collapsed,
        "n_collapsed": len(collapsed),
        "unknown_folds": unknown,
        "collapsed_reasons": reasons,
        "best_epochs": [info.get("best_epoch") for info in infos],
        "epochs_run": [info.get("epochs_run") for info in infos],
    }


def aggregate_run(
    fold_predictions: Sequence[str | Path],
    fold_metrics: Sequence[str | Path],
    arm: dict,
    seed: int,
    dataset: str,
    feature_names: Sequence[str],
    summary_path: str | Path,
    split_dir: str | Path,
    export_dir: str | Path,
    timestamp: float | None = None,
) -> dict:
    """Aggregate one run; returns the summary dict (also written to ``summary_path``).

    Collapsed folds (see :func:`run_health`) are logged as warnings, one line each.
    """
    timestamp = time.time() if timestamp is None else timestamp
    loaded = [read_fold_predictions(p) for p in fold_predictions]
    infos = [json.loads(Path(p).read_text()) for p in fold_metrics]
    class_names, modalities = loaded[0][1]["class_names"], loaded[0][1]["modalities"]
    args = {"arm": arm, "seed": seed, "dataset": dataset, "n_folds": len(loaded),
            "folds": [str(p) for p in fold_predictions]}

    per_fold: dict[str, list[dict]] = {"cv": []}
    for info in infos:
        m = info["metrics"]["val"]
        per_fold["cv"].append({"fold": info["fold"], **{k: m.get(k) for k in (*METRIC_KEYS, "n")},
                               "best_epoch": info["best_epoch"]})
    metrics = {"cv": _mean_metrics(per_fold["cv"])}
    # cv file: out-of-fold predictions of all folds, sorted by name
    oof = {k: np.concatenate([s["val"][k] for s, _ in loaded]) for k in FIELDS}
    order = np.argsort(oof["names"], kind="stable")
    split_arrays = {"cv": {k: v[order] for k, v in oof.items()}}
    for split in TEST_SPLITS:
        if not all(split in s for s, _ in loaded):
            continue
        per_fold[split] = [{"fold": info["fold"], **{k: info["metrics"][split].get(k) for k in (*METRIC_KEYS, "n")}}
                           for info in infos]
        split_arrays[split] = _ensemble([s[split] for s, _ in loaded], split, fold_predictions)
        metrics[split] = _metrics_of(split_arrays[split])

    split_dir, export_dir = Path(split_dir), Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    exports = []
    for split, arrays in split_arrays.items():
        write_split_predictions(split_dir / f"predictions_{split}.npz", arrays, class_names, modalities,
                                {**args, "split": split})
        m = metrics[split]
        name = format_result_name(
            split, sorted(feature_names), arm["export_name"], m["f1"], m["acc"],
            merbench_val_for_name(arrays["valence"], arrays["valence_true"]), timestamp, dataset=dataset,
        )
        write_split_predictions(export_dir / name, arrays, class_names, modalities, {**args, "split": split})
        exports.append(name)

    health = run_health(infos)
    summary = {
        "dataset": dataset, "arm": arm["arm"], "seed": seed,
        "export_name": arm["export_name"], "display_name": arm["display_name"], "model": arm["model"],
        "switches": {k: bool(arm.get(k, False)) for k in ("use_vae", "use_proxy_attention", "use_modality_dropout")},
        "hyper": {k: v for k, v in arm.items() if k not in ("arm", "display_name", "export_name")},
        "n_folds": len(loaded),
        "metrics": metrics,
        "per_fold": per_fold,
        "exports": exports,
        "train_seconds": round(sum(i.get("seconds", 0.0) for i in infos), 3),
        "epochs_run": health["epochs_run"],
        "health": health,
    }
    for info in infos:
        if info["fold"] in health["collapsed_folds"]:
            log.warning(health_line(arm["arm"], seed, info["fold"], info["health"]))
    write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary
