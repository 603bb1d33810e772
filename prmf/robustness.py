"""Robustness evaluation of trained fold models: missing and degraded modalities.

Nothing is retrained: every condition is an inference pass of the fold models
that ``train_fold`` saved (``model.pt``), built once each.

Protocol (defaults in :class:`RobustnessConfig`)
------------------------------------------------
Splits. A test split (``test1`` by default) is predicted by the *fold
ensemble*: the mean of the fold models' logits (valence, fusion weights and
uncertainties averaged too), as :mod:`prmf.aggregate` does. ``cv`` predicts
each fold's own validation part with that fold's model and pools the
out-of-fold predictions (metrics over the pooled set).

Masking. An absent modality is masked exactly as modality dropout masks it:
its ``present`` entry is False and its input is zeroed
(:func:`prmf.train.predict` with an overriding ``present``). A condition's mask
is AND-ed with the store's own missing flags (e.g. MER2023's test2), so an
entry absent in the data stays absent.

1. Modality subsets (``subset:<mods>``): each of the ``2**M - 1`` non-empty
   subsets present (order: by size, then modality order; ``subset:audio+text+video``
   is the clean, complete condition). ``subset:mean_incomplete`` is the mean
   of a metric over the ``2**M - 2`` incomplete subsets.
2. Random missing rate (``missing:<rate>``, CPM-Net / GCNet convention): a
   fraction ``rate`` of the (sample, modality) entries is dropped at random,
   at least one modality kept per sample (:func:`cpm_missing_mask`), for
   ``mask_seeds`` fixed masks per rate; values are means over the masks.
   With ``M`` modalities at most ``(M - 1) / M`` of the entries can be dropped
   (2/3 for M = 3), so a larger rate (0.7) is capped there (every sample
   keeps exactly one modality); ``missing_fraction`` reports the rate
   achieved. ``missing:mean`` is the mean over all rates (0.0 included).
3. Feature noise (``noise:<mod>:<snr>dB``): white Gaussian noise added to one
   modality's features at a signal-to-noise ratio ``snr`` (dB):
   ``std = rms / 10**(snr / 20)`` with ``rms`` the root mean square of the
   features of *each sample* (``noise_scope: sample``; ``modality`` uses one
   RMS over all samples of the split); padding frames of frame-level features
   stay zero. ``noise_seeds`` fixed noise draws per level, values are means
   over draws. ``noise:<mod>`` averages a metric over SNR levels,
   ``noise:mean`` over modalities and levels.
4. Diagnostics. ``ece`` (expected calibration error of the emotion
   probabilities, :func:`expected_calibration_error`) on the clean condition,
   for every arm. For arms whose model reports uncertainties (VAE encoders):
   ``weight:<mod>`` / ``uncertainty:<mod>`` = mean fusion weight / uncertainty
   of a modality over the samples where it is present, in every condition
   (``weight:<mod>`` also for the deterministic arms, whose weights are
   MERBench's raw attention weights or a uniform mean);
   ``spearman_uncertainty`` under ``noise:<mod>``: Spearman rank correlation
   between the noise level (clean < 20 dB < ... < -5 dB) and the mean
   uncertainty of the noised modality; ``auroc_uncertainty`` under
   ``noise:<mod>:<snr>dB``: AUROC of the noised modality's uncertainty for
   telling the noisy copy (positive) from the clean copy (negative) of the
   same samples (mean over draws; ``noise:<mod>`` has the mean over levels).

Every mask and noise draw comes from a seed made of ``seed``, the split, the
condition and the draw index only, so every arm sees the same masks and noise.

Output: a long TSV, columns ``arm, seed, split, condition, metric, value``;
metrics ``acc``, ``f1`` (weighted), ``val_mse`` (where valence is known), ``n``
and those above.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from prmf.predictions import softmax

log = logging.getLogger(__name__)

#: conditions whose metric is better when lower
LOWER_IS_BETTER = ("val_mse", "ece")
COLUMNS = ("arm", "seed", "split", "condition", "metric", "value")
NOISE_SCOPES = ("sample", "modality")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class RobustnessConfig:
    """Protocol settings (the optional ``robustness:`` block of the study config).

    Attributes:
        splits: sets to evaluate: test splits of the store (fold ensemble) and/or
            ``cv`` (each fold model on its own validation part).
        missing_rates: rates of dropped (sample, modality) entries.
        mask_seeds: random masks per missing rate.
        snr_db: signal-to-noise ratios (dB) of the feature-noise conditions.
        noise_seeds: noise draws per (modality, SNR).
        noise_scope: ``sample`` (RMS of each sample's features) or ``modality``
            (one RMS over the split's samples of that modality).
        ece_bins: equal-width confidence bins of the ECE.
        seed: base seed of all masks and noise.
        batch_size: inference batch size.
    """

    splits: tuple[str, ...] = ("test1", "cv")
    missing_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    mask_seeds: int = 3
    snr_db: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0, -5.0)
    noise_seeds: int = 2
    noise_scope: str = "sample"
    ece_bins: int = 15
    seed: int = 0
    batch_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("splits", "missing_rates", "snr_db"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "missing_rates", tuple(float(r) for r in self.missing_rates))
        object.__setattr__(self, "snr_db", tuple(float(s) for s in self.snr_db))
        if any(not 0.0 <= r < 1.0 for r in self.missing_rates):
            raise ValueError(f"robustness.missing_rates must lie in [0, 1), got {self.missing_rates}")
        if self.mask_seeds < 1 or self.noise_seeds < 1:
            raise ValueError("robustness.mask_seeds and robustness.noise_seeds must be >= 1")
        if self.noise_scope not in NOISE_SCOPES:
            raise ValueError(f"robustness.noise_scope must be one of {NOISE_SCOPES}, got {self.noise_scope!r}")
        if self.ece_bins < 1:
            raise ValueError("robustness.ece_bins must be >= 1")
        if not self.splits:
            raise ValueError("robustness.splits must name at least one split")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "RobustnessConfig":
        """From a config block; unknown keys are errors."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"robustness: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ------------------------------------------------------------------ naming
def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Non-empty modality subsets by size, then modality order (complete set last)."""
    mods = list(modalities)
    return [c for k in range(1, len(mods) + 1) for c in combinations(mods, k)]


def subset_condition(subset: Sequence[str]) -> str:
    return "subset:" + "+".join(subset)


def missing_condition(rate: float) -> str:
    return f"missing:{rate:.1f}" if round(rate, 1) == rate else f"missing:{rate:g}"


def snr_label(snr: float) -> str:
    return f"{snr:g}dB"


def noise_condition(modality: str, snr: float | None = None) -> str:
    return f"noise:{modality}" if snr is None else f"noise:{modality}:{snr_label(snr)}"


def clean_condition(modalities: Sequence[str]) -> str:
    return subset_condition(modalities)


def _seed(cfg: RobustnessConfig, split: str, *parts: int) -> np.random.Generator:
    """The generator of one (split, condition, draw); independent of the arm."""
    return np.random.default_rng([int(cfg.seed), zlib.crc32(split.encode()), *[int(p) for p in parts]])


# ------------------------------------------------------------------ masks
def cpm_missing_mask(n: int, m: int, rate: float, rng: np.random.Generator | int) -> np.ndarray:
    """CPM-Net style random missing mask: ``present`` ``[n, m]`` bool.

    The number of dropped entries is ``K = round(rate * n * m)``, capped at
    ``n * (m - 1)`` so that every sample keeps at least one modality. How many
    modalities each sample loses is drawn as ``Binomial(m - 1, K / (n (m - 1)))``
    and then adjusted (random samples +-1, within ``0..m-1``) until the counts
    sum to ``K`` exactly; which modalities a sample loses is uniform. The
    achieved rate is therefore ``K / (n m)``, within ``1 / (2 n m)`` of
    ``rate`` whenever ``rate <= (m - 1) / m``.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    present = np.ones((n, m), dtype=bool)
    if n == 0 or m < 2:
        return present
    max_drop = m - 1
    k = min(int(round(rate * n * m)), n * max_drop)
    if k == 0:
        return present
    drops = rng.binomial(max_drop, k / (n * max_drop), size=n)
    diff = k - int(drops.sum())
    while diff != 0:
        room = np.flatnonzero(drops < max_drop) if diff > 0 else np.flatnonzero(drops > 0)
        pick = rng.choice(room, size=min(abs(diff), len(room)), replace=False)
        drops[pick] += 1 if diff > 0 else -1
        diff = k - int(drops.sum())
    ranks = rng.random((n, m)).argsort(axis=1).argsort(axis=1)
    return ranks >= drops[:, None]


def combine_available(present: np.ndarray, available: np.ndarray,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """``present & available``; with ``rng``, a sample left with nothing keeps one random available modality."""
    out = present & available
    if rng is not None:
        empty = np.flatnonzero(~out.any(1) & available.any(1))
        for i in empty:
            out[i, rng.choice(np.flatnonzero(available[i]))] = True
    return out


# ------------------------------------------------------------------ noise
def feature_rms(x: np.ndarray, lengths: np.ndarray | None = None, scope: str = "sample") -> np.ndarray:
    """Root mean square of features ``[N, D]`` / ``[N, T, D]`` over valid frames.

    ``scope="sample"``: ``[N]`` one value per sample; ``"modality"``: ``[N]``
    filled with the RMS over all (non-zero) samples.
    """
    x = np.asarray(x, dtype=np.float64)
    sq = x ** 2
    if x.ndim == 3:
        if lengths is None:
            count = np.full(len(x), x.shape[1] * x.shape[2], dtype=np.float64)
        else:
            count = np.clip(np.asarray(lengths), 1, None).astype(np.float64) * x.shape[2]
        total = sq.sum(axis=(1, 2))
    else:
        count = np.full(len(x), x.shape[1], dtype=np.float64)
        total = sq.sum(axis=1)
    if scope == "sample":
        return np.sqrt(total / count)
    if scope == "modality":
        nonzero = total > 0
        value = np.sqrt(total[nonzero].sum() / count[nonzero].sum()) if nonzero.any() else 0.0
        return np.full(len(x), value)
    raise ValueError(f"scope must be one of {NOISE_SCOPES}, got {scope!r}")


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, lengths: np.ndarray | None = None,
              scope: str = "sample") -> np.ndarray:
    """``x`` plus Gaussian noise with ``std = rms / 10**(snr_db / 20)`` (padding frames untouched)."""
    x = np.asarray(x, dtype=np.float32)
    std = (feature_rms(x, lengths, scope) / 10.0 ** (snr_db / 20.0)).astype(np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32) * std.reshape(-1, *([1] * (x.ndim - 1)))
    if x.ndim == 3 and lengths is not None:
        noise *= (np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
    return x + noise


# ------------------------------------------------------------------ metrics
def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Standard ECE (Guo et al. 2017) of class probabilities ``[N, C]``.

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


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column mean of ``values`` ``[N, M]`` over rows where ``mask``; NaN where none."""
    with np.errstate(invalid="ignore"):
        s = np.where(mask, values, 0.0).sum(0)
        c = mask.sum(0)
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


# ------------------------------------------------------------------ inference
@dataclass
class _Outputs:
    """Predictions of one condition over a split's population (store order)."""

    logits: np.ndarray
    valence: np.ndarray
    weights: np.ndarray
    uncertainty: np.ndarray
    present: np.ndarray


@dataclass
class _Unit:
    """Fold models and the population positions they predict (their outputs averaged)."""

    models: list
    positions: np.ndarray
    data: Any  # prmf.train.TensorSet


@dataclass
class _Population:
    split: str
    rows: np.ndarray  # store rows
    available: np.ndarray  # [N, M] store present flags
    units: list[_Unit] = field(default_factory=list)


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


def _populations(store, folds: Mapping, models: list, splits: Sequence[str], device) -> list[_Population]:
    from prmf.train import tensor_set

    pops = []
    mods = store.modalities
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
            pop = _Population(split, rows, np.stack([~store.missing[m][rows] for m in mods], 1))
            for k, vr in enumerate(val_rows):
                pop.units.append(_Unit([models[k]], np.array([pos_of[r] for r in vr]), tensor_set(store, vr, device)))
        else:
            rows = store.indices(split)
            if not len(rows):
                log.warning("split %s has no samples; skipped", split)
                continue
            pop = _Population(split, rows, np.stack([~store.missing[m][rows] for m in mods], 1))
            pop.units.append(_Unit(list(models), np.arange(len(rows)), tensor_set(store, rows, device)))
        pops.append(pop)
    return pops


@dataclass
class _Spec:
    """One condition draw: its mask (AND-ed with the store) and, for noise, (modality, SNR, level, draw)."""

    present: np.ndarray
    noise: tuple[int, float, int, int] | None = None


def _noisy_features(pop: _Population, store, cfg: RobustnessConfig, noise: tuple[int, float, int, int]) -> np.ndarray:
    """The population's features of modality ``j`` with the draw's noise (same for every arm)."""
    j, snr, li, rep = noise
    mod = store.modalities[j]
    lengths = store.lengths[mod][pop.rows] if mod in store.lengths else None
    return add_noise(store.features[mod][pop.rows], snr, _seed(cfg, pop.split, 2, j, li, rep), lengths,
                     cfg.noise_scope)


def _run(pop: _Population, store, cfg: RobustnessConfig, specs: Sequence[_Spec],
         max_bytes: int = 256 * 2**20) -> list[_Outputs]:
    """Predict every spec on ``pop``; specs are stacked into one batch per model (chunked by ``max_bytes``)."""
    import torch

    from prmf.train import TensorSet, predict

    n, m = len(pop.rows), len(store.modalities)
    per_spec = max(1, sum(store.features[mod][pop.rows].nbytes for mod in store.modalities))
    chunk = max(1, int(max_bytes // per_spec))
    results: list[_Outputs] = []
    for start in range(0, len(specs), chunk):
        part = list(specs[start:start + chunk])
        k = len(part)
        noisy = {i: _noisy_features(pop, store, cfg, s.noise) for i, s in enumerate(part) if s.noise is not None}
        outs = [_Outputs(None, np.zeros(n, np.float32), np.full((n, m), np.nan, np.float32),
                         np.full((n, m), np.nan, np.float32), s.present) for s in part]
        for unit in pop.units:
            d, pos = unit.data, unit.positions
            dev, nu = d.labels.device, len(d)
            xs = []
            for j in range(m):
                pieces = [torch.from_numpy(np.ascontiguousarray(noisy[i][pos])).to(dev)
                          if i in noisy and part[i].noise[0] == j else d.xs[j] for i in range(k)]
                xs.append(torch.cat(pieces))
            pres = torch.from_numpy(np.concatenate([s.present[pos] for s in part])).to(dev)
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
        results += outs
    return results


def _emotion(out: _Outputs, labels: np.ndarray, valence_true: np.ndarray) -> dict[str, float]:
    from prmf.metrics import emotion_metrics

    m = emotion_metrics(out.logits.argmax(1), labels, out.valence, valence_true)
    res = {"acc": m["acc"], "f1": m["f1"]}
    if m["val_mse"] is not None:
        res["val_mse"] = m["val_mse"]
    return res


def _diag(out: _Outputs, modalities: Sequence[str]) -> dict[str, float]:
    res: dict[str, float] = {}
    if np.isfinite(out.weights).any():
        for mod, v in zip(modalities, _masked_mean(out.weights, out.present)):
            res[f"weight:{mod}"] = float(v)
    if np.isfinite(out.uncertainty).any():
        for mod, v in zip(modalities, _masked_mean(out.uncertainty, out.present)):
            res[f"uncertainty:{mod}"] = float(v)
    return res


def _mean_dicts(ds: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in ds[0] if all(k in d for d in ds)]
    return {k: float(np.nanmean([d[k] for d in ds])) if any(np.isfinite(d[k]) for d in ds) else float("nan")
            for k in keys}


def evaluate_population(pop: _Population, store, cfg: RobustnessConfig) -> list[tuple[str, str, str, float]]:
    """All conditions on one split; returns ``(split, condition, metric, value)`` rows."""
    mods = store.modalities
    m, n = len(mods), len(pop.rows)
    labels = store.labels[pop.rows].astype(np.int64)
    vtrue = store.valence[pop.rows].astype(np.float32)
    rows: list[tuple[str, str, str, float]] = []

    def emit(cond: str, values: Mapping[str, float]) -> None:
        rows.extend((pop.split, cond, k, float(v)) for k, v in values.items())

    def keep(d: Mapping[str, float], keys: Sequence[str]) -> dict[str, float]:
        return {k: v for k, v in d.items() if k in keys}

    # every condition draw, predicted in one stacked pass per fold model
    subs = subsets(mods)
    specs: list[_Spec] = [
        _Spec(combine_available(np.broadcast_to(np.array([x in s for x in mods]), (n, m)), pop.available))
        for s in subs
    ]
    for rate in cfg.missing_rates:
        for rep in range(cfg.mask_seeds):
            rng = _seed(cfg, pop.split, 1, int(round(rate * 1000)), rep)
            specs.append(_Spec(combine_available(cpm_missing_mask(n, m, rate, rng), pop.available, rng)))
    full = combine_available(np.ones((n, m), bool), pop.available)
    for j in range(m):
        for li, snr in enumerate(cfg.snr_db):
            specs += [_Spec(full, (j, snr, li, rep)) for rep in range(cfg.noise_seeds)]
    outs = iter(_run(pop, store, cfg, specs))

    # 1. subsets
    sub_metrics, clean = {}, None
    for subset in subs:
        out = next(outs)
        vals = {**_emotion(out, labels, vtrue), **_diag(out, mods), "n": n}
        if len(subset) == m:
            clean = out
            vals["ece"] = expected_calibration_error(softmax(out.logits.astype(np.float64)), labels, cfg.ece_bins)
        sub_metrics[subset] = vals
        emit(subset_condition(subset), vals)
    incomplete = [v for s, v in sub_metrics.items() if len(s) < m]
    if incomplete:
        emit("subset:mean_incomplete", keep(_mean_dicts(incomplete), ("acc", "f1", "val_mse")))

    # 2. random missing rate
    curve = []
    for rate in cfg.missing_rates:
        reps = []
        for _ in range(cfg.mask_seeds):
            out = next(outs)
            reps.append({**_emotion(out, labels, vtrue), **_diag(out, mods),
                         "missing_fraction": float(1.0 - out.present.mean())})
        vals = _mean_dicts(reps)
        curve.append(vals)
        emit(missing_condition(rate), {**vals, "n": n})
    if curve:
        emit("missing:mean", keep(_mean_dicts(curve), ("acc", "f1", "val_mse")))

    # 3. feature noise, with 4. the uncertainty diagnostics
    has_u = clean is not None and np.isfinite(clean.uncertainty).any()
    clean_diag = _diag(clean, mods) if clean is not None else {}
    all_noise = []
    for j, mod in enumerate(mods):
        levels = []
        for snr in cfg.snr_db:
            reps = []
            for _ in range(cfg.noise_seeds):
                out = next(outs)
                vals = {**_emotion(out, labels, vtrue), **_diag(out, mods)}
                if has_u:
                    sel = out.present[:, j]
                    vals["auroc_uncertainty"] = auroc(clean.uncertainty[sel, j], out.uncertainty[sel, j])
                reps.append(vals)
            vals = _mean_dicts(reps)
            levels.append(vals)
            emit(noise_condition(mod, snr), {**vals, "n": n})
        if not levels:
            continue
        all_noise.extend(levels)
        summary = keep(_mean_dicts(levels), ("acc", "f1", "val_mse", "auroc_uncertainty"))
        if has_u:
            key = f"uncertainty:{mod}"
            order = np.argsort(-np.asarray(cfg.snr_db), kind="stable")  # little noise first
            y = [clean_diag[key]] + [levels[i][key] for i in order]
            summary["spearman_uncertainty"] = spearman(np.arange(len(y)), y)
        emit(noise_condition(mod), summary)
    if all_noise:
        emit("noise:mean", keep(_mean_dicts(all_noise), ("acc", "f1", "val_mse")))
    return rows


def evaluate_robustness(store, folds: Mapping, model_paths: Sequence[str | Path], arm: Mapping, seed: int,
                        cfg: RobustnessConfig | Mapping | None = None, device: str = "cpu", threads: int = 1,
                        progress: Callable[[str], None] | None = None):
    """Evaluate one arm x seed (its fold models) on every condition; returns the long DataFrame."""
    import pandas as pd
    import torch

    from prmf.train import resolve_device

    say = progress or log.info
    cfg = cfg if isinstance(cfg, RobustnessConfig) else RobustnessConfig.from_dict(cfg)
    t0 = time.perf_counter()
    torch.set_num_threads(int(threads))
    dev = resolve_device(device, warn=say)
    models = load_fold_models(model_paths, arm, store, dev)
    rows = []
    with torch.inference_mode():
        for pop in _populations(store, folds, models, cfg.splits, dev):
            ts = time.perf_counter()
            rows += evaluate_population(pop, store, cfg)
            say(f"{pop.split}: {len(pop.rows)} samples, {len(pop.units)} unit(s) x "
                f"{len(pop.units[0].models)} model(s) in {time.perf_counter() - ts:.2f}s")
    df = pd.DataFrame(rows, columns=list(COLUMNS[2:]))
    df.insert(0, "seed", int(seed))
    df.insert(0, "arm", str(arm["arm"]))
    say(f"{arm['arm']} seed {seed}: {len(df)} values in {time.perf_counter() - t0:.2f}s on {dev}")
    return df


def write_robustness(df, path: str | Path) -> None:
    """Write the long TSV atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    tmp.replace(path)


def read_robustness(paths: Sequence[str | Path]):
    """Concatenate robustness TSVs."""
    import pandas as pd

    frames = [pd.read_csv(p, sep="\t", dtype={"arm": str, "split": str, "condition": str, "metric": str})
              for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


# ------------------------------------------------------------------ summary table
def summarize(df):
    """Mean, std (ddof 1, NaN for one seed) and seed count per arm x split x condition x metric."""
    g = df.groupby(["arm", "split", "condition", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: float(np.std(v.dropna(), ddof=1)) if v.notna().sum() > 1 else np.nan,
                n="count").reset_index()
    return out


def _short(subset_cond: str) -> str:
    mods = subset_cond.split(":", 1)[1].split("+")
    return "+".join(x[:1].upper() for x in mods)


def _table(stats, arms: Sequence[str], names: Mapping[str, str], split: str,
           columns: list[tuple[str, str, str]], scale: float = 100.0, digits: int = 2, bold: bool = True
           ) -> list[str]:
    """Markdown table: rows arms, columns ``(header, condition, metric)``; best mean per column bold."""
    from prmf.results import format_stat  # pandas-backed module: imported only when writing tables

    idx = stats[stats.split == split].set_index(["arm", "condition", "metric"])
    cells: dict[tuple[str, int], tuple[float, float]] = {}
    for a in arms:
        for c, (_, cond, metric) in enumerate(columns):
            key = (a, cond, metric)
            if key in idx.index:
                r = idx.loc[key]
                cells[(a, c)] = (float(r["mean"]), float(r["std"]))
    lines = ["| Arm | " + " | ".join(h for h, _, _ in columns) + " |",
             "|---|" + "|".join("---:" for _ in columns) + "|"]
    best = {}
    for c, (_, _, metric) in enumerate(columns):
        vals = [cells[(a, c)][0] for a in arms if (a, c) in cells and np.isfinite(cells[(a, c)][0])]
        if vals:
            best[c] = min(vals) if metric in LOWER_IS_BETTER else max(vals)
    for a in arms:
        row = []
        for c in range(len(columns)):
            mean, std = cells.get((a, c), (np.nan, np.nan))
            s = format_stat(mean, std, scale, digits, missing="–")
            is_best = c in best and np.isfinite(mean) and abs(mean - best[c]) <= 1e-12
            if bold and is_best and len(arms) > 1:
                s = f"**{s}**"
            row.append(s)
        lines.append(f"| {names.get(a, a)} | " + " | ".join(row) + " |")
    return lines


def robustness_markdown(df, display_names: Mapping[str, str], modalities: Sequence[str] | None = None,
                        cfg: RobustnessConfig | Mapping | None = None, dataset: str = "") -> str:
    """``robustness.md``: per split, subset / missing-rate / noise tables (F1 and accuracy) and diagnostics."""
    cfg = cfg if isinstance(cfg, RobustnessConfig) else RobustnessConfig.from_dict(cfg)
    arms = [a for a in display_names if a in set(df["arm"])] + sorted(set(df["arm"]) - set(display_names))
    names = dict(display_names)
    stats = summarize(df)
    if modalities is None:
        full = [c for c in df["condition"].unique() if c.startswith("subset:") and c != "subset:mean_incomplete"]
        modalities = max((c.split(":", 1)[1].split("+") for c in full), key=len, default=[])
    modalities = list(modalities)
    seeds = sorted(df["seed"].unique().tolist())
    out = [f"# Robustness to missing and noisy modalities{f' ({dataset})' if dataset else ''}", "",
           f"Mean ± std over {len(seeds)} seed(s) {seeds} (std shown for ≥ 2 seeds); best mean per column in "
           "**bold**. Accuracy and weighted F1 in %. Test splits: fold ensemble (mean logits); cv: each fold model "
           "on its own validation part, predictions pooled. No retraining: every condition is inference of the "
           "trained fold models.", "",
           f"Protocol: missing rates {list(cfg.missing_rates)} ({cfg.mask_seeds} CPM-Net masks per rate, ≥ 1 "
           f"modality kept per sample; with {len(modalities)} modalities at most "
           f"{(len(modalities) - 1) / max(len(modalities), 1):.3f} of the entries can be dropped, higher rates are "
           f"capped); Gaussian feature noise at SNR {[f'{s:g}' for s in cfg.snr_db]} dB on one modality "
           f"(std = RMS / 10^(SNR/20), RMS per {cfg.noise_scope}; {cfg.noise_seeds} draws per level); "
           f"ECE with {cfg.ece_bins} equal-width bins.", ""]
    subs = subsets(modalities)
    for split in [s for s in cfg.splits if s in set(df["split"])] + sorted(set(df["split"]) - set(cfg.splits)):
        label = "cross-validation (pooled out-of-fold)" if split == "cv" else f"{split} (fold ensemble)"
        for metric, mname in (("f1", "weighted F1 (%)"), ("acc", "accuracy (%)")):
            out += [f"## {label}: {mname}", ""]
            cols = [(_short(subset_condition(s)) + (" (clean)" if len(s) == len(modalities) else ""),
                     subset_condition(s), metric) for s in subs]
            cols.append(("mean incomplete", "subset:mean_incomplete", metric))
            out += ["### Modality subsets present", ""] + _table(stats, arms, names, split, cols) + [""]
            cols = [("η=" + missing_condition(r).split(":", 1)[1], missing_condition(r), metric)
                    for r in cfg.missing_rates]
            cols.append(("mean", "missing:mean", metric))
            out += ["### Random missing rate η", ""] + _table(stats, arms, names, split, cols) + [""]
            cols = [(f"{mod[:1].upper()} {s:g} dB", noise_condition(mod, s), metric)
                    for mod in modalities for s in cfg.snr_db]
            cols.append(("mean", "noise:mean", metric))
            out += ["### Gaussian noise on one modality (SNR)", ""] + _table(stats, arms, names, split, cols) + [""]
        clean = clean_condition(modalities)
        out += [f"## {label}: calibration and uncertainty diagnostics", "",
                "ECE (%, lower is better) of the emotion probabilities on the clean condition (all arms). "
                "For arms with VAE encoders: AUROC of the noised modality's uncertainty for noisy vs clean copies "
                "of the same samples (mean over SNR levels), and the Spearman correlation between noise level and "
                "the modality's mean uncertainty (+1: uncertainty rises monotonically with noise). "
                "'–': the arm has no uncertainty.", ""]
        cols = [("ECE", clean, "ece")]
        out += _table(stats, arms, names, split, cols) + [""]
        cols = [(f"AUROC {mod}", noise_condition(mod), "auroc_uncertainty") for mod in modalities]
        cols += [(f"ρ {mod}", noise_condition(mod), "spearman_uncertainty") for mod in modalities]
        out += _table(stats, arms, names, split, cols, scale=1.0, digits=3) + [""]
        cols = [(f"w {mod}", clean, f"weight:{mod}") for mod in modalities]
        cols += [(f"u {mod}", clean, f"uncertainty:{mod}") for mod in modalities]
        out += ["Mean fusion weight w and uncertainty u per modality on the clean condition, over the samples "
                "where the modality is present (deterministic arms: MERBench's raw attention weights or a uniform "
                "mean; no uncertainty).", ""]
        out += _table(stats, arms, names, split, cols, scale=1.0, digits=3, bold=False) + [""]
    return "\n".join(out).rstrip() + "\n"
