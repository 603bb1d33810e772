"""The study runs through Snakemake on a generated MERBench folder (``source: merbench``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2e_helpers import make_tiny_project, run_snakemake
from merbench_fixture import fixture_features, make_merbench_root

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("frame_level", [False, True], ids=["utt", "fra-video"])
def test_study_on_merbench_folder(tmp_path, frame_level):
    # MERBench's zero vectors (no face, empty transcript) in two modalities
    root = make_merbench_root(tmp_path / "mer2023-dataset-process", n_per_split=(36, 8, 8, 10),
                              frame_level_video=frame_level, zero_rows={"text": 2, "video": 3})
    features = fixture_features(frame_level_video=frame_level)
    project = make_tiny_project(
        tmp_path,
        dataset={"name": "MERtiny", "source": "merbench", "root": str(root), "features": features,
                 "frame_level": ["video"] if frame_level else [], "synthetic": None, "import_workers": 2},
    )
    targets = ["results/runs/MERtiny/exp4/seed0/summary.json", "results/runs/MERtiny/baseline/seed0/summary.json"]
    run_snakemake(project, *targets)

    from prmf.data.store import read_store

    store = read_store(project / "results/data/MERtiny/features.h5")
    assert store.source == "merbench"
    assert (store.split == "train").sum() == 36 and (store.split == "test3").sum() == 10
    assert np.isnan(store.valence[store.split == "test3"]).all()
    assert store.frame_level()["video"] is frame_level
    if frame_level:
        assert store.features["video"].ndim == 3 and len(store.lengths["video"]) == len(store)
    # zero rows are absent entries, counted per modality and split, never fatal
    assert store.missing["text"].sum() == 2 * 4 and store.missing["video"].sum() == 3 * 4
    assert not store.missing["audio"].any()
    validation = (project / "results/data/MERtiny/validation.md").read_text()
    assert "PASSED" in validation
    assert "| video | train | 3 |" in validation and "| text | test3 | 2 |" in validation
    report = json.loads((project / "results/data/MERtiny/validation.json").read_text())
    zero = {f["modality"]: f for f in report["findings"] if f["check"] == "zero_rows"}
    assert zero["video"]["severity"] == "warning" and zero["video"]["count"] == 12
    summary = json.loads((project / targets[0]).read_text())
    assert summary["metrics"]["test3"]["val_mse"] is None
    exports = sorted((project / "results/exports/MERtiny/exp4/seed0").glob("*.npz"))
    assert len(exports) == 4
    assert f"_features:{'+'.join(sorted(features.values()))}_dataset:MERtiny_model:attention_robust_v2+utt+None_" \
        in exports[0].name
    # a second run has nothing to do
    proc = run_snakemake(project, *targets)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_paper_config_runs_on_merbench_folder(tmp_path):
    """The README's MER2023 command (config/mer2023.yaml over config/config.yaml) on a MERBench folder
    with zero rows, per-face folders, 2-D files and test3's -10, shrunk by one more overlay."""
    import shutil

    import yaml

    from e2e_helpers import REPO, jobs_run

    root = make_merbench_root(tmp_path / "mer2023-dataset-process", n_per_split=(36, 8, 8, 10),
                              zero_rows={"audio": 1, "video": 3})
    project = tmp_path / "project"
    shutil.copytree(REPO / "workflow", project / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "config", project / "config")
    tiny = {
        "dataset": {"root": str(root), "features": fixture_features(), "import_workers": 2},
        "cv": {"folds": 2}, "seeds": [0],
        "training": {"epochs": 2, "early_stop": 2, "hidden_dim": 16, "num_attention_heads": 2,
                     "threads": 1, "device": "cpu"},
        "arms": {"baseline_merbench": {"epochs": 3}},
        "run_arms": ["baseline", "baseline_merbench", "robust_v1", "exp1", "exp4", "exp4_zscore"],
    }
    (project / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    targets = [f"results/runs/MER2023/{arm}/seed0/summary.json" for arm in tiny["run_arms"]]
    proc = run_snakemake(project, "--configfile", "config/mer2023.yaml", "tiny.yaml", "--", *targets)
    # robust_v1 and exp1 are one model: trained once, read by both; training.pack: auto on 2
    # cores packs each trained arm's seeds x folds into one job
    assert jobs_run(proc)["train_pack"] == 5
    assert not (project / "results/runs/MER2023/exp1/seed0/fold0").exists()
    v1 = json.loads((project / targets[2]).read_text())
    e1 = json.loads((project / targets[3]).read_text())
    assert v1["metrics"] == e1["metrics"] and e1["display_name"] == "Exp1: dropout only"
    # the MERBench protocol arm ran every epoch (no early stop), the paper's arms early-stopped
    mb = json.loads((project / targets[1]).read_text())
    assert mb["epochs_run"] == [3, 3] and mb["hyper"]["early_stop"] is None
    validation = (project / "results/data/MER2023/validation.md").read_text()
    assert "PASSED" in validation and "| video | train | 3 |" in validation
    # every exported name parses with the seed's extraction regex, test3 included
    import re

    names = [p.name for p in (project / "results/exports/MER2023").rglob("*.npz")]
    assert len(names) == 6 * 4
    assert all(re.search(r"f1:(\d+\.\d+)_acc:(\d+\.\d+)_val:(\d+\.\d+)", n) for n in names), names
