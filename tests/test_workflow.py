"""End-to-end Snakemake runs of the data and training stages on a tiny study in a temp dir.

The tiny study is trained once per session (``tiny_study`` in conftest.py) and
shared with tests/test_robustness.py; a test that edits a project edits a copy.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import subprocess

import numpy as np
import pytest
import torch

from e2e_helpers import copy_project, jobs_run, make_tiny_project, read_config, run_snakemake, write_config

pytestmark = pytest.mark.e2e


def _wildcard_jobs(proc, rule: str) -> list[str]:
    """'arm=..., seed=..., fold=...' of every planned job of ``rule`` in a dry run's output."""
    text = proc.stdout + proc.stderr
    out = []
    for block in re.split(r"\n(?=\[|rule |localrule )", text):
        if re.search(rf"^\s*(local)?rule {rule}:", block, re.M):
            m = re.search(r"wildcards: (.*)", block)
            out.append(m.group(1).strip() if m else "")
    return out


# ---------------------------------------------------------------- data stage
@pytest.fixture(scope="module")
def data_project(tiny_study):
    """The tiny study's project (its data stage ran as part of the whole study)."""
    return tiny_study[0]


def test_data_stage_outputs(data_project):
    d = data_project / "results" / "data" / "tiny"
    assert (d / "features.h5").stat().st_size > 10_000
    report = json.loads((d / "validation.json").read_text())
    assert report["ok"] is True
    assert report["summary"]["split_sizes"] == {"train": 169, "test1": 21, "test2": 21, "test3": 42}
    folds = json.loads((d / "folds.json").read_text())
    assert folds["n_folds"] == 2 and len(folds["folds"]) == 2
    for name in ("prepare_dataset", "validate_features", "make_folds"):
        assert (data_project / "results" / "logs" / "tiny" / f"{name}.log").exists()


def test_data_stage_rerun_does_nothing(data_project):
    proc = run_snakemake(data_project, "results/data/tiny/folds.json")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_editing_a_data_parameter_reruns_data_stage(data_project, tmp_path):
    project = copy_project(data_project, tmp_path / "copy")
    proc = run_snakemake(project, "-n", "results/data/tiny/folds.json")
    assert "Nothing to be done" in proc.stdout + proc.stderr  # the copy is up to date
    cfg = read_config(project)
    cfg["dataset"]["synthetic"]["seed"] = 7
    write_config(project, cfg)
    proc = run_snakemake(project, "-n", "results/data/tiny/folds.json")
    assert jobs_run(proc) == {"prepare_dataset": 1, "validate_features": 1, "make_folds": 1}
    cfg["dataset"]["synthetic"]["seed"] = 0
    cfg["cv"]["split_seed"] = 3  # a folds-only parameter reruns make_folds alone
    write_config(project, cfg)
    proc = run_snakemake(project, "-n", "results/data/tiny/folds.json")
    assert jobs_run(proc) == {"make_folds": 1}


