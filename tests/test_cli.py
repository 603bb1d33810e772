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
    # MER2023's split sizes (3373 / 411 / 412 / 834) at scale 0.05, rounded
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {store}: 253 samples {{'train': 169, 'test1': 21, 'test2': 21, 'test3': 42}}, "
                          "dims {'audio': 8, 'text': 12, 'video': 6}, sha256 ")
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
    assert err.startswith(f"{store}: feature validation failed:\n")
    assert f"  - [finite] {store}: modality 'text': 1 sample(s) with NaN/Inf features: {s.names[2]};" in err


def test_merbench_install_uninstall_command(tmp_path, capsys):
    """`prmf merbench install|uninstall`: exit codes, idempotence, byte-for-byte restore."""
    from merbench_checkout import tree_hashes, write_fake_checkout

    root = write_fake_checkout(tmp_path / "MERBench")
    before = tree_hashes(root)
    assert main(["merbench", "install", str(root)]) == 0
    installed = tree_hashes(root)
    assert installed != before and (root / "toolkit/models/attention_robust_v2.py").exists()
    assert main(["merbench", "install", str(root)]) == 0  # twice = once
    assert tree_hashes(root) == installed
    assert main(["merbench", "uninstall", str(root)]) == 0
    assert tree_hashes(root) == before
    capsys.readouterr()
    assert main(["merbench", "install", str(tmp_path / "not-merbench")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prmf merbench install: ") and "not-merbench" in err


def test_extract_best_accepts_the_original_flags(tmp_path, capsys, monkeypatch):
    """`--result_dir D --output F` as the seed's extract_best_results.py; no dir = ./saved-trimodal/result."""
    from prmf.merbench_results import format_result_name

    res = tmp_path / "saved-trimodal" / "result"
    res.mkdir(parents=True)
    for acc in (0.61, 0.72):
        name = format_result_name("test1", ["a-UTT", "t-UTT", "v-UTT"], "attention", acc - 0.01, acc, 1.5,
                                  1700000000 + int(acc * 100))
        np.savez(res / name, names=np.array(["s1"]))
    out = tmp_path / "best.md"
    assert main(["extract-best", "--result_dir", str(res), "--output", str(out)]) == 0
    assert "72.00" in out.read_text() and "61.00" not in out.read_text()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["extract-best", "--format", "tsv"]) == 0
    captured = capsys.readouterr()
    assert "scanning ./saved-trimodal/result" in captured.err and "72.00" in captured.out
