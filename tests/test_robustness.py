"""Robustness evaluation: masks, noise, metrics, condition keying, masking invariance, and the stage end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from e2e_helpers import TINY_CONFIG, jobs_run, run_snakemake
from prmf.config import resolve_arm
from prmf.data.store import FeatureStore
from prmf.metrics import auroc, expected_calibration_error, spearman
from prmf.models import build_model
from prmf.predictions import softmax
from prmf.robustness import RobustnessConfig, evaluate_robustness
from prmf.robustness.conditions import (
    missing_condition,
    noise_condition,
    plan_draws,
    subset_condition,
    subsets,
)
from prmf.robustness.perturb import add_noise, combine_available, cpm_missing_mask
from prmf.train import predict, tensor_set

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- CPM masks
@pytest.mark.parametrize("n,m", [(200, 3), (57, 3), (100, 2), (64, 4)])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
def test_cpm_mask_keeps_a_modality_and_hits_the_rate(n, m, rate):
    present = cpm_missing_mask(n, m, rate, np.random.default_rng(3))
    assert present.shape == (n, m) and present.dtype == bool
    assert present.any(axis=1).all(), "a sample lost every modality"
    achieved = 1.0 - present.mean()
    feasible = min(rate, (m - 1) / m)  # at most M-1 of M modalities can go
    assert abs(achieved - feasible) <= 1 / (2 * n * m) + 1e-12


def test_cpm_mask_rate_over_the_cap_keeps_exactly_one_modality():
    present = cpm_missing_mask(90, 3, 0.7, 0)
    assert (present.sum(1) == 1).all()


def test_cpm_mask_drop_counts_vary_and_modalities_are_spread():
    present = cpm_missing_mask(3000, 3, 0.3, 1)
    kept = present.sum(1)
    assert set(np.unique(kept)) == {1, 2, 3}  # not all samples lose exactly the same number
    per_mod = 1 - present.mean(0)
    assert np.allclose(per_mod, 0.3, atol=0.03)  # which modality is dropped is uniform


def test_cpm_mask_same_seed_same_mask():
    a = cpm_missing_mask(123, 3, 0.4, np.random.default_rng(7))
    b = cpm_missing_mask(123, 3, 0.4, np.random.default_rng(7))
    c = cpm_missing_mask(123, 3, 0.4, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_combine_available_ands_and_keeps_one():
    present = np.array([[True, False, False], [False, True, True], [True, True, True]])
    available = np.array([[False, True, True], [True, True, False], [False, False, False]])
    out = combine_available(present, available)
    assert np.array_equal(out, present & available)
    fixed = combine_available(present, available, np.random.default_rng(0))
    assert fixed[0].sum() == 1 and not fixed[0, 0]  # one of its available modalities
    assert np.array_equal(fixed[1], [False, True, False])
    assert not fixed[2].any()  # nothing available: stays empty
    assert not (fixed & ~available).any()


# ---------------------------------------------------------------- noise
@pytest.mark.parametrize("snr", [20.0, 5.0, 0.0, -5.0])
def test_add_noise_has_the_requested_snr(snr):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4000)).astype(np.float32) * rng.uniform(0.1, 10, size=(50, 1)).astype(np.float32)
    noisy = add_noise(x, snr, np.random.default_rng(1))
    ratio = (x.astype(np.float64) ** 2).mean(1) / ((noisy - x).astype(np.float64) ** 2).mean(1)
    assert np.allclose(10 * np.log10(ratio), snr, atol=0.3)  # per sample


def test_add_noise_frame_level_leaves_padding_and_is_seeded():
    x = np.ones((3, 5, 2), np.float32)
    lengths = np.array([5, 2, 1])
    x[1, 2:] = 0
    x[2, 1:] = 0
    a = add_noise(x, 0.0, np.random.default_rng(4), lengths)
    b = add_noise(x, 0.0, np.random.default_rng(4), lengths)
    assert np.array_equal(a, b)
    assert (a[1, 2:] == 0).all() and (a[2, 1:] == 0).all()
    assert not np.allclose(a[0], 1)


# ---------------------------------------------------------------- metrics by hand
def test_ece_hand_computed():
    # 4 samples, each in its own 1/15-wide bin: ECE = mean |correct - conf|
    probs = np.array([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])  # correct, wrong, correct, wrong
    assert expected_calibration_error(probs, labels, 15) == pytest.approx((0.1 + 0.75 + 0.3 + 0.55) / 4)
    # 5 samples, 3 classes; a (0.62) and b (0.64) share the bin (0.600, 0.667]
    probs = np.array([
        [0.62, 0.20, 0.18],  # label 0: correct
        [0.10, 0.64, 0.26],  # label 2: wrong
        [0.05, 0.05, 0.90],  # label 2: correct
        [0.34, 0.33, 0.33],  # label 1: wrong
        [0.20, 0.75, 0.05],  # label 1: correct
    ])
    labels = np.array([0, 2, 2, 1, 1])
    # bin 9: 2/5*|0.5-0.63| = .052; bin 13: 1/5*.1 = .02; bin 5: 1/5*.34 = .068; bin 11: 1/5*.25 = .05
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(0.19)
    # one bin only: |acc - conf| of the whole set
    assert expected_calibration_error(probs, labels, 1) == pytest.approx(abs(3 / 5 - np.mean([.62, .64, .9, .34, .75])))
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_auroc_hand_computed():
    # 9 (neg, pos) pairs: 0.8 beats 3, 0.4 beats 2 and ties 1, 0.3 beats 1 -> 6.5 / 9
    assert auroc([0.1, 0.4, 0.35], [0.8, 0.4, 0.3]) == pytest.approx(6.5 / 9)
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert np.isnan(auroc([], [0.3]))


def test_spearman_hand_computed():
    # rank differences (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([0, 1, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([0, 1, 2], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([0, 1, 2], [1, 1, 1]))


# ---------------------------------------------------------------- config and naming
def test_config_defaults_and_unknown_keys():
    cfg = RobustnessConfig()
    assert cfg.mask_seeds == 3 and cfg.noise_seeds == 2 and cfg.ece_bins == 15
    assert cfg.missing_rates == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert RobustnessConfig.from_dict(cfg.to_dict()) == cfg
    assert RobustnessConfig.from_dict({"snr_db": [10, 0]}).snr_db == (10.0, 0.0)
    with pytest.raises(ValueError, match="unknown"):
        RobustnessConfig.from_dict({"mask_seed": 2})
    with pytest.raises(ValueError, match="robustness.noise_scope must be one of .*'global'"):
        RobustnessConfig(noise_scope="global")
    with pytest.raises(ValueError, match=r"missing_rates must lie in \[0, 1\), got \(0.5, 1.0\)"):
        RobustnessConfig(missing_rates=[0.5, 1.0])


def test_a_repeated_setting_is_refused_not_mixed():
    available = np.ones((4, 3), bool)
    with pytest.raises(ValueError, match="condition 'missing:0.3' appears twice"):
        plan_draws(["audio", "text", "video"], available, RobustnessConfig(missing_rates=[0.3, 0.3]), "test1")
    with pytest.raises(ValueError, match="condition 'noise:audio:10dB' appears twice"):
        plan_draws(["audio", "text", "video"], available, RobustnessConfig(snr_db=[10, 10.0]), "test1")


def test_plan_names_every_draw_by_its_condition():
    available = np.ones((50, 3), bool)
    available[:5, 2] = False
    cfg = RobustnessConfig(missing_rates=[0.0, 0.5], mask_seeds=2, snr_db=[10, -5], noise_seeds=3)
    plan = plan_draws(["audio", "text", "video"], available, cfg, "test1")
    assert list(plan) == [
        "subset:audio", "subset:text", "subset:video", "subset:audio+text", "subset:audio+video",
        "subset:text+video", "subset:audio+text+video", "missing:0.0", "missing:0.5",
        "noise:audio:10dB", "noise:audio:-5dB", "noise:text:10dB", "noise:text:-5dB", "noise:video:10dB",
        "noise:video:-5dB"]
    (only_text,) = plan["subset:text"]
    assert (only_text.present == [False, True, False]).all()
    assert [len(plan[c]) for c in ("missing:0.5", "noise:text:-5dB")] == [2, 3]
    # a missing-rate draw: the CPM mask drops 0.5 * 150 = 75 entries, AND-ed with the 5 absent ones
    for d in plan["missing:0.5"]:
        assert 75 <= int((~d.present).sum()) <= 80 and not (d.present & ~available).any()
        assert d.present.any(1).all()
    assert not np.array_equal(*(d.present for d in plan["missing:0.5"]))  # two different masks
    noise = [d.noise for d in plan["noise:text:-5dB"]]
    assert [(n.modality, n.snr_db, n.level, n.draw) for n in noise] == [(1, -5.0, 1, 0), (1, -5.0, 1, 1),
                                                                          (1, -5.0, 1, 2)]


def test_condition_names():
    mods = ["audio", "text", "video"]
    assert [subset_condition(s) for s in subsets(mods)] == [
        "subset:audio", "subset:text", "subset:video", "subset:audio+text", "subset:audio+video",
        "subset:text+video", "subset:audio+text+video"]
    assert missing_condition(0.3) == "missing:0.3" and missing_condition(0.0) == "missing:0.0"
    assert noise_condition("video", 5.0) == "noise:video:5dB" and noise_condition("audio", -5) == "noise:audio:-5dB"


# ---------------------------------------------------------------- masking invariance
def _tiny_store(n=40, seed=0, missing_video=()):
    rng = np.random.default_rng(seed)
    dims = {"audio": 8, "text": 12, "video": 6}
    split = np.array(["train"] * (n // 2) + ["test1"] * (n - n // 2))
    missing = {m: np.zeros(n, bool) for m in dims}
    missing["video"][list(missing_video)] = True
    return FeatureStore(
        names=np.array([f"s{i:03d}" for i in range(n)]), labels=rng.integers(0, 6, n),
        valence=rng.normal(size=n).astype(np.float32), split=split,
        features={m: rng.normal(size=(n, d)).astype(np.float32) for m, d in dims.items()},
        missing=missing, class_names=["neutral", "angry", "happy", "sad", "worried", "surprise"],
        feature_names={m: f"synthetic-{m}-UTT" for m in dims}, source="synthetic", dataset="tiny")


ARMS = {name: resolve_arm(TINY_CONFIG, name) for name in ("baseline", "exp4")}


@pytest.mark.parametrize("arm_name", ["baseline", "exp4"])
def test_masked_modality_changes_nothing(arm_name):
    torch.manual_seed(0)
    store = _tiny_store()
    model = build_model(ARMS[arm_name], list(store.dims().values()), 6)
    data = tensor_set(store, np.arange(len(store)), torch.device("cpu"))
    present = torch.ones(len(store), 3, dtype=torch.bool)
    present[:, 2] = False  # no video
    a = predict(model, data, present=present)
    data.xs[2] = torch.randn_like(data.xs[2]) * 100.0  # other video values, even huge ones
    b = predict(model, data, present=present)
    assert np.array_equal(a.logits, b.logits)
    assert np.array_equal(a.valence, b.valence)
    assert np.array_equal(a.fusion_weights, b.fusion_weights, equal_nan=True)
    assert np.array_equal(a.uncertainty, b.uncertainty, equal_nan=True)
    assert (a.fusion_weights[:, 2] == 0).all()
    # ... whereas with video present its values matter
    full = torch.ones_like(present)
    assert not np.array_equal(predict(model, data, present=full).logits, a.logits)


def _save_fold_models(tmp_path, arm, store, n_folds=2):
    paths = []
    for k in range(n_folds):
        torch.manual_seed(k)
        model = build_model(arm, list(store.dims().values()), len(store.class_names))
        paths.append(tmp_path / f"{arm['arm']}_fold{k}.pt")
        torch.save(model.state_dict(), paths[-1])
    return paths


def _folds(store, n_folds=2):
    train = store.names[store.indices("train")]
    return {"folds": [{"fold": k, "train": sorted(np.delete(train, np.s_[k::n_folds])),
                       "val": sorted(train[k::n_folds])} for k in range(n_folds)]}


SMALL = {"missing_rates": [0.0, 0.3, 0.7], "mask_seeds": 2, "snr_db": [10, -5], "noise_seeds": 2}


def test_evaluate_robustness_conditions_and_store_missing(tmp_path):
    store = _tiny_store(missing_video=[25, 26, 27])  # three test1 samples lack video in the data
    folds = _folds(store)
    out = {}
    for name, arm in ARMS.items():
        df = evaluate_robustness(store, folds, _save_fold_models(tmp_path, arm, store), arm, 0, SMALL)
        assert list(df.columns) == ["arm", "seed", "split", "condition", "metric", "value"]
        assert set(df.split) == {"test1", "cv"}
        conds = set(df.condition)
        assert {"subset:audio+text+video", "subset:mean_incomplete", "missing:0.3", "missing:mean",
                "noise:video:-5dB", "noise:video", "noise:mean"} <= conds
        t = df[df.split == "test1"].set_index(["condition", "metric"])["value"]
        # the store's missing video stays missing (AND-ed into every mask)
        assert t[("missing:0.0", "missing_fraction")] == pytest.approx(3 / (20 * 3))
        assert t[("missing:0.7", "missing_fraction")] == pytest.approx(2 / 3)
        assert 0 <= t[("subset:audio+text+video", "ece")] <= 1
        out[name] = t
    # uncertainty diagnostics exist for the VAE arm only
    assert ("noise:audio", "spearman_uncertainty") in out["exp4"].index
    assert ("noise:audio:10dB", "auroc_uncertainty") in out["exp4"].index
    assert ("subset:audio", "uncertainty:audio") in out["exp4"].index
    assert ("noise:audio", "spearman_uncertainty") not in out["baseline"].index
    # the same models give the same numbers (fixed masks and noise)
    again = evaluate_robustness(store, folds, sorted(tmp_path.glob("exp4_fold*.pt")), ARMS["exp4"], 0, SMALL)
    assert np.allclose(again[again.split == "test1"].set_index(["condition", "metric"])["value"], out["exp4"],
                       equal_nan=True)


@pytest.mark.parametrize("arm_name", ["baseline", "exp4"])
def test_each_subset_result_is_its_own_condition(tmp_path, arm_name):
    """The TSV's subset rows equal the fold ensemble predicted directly with that subset's mask."""
    store = _tiny_store(missing_video=[25, 26, 27])
    arm = ARMS[arm_name]
    paths = _save_fold_models(tmp_path, arm, store)
    df = evaluate_robustness(store, _folds(store), paths, arm, 0, SMALL | {"splits": ["test1"]})
    got = df.set_index(["condition", "metric"])["value"]
    rows = store.indices("test1")
    data = tensor_set(store, rows, torch.device("cpu"))
    available = np.stack([~store.missing[m][rows] for m in store.modalities], 1)
    models = []
    for path in paths:
        model = build_model(arm, list(store.dims().values()), len(store.class_names))
        model.load_state_dict(torch.load(path, weights_only=True))
        models.append(model.eval())
    labels = store.labels[rows]
    for subset in subsets(store.modalities):
        present = available & np.array([m in subset for m in store.modalities])
        with torch.inference_mode():
            logits = np.mean([predict(m, data, present=torch.from_numpy(present)).logits for m in models], axis=0)
        name = subset_condition(subset)
        assert got[(name, "acc")] == pytest.approx(np.mean(logits.argmax(1) == labels), abs=1e-12), name
        assert got[(name, "n")] == len(rows)
    # the last logits are the clean condition's: its ECE, and missing rate 0 is the clean condition again
    ece = expected_calibration_error(softmax(logits.astype(np.float64)), labels, 15)
    assert got[("subset:audio+text+video", "ece")] == pytest.approx(ece, abs=1e-12)
    for metric in ("acc", "f1", "val_mse"):
        assert got[("missing:0.0", metric)] == pytest.approx(got[("subset:audio+text+video", metric)], abs=1e-12)


def test_masked_modality_in_the_protocol_ignores_its_values(tmp_path):
    """subset:audio+text does not depend on the video features, for both arms."""
    store = _tiny_store()
    folds = _folds(store)
    for name, arm in ARMS.items():
        paths = _save_fold_models(tmp_path, arm, store)
        a = evaluate_robustness(store, folds, paths, arm, 0, SMALL)
        store.features["video"] = store.features["video"] * -3 + 1
        b = evaluate_robustness(store, folds, paths, arm, 0, SMALL)
        store.features["video"] = (store.features["video"] - 1) / -3
        key = ["split", "condition", "metric"]
        va = a[a.condition == "subset:audio+text"].set_index(key)["value"]
        vb = b[b.condition == "subset:audio+text"].set_index(key)["value"]
        assert np.array_equal(va.to_numpy(), vb.to_numpy(), equal_nan=True), name


# ---------------------------------------------------------------- end to end
ROBUSTNESS_OUTPUTS = [
    "results/tables/robustness.md",
    "results/plots/robustness_missing_rate.png",
    "results/plots/robustness_subsets.png",
    "results/plots/robustness_fusion_weights.png",
    "results/plots/training_curves/baseline.png",
    "results/plots/training_curves/exp4.png",
]


# robustness_project: the session's one tiny study (tests/conftest.py), shared with test_workflow.py


@pytest.mark.e2e
def test_e2e_outputs(robustness_project):
    project, proc = robustness_project
    counts = jobs_run(proc)
    assert counts["evaluate_robustness"] == 2 and counts["plot_training_curves"] == 2
    for arm in ("baseline", "exp4"):
        tsv = project / "results" / "robustness" / "tiny" / arm / "seed0.tsv"
        df = pd.read_csv(tsv, sep="\t")
        assert set(df.split) == {"test1", "cv"}
        assert {"subset:audio", "subset:audio+text+video", "subset:mean_incomplete", "missing:0.0", "missing:0.7",
                "missing:mean", "noise:video:-5dB", "noise:text:20dB", "noise:mean"} <= set(df.condition)
        assert df[df.metric == "acc"]["value"].between(0, 1).all()
        assert (project / "results" / "benchmarks" / "tiny" / "robustness" / arm / "seed0.tsv").exists()
        assert (project / "results" / "logs" / "tiny" / "robustness" / arm / "seed0.log").exists()
    md = (project / "results" / "tables" / "robustness.md").read_text()
    assert "Baseline (v0)" in md and "Exp4: P-RMF (full)" in md and "**" in md
    assert "Random missing rate" in md and "Modality subsets" in md and "AUROC" in md
    for out in ROBUSTNESS_OUTPUTS[1:]:
        png = project / out
        assert png.read_bytes()[:8] == PNG_SIGNATURE, out
        assert png.stat().st_size > 5_000, out
        svg = png.with_suffix(".svg")
        assert svg.stat().st_size > 5_000 and b"<svg" in svg.read_bytes()[:2000], svg


@pytest.mark.e2e
def test_e2e_rerun_does_nothing(robustness_project):
    project, _ = robustness_project
    proc = run_snakemake(project, *ROBUSTNESS_OUTPUTS)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_e2e_report_has_robustness_category(robustness_project):
    project, _ = robustness_project
    run_snakemake(project, "--report", "robustness_report.html", *ROBUSTNESS_OUTPUTS)
    html = (project / "robustness_report.html").read_text(errors="replace")
    assert "Robustness" in html and "Training" in html
