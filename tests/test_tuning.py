"""Fair tuning (prmf.tuning, workflow/rules/tune.smk): reproducible draws, a selection that reads
validation metrics only, the same budget for every arm, and a tiny tuned study end to end."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from prmf.config import ConfigError, load_config, merge_configs, training_arms as config_training_arms
from prmf.tuning import (
    budget_text,
    read_val_metrics,
    run_selection,
    sampler_seed,
    select_draws,
    training_arms,
    tuning_plan,
    with_chosen,
)
from prmf.tables import tuning_table

REPO = Path(__file__).resolve().parent.parent
MERBENCH_ATTENTION = {"hidden_dim": [64, 128, 256], "dropout": [0.2, 0.3, 0.4, 0.5], "lr": [1.0e-3, 1.0e-4]}


def study(**tuning) -> dict:
    """config/config.yaml with a tuning block (validated, defaults filled)."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = merge_configs(base, {"tuning": {"enabled": True, **tuning}})
    from prmf.config import validate_config

    return validate_config(cfg)


# ---------------------------------------------------------------- config and draws


def test_schema_defaults_are_merbench_and_off():
    cfg = load_config(REPO / "config" / "config.yaml")
    t = cfg["tuning"]
    assert t["enabled"] is False and t["draws"] == 50 and t["final_seeds"] == 6 and t["metric"] == "score"
    assert t["space"]["attention"] == MERBENCH_ATTENTION  # MERBench's toolkit/model-tune.yaml `attention`
    prmf = t["space"]["prmf"]
    assert {k: prmf[k] for k in MERBENCH_ATTENTION} == MERBENCH_ATTENTION  # shared keys: the same lists
    for key, paper in {"kl_weight": 0.005, "recon_weight": 0.15, "cross_kl_weight": 0.01, "tau": 0.8,
                       "modality_dropout_max": 0.2, "warmup_epochs": 15}.items():
        assert min(prmf[key]) < paper < max(prmf[key]) or paper in prmf[key], key
    assert tuning_plan(cfg).arms == {}


@pytest.mark.parametrize("bad", [
    {"space": {"attention": {"hidden_dm": [64]}}},
    {"space": {"attention": {"dropout": [1.5]}}},
    {"metric": "loss"},
    {"arms": {"exp4": {"pin": "tau"}}},
    {"draws": 0},
])
def test_schema_rejects_bad_tuning(bad):
    with pytest.raises(ConfigError, match=r"tuning\."):
        study(**{"arms": ["exp4"], **bad})


def test_draws_are_reproducible_known_in_advance_and_within_the_space():
    cfg = study(arms=["baseline", "exp4"], draws=12)
    a, b = tuning_plan(cfg), tuning_plan(copy.deepcopy(cfg))
    assert list(a.arms) == ["baseline", "exp4"]
    for arm in a.arms:
        assert a.arms[arm].draws == b.arms[arm].draws and len(a.arms[arm].draws) == 12
    assert set(a.arms["baseline"].space) == set(MERBENCH_ATTENTION)
    assert set(a.arms["exp4"].space) == {*MERBENCH_ATTENTION, "kl_weight", "recon_weight", "cross_kl_weight", "tau",
                                         "modality_dropout_max", "warmup_epochs"}
    for at in a.arms.values():
        for draw in at.draws:
            assert set(draw) == set(at.space) and all(draw[k] in at.space[k] for k in draw)
    # the draws are Optuna's RandomSampler(seed) asks: re-asking them gives the same values
    from prmf.tuning import ask_draws

    at = a.arms["exp4"]
    assert [t.params for t in ask_draws(at.space, 12, sampler_seed(0, "exp4"))] == at.draws
    other = tuning_plan(study(arms=["baseline", "exp4"], draws=12, seed=1))
    assert other.arms["exp4"].draws != at.draws
    # a draw's job: the resolved arm with the draw's values, trained with seed train_seed + draw
    p = a.draw_params(cfg, "exp4", 3)
    assert {k: p[k] for k in at.space} == at.draws[3] and p["use_vae"] is True and a.draw_seed(3) == 1003


