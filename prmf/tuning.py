"""Fair hyper-parameter tuning: MERBench's random search on the CV folds, one budget for every arm.

MERBench's README prescribes: run each model ``N`` times with hyper-parameters
drawn at random from ``toolkit/model-tune.yaml``, keep the best, rerun it
several times and average. This module makes that protocol a set of DAG
stages with the same budget for every tuned arm (the config's ``tuning``
block, ``config/README.md``):

1. **Draws** (:func:`tuning_plan`, at the workflow's parse time): for each
   tuned arm, ``draws`` configurations from its space (the family's lists,
   ``tuning.space[model]``, with the arm's own ``space`` lists on top, minus
   its ``pin`` keys and the keys its model ignores, see
   :func:`prmf.config.inactive_keys`). They come from Optuna's ask interface
   with a seeded ``RandomSampler`` (:func:`ask_draws`), seeded per arm by
   :func:`sampler_seed` from ``tuning.seed`` and the arm's name, so they are
   known before any training, the DAG shows them, and one arm's space changes
   only that arm's draws.
2. **tune_fold**: draw ``d`` trained on every CV fold with the arm's training
   code (:func:`prmf.train.train_fold`) and training seed ``train_seed + d``
   (outside the final seeds, so no tuning run is reused as a final run). Its
   test splits are predicted (the fold files are the usual ones) but nothing
   here reads them.
3. **tune_select** (:func:`select_draws`): reads only the ``val`` metrics of
   each draw's folds (:func:`read_val_metrics`), scores each fold by
   ``tuning.metric`` (:func:`fold_score`; default MERBench's selection score
   ``f1 - 0.25 * val_mse``, :func:`prmf.metrics.selection_score`), tells Optuna
   the mean over folds (a non-finite mean marks the draw failed) and takes
   ``study.best_trial`` (ties: the lowest draw). Writes ``draws.tsv`` (every
   draw ranked, mean ± std over folds), ``chosen.yaml`` and the Optuna journal
   ``study.jsonl`` (every draw, for ``optuna-dashboard`` or ``optuna.load_study``).
4. **final runs**: the arm's usual ``train_fold`` jobs for seeds
   ``0 .. final_seeds-1``; ``chosen.yaml`` is their input and the scripts merge
   its values into the arm (:func:`with_chosen`), so aggregation, tables and
   robustness treat a tuned arm like any other.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prmf.config import NAMING_KEYS, ConfigError, inactive_keys, resolve_arm, run_arms
from prmf.config import training_arms as _training_arms
from prmf.metrics import selection_score

#: hyper-parameters a space may draw (the schema's ``tuning_space``); epochs and early stopping
#: are part of the budget, not of the search
TUNABLE_KEYS: tuple[str, ...] = (
    "lr", "weight_decay", "batch_size", "hidden_dim", "dropout", "num_attention_heads", "grad_clip",
    "modality_dropout_max", "warmup_epochs", "tau", "kl_weight", "recon_weight", "cross_kl_weight",
)
METRICS: tuple[str, ...] = ("score", "f1", "acc")
METRIC_LABELS = {"score": "CV score (f1 − 0.25·val_mse)", "f1": "CV weighted F1", "acc": "CV accuracy"}


# --------------------------------------------------------------------------- plan (parse time)


@dataclass(frozen=True)
class ArmTuning:
    """One tuned arm: the lists it draws from, its pinned values and its draws."""

    arm: str
    family: str
    space: dict[str, list]  # key -> values, keys sorted (the order Optuna asks them in)
    pinned: dict[str, Any]  # key -> the arm's own value (not drawn)
    sampler_seed: int
    draws: list[dict[str, Any]]

    @property
    def combinations(self) -> int:
        return int(np.prod([len(v) for v in self.space.values()])) if self.space else 1


@dataclass(frozen=True)
class TuningPlan:
    """The tuning block of a study, resolved: which run arms are tuned and with what budget."""

    arms: dict[str, ArmTuning] = field(default_factory=dict)
    draws: int = 0
    final_seeds: tuple[int, ...] = ()
    seed: int = 0
    train_seed: int = 0
    metric: str = "score"
    folds: int = 0

    def tuned(self, arm: str) -> bool:
        return arm in self.arms

    def arm_seeds(self, arm: str, seeds: Sequence[int]) -> list[int]:
        """Seeds of ``arm``'s final runs: ``0 .. final_seeds-1`` for a tuned arm, else the study's ``seeds``."""
        return list(self.final_seeds) if self.tuned(arm) else [int(s) for s in seeds]

    def draw_seed(self, draw: int) -> int:
        """Training seed of draw ``draw`` (every fold of it)."""
        return self.train_seed + int(draw)

    def draw_params(self, config: dict, arm: str, draw: int) -> dict[str, Any]:
        """The resolved arm with draw ``draw``'s values: the parameters of its tune_fold jobs (names
        left out: renaming an arm's display or export name does not rerun its draws)."""
        params = {k: v for k, v in resolve_arm(config, arm).items() if k == "arm" or k not in NAMING_KEYS}
        return {**params, **self.arms[arm].draws[int(draw)]}

    def final_params(self, config: dict, arm: str) -> dict[str, Any]:
        """Job parameters of an arm's final runs: the resolved arm, minus the keys a tuned arm draws
        (its scripts add them from ``chosen.yaml``, :func:`with_chosen`; so editing a drawn key's
        config value, which tuning overrides, reruns nothing)."""
        params = resolve_arm(config, arm)
        if self.tuned(arm):
            for key in self.arms[arm].space:
                params.pop(key, None)
        return params

    def budget(self, arm: str) -> dict[str, Any] | None:
        """What tuning ``arm`` got (``None`` for an untuned arm): draws, folds, runs, final seeds, metric."""
        if not self.tuned(arm):
            return None
        at = self.arms[arm]
        return {"draws": self.draws, "folds": self.folds, "runs": self.draws * self.folds,
                "final_seeds": len(self.final_seeds), "metric": self.metric, "seed": self.seed,
                "keys": list(at.space), "combinations": at.combinations}

    def budgets(self, arms: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`budget` of the tuned ``arms`` (empty without tuning): what the tables state."""
        return {arm: self.budget(arm) for arm in arms if self.tuned(arm)}


def sampler_seed(seed: int, arm: str) -> int:
    """The ``RandomSampler`` seed of one arm: a hash of ``tuning.seed`` and the arm's name (32 bit)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{arm}".encode()).digest()[:4], "big")


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distributions(space: Mapping[str, Sequence]) -> dict:
    optuna = _quiet_optuna()
    return {key: optuna.distributions.CategoricalDistribution(list(values)) for key, values in space.items()}


def ask_draws(space: Mapping[str, Sequence], n: int, seed: int, study=None) -> list:
    """``n`` trials asked from ``study`` (default: a new in-memory study) with ``RandomSampler(seed)``.

    Every key of ``space`` is a categorical distribution over its list, asked in
    the order of ``space`` (keep it sorted: the sampler's stream depends on it).
    Returns the Optuna trials; ``trial.params`` is a draw. The same space, ``n``
    and seed give the same draws in any study, which is what lets the selection
    re-ask them into a stored study and tell their scores.
    """
    optuna = _quiet_optuna()
    if study is None:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = _distributions(space)
    return [study.ask(dists) for _ in range(int(n))]


def arm_space(config: dict, arm: str, spec: Mapping[str, Any] | None) -> tuple[str, dict[str, list], dict[str, Any]]:
    """(family, space, pinned) of one tuned arm; raises :class:`ConfigError` naming the key."""
    tuning = config["tuning"]
    params = resolve_arm(config, arm)
    family = params["model"]
    spec = spec or {}
    own = dict(spec.get("space") or {})
    off = inactive_keys(params)
    for key in own:
        if key in off:
            raise ConfigError(f"tuning.arms.{arm}.space.{key}: arm '{arm}' ignores '{key}' (no VAE or no modality "
                              f"dropout), so drawing it would spend the budget on nothing; remove it")
    space = {k: list(v) for k, v in (tuning["space"].get(family) or {}).items() if k not in off}
    space.update({k: list(v) for k, v in own.items()})
    pinned = {}
    for key in spec.get("pin") or []:
        if key not in space:
            raise ConfigError(f"tuning.arms.{arm}.pin: '{key}' is not in the arm's space ({sorted(space)}); "
                              "only drawn keys can be pinned")
        pinned[key] = params[key]
        del space[key]
    unknown = sorted(set(space) - set(TUNABLE_KEYS))
    if unknown:
        raise ConfigError(f"tuning.space: {unknown} cannot be tuned (tunable: {', '.join(TUNABLE_KEYS)})")
    if not space:
        raise ConfigError(f"tuning.arms.{arm}: nothing to draw (the space of family '{family}' is empty after "
                          "pinning); untune the arm or give it a space")
    return family, dict(sorted(space.items())), pinned


def _arm_specs(tuning: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | None]:
    arms = tuning.get("arms") or []
    return {name: None for name in arms} if isinstance(arms, list) else dict(arms)


def tuning_plan(config: dict) -> TuningPlan:
    """Resolve the ``tuning`` block of a validated config; an empty plan when ``enabled`` is false.

    Raises :class:`ConfigError` for a tuned arm that is not a run arm, a pin or
    space key the arm cannot use, a draw whose ``num_attention_heads`` does not
    divide its ``hidden_dim``, or draw training seeds that overlap the final seeds.
    """
    tuning = config.get("tuning") or {}
    if not tuning.get("enabled"):
        return TuningPlan()
    specs = _arm_specs(tuning)
    if not specs:
        raise ConfigError("tuning.arms: tuning is enabled but no arm is named; list the arms to tune")
    runs = run_arms(config)
    for name in specs:
        if name not in runs:
            raise ConfigError(f"tuning.arms: arm '{name}' is not a run arm ({', '.join(runs)}); add it to run_arms")
    n, final = int(tuning["draws"]), tuple(range(int(tuning["final_seeds"])))
    train_seed = int(tuning["train_seed"])
    if set(range(train_seed, train_seed + n)) & set(final):
        raise ConfigError(f"tuning.train_seed: draws train with seeds {train_seed}..{train_seed + n - 1}, which "
                          f"overlap the final seeds 0..{len(final) - 1}; raise train_seed to {len(final)} or more")
    arms = {}
    for name in [a for a in runs if a in specs]:  # run order
        family, space, pinned = arm_space(config, name, specs[name])
        seed = sampler_seed(tuning["seed"], name)
        draws = [dict(t.params) for t in ask_draws(space, n, seed)]
        base = resolve_arm(config, name)
        for d, values in enumerate(draws):
            p = {**base, **values}
            if p["hidden_dim"] % p["num_attention_heads"]:
                raise ConfigError(f"tuning: draw {d} of arm '{name}' has num_attention_heads="
                                  f"{p['num_attention_heads']}, which does not divide hidden_dim={p['hidden_dim']}; "
                                  "make every hidden_dim in the space a multiple of every head count")
        arms[name] = ArmTuning(name, family, space, pinned, seed, draws)
    return TuningPlan(arms=arms, draws=n, final_seeds=final, seed=int(tuning["seed"]), train_seed=train_seed,
                      metric=str(tuning["metric"]), folds=int(config["cv"]["folds"]))


def training_arms(config: dict, plan: TuningPlan) -> dict[str, str]:
    """Run arm -> the arm whose folds it reads (:func:`prmf.config.training_arms`), with tuning:
    a tuned arm reads its own folds, and untuned arms share folds only among themselves."""
    untuned = [a for a in run_arms(config) if not plan.tuned(a)]
    out = _training_arms(config, untuned)
    return {arm: out.get(arm, arm) for arm in run_arms(config)}


# --------------------------------------------------------------------------- selection (validation only)


def read_val_metrics(path: str | Path) -> dict[str, Any]:
    """The validation metrics of one fold's ``metrics.json`` (``metrics["val"]``), and nothing else.

    The only way the selection reads a fold: its test splits are never returned.
    """
    import json

    info = json.loads(Path(path).read_text())
    try:
        val = info["metrics"]["val"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: no metrics.val (not a fold's metrics.json)") from None
    return {k: val.get(k) for k in ("f1", "acc", "val_mse", "n")}


def fold_score(val: Mapping[str, Any], metric: str, valence_weight: float = 0.25) -> float:
    """A fold's selection value: ``score`` = :func:`prmf.metrics.selection_score`, or ``f1`` / ``acc``."""
    if metric == "score":
        return selection_score(dict(val), valence_weight)
    if metric in ("f1", "acc"):
        return float(val[metric])
    raise ValueError(f"tuning.metric: unknown metric {metric!r} (one of {', '.join(METRICS)})")


def _mean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def select_draws(
    draws: Sequence[Mapping[str, Any]],
    fold_metrics: Sequence[Sequence[str | Path]],
    *,
    metric: str = "score",
    valence_weight: float = 0.25,
    seed: int,
    space: Mapping[str, Sequence],
    train_seeds: Sequence[int] | None = None,
    storage: str | Path | None = None,
    study_name: str = "tuning",
):
    """Rank the draws of one arm by their mean CV ``metric``; returns ``(ranked, best)``.

    Args:
        draws: the arm's draws (values per draw, in draw order).
        fold_metrics: per draw, the ``metrics.json`` of each of its folds; read by
            :func:`read_val_metrics` only (validation metrics, never test).
        metric, valence_weight: see :func:`fold_score`.
        seed, space: the arm's sampler seed and space; the draws are re-asked
            from Optuna with them and must equal ``draws``.
        train_seeds: training seed per draw, recorded in the table.
        storage: an Optuna journal file to record the study in (one trial per
            draw, its value the mean score; ``None``: in memory).

    Returns:
        ``ranked``: a DataFrame, one row per draw, best first (``rank``, ``draw``,
        ``train_seed``, the drawn keys, ``cv_mean``, ``cv_std`` (ddof=1 over folds),
        ``cv_f1``, ``cv_acc``, ``cv_val_mse`` (means), ``fold{k}`` (each fold's
        value), ``status`` ``ok``/``failed``); ``best``: the chosen draw's row as a dict.
    """
    import pandas as pd

    optuna = _quiet_optuna()
    if len(fold_metrics) != len(draws):
        raise ValueError(f"{len(fold_metrics)} draws of metrics for {len(draws)} draws")
    store = None
    if storage is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        store = JournalStorage(JournalFileBackend(str(storage)))
    study = optuna.create_study(storage=store, study_name=study_name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = ask_draws(space, len(draws), seed, study)
    rows = []
    for d, (trial, values, paths) in enumerate(zip(trials, draws, fold_metrics)):
        if trial.params != dict(values):
            raise ValueError(f"draw {d}: Optuna re-asks {trial.params}, the workflow trained {dict(values)}; "
                             "the space, seed or Optuna version changed since the DAG was built: rerun")
        vals = [read_val_metrics(p) for p in paths]
        scores = [fold_score(v, metric, valence_weight) for v in vals]
        mean = float(np.mean(scores)) if scores else float("nan")
        std = float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan")
        ok = math.isfinite(mean)
        row = {"draw": d, "train_seed": None if train_seeds is None else int(train_seeds[d]), **dict(values),
               "cv_mean": mean, "cv_std": std, "cv_f1": _mean([v["f1"] for v in vals]),
               "cv_acc": _mean([v["acc"] for v in vals]), "cv_val_mse": _mean([v["val_mse"] for v in vals]),
               **{f"fold{k}": s for k, s in enumerate(scores)}, "status": "ok" if ok else "failed"}
        trial.set_user_attr("cv_std", std)
        trial.set_user_attr("fold_scores", [float(s) for s in scores])
        if row["train_seed"] is not None:
            trial.set_user_attr("train_seed", row["train_seed"])
        if ok:
            study.tell(trial, mean)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        rows.append(row)
    if not any(r["status"] == "ok" for r in rows):
        raise ValueError(f"no draw has a finite mean CV {metric} (every draw diverged?); see the tune_fold logs")
    best = study.best_trial.number
    table = pd.DataFrame(rows)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["status"] != "ok",
                                                     -rows[i]["cv_mean"] if rows[i]["status"] == "ok" else 0, i))
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    assert int(table.loc[0, "draw"]) == best  # Optuna's best trial = the first of the ranking (ties: lowest draw)
    return table, table.iloc[0].to_dict()


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (for YAML)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def chosen_record(job: Mapping[str, Any], ranked, best: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``chosen.yaml``: the chosen values and how they were chosen (``job``: see
    :func:`run_selection`)."""
    import optuna

    ok = ranked[ranked["status"] == "ok"]["cv_mean"]
    return {
        "arm": job["arm"],
        "values": {k: _plain(best[k]) for k in job["space"]},
        "pinned": dict(job.get("pinned") or {}),
        "draw": int(best["draw"]),
        "train_seed": _plain(best["train_seed"]),
        "metric": job["metric"],
        "valence_weight": float(job["valence_weight"]),
        "cv": {"mean": float(best["cv_mean"]), "std": _plain(best["cv_std"]), "folds": int(job["folds"])},
        "median_draw_cv": float(np.median(ok)),
        "failed_draws": int((ranked["status"] != "ok").sum()),
        "budget": dict(job["budget"]),
        "final_seeds": list(job["final_seeds"]),
        "sampler": {"name": "optuna.samplers.RandomSampler", "seed": int(job["sampler_seed"]),
                    "optuna": optuna.__version__},
    }


def run_selection(job: Mapping[str, Any], metrics: Sequence[str | Path], *, draws_tsv: str | Path,
                  chosen_yaml: str | Path, study: str | Path) -> dict[str, Any]:
    """tune_select of one arm: rank its draws, write ``draws.tsv``, ``chosen.yaml`` and the Optuna journal.

    ``job`` (the rule's params): ``arm``, ``space``, ``pinned``, ``draws``, ``sampler_seed``,
    ``train_seeds``, ``metric``, ``valence_weight``, ``budget``, ``final_seeds``, ``folds``.
    ``metrics``: the ``metrics.json`` of every draw x fold, draw-major. Returns the chosen record.
    """
    from prmf.atomic import atomic_path

    n, k = len(job["draws"]), int(job["folds"])
    if len(metrics) != n * k:
        raise ValueError(f"{len(metrics)} metrics files for {n} draws x {k} folds")
    per_draw = [list(metrics[d * k:(d + 1) * k]) for d in range(n)]
    with atomic_path(study) as tmp:
        ranked, best = select_draws(job["draws"], per_draw, metric=job["metric"],
                                    valence_weight=float(job["valence_weight"]), seed=int(job["sampler_seed"]),
                                    space=job["space"], train_seeds=job["train_seeds"], storage=tmp,
                                    study_name=f"tune-{job['arm']}")
    record = chosen_record(job, ranked, best)
    write_selection(ranked, record, draws_tsv, chosen_yaml)
    return record


def write_selection(ranked, record: Mapping[str, Any], draws_tsv: str | Path, chosen_yaml: str | Path) -> None:
    """Write ``draws.tsv`` (the ranked table) and ``chosen.yaml``, both or neither (:mod:`prmf.atomic`)."""
    import yaml

    from prmf.atomic import write_files

    write_files({draws_tsv: ranked.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g"),
                 chosen_yaml: yaml.safe_dump(dict(record), sort_keys=False)})


def read_chosen(path: str | Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def with_chosen(arm: Mapping[str, Any], chosen: str | Path | Sequence | None) -> dict[str, Any]:
    """``arm`` (a job's ``params.arm``) with the values of ``chosen.yaml`` on top; unchanged when
    ``chosen`` is ``None`` or empty (an untuned arm). Raises when the file is another arm's."""
    if chosen is None or (not isinstance(chosen, (str, Path)) and len(chosen) == 0):
        return dict(arm)
    path = chosen if isinstance(chosen, (str, Path)) else chosen[0]
    record = read_chosen(path)
    if record.get("arm") != arm.get("arm"):
        raise ValueError(f"{path} is the choice of arm {record.get('arm')!r}, not of {arm.get('arm')!r}")
    return {**arm, **record["values"]}


# --------------------------------------------------------------------------- report


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_format_value(v)}" for k, v in values.items())


def budget_text(budget: Mapping[str, Any] | None) -> str:
    """``"50 draws × 5 folds, best draw on 6 seeds"`` (a tuned arm's budget, for the tables), or
    ``"none: config values"`` for an untuned arm (``budget`` ``None``)."""
    if not budget:
        return "none: config values"
    seeds = budget["final_seeds"]
    return f"{budget['draws']} draws × {budget['folds']} folds, best draw on {seeds} seed{'s' if seeds != 1 else ''}"


def budgets_equal(budgets: Sequence[Mapping[str, Any]]) -> bool:
    """Whether tuned arms' budgets (``draws``, ``folds``, ``final_seeds``) are all the same."""
    return len({(b["draws"], b["folds"], b["final_seeds"]) for b in budgets}) <= 1
