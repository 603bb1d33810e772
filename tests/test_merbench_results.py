"""Tests of prmf.merbench_results (MERBench result names, scanning, best-of-runs) and ``prmf extract-best``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from e2e_helpers import TINY_CONFIG
from prmf.cli import main
from prmf.merbench_results import (
    BEST_COLUMNS,
    RECORD_COLUMNS,
    SKIP_NAME,
    NoResultsError,
    ResultName,
    display_name,
    extract_best,
    format_result_name,
    model_display_names,
    parse_result_name,
    render_best,
    scan_result_dirs,
    select_best,
)

GOLDEN = Path(__file__).parent / "golden"

REAL_OLD = (
    "cv_features:Baichuan-13B-Base-UTT+chinese-hubert-large-UTT+CLIP-ViT-large-patch14-UTT"
    "_model:attention_robust_v2+utt+None_f1:0.7586_acc:0.7593_val:0.6317_1769910916.npz"
)
REAL_NEW = (
    "cv_features:Baichuan-13B-Base-UTT+chinese-hubert-large-UTT+clip-vit-large-patch14-UTT"
    "_dataset:MER2023_model:attention_robust_v2+utt+None_f1:0.7574_acc:0.7557_val:0.6319_1769910916.3972666.npz"
)


def _name(split: str, model: str, f1: float, acc: float, ts: float, val: float = 0.5) -> str:
    return format_result_name(split, ["t-UTT", "a-UTT"], model, f1, acc, val, ts, dataset="synthetic")


def _touch(path: Path) -> Path:
    """A small valid NPZ archive at ``path`` (the scan opens every candidate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, names=np.array(["s1"]))
    return path


# --------------------------------------------------------------------------- parse


def test_parse_real_name_without_dataset() -> None:
    assert parse_result_name(REAL_OLD) == ResultName(
        split="cv",
        features=("Baichuan-13B-Base-UTT", "chinese-hubert-large-UTT", "CLIP-ViT-large-patch14-UTT"),
        dataset=None,
        model="attention_robust_v2",
        feat_type="utt",
        e2e="None",
        f1=0.7586,
        acc=0.7593,
        val=0.6317,
        timestamp=1769910916.0,
        filename=REAL_OLD,
    )


def test_parse_real_name_with_dataset_and_float_timestamp() -> None:
    assert parse_result_name(REAL_NEW) == ResultName(
        split="cv",
        features=("Baichuan-13B-Base-UTT", "chinese-hubert-large-UTT", "clip-vit-large-patch14-UTT"),
        dataset="MER2023",
        model="attention_robust_v2",
        feat_type="utt",
        e2e="None",
        f1=0.7574,
        acc=0.7557,
        val=0.6319,
        timestamp=1769910916.3972666,
        filename=REAL_NEW,
    )


def test_parse_accepts_a_path_and_keeps_the_bare_name() -> None:
    parsed = parse_result_name(f"/some/dir/{REAL_OLD}")
    assert parsed is not None and parsed.filename == REAL_OLD


@pytest.mark.parametrize("split", ["test1", "test2", "test3"])
def test_parse_test_splits(split: str) -> None:
    name = REAL_NEW.replace("cv_", f"{split}_", 1)
    parsed = parse_result_name(name)
    assert parsed is not None and parsed.split == split


def test_parse_val_nan() -> None:
    name = REAL_NEW.replace("val:0.6319", "val:nan").replace("cv_", "test3_", 1)
    parsed = parse_result_name(name)
    assert parsed is not None
    assert parsed.split == "test3" and math.isnan(parsed.val)
    assert (parsed.f1, parsed.acc) == (0.7574, 0.7557)


def test_parse_model_is_text_before_last_two_plus_fields() -> None:
    name = "cv_features:a_model:prmf+exp1+frm+e2e_f1:0.1000_acc:0.2000_val:0.3000_5.npz"
    parsed = parse_result_name(name)
    assert parsed is not None
    assert (parsed.model, parsed.feat_type, parsed.e2e) == ("prmf+exp1", "frm", "e2e")


