"""Metrics of every robustness condition of one arm x seed (see :mod:`prmf.robustness` for the protocol)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from prmf.metrics import auroc, emotion_metrics, expected_calibration_error, spearman
from prmf.predictions import softmax
from prmf.robustness.conditions import (
    MISSING_MEAN,
    NOISE_MEAN,
    SUBSET_MEAN_INCOMPLETE,
    missing_condition,
    noise_condition,
    plan_draws,
    subset_condition,
    subsets,
)
from prmf.robustness.config import RobustnessConfig
from prmf.robustness.inference import Outputs, Population, load_fold_models, populations, predict_draws
from prmf.robustness.io import COLUMNS

log = logging.getLogger(__name__)

#: metrics a summary condition (a mean over conditions) reports
_SUMMARY_METRICS = ("acc", "f1", "val_mse")

Metrics = dict[str, float]


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column mean of ``values`` ``[N, M]`` over rows where ``mask``; NaN where none."""
    with np.errstate(invalid="ignore"):
        s = np.where(mask, values, 0.0).sum(0)
        c = mask.sum(0)
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _emotion(out: Outputs, labels: np.ndarray, valence_true: np.ndarray) -> Metrics:
    m = emotion_metrics(out.logits.argmax(1), labels, out.valence, valence_true)
    res = {"acc": m["acc"], "f1": m["f1"]}
    if m["val_mse"] is not None:
        res["val_mse"] = m["val_mse"]
    return res


def _diag(out: Outputs, modalities: Sequence[str]) -> Metrics:
    res: Metrics = {}
    if np.isfinite(out.weights).any():
        for mod, v in zip(modalities, _masked_mean(out.weights, out.present)):
            res[f"weight:{mod}"] = float(v)
    if np.isfinite(out.uncertainty).any():
        for mod, v in zip(modalities, _masked_mean(out.uncertainty, out.present)):
            res[f"uncertainty:{mod}"] = float(v)
    return res


def _mean_dicts(ds: list[Metrics]) -> Metrics:
    """Per key (present in every dict) the mean over the dicts, NaNs ignored (NaN when all are NaN)."""
    keys = [k for k in ds[0] if all(k in d for d in ds)]
    return {k: float(np.nanmean([d[k] for d in ds])) if any(np.isfinite(d[k]) for d in ds) else float("nan")
            for k in keys}


def _keep(d: Mapping[str, float], keys: Sequence[str]) -> Metrics:
    return {k: v for k, v in d.items() if k in keys}


def evaluate_population(pop: Population, store, cfg: RobustnessConfig) -> dict[str, Metrics]:
    """Every condition on one split: condition name -> metric -> value, in the TSV's order.

    Each condition's outputs are looked up by its name in the predictions of
    :func:`~prmf.robustness.conditions.plan_draws`' plan; a planned condition
    left unscored is an error.
    """
    mods = store.modalities
    m, n = len(mods), len(pop.rows)
    labels = store.labels[pop.rows].astype(np.int64)
    vtrue = store.valence[pop.rows].astype(np.float32)
    outputs = predict_draws(pop, store, cfg, plan_draws(mods, pop.available, cfg, pop.split))
    results: dict[str, Metrics] = {}

    def scores(out: Outputs) -> Metrics:
        return {**_emotion(out, labels, vtrue), **_diag(out, mods)}

    # 1. subsets; the complete one is the clean condition
    clean_name = subset_condition(mods)
    (clean,) = outputs[clean_name]
    for subset in subsets(mods):
        name = subset_condition(subset)
        (out,) = outputs[name]
        results[name] = {**scores(out), "n": n}
    results[clean_name]["ece"] = expected_calibration_error(softmax(clean.logits.astype(np.float64)), labels,
                                                            cfg.ece_bins)
    incomplete = [results[subset_condition(s)] for s in subsets(mods) if len(s) < m]
    if incomplete:
        results[SUBSET_MEAN_INCOMPLETE] = _keep(_mean_dicts(incomplete), _SUMMARY_METRICS)

    # 2. random missing rate: mean over the masks of each rate
    curve = []
    for rate in cfg.missing_rates:
        vals = _mean_dicts([{**scores(out), "missing_fraction": float(1.0 - out.present.mean())}
                            for out in outputs[missing_condition(rate)]])
        curve.append(vals)
        results[missing_condition(rate)] = {**vals, "n": n}
    if curve:
        results[MISSING_MEAN] = _keep(_mean_dicts(curve), _SUMMARY_METRICS)

    # 3. feature noise, with 4. the uncertainty diagnostics
    has_u = bool(np.isfinite(clean.uncertainty).any())
    clean_diag = _diag(clean, mods)
    all_noise = []
    for j, mod in enumerate(mods):
        levels = []
        for snr in cfg.snr_db:
            draws = []
            for out in outputs[noise_condition(mod, snr)]:
                vals = scores(out)
                if has_u:
                    sel = out.present[:, j]
                    vals["auroc_uncertainty"] = auroc(clean.uncertainty[sel, j], out.uncertainty[sel, j])
                draws.append(vals)
            vals = _mean_dicts(draws)
            levels.append(vals)
            results[noise_condition(mod, snr)] = {**vals, "n": n}
        if not levels:
            continue
        all_noise.extend(levels)
        summary = _keep(_mean_dicts(levels), (*_SUMMARY_METRICS, "auroc_uncertainty"))
        if has_u:
            key = f"uncertainty:{mod}"
            order = np.argsort(-np.asarray(cfg.snr_db), kind="stable")  # little noise first
            y = [clean_diag[key]] + [levels[i][key] for i in order]
            summary["spearman_uncertainty"] = spearman(np.arange(len(y)), y)
        results[noise_condition(mod)] = summary
    if all_noise:
        results[NOISE_MEAN] = _keep(_mean_dicts(all_noise), _SUMMARY_METRICS)
    unscored = [name for name in outputs if name not in results]
    if unscored:  # a condition added to plan_draws must be scored here too
        raise RuntimeError(f"robustness conditions predicted but not scored: {unscored}")
    return results


def evaluate_robustness(store, folds: Mapping, model_paths: Sequence[str | Path], arm: Mapping, seed: int,
                        cfg: RobustnessConfig | Mapping | None = None, device: str = "cpu", threads: int = 1,
                        progress: Callable[[str], None] | None = None):
    """Evaluate one arm x seed (its fold models) on every condition; returns the long DataFrame (:data:`COLUMNS`)."""
    import pandas as pd
    import torch

    from prmf.train import resolve_device

    say = progress or log.info
    cfg = RobustnessConfig.coerce(cfg)
    t0 = time.perf_counter()
    torch.set_num_threads(int(threads))
    dev = resolve_device(device, warn=say)
    models = load_fold_models(model_paths, arm, store, dev)
    rows = []
    with torch.inference_mode():
        for pop in populations(store, folds, models, cfg.splits, dev):
            ts = time.perf_counter()
            results = evaluate_population(pop, store, cfg)
            rows += [(pop.split, cond, metric, float(value))
                     for cond, values in results.items() for metric, value in values.items()]
            say(f"{pop.split}: {len(pop.rows)} samples, {len(pop.units)} unit(s) x "
                f"{len(pop.units[0].models)} model(s) in {time.perf_counter() - ts:.2f}s")
    df = pd.DataFrame(rows, columns=list(COLUMNS[2:]))
    df.insert(0, "seed", int(seed))
    df.insert(0, "arm", str(arm["arm"]))
    say(f"{arm['arm']} seed {seed}: {len(df)} values in {time.perf_counter() - t0:.2f}s on {dev}")
    return df