def test_one_arms_space_changes_only_its_draws():
    before = tuning_plan(study(arms=["baseline", "exp4"], draws=10))
    after = tuning_plan(study(arms={"baseline": {}, "exp4": {"space": {"tau": [0.3, 0.6]}}}, draws=10))
    assert after.arms["baseline"].draws == before.arms["baseline"].draws
    assert after.arms["exp4"].draws != before.arms["exp4"].draws
    assert {d["tau"] for d in after.arms["exp4"].draws} <= {0.3, 0.6}


def test_pinned_and_ignored_keys_are_not_drawn():
    cfg = study(arms={"exp4": {"pin": ["warmup_epochs", "tau"]}, "exp1": None})
    plan = tuning_plan(cfg)
    exp4 = plan.arms["exp4"]
    assert exp4.pinned == {"warmup_epochs": 15, "tau": 0.8}
    assert "tau" not in exp4.space and all(d["tau"] == 0.8 for d in [plan.draw_params(cfg, "exp4", 0)])
    # exp1 is model prmf without the VAE: the VAE's weights and tau would do nothing, so they are not drawn
    assert set(plan.arms["exp1"].space) == {*MERBENCH_ATTENTION, "modality_dropout_max", "warmup_epochs"}
    # final runs: the drawn keys are not job parameters (their scripts read chosen.yaml)
    final = plan.final_params(cfg, "exp4")
    assert not set(exp4.space) & set(final) and final["tau"] == 0.8
    assert plan.arm_seeds("exp4", [0, 1]) == [0, 1, 2, 3, 4, 5] and plan.arm_seeds("baseline", [0, 1]) == [0, 1]


@pytest.mark.parametrize("tuning, message", [
    ({"arms": {"exp4": {"pin": ["grad_clip"]}}}, "not in the arm's space"),
    ({"arms": {"exp1": {"space": {"tau": [0.5, 1.0]}}}}, "ignores 'tau'"),
    ({"arms": ["nope"]}, "not a run arm"),
    ({"arms": []}, "no arm is named"),
    ({"arms": ["exp4"], "train_seed": 3}, "overlap the final seeds"),
    ({"arms": {"exp4": {"space": {"hidden_dim": [6]}}}}, "does not divide"),
])
def test_config_errors_name_the_key(tuning, message):
    with pytest.raises(ConfigError, match=message):
        tuning_plan(study(**tuning))


def test_identical_untuned_arms_still_share_folds():
    base = study(arms=["baseline"])
    assert training_arms(base, tuning_plan(base))["exp1"] == "robust_v1"
    assert training_arms(base, tuning_plan(base)) == config_training_arms(base)
    # a tuned arm trains its own folds, and no untuned arm reads them
    tuned = study(arms=["robust_v1"])
    mapping = training_arms(tuned, tuning_plan(tuned))
    assert mapping["robust_v1"] == "robust_v1" and mapping["exp1"] == "exp1"


# ---------------------------------------------------------------- selection: validation metrics only


def _fold_metrics(path: Path, val: dict, test: dict | None) -> Path:
    metrics = {"val": {"n": 50, **val}}
    if test is not None:
        metrics |= {split: {"n": 40, **test} for split in ("test1", "test2", "test3")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"arm": "exp4", "fold": 0, "metrics": metrics}))
    return path


SPACE = {"dropout": [0.2, 0.4], "lr": [1.0e-3, 1.0e-4]}


def _crafted(tmp_path: Path, val_f1: list[float], test_f1: list[float], *, folds: int = 2, test: bool = True):
    """One draw per entry: validation F1 ``val_f1[d]`` and test F1 ``test_f1[d]`` on every fold."""
    from prmf.tuning import ask_draws

    draws = [t.params for t in ask_draws(SPACE, len(val_f1), 7)]
    paths = [[_fold_metrics(tmp_path / f"d{d}f{k}.json", {"f1": v, "acc": v, "val_mse": 1.0},
                            {"f1": t, "acc": t, "val_mse": 0.0} if test else None)
              for k in range(folds)] for d, (v, t) in enumerate(zip(val_f1, test_f1))]
    return draws, paths