def test_parse_feature_names_with_underscores_and_dots() -> None:
    name = "test2_features:a_b.1+c-d_model:attention+utt+None_f1:0.1000_acc:0.2000_val:0.3000_7.5.npz"
    parsed = parse_result_name(name)
    assert parsed is not None
    assert parsed.features == ("a_b.1", "c-d") and parsed.model == "attention" and parsed.timestamp == 7.5


@pytest.mark.parametrize(
    "name",
    [
        REAL_OLD.replace("cv_", "train_", 1),  # wrong split
        REAL_OLD.replace("cv_", "val_", 1),  # wrong split
        REAL_OLD.replace("_acc:0.7593", ""),  # missing acc
        REAL_OLD.replace("_val:0.6317", ""),  # missing val
        REAL_OLD.replace(".npz", ".npy"),  # not an npz
        REAL_OLD + ".bak",  # not an npz
        REAL_OLD.replace("_1769910916.npz", ".npz"),  # no timestamp
        REAL_OLD.replace("+utt+None", ""),  # model part without feat_type/e2e
        REAL_OLD.replace("attention_robust_v2+utt+None", "attention_robust_v2+None"),  # only two fields
        REAL_OLD.replace("f1:0.7586", "f1:abc"),  # not a number
        REAL_OLD.replace("CLIP-ViT", "+CLIP-ViT"),  # empty feature name
        "garbage.npz",
        "",
    ],
)
def test_parse_malformed_names_give_none(name: str) -> None:
    assert parse_result_name(name) is None


# --------------------------------------------------------------------------- format


def test_format_matches_real_name_layout() -> None:
    features = ["clip-vit-large-patch14-UTT", "chinese-hubert-large-UTT", "Baichuan-13B-Base-UTT"]
    name = format_result_name(
        "cv", features, "attention_robust_v2", 0.7574, 0.7557, 0.6319, 1769910916.3972666, dataset="MER2023"
    )
    assert name == REAL_NEW


def test_format_sorts_features_with_sorted() -> None:
    # sorted() puts upper case first, so REAL_OLD's order (Baichuan, chinese, CLIP) is not reproduced:
    # that file was not written with sorted features; parsing keeps the order found in the name.
    name = format_result_name("cv", ["chinese-hubert-large-UTT", "CLIP-ViT-large-patch14-UTT", "Baichuan-13B-Base-UTT"],
                              "attention_robust_v2", 0.75861, 0.75929, 0.63171, 1769910916)
    assert name == (
        "cv_features:Baichuan-13B-Base-UTT+CLIP-ViT-large-patch14-UTT+chinese-hubert-large-UTT"
        "_model:attention_robust_v2+utt+None_f1:0.7586_acc:0.7593_val:0.6317_1769910916.npz"
    )


def test_format_parse_round_trip() -> None:
    name = format_result_name(
        "test3", ["video-UTT", "audio-UTT", "text-UTT"], "prmf_exp4", 0.612345, 0.7, float("nan"), 1700000000.25,
        dataset="synthetic", feat_type="frm", e2e="e2e",
    )
    assert name == (
        "test3_features:audio-UTT+text-UTT+video-UTT_dataset:synthetic_model:prmf_exp4+frm+e2e"
        "_f1:0.6123_acc:0.7000_val:nan_1700000000.25.npz"
    )
    parsed = parse_result_name(name)
    assert parsed is not None
    assert (parsed.split, parsed.features, parsed.dataset, parsed.model) == (
        "test3", ("audio-UTT", "text-UTT", "video-UTT"), "synthetic", "prmf_exp4")
    assert (parsed.feat_type, parsed.e2e, parsed.f1, parsed.acc, parsed.timestamp) == (
        "frm", "e2e", 0.6123, 0.7, 1700000000.25)
    assert math.isnan(parsed.val)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "train"}, "not make a valid MERBench result name: 'train_features:a_model"),
        ({"feature_names": ["a+b"]}, r"would parse back as \('cv', \('a', 'b'\)"),
        ({"feature_names": []}, "not make a valid MERBench result name: 'cv_features:_model"),
        ({"feat_type": "u+t"}, r"would parse back as \('cv', \('a',\), None, 'm\+u', 't', 'None'\)"),
        ({"f1": -0.1}, "not make a valid MERBench result name: .*_f1:-0.1000_"),
        ({"model": ""}, "not make a valid MERBench result name: .*_model:\\+utt\\+None_"),
    ],
)
def test_format_rejects_fields_that_do_not_round_trip(kwargs: dict, message: str) -> None:
    fields = {"split": "cv", "feature_names": ["a"], "model": "m", "f1": 0.1, "acc": 0.2, "val": 0.3,
              "timestamp": 1}
    with pytest.raises(ValueError, match=message):
        format_result_name(**(fields | kwargs))


