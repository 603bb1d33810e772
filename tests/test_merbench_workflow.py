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
    root = make_merbench_root(tmp_path / "mer2023-dataset-process", n_per_split=(36, 8, 8, 10),
                              frame_level_video=frame_level)
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
    summary = json.loads((project / targets[0]).read_text())
    assert summary["metrics"]["test3"]["val_mse"] is None
    exports = sorted((project / "results/exports/MERtiny/exp4/seed0").glob("*.npz"))
    assert len(exports) == 4
    assert f"_features:{'+'.join(sorted(features.values()))}_dataset:MERtiny_model:attention_robust_v2+utt+None_" \
        in exports[0].name
    # a second run has nothing to do
    proc = run_snakemake(project, *targets)
    assert "Nothing to be done" in proc.stdout + proc.stderr