def test_dag_renders_with_dot(data_project):
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' not installed (CI installs it)")
    dag = subprocess.run([sys.executable, "-m", "snakemake", "--dag"], cwd=data_project, capture_output=True,
                         text=True, check=True)
    assert dag.stdout.lstrip().startswith("digraph")
    svg = subprocess.run(["dot", "-Tsvg"], input=dag.stdout, capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout and "train_fold" in svg.stdout


def test_misspelled_config_key_fails_naming_it(tmp_path):
    project = make_tiny_project(tmp_path, training={"epoch": 3})
    proc = run_snakemake(project, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    # one line naming the key and the fix, not the whole schema
    assert "unknown key training.epoch (did you mean 'epochs'?)" in out
    assert "additionalProperties" not in out and len(out.splitlines()) < 12


def test_unknown_arm_field_fails_naming_it(tmp_path):
    project = make_tiny_project(tmp_path, arms={"exp4": {"use_vea": True}})
    proc = run_snakemake(project, "-n", check=False)
    assert proc.returncode != 0
    assert "use_vea" in proc.stderr + proc.stdout


def test_bad_store_stops_before_training(tmp_path):
    """A fatal validation finding fails validate_features; no fold is trained."""
    project = make_tiny_project(tmp_path)
    run_snakemake(project, "results/data/tiny/features.h5")
    from prmf.data.store import read_store, write_store

    path = project / "results/data/tiny/features.h5"
    store = read_store(path)
    store.features["video"][4, 1] = np.nan
    write_store(path, store)
    proc = run_snakemake(project, check=False)
    assert proc.returncode != 0
    log = (project / "results/logs/tiny/validate_features.log").read_text()
    assert "video" in log and str(store.names[4]) in log and "NaN" in log
    assert not list((project / "results").rglob("model.pt"))
    assert not (project / "results/data/tiny/validation.json").exists()


# ---------------------------------------------------------------- training stage
def test_default_study_trains_identical_arms_once(tmp_path):
    """config/config.yaml: robust_v1 and exp1 are one model, trained once; every arm gets its row."""
    import yaml

    from e2e_helpers import REPO

    for part in ("workflow", "config"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    proc = run_snakemake(tmp_path, "-n")
    counts = jobs_run(proc)
    n_arms = len(cfg["run_arms"])
    assert {"robust_v1", "exp1"} <= set(cfg["run_arms"])
    # training.pack: auto with 2 cores and 8 trained arms: one job per arm
    assert cfg["training"].get("pack", "auto") == "auto" and "train_fold" not in counts
    assert counts["train_pack"] == n_arms - 1  # exp1 reads robust_v1's folds
    assert counts["aggregate_run"] == n_arms * len(cfg["seeds"])  # both rows appear
    assert "/exp1/seed0/fold0/model.pt" not in proc.stdout + proc.stderr


def test_study_runs_every_job(tiny_study):
    project, proc = tiny_study
    counts = jobs_run(proc)
    assert counts["train_fold"] == 4  # 2 arms x 1 seed x 2 folds
    assert counts["aggregate_run"] == 2


@pytest.mark.parametrize("arm", ["baseline", "exp4"])
def test_fold_outputs(tiny_study, arm):
    from prmf.config import load_config, resolve_arm
    from prmf.data.store import read_store
    from prmf.models import build_model
    from prmf.train import predict, tensor_set

    project, _ = tiny_study
    run = project / "results/runs/tiny" / arm / "seed0"
    params = resolve_arm(load_config(project / "config/config.yaml"), arm)
    store = read_store(project / "results/data/tiny/features.h5")
    for fold in (0, 1):
        d = run / f"fold{fold}"
        # model.pt is the arm's model (every key, every shape) and reproduces the fold's predictions
        model = build_model(params, list(store.dims().values()), len(store.class_names))
        model.load_state_dict(torch.load(d / "model.pt", weights_only=True))
        test1 = predict(model, tensor_set(store, store.indices("test1"), torch.device("cpu")))
        with np.load(d / "predictions.npz", allow_pickle=False) as z:
            np.testing.assert_allclose(z["test1_logits"], test1.logits, rtol=1e-5, atol=1e-6)
            t1 = {k: z[f"test1_{k}"] for k in ("pred", "labels", "valence", "valence_true")}
            assert set(z["splits"]) == {"val", "test1", "test2", "test3"}
            assert z["val_logits"].shape[1] == 6
            assert z["test1_probs"].shape == (21, 6)
            np.testing.assert_allclose(z["test1_probs"].sum(1), 1, rtol=1e-5)
            assert np.isnan(z["test3_valence_true"]).all()
            args = json.loads(str(z["args_json"]))
            assert args["arm"]["arm"] == arm and args["fold"] == fold
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["metrics"]["test3"]["val_mse"] is None
        # metrics.json holds the metrics of the saved predictions
        assert metrics["metrics"]["test1"]["acc"] == pytest.approx(np.mean(t1["pred"] == t1["labels"]))
        assert metrics["metrics"]["test1"]["val_mse"] == pytest.approx(
            np.mean((t1["valence"].astype(np.float64) - t1["valence_true"]) ** 2), rel=1e-5)
        history = (d / "history.tsv").read_text().splitlines()
        assert history[0].startswith("epoch\t") and len(history) == 3  # header + 2 epochs
        assert (project / f"results/logs/tiny/train/{arm}/seed0/fold{fold}.log").read_text().count("epoch") >= 2
        bench = (project / f"results/benchmarks/tiny/train/{arm}/seed0/fold{fold}.tsv").read_text().splitlines()
        assert bench[0].startswith("s\t") and len(bench) == 2 and float(bench[1].split("\t")[0]) > 0


def test_summary_and_exports(tiny_study):
    project, _ = tiny_study
    summary = json.loads((project / "results/runs/tiny/exp4/seed0/summary.json").read_text())
    assert summary["export_name"] == "attention_robust_v2"
    assert set(summary["metrics"]) == {"cv", "test1", "test2", "test3"}
    assert summary["metrics"]["test3"]["val_mse"] is None
    folds = summary["per_fold"]["cv"]
    assert summary["metrics"]["cv"]["acc"] == pytest.approx(np.mean([f["acc"] for f in folds]))
    exports = sorted((project / "results/exports/tiny/exp4/seed0").glob("*.npz"))
    assert len(exports) == 4
    names = [p.name for p in exports]
    assert all("_features:synthetic-audio-UTT+synthetic-text-UTT+synthetic-video-UTT_dataset:tiny_model:"
               "attention_robust_v2+utt+None_f1:" in n for n in names)
    # test3 has no valence: the name carries what MERBench writes (MSE against its -10
    # placeholder), so the seed's regex parses it; the summary above keeps None
    test3 = next(p for p in exports if p.name.startswith("test3_"))
    val = float(re.search(r"f1:(\d+\.\d+)_acc:(\d+\.\d+)_val:(\d+\.\d+)", test3.name).group(3))
    with np.load(test3, allow_pickle=False) as z:
        assert np.isnan(z["valence_true"]).all()
        assert val == pytest.approx(np.mean((z["valence"].astype(np.float64) + 10.0) ** 2), abs=6e-5)
    # the test export holds the fold-ensemble: mean of the fold logits
    with np.load(next(p for p in exports if p.name.startswith("test1_")), allow_pickle=False) as z:
        logits = z["logits"]
    fold_logits = []
    for fold in (0, 1):
        with np.load(project / f"results/runs/tiny/exp4/seed0/fold{fold}/predictions.npz", allow_pickle=False) as z:
            fold_logits.append(z["test1_logits"])
    np.testing.assert_allclose(logits, np.mean(fold_logits, axis=0), rtol=1e-5)


def test_rerun_does_nothing(tiny_study):
    project, _ = tiny_study
    proc = run_snakemake(project)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_study_writes_all_tables_and_one_table_target_is_up_to_date(tiny_study):
    project, _ = tiny_study
    tables = project / "results/tables"
    for name in ("best_results.md", "best_results.tsv", "comparison.md", "prmf_best.md", "sources.md",
                 "ablation.md", "robustness.md"):
        assert (tables / name).stat().st_size > 200, name
    assert "Exp4: P-RMF (full)" in (tables / "comparison.md").read_text()
    assert "—" in (tables / "prmf_best.md").read_text()  # test3 has no valence
    proc = run_snakemake(project, "results/tables/ablation.md")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_editing_one_arm_reruns_only_that_arm(tiny_study, tmp_path):
    project = copy_project(tiny_study[0], tmp_path / "copy")
    cfg = read_config(project)
    cfg["arms"]["exp4"]["tau"] = 0.5
    write_config(project, cfg)
    proc = run_snakemake(project, "-n")
    trains = _wildcard_jobs(proc, "train_fold")
    assert len(trains) == 2 and all("arm=exp4" in w for w in trains), trains
    aggs = _wildcard_jobs(proc, "aggregate_run")
    assert aggs and all("arm=exp4" in w for w in aggs)
    assert not any("arm=baseline" in w for w in _wildcard_jobs(proc, "evaluate_robustness"))
    # run it: exp4's exports are replaced, baseline's are untouched
    base_dir = project / "results/exports/tiny/baseline/seed0"
    exp4_dir = project / "results/exports/tiny/exp4/seed0"
    before_base = {p.name: p.stat().st_mtime_ns for p in base_dir.glob("*.npz")}
    before_exp4 = {p.name for p in exp4_dir.glob("*.npz")}
    proc = run_snakemake(project)
    counts = jobs_run(proc)
    assert counts["train_fold"] == 2 and counts["aggregate_run"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in base_dir.glob("*.npz")} == before_base
    after_exp4 = {p.name for p in exp4_dir.glob("*.npz")}
    assert len(after_exp4) == 4 and not (after_exp4 & before_exp4)
    hyper = json.loads((project / "results/runs/tiny/exp4/seed0/summary.json").read_text())["hyper"]
    assert hyper["tau"] == 0.5


def test_workflow_is_lint_clean_and_formatted(data_project):
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=data_project, capture_output=True,
                          text=True)
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout[-3000:]
    fmt = subprocess.run(["snakefmt", "--check", "workflow"], cwd=data_project, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr[-3000:]


def test_training_uses_gpu_without_importing_torch(tmp_path):
    from prmf.config import training_uses_gpu

    driver = tmp_path / "gpus"
    assert not training_uses_gpu("auto", {}, driver)  # no driver folder
    driver.mkdir()
    assert not training_uses_gpu("auto", {}, driver)  # driver, no GPU listed
    (driver / "0000:00:1e.0").mkdir()
    assert training_uses_gpu("auto", {}, driver)
    assert not training_uses_gpu("auto", {"CUDA_VISIBLE_DEVICES": ""}, driver)
    assert not training_uses_gpu("auto", {"CUDA_VISIBLE_DEVICES": "-1"}, driver)
    assert training_uses_gpu("auto", {"CUDA_VISIBLE_DEVICES": "0"}, driver)
    assert not training_uses_gpu("cpu", {}, driver)
    assert training_uses_gpu("cuda:1", {}, tmp_path / "none")


@pytest.mark.parametrize(("device", "pack", "gpu", "rule", "jobs"),
                         [("cpu", "none", 0, "train_fold", 4), ("cuda", "none", 1, "train_fold", 4),
                          ("cuda", "auto", 1, "train_pack", 2)])
def test_fold_jobs_take_a_gpu_only_when_training_on_one(tmp_path, device, pack, gpu, rule, jobs):
    """On CPU the fold jobs ask for no GPU, so --resources gpu=1 does not serialise them; on a
    GPU (training.pack: auto) each arm's seeds x folds train as one GPU job."""
    project = make_tiny_project(tmp_path, training={"device": device, "pack": pack})
    proc = run_snakemake(project, "-n", "--resources", "gpu=1")
    blocks = (proc.stdout + proc.stderr).split("\n\n")
    train = [b for b in blocks if re.search(rf"^\s*rule {rule}:", b, re.M)]
    assert len(train) == jobs
    assert all(re.search(rf"resources: .*gpu={gpu}\b", b) for b in train), train[0]


@pytest.mark.parametrize(("pack", "rule", "jobs"), [("folds", "train_pack_seed", 4), ("seeds", "train_pack", 2)])
def test_pack_plans_one_job_per_pack(tmp_path, pack, rule, jobs):
    """training.pack: one job per arm x seed (folds) or per arm (seeds), writing every fold's files."""
    project = make_tiny_project(tmp_path, training={"pack": pack}, seeds=[0, 1])
    proc = run_snakemake(project, "-n")
    counts = jobs_run(proc)
    assert set(counts) & {"train_fold", "train_pack", "train_pack_seed", "train_pack_tuned"} == {rule}
    assert counts[rule] == jobs
    text = proc.stdout + proc.stderr
    for arm in ("baseline", "exp4"):
        for seed in (0, 1):
            for fold in (0, 1):
                assert f"results/runs/tiny/{arm}/seed{seed}/fold{fold}/model.pt" in text


def test_packed_study_equals_the_study_trained_fold_by_fold(tiny_study, tmp_path):
    """training.pack: seeds writes the same per-fold files -- same numbers -- and the same tables;
    a rerun has nothing to do."""
    project, _ = tiny_study
    packed = make_tiny_project(tmp_path, training={"pack": "seeds"})
    proc = run_snakemake(packed)
    counts = jobs_run(proc)
    assert counts["train_pack"] == 2 and "train_fold" not in counts
    for arm in ("baseline", "exp4"):
        for fold in (0, 1):
            rel = f"results/runs/tiny/{arm}/seed0/fold{fold}"
            with np.load(project / rel / "predictions.npz", allow_pickle=False) as a, \
                    np.load(packed / rel / "predictions.npz", allow_pickle=False) as b:
                for key in a.files:
                    if key != "args_json":
                        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{rel} {key}")
            info = json.loads((packed / rel / "metrics.json").read_text())
            alone = json.loads((project / rel / "metrics.json").read_text())
            assert info["pack_size"] == 2 and alone["pack_size"] == 1
            assert info["metrics"] == alone["metrics"] and info["best_epoch"] == alone["best_epoch"]
            assert info["startup_seconds"] > 0
        log = (packed / f"results/logs/tiny/train/{arm}/pack.log").read_text()
        assert "[seed 0 fold 1] epoch" in log
    for table in ("comparison.md", "ablation.md"):
        assert (packed / "results/tables" / table).read_text() == (project / "results/tables" / table).read_text()
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(run_snakemake(packed))


@pytest.mark.parametrize(("cores", "seeds", "rule", "jobs"),
                         [(2, [0], "train_pack", 2), (4, [0, 1], "train_pack_seed", 4), (8, [0, 1], "train_fold", 8)])
def test_auto_pack_on_a_cpu_fills_the_cores(tmp_path, cores, seeds, rule, jobs):
    """auto: packs of an arm's seeds x folds when the arms fill the cores, of an arm x seed's
    folds when those do, else one fold per job."""
    project = make_tiny_project(tmp_path, training={"pack": "auto"}, seeds=seeds)
    counts = jobs_run(run_snakemake(project, "-n", cores=cores))
    assert counts.get(rule) == jobs, counts


def test_resolve_pack():
    from prmf.config import ConfigError, resolve_pack

    kw = dict(arms=7, seeds=5, slots=16)
    assert resolve_pack("auto", True, **kw) == "seeds"  # GPU
    assert resolve_pack("auto", False, **kw) == "folds"  # 35 arm x seed packs fill 16 slots
    assert resolve_pack("auto", False, arms=7, seeds=5, slots=4) == "seeds"
    assert resolve_pack("auto", False, arms=7, seeds=5, slots=1) == "seeds"  # a cluster's submitting host
    assert resolve_pack("auto", False, arms=2, seeds=2, slots=8) == "none"
    assert resolve_pack("folds", True, **kw) == "folds"  # explicit values are kept
    with pytest.raises(ConfigError, match="training.pack"):
        resolve_pack("arm", False, **kw)