# --------------------------------------------------------------------------- scan


def test_scan_recursive_with_missing_dir_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "runs"
    good_top = _touch(root / _name("cv", "attention", 0.5, 0.6, 1))
    good_nested = _touch(root / "seed1" / "deep" / _name("test3", "prmf_exp4", 0.4, 0.45, 2, val=float("nan")))
    _touch(root / "seed1" / "garbage.npz")
    _touch(root / "notes.txt")  # not an npz: ignored, not even counted
    other = tmp_path / "other"
    _touch(other / _name("test1", "attention", 0.3, 0.35, 3))
    missing = tmp_path / "nope"

    with caplog.at_level(logging.WARNING, logger="prmf.merbench_results"):
        report = scan_result_dirs([root, missing, other, root])

    assert report.missing_dirs == [str(missing)]
    assert any(str(missing) in message for message in caplog.messages)
    assert report.skipped == [(str(root), "seed1/garbage.npz", SKIP_NAME)]
    assert report.counts.to_dict("records") == [
        {"dir": str(root), "n_npz": 3, "n_parsed": 2, "n_skipped": 1},
        {"dir": str(missing), "n_npz": 0, "n_parsed": 0, "n_skipped": 0},
        {"dir": str(other), "n_npz": 1, "n_parsed": 1, "n_skipped": 0},
    ]
    records = report.records
    assert list(records.columns) == list(RECORD_COLUMNS)
    assert records["file"].tolist() == [
        str(good_top), str(good_nested), str(other / _name("test1", "attention", 0.3, 0.35, 3))]
    assert records["split"].tolist() == ["cv", "test3", "test1"]
    assert records["model"].tolist() == ["attention", "prmf_exp4", "attention"]
    assert records["features"].tolist() == ["a-UTT+t-UTT"] * 3
    assert records["dataset"].tolist() == ["synthetic"] * 3
    assert records["acc"].tolist() == [0.6, 0.45, 0.35]
    assert math.isnan(records["val"].iloc[1])


def test_scan_nested_dirs_count_each_file_once(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "b" / _name("cv", "m", 0.1, 0.2, 1))
    report = scan_result_dirs([tmp_path / "a", tmp_path / "a" / "b"])
    assert report.counts["n_npz"].tolist() == [1, 0]
    assert len(report.records) == 1


def test_scan_nothing(tmp_path: Path) -> None:
    report = scan_result_dirs([tmp_path])
    assert report.records.empty and list(report.records.columns) == list(RECORD_COLUMNS)
    assert report.skipped == [] and report.missing_dirs == []


# --------------------------------------------------------------------------- select_best


def _records(rows: list[tuple[str, str, float, float, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"dir": "d", "file": file, "split": split, "model": model, "features": "a", "dataset": "x",
             "f1": f1, "acc": acc, "val": 0.5, "timestamp": ts}
            for model, split, f1, acc, ts, file in rows
        ],
        columns=list(RECORD_COLUMNS),
    )