def test_selection_never_reads_test_metrics(tmp_path):
    """Test scores rank the draws opposite to their validation scores: reading them would flip the choice."""
    val, test = [0.50, 0.60, 0.70, 0.55], [0.95, 0.80, 0.30, 0.90]
    draws, paths = _crafted(tmp_path, val, test)
    for metric in ("score", "f1", "acc"):
        ranked, best = select_draws(draws, paths, metric=metric, seed=7, space=SPACE)
        assert best["draw"] == 2, metric  # best validation; by test it would be draw 0
        assert list(ranked["draw"]) == [2, 1, 3, 0]
    ranked, _ = select_draws(draws, paths, seed=7, space=SPACE)
    assert ranked.loc[0, "cv_mean"] == pytest.approx(0.70 - 0.25 * 1.0)  # f1 - 0.25 val_mse, val only
    # the same files without any test metrics give the identical ranking
    draws2, paths2 = _crafted(tmp_path / "no_test", val, test, test=False)
    ranked2, _ = select_draws(draws2, paths2, seed=7, space=SPACE)
    assert ranked2.drop(columns=[]).equals(ranked)
    assert set(read_val_metrics(paths[0][0])) == {"f1", "acc", "val_mse", "n"}


def test_failed_draws_are_never_chosen(tmp_path):
    draws, paths = _crafted(tmp_path, [0.5, 0.9, 0.6], [0.5, 0.5, 0.5])
    info = json.loads(paths[1][1].read_text())
    info["metrics"]["val"]["val_mse"] = float("nan")  # a diverged fold of the otherwise best draw
    paths[1][1].write_text(json.dumps(info))
    ranked, best = select_draws(draws, paths, seed=7, space=SPACE)
    assert best["draw"] == 2 and list(ranked["status"]) == ["ok", "ok", "failed"]
    for d in (0, 2):
        info = json.loads(paths[d][0].read_text())
        info["metrics"]["val"]["f1"] = float("nan")
        paths[d][0].write_text(json.dumps(info))
    with pytest.raises(ValueError, match="no draw has a finite"):
        select_draws(draws, paths, seed=7, space=SPACE)


