"""Inference of the robustness protocol: fold models, the populations they predict, stacked passes of draws.

A *population* is the set of samples of one evaluated split in store order:
a test split is predicted by every fold model (their outputs averaged: the
fold ensemble), ``cv`` by *units*, each fold's model on its own validation
part. :func:`predict_draws` predicts every draw of every condition of a
population, stacking draws into one batch per model, and returns the outputs
under the same condition names as the plan it was given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from prmf.robustness.conditions import Draw, noise_rng
from prmf.robustness.config import RobustnessConfig
from prmf.robustness.perturb import add_noise

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """Predictions of one draw over a population (store order); NaN weights/uncertainties where a model has none."""

    logits: np.ndarray
    valence: np.ndarray
    weights: np.ndarray
    uncertainty: np.ndarray
    present: np.ndarray


@dataclass
class Unit:
    """Fold models and the population positions they predict (their outputs averaged)."""

    models: list
    positions: np.ndarray
    data: Any  # prmf.train.TensorSet


@dataclass
class Population:
    """The samples of one evaluated split and the units that predict them."""

    split: str
    rows: np.ndarray  # store rows
    available: np.ndarray  # [N, M] store present flags
    units: list[Unit] = field(default_factory=list)


def load_fold_models(model_paths: Sequence[str | Path], arm: Mapping, store, device) -> list:
    """Build the arm's model once per fold and load its weights (eval mode)."""
    import torch

    from prmf.models import build_model

    dims = list(store.dims().values())
    frame = list(store.frame_level().values())
    models = []
    for path in model_paths:
        model = build_model(arm, dims, len(store.class_names), frame_level=frame).to(device)
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        model.eval()
        models.append(model)
    return models


def populations(store, folds: Mapping, models: list, splits: Sequence[str], device) -> list[Population]:
    """One population per split of ``splits`` that has samples (``cv``: the folds' validation parts, pooled)."""
    from prmf.train import tensor_set

    pops = []
    for split in splits:
        if split == "cv":
            specs = folds["folds"]
            if len(specs) != len(models):
                raise ValueError(f"{len(models)} fold models for {len(specs)} folds in folds.json")
            row_of = {n: i for i, n in enumerate(store.names)}
            try:
                val_rows = [np.array(sorted(row_of[n] for n in spec["val"]), dtype=np.int64) for spec in specs]
            except KeyError as e:
                raise ValueError(f"folds.json names sample {e} that is not in the feature store; "
                                 "rerun make_folds") from None
            rows = np.sort(np.concatenate(val_rows))
            pos_of = {r: i for i, r in enumerate(rows)}
            pop = Population(split, rows, store.present(rows))
            for k, vr in enumerate(val_rows):
                pop.units.append(Unit([models[k]], np.array([pos_of[r] for r in vr]), tensor_set(store, vr, device)))
        else:
            rows = store.indices(split)
            if not len(rows):
                log.warning("split %s has no samples; skipped", split)
                continue
            pop = Population(split, rows, store.present(rows))
            pop.units.append(Unit(list(models), np.arange(len(rows)), tensor_set(store, rows, device)))
        pops.append(pop)
    return pops


def _noisy_features(pop: Population, store, cfg: RobustnessConfig, draw: Draw) -> np.ndarray:
    """The population's features of the draw's noised modality, noise added (same for every arm)."""
    noise = draw.noise
    mod = store.modalities[noise.modality]
    lengths = store.lengths[mod][pop.rows] if mod in store.lengths else None
    return add_noise(store.features[mod][pop.rows], noise.snr_db, noise_rng(cfg, pop.split, noise), lengths,
                     cfg.noise_scope)


def predict_draws(pop: Population, store, cfg: RobustnessConfig, plan: Mapping[str, Sequence[Draw]],
                  max_bytes: int = 256 * 2**20) -> dict[str, list[Outputs]]:
    """Predict every draw of ``plan`` (condition -> draws) on ``pop``; returns condition -> outputs, draw by draw.

    Draws are stacked into one batch per model, in plan order, chunked so that
    a chunk's inputs stay under ``max_bytes``.
    """
    import torch

    from prmf.train import TensorSet, predict

    n, m = len(pop.rows), len(store.modalities)
    keyed = [(cond, draw) for cond, draws in plan.items() for draw in draws]
    results: dict[str, list[Outputs]] = {cond: [] for cond in plan}
    per_draw = max(1, sum(store.features[mod][pop.rows].nbytes for mod in store.modalities))
    chunk = max(1, int(max_bytes // per_draw))
    for start in range(0, len(keyed), chunk):
        part = keyed[start:start + chunk]
        k = len(part)
        noisy = {i: _noisy_features(pop, store, cfg, d) for i, (_, d) in enumerate(part) if d.noise is not None}
        outs = [Outputs(None, np.zeros(n, np.float32), np.full((n, m), np.nan, np.float32),
                        np.full((n, m), np.nan, np.float32), d.present) for _, d in part]
        for unit in pop.units:
            d, pos = unit.data, unit.positions
            dev, nu = d.labels.device, len(d)
            xs = []
            for j in range(m):
                pieces = [torch.from_numpy(np.ascontiguousarray(noisy[i][pos])).to(dev)
                          if i in noisy and part[i][1].noise.modality == j else d.xs[j] for i in range(k)]
                xs.append(torch.cat(pieces))
            pres = torch.from_numpy(np.concatenate([draw.present[pos] for _, draw in part])).to(dev)
            stacked = TensorSet(names=np.tile(d.names, k), xs=xs, present=pres,
                                lengths=[None if ln is None else ln.repeat(k) for ln in d.lengths],
                                labels=d.labels.repeat(k), valence=d.valence.repeat(k))
            preds = [predict(model, stacked, batch_size=int(cfg.batch_size), present=pres) for model in unit.models]
            logits = np.mean([p.logits for p in preds], axis=0)
            valence = np.mean([p.valence for p in preds], axis=0)
            weights = np.mean([p.fusion_weights for p in preds], axis=0)
            unc = np.mean([p.uncertainty for p in preds], axis=0)
            for i, o in enumerate(outs):
                sl = slice(i * nu, (i + 1) * nu)
                if o.logits is None:
                    o.logits = np.zeros((n, logits.shape[1]), np.float32)
                o.logits[pos] = logits[sl]
                o.valence[pos] = valence[sl]
                o.weights[pos] = weights[sl]
                o.uncertainty[pos] = unc[sl]
        for (cond, _), out in zip(part, outs):
            results[cond].append(out)
    return results