def test_select_best_tie_breaking() -> None:
    records = _records(
        [
            # model, split, f1, acc, timestamp, file
            ("m", "cv", 0.90, 0.70, 9, "low_acc"),  # highest f1 but lower acc: loses
            ("m", "cv", 0.60, 0.80, 1, "acc_tie_low_f1"),
            ("m", "cv", 0.65, 0.80, 1, "acc_tie_high_f1_old"),
            ("m", "cv", 0.65, 0.80, 5, "acc_tie_high_f1_new"),  # winner: acc, then f1, then newest
            ("m", "test1", 0.5, 0.5, 3, "b_same"),
            ("m", "test1", 0.5, 0.5, 3, "a_same"),  # full tie: smallest path
            ("a", "test3", 0.1, 0.2, 1, "only"),
            ("a", "cv", 0.3, 0.4, 1, "a_cv"),
        ]
    )
    best = select_best(records)
    assert best[["model", "split", "file", "n_runs"]].to_dict("records") == [
        {"model": "a", "split": "cv", "file": "a_cv", "n_runs": 1},
        {"model": "a", "split": "test3", "file": "only", "n_runs": 1},
        {"model": "m", "split": "cv", "file": "acc_tie_high_f1_new", "n_runs": 4},
        {"model": "m", "split": "test1", "file": "a_same", "n_runs": 2},
    ]
    assert best.loc[2, "timestamp"] == 5 and best.loc[2, "f1"] == 0.65


def test_select_best_empty() -> None:
    best = select_best(pd.DataFrame(columns=list(RECORD_COLUMNS)))
    assert best.empty and list(best.columns) == list(BEST_COLUMNS)


# --------------------------------------------------------------------------- render


def test_display_name_mapping_or_the_model_itself() -> None:
    assert display_name("attention_robust_v2", {"attention_robust_v2": "Ours"}) == "Ours"
    assert display_name("attention_robust_v2") == "attention_robust_v2"  # no built-in names
    assert display_name("prmf_exp1", {"other": "x"}) == "prmf_exp1"


def test_model_display_names_from_the_study_config() -> None:
    config = TINY_CONFIG | {"display_names": {"attention_robust_v2": "P-RMF V2 (VAE)", "old_model": "Old"}}
    # display_names for external files; a run arm's own display_name always names its export
    assert model_display_names(config) == {
        "attention": "Baseline (v0)", "attention_robust_v2": "Exp4: P-RMF (full)", "old_model": "Old"}
    assert model_display_names(TINY_CONFIG) == {"attention": "Baseline (v0)", "attention_robust_v2": "Exp4: P-RMF (full)"}


def test_render_best_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'html'; expected md, tsv or console"):
        render_best(select_best(_records([("m", "cv", 0.1, 0.2, 1, "f")])), "html")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- extract_best


NAMES = {"attention": "Baseline (v0)", "attention_robust_v2": "P-RMF V2 (VAE)"}


@pytest.fixture
def result_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``runs/`` with two models, several runs, a nested folder and a bad name; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    for split, f1, acc, ts in [("cv", 0.7586, 0.7593, 1), ("cv", 0.7700, 0.7500, 2), ("test1", 0.6012, 0.6234, 1),
                               ("test2", 0.5511, 0.5678, 1), ("test3", 0.4901, 0.5123, 1)]:
        _touch(runs / "v2" / _name(split, "attention_robust_v2", f1, acc, ts,
                                   val=float("nan") if split == "test3" else 0.6))
    for split, f1, acc, ts in [("cv", 0.7010, 0.7102, 1), ("test1", 0.5800, 0.6000, 1)]:
        _touch(runs / "base" / "seed1" / _name(split, "attention", f1, acc, ts))
    _touch(runs / "base" / "broken_acc:0.5.npz")
    Path("names.yaml").write_text(yaml.safe_dump(NAMES), encoding="utf-8")
    return runs