def test_selection_refuses_draws_optuna_would_not_ask(tmp_path):
    draws, paths = _crafted(tmp_path, [0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match="re-asks"):
        select_draws(draws[::-1], paths, seed=7, space=SPACE)


def test_run_selection_writes_table_choice_and_optuna_journal(tmp_path):
    import optuna

    draws, paths = _crafted(tmp_path, [0.5, 0.8, 0.6, 0.7], [0.9, 0.1, 0.9, 0.9], folds=3)
    job = {"arm": "exp4", "space": SPACE, "pinned": {"tau": 0.8}, "draws": draws, "sampler_seed": 7,
           "train_seeds": [1000, 1001, 1002, 1003], "metric": "score", "valence_weight": 0.25, "folds": 3,
           "budget": {"draws": 4, "folds": 3, "runs": 12, "final_seeds": 2, "metric": "score", "seed": 0,
                      "keys": list(SPACE), "combinations": 4},
           "final_seeds": [0, 1]}
    out = tmp_path / "out"
    record = run_selection(job, [p for d in paths for p in d], draws_tsv=out / "draws.tsv",
                           chosen_yaml=out / "chosen.yaml", study=out / "study.jsonl")
    chosen = yaml.safe_load((out / "chosen.yaml").read_text())
    assert chosen == record and chosen["draw"] == 1 and chosen["values"] == draws[1]
    assert chosen["train_seed"] == 1001 and chosen["cv"]["folds"] == 3
    assert chosen["median_draw_cv"] == pytest.approx(0.65 - 0.25)
    import pandas as pd

    table = pd.read_csv(out / "draws.tsv", sep="\t")
    assert list(table["rank"]) == [1, 2, 3, 4] and list(table["draw"]) == [1, 3, 2, 0]
    assert {"dropout", "lr", "cv_mean", "cv_std", "fold0", "fold2", "status"} <= set(table.columns)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    stored = optuna.load_study(study_name="tune-exp4",
                               storage=JournalStorage(JournalFileBackend(str(out / "study.jsonl"))))
    assert len(stored.trials) == 4 and stored.best_trial.number == 1
    assert [t.params for t in stored.trials] == draws
    assert stored.best_value == pytest.approx(0.8 - 0.25)
    # the final runs' parameters: the chosen values on the arm's own
    arm = {"arm": "exp4", "tau": 0.8, "epochs": 3}
    assert with_chosen(arm, str(out / "chosen.yaml")) == {**arm, **draws[1]}
    assert with_chosen(arm, None) == arm and with_chosen(arm, []) == arm
    with pytest.raises(ValueError, match="choice of arm 'exp4'"):
        with_chosen({"arm": "baseline"}, out / "chosen.yaml")
    text = tuning_table([record], {"exp4": "Exp4"}, "tiny")
    assert "4 draws × 3 folds = 12 runs" in text and "dropout=" in text and "pinned tau=0.8" in text
    assert "Every arm got the same budget." in text


def test_tables_state_each_arms_budget():
    from test_tables import ABLATION_ARMS, ARMS, METRICS, make_summary

    from prmf.tables import ablation_table, comparison_table

    runs = [make_summary(arm, seed) for arm in METRICS for seed in METRICS[arm]]
    budget = {"draws": 50, "folds": 5, "runs": 250, "final_seeds": 6, "metric": "score", "seed": 0,
              "keys": ["lr"], "combinations": 2}
    tuned = comparison_table(runs, None, ARMS, None, tuning={"exp4": budget})
    assert "| Tuning |" in tuned and "50 draws × 5 folds, best draw on 6 seeds" in tuned
    assert "none: config values" in tuned and "budgets differ" in tuned
    # without tuning (or none of the shown arms tuned) the tables are as before
    plain = comparison_table(runs, None, ARMS, None)
    assert comparison_table(runs, None, ARMS, None, tuning={}) == plain
    assert comparison_table(runs, None, ARMS, None, tuning={"exp9": budget}) == plain
    abl = ablation_table(runs, ARMS, ABLATION_ARMS, "exp4", tuning={a: budget for a in ABLATION_ARMS})
    assert "| Tuning |" in abl and "budgets differ" not in abl
    assert budget_text(None) == "none: config values"


# ---------------------------------------------------------------- a tiny tuned study, end to end

TINY_TUNING = {
    "enabled": True,
    "arms": {"baseline": {}, "exp4": {"space": {"warmup_epochs": [0, 1]}}},
    "draws": 3,
    "final_seeds": 1,
    "seed": 0,
    "space": {
        "attention": {"hidden_dim": [16, 32], "dropout": [0.2, 0.4], "lr": [1.0e-3, 1.0e-4]},
        "prmf": {"hidden_dim": [16, 32], "dropout": [0.2, 0.4], "lr": [1.0e-3, 1.0e-4], "tau": [0.5, 1.0]},
    },
}


@pytest.fixture(scope="module")
def tuned_study(tmp_path_factory):
    from e2e_helpers import make_tiny_project, run_snakemake

    project = make_tiny_project(tmp_path_factory.mktemp("tuned"), tuning=TINY_TUNING)
    return project, run_snakemake(project)


@pytest.mark.e2e
def test_tuned_study_runs_every_stage(tuned_study):
    from e2e_helpers import jobs_run

    project, proc = tuned_study
    counts = jobs_run(proc)
    assert counts["tune_fold"] == 2 * 3 * 2  # arms x draws x folds
    assert counts["tune_select"] == 2 and counts["tuning_table"] == 1 and counts["plot_tuning"] == 1
    assert counts["train_fold"] == 2 * 1 * 2  # final runs: arms x final seeds x folds
    assert counts["aggregate_run"] == 2 and counts["evaluate_robustness"] == 2
    results = project / "results"
    for arm in ("baseline", "exp4"):
        d = results / "tuning/tiny" / arm
        assert {p.name for p in d.iterdir()} == {"draw0", "draw1", "draw2", "draws.tsv", "chosen.yaml", "study.jsonl"}
        for draw in range(3):
            for fold in range(2):
                assert {p.name for p in (d / f"draw{draw}/fold{fold}").iterdir()} == {
                    "predictions.npz", "metrics.json", "history.tsv"}
                # the draws predicted their test splits; the selection did not read them
                assert "test1" in json.loads((d / f"draw{draw}/fold{fold}/metrics.json").read_text())["metrics"]
        chosen = yaml.safe_load((d / "chosen.yaml").read_text())
        assert chosen["budget"]["draws"] == 3 and chosen["budget"]["folds"] == 2 and chosen["final_seeds"] == [0]
        # the final runs trained the chosen values and report them
        hyper = json.loads((results / f"runs/tiny/{arm}/seed0/summary.json").read_text())["hyper"]
        assert {k: hyper[k] for k in chosen["values"]} == chosen["values"]
        fold = json.loads((results / f"runs/tiny/{arm}/seed0/fold0/metrics.json").read_text())
        assert fold["seed"] == 0 and math.isfinite(fold["metrics"]["val"]["f1"])
    exp4_space = yaml.safe_load((results / "tuning/tiny/exp4/chosen.yaml").read_text())["budget"]["keys"]
    assert sorted(exp4_space) == ["dropout", "hidden_dim", "lr", "tau", "warmup_epochs"]
    tuning_md = (results / "tables/tuning.md").read_text()
    assert "3 draws × 2 folds = 6 runs" in tuning_md and "Every arm got the same budget." in tuning_md
    for name in ("comparison.md", "ablation.md"):
        assert "3 draws × 2 folds, best draw on 1 seed" in (results / "tables" / name).read_text(), name
    assert (results / "plots/tuning_draws.png").stat().st_size > 1000


@pytest.mark.e2e
def test_tuned_study_rerun_does_nothing(tuned_study):
    from e2e_helpers import run_snakemake

    proc = run_snakemake(tuned_study[0])
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_changing_one_arms_space_reruns_only_that_arm(tuned_study, tmp_path):
    from e2e_helpers import copy_project, read_config, run_snakemake, write_config
    from test_workflow import _wildcard_jobs

    project = copy_project(tuned_study[0], tmp_path / "copy")
    cfg = read_config(project)
    cfg["tuning"]["arms"]["exp4"]["space"]["warmup_epochs"] = [1, 2]
    write_config(project, cfg)
    proc = run_snakemake(project, "-n")
    for rule in ("tune_fold", "tune_select", "train_fold", "aggregate_run", "evaluate_robustness"):
        jobs = _wildcard_jobs(proc, rule)
        assert jobs and all("arm=exp4" in w for w in jobs), (rule, jobs)


@pytest.mark.e2e
def test_packed_tuning_chooses_the_same_draws(tuned_study, tmp_path):
    """training.pack: seeds -- one tune_pack job per arm x draw (its folds in one process), one
    train_pack_tuned job per tuned arm -- gives the same draws table, choice and tables."""
    from e2e_helpers import jobs_run, make_tiny_project, run_snakemake

    project, _ = tuned_study
    packed = make_tiny_project(tmp_path, tuning=TINY_TUNING, training={"pack": "seeds"})
    counts = jobs_run(run_snakemake(packed))
    assert counts["tune_pack"] == 2 * 3 and "tune_fold" not in counts  # arms x draws
    assert counts["train_pack_tuned"] == 2 and "train_fold" not in counts
    for arm in ("baseline", "exp4"):
        for name in ("draws.tsv", "chosen.yaml"):
            rel = f"results/tuning/tiny/{arm}/{name}"
            assert (packed / rel).read_text() == (project / rel).read_text(), rel
        assert (packed / f"results/logs/tiny/tune/{arm}/draw0/pack.log").read_text().count("[seed") >= 4
    for table in ("comparison.md", "tuning.md"):
        assert (packed / "results/tables" / table).read_text() == (project / "results/tables" / table).read_text()
