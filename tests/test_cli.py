"""The ``prmf`` command line: synth -> validate -> folds -> train-fold."""

from __future__ import annotations

import json

import numpy as np
import yaml

from e2e_helpers import TINY_CONFIG
from prmf.cli import main
from prmf.data.store import read_store, write_store


def test_synth_validate_folds_train(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    store = tmp_path / "features.h5"
    assert main(["synth", "--config", str(cfg), "--output", str(store)]) == 0
    assert "169" in capsys.readouterr().out  # train size at scale 0.05
    s = read_store(store)
    assert s.dataset == "tiny" and s.dims() == {"audio": 8, "text": 12, "video": 6}

    assert main(["validate", str(store), "--json", str(tmp_path / "v.json"), "--md", str(tmp_path / "v.md")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True

    folds = tmp_path / "folds.json"
    assert main(["folds", str(store), "--output", str(folds), "--folds", "2", "--seed", "1"]) == 0
    assert json.loads(folds.read_text())["seed"] == 1

    out = tmp_path / "fold0"
    assert main(["train-fold", "--config", str(cfg), "--arm", "exp4", "--seed", "0", "--fold", "0",
                 "--store", str(store), "--folds", str(folds), "--outdir", str(out)]) == 0
    for name in ("model.pt", "predictions.npz", "metrics.json", "history.tsv"):
        assert (out / name).exists(), name


def test_validate_exits_1_and_names_the_problem(tmp_path, capsys):
    store = tmp_path / "features.h5"
    assert main(["synth", "--output", str(store), "--scale", "0.05"]) == 0
    s = read_store(store)
    s.features["text"][2] = np.nan
    write_store(store, s)
    assert main(["validate", str(store)]) == 1
    err = capsys.readouterr().err
    assert "text" in err and s.names[2] in err