def test_extract_best_writes_tables_and_returns_the_scan(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, best = extract_best(["runs"], "out/best.md", display_names={"attention": "Base"})
    assert capsys.readouterr() == ("", "")  # a library function: prints nothing
    assert report.skipped == [("runs", "base/broken_acc:0.5.npz", SKIP_NAME)]
    assert best[["model", "split", "acc", "n_runs"]].values.tolist() == [
        ["attention", "cv", 0.7102, 1], ["attention", "test1", 0.6, 1], ["attention_robust_v2", "cv", 0.7593, 2],
        ["attention_robust_v2", "test1", 0.6234, 1], ["attention_robust_v2", "test2", 0.5678, 1],
        ["attention_robust_v2", "test3", 0.5123, 1]]
    md = Path("out/best.md").read_text(encoding="utf-8")
    assert "| Base | attention | 70.10 | 71.02 | 58.00 | 60.00 | — | — | — | — |" in md
    assert "| attention_robust_v2 | attention_robust_v2 | 75.86 | 75.93 |" in md  # no name given: the model's
    assert Path("out/best.tsv").read_text(encoding="utf-8").splitlines()[1].startswith(
        "Base\tattention\t70.10\t71.02\t58.00\t60.00\t\t\t\t\t")


def test_extract_best_raises_naming_the_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "empty" / "junk.npz")
    with pytest.raises(NoResultsError, match=f"found in: {tmp_path / 'empty'}, {tmp_path / 'gone'}$") as info:
        extract_best([tmp_path / "empty", tmp_path / "gone"])
    assert info.value.report.skipped == [(str(tmp_path / "empty"), "junk.npz", SKIP_NAME)]
    assert info.value.report.missing_dirs == [str(tmp_path / "gone")]
    with pytest.raises(ValueError, match=r"output x\.tsv must not end in \.tsv"):
        extract_best([tmp_path / "empty"], "x.tsv")


# --------------------------------------------------------------------------- CLI


def test_cli_console(
    result_tree: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="prmf.merbench_results"):
        rc = main(["extract-best", "--result-dir", "runs", "--result-dir", "gone", "--display-names", "names.yaml"])
    out, err = capsys.readouterr()
    assert rc == 0
    v2 = "runs/v2/"
    base = "runs/base/seed1/"
    assert out == (
        "Method          Model                cv F1  cv ACC  test1 F1  test1 ACC  test2 F1  test2 ACC  test3 F1  test3 ACC\n"
        "--------------  -------------------  -----  ------  --------  ---------  --------  ---------  --------  ---------\n"
        "Baseline (v0)   attention            70.10   71.02     58.00      60.00         —          —         —          —\n"
        "P-RMF V2 (VAE)  attention_robust_v2  75.86   75.93     60.12      62.34     55.11      56.78     49.01      51.23\n"
        "\n"
        "winning files:\n"
        f"  attention cv: {base}{_name('cv', 'attention', 0.7010, 0.7102, 1)} (best of 1)\n"
        f"  attention test1: {base}{_name('test1', 'attention', 0.58, 0.60, 1)} (best of 1)\n"
        f"  attention_robust_v2 cv: {v2}{_name('cv', 'attention_robust_v2', 0.7586, 0.7593, 1, 0.6)} (best of 2)\n"
        f"  attention_robust_v2 test1: {v2}{_name('test1', 'attention_robust_v2', 0.6012, 0.6234, 1, 0.6)} (best of 1)\n"
        f"  attention_robust_v2 test2: {v2}{_name('test2', 'attention_robust_v2', 0.5511, 0.5678, 1, 0.6)} (best of 1)\n"
        f"  attention_robust_v2 test3: {v2}"
        f"{_name('test3', 'attention_robust_v2', 0.4901, 0.5123, 1, float('nan'))} (best of 1)\n"
    )
    assert caplog.messages == ["result folder gone does not exist (or is not a folder); skipped"]
    assert err == (
        "skipped 1 *.npz file(s) that are not MERBench results:\n"
        "  runs/base/broken_acc:0.5.npz: name is not a MERBench result name\n"
    )


def test_cli_tsv_with_display_names(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("names.yaml").write_text("attention: Baseline\nattention_robust_v2: Ours\n", encoding="utf-8")
    rc = main(["extract-best", "--result-dir", "runs", "--format", "tsv", "--display-names", "names.yaml"])
    out, _ = capsys.readouterr()
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split("\t") == [
        "Method", "Model", "cv F1", "cv ACC", "test1 F1", "test1 ACC", "test2 F1", "test2 ACC", "test3 F1",
        "test3 ACC", "cv file", "test1 file", "test2 file", "test3 file"]
    assert lines[1].split("\t") == [
        "Baseline", "attention", "70.10", "71.02", "58.00", "60.00", "", "", "", "",
        f"runs/base/seed1/{_name('cv', 'attention', 0.7010, 0.7102, 1)}",
        f"runs/base/seed1/{_name('test1', 'attention', 0.58, 0.60, 1)}", "", ""]
    assert lines[2].split("\t")[:10] == [
        "Ours", "attention_robust_v2", "75.86", "75.93", "60.12", "62.34", "55.11", "56.78", "49.01", "51.23"]
    assert len(lines) == 3 and out.endswith("\n")


def test_cli_md_and_output_files(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["extract-best", "--result-dir", "runs", "--format", "md", "--output", "tables/best.md",
               "--display-names", "names.yaml"])
    out, _ = capsys.readouterr()
    assert rc == 0
    expected = (GOLDEN / "best_results.md").read_text(encoding="utf-8")
    assert out == expected
    assert Path("tables/best.md").read_text(encoding="utf-8") == expected
    tsv = Path("tables/best.tsv").read_text(encoding="utf-8")
    assert tsv == render_best(select_best(scan_result_dirs(["runs"]).records), "tsv", NAMES)
    assert "| P-RMF V2 (VAE) | attention_robust_v2 | 75.86 | 75.93 |" in out


def test_cli_names_from_the_study_config(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = TINY_CONFIG | {"display_names": {"attention_robust_v2": "P-RMF V2 (VAE)", "attention": "ignored"}}
    Path("study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    Path("names.yaml").write_text("attention: Base\n", encoding="utf-8")
    assert main(["extract-best", "--result-dir", "runs", "--format", "tsv", "--config", "study.yaml"]) == 0
    rows = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    # each run arm's display_name names its export, whatever display_names says
    assert rows == [["Baseline (v0)", "attention"], ["Exp4: P-RMF (full)", "attention_robust_v2"]]
    # --display-names over --config
    assert main(["extract-best", "--result-dir", "runs", "--format", "tsv", "--config", "study.yaml",
                 "--display-names", "names.yaml"]) == 0
    rows = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["Base", "attention"], ["Exp4: P-RMF (full)", "attention_robust_v2"]]


def test_cli_without_names_shows_model_names(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract-best", "--result-dir", "runs", "--format", "tsv"]) == 0
    rows = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["attention", "attention"], ["attention_robust_v2", "attention_robust_v2"]]


def test_cli_no_results_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _touch(tmp_path / "empty" / "junk.npz")
    rc = main(["extract-best", "--result-dir", str(tmp_path / "empty"), "--result-dir", str(tmp_path / "gone")])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err == (
        "skipped 1 *.npz file(s) that are not MERBench results:\n"
        f"  {tmp_path / 'empty' / 'junk.npz'}: name is not a MERBench result name\n"
        f"error: no MERBench result file (*.npz) found in: {tmp_path / 'empty'}, {tmp_path / 'gone'}\n"
    )


def test_cli_rejects_tsv_output_before_scanning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract-best", "--result-dir", str(tmp_path / "gone"), "--output", "x.tsv"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: --output: output x.tsv must not end in .tsv (the TSV is written beside it)\n"
    assert not Path("x.tsv").exists()


def test_cli_bad_display_names_file(result_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("names.yaml").write_text("- a\n- b\n", encoding="utf-8")
    assert main(["extract-best", "--result-dir", "runs", "--display-names", "names.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: display names: names.yaml: expected a mapping of model name -> display name (strings)\n"
