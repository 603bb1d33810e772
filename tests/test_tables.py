"""Tests of prmf.tables and prmf.markdown: golden Markdown files plus hand-computed numbers.

Set ``PRMF_UPDATE_GOLDEN=1`` to rewrite ``tests/golden/*.md`` (then check the
diff by eye before committing).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from prmf.markdown import MISSING_CELL, best_rows, bold_best, format_stat, markdown_table
from prmf.merbench_results import RECORD_COLUMNS, ScanReport, SkippedFile, scan_result_dirs, select_best
from prmf.tables import (
    ablation_table,
    best_of_runs_table,
    comparison_table,
    format_mean_std,
    group_by_arm,
    paired_test,
    prmf_best_table,
    robustness_markdown,
    sources_table,
)

GOLDEN = Path(__file__).parent / "golden"

SPLIT_NAMES = ("cv", "test1", "test2", "test3")
N_SAMPLES = {"cv": 3373, "test1": 411, "test2": 412, "test3": 834}

BASE_HYPER = {"kl_weight": 0.0, "recon_weight": 0.0, "cross_kl_weight": 0.0, "tau": 0.8, "warmup_epochs": 15,
              "lr": 0.0003}
FULL_HYPER = BASE_HYPER | {"kl_weight": 0.005, "recon_weight": 0.15, "cross_kl_weight": 0.01}

ARMS = {
    "exp1": {"display_name": "Baseline (Exp1)", "export_name": "attention"},
    "exp2": {"display_name": "+ Modality dropout (Exp2)", "export_name": "attention_robust"},
    "exp3": {"display_name": "+ VAE (Exp3)", "export_name": "attention_robust_v3"},
    "exp4": {"display_name": "P-RMF (full, Exp4)", "export_name": "attention_robust_v2"},
    "exp5": {"display_name": "P-RMF, no proxy (Exp5)", "export_name": "attention_robust_v5"},
}
ABLATION_ARMS = ["exp1", "exp2", "exp3", "exp4", "exp5"]
# model (export) name -> display name, as the workflow passes the config's names
MODEL_NAMES = {"attention": "Baseline (v0)", "attention_robust_v2": "P-RMF V2 (VAE)", "prmf_exp9": "Ours (exp9)"}
SWITCHES = {
    "exp1": (False, False, False),
    "exp2": (False, False, True),
    "exp4": (True, True, True),
}

# arm -> seed -> split -> (f1, acc, val_mse) of the whole split
METRICS = {
    "exp1": {
        1: {"cv": (0.7000, 0.7100, 0.7000), "test1": (0.6500, 0.6600, 0.9500),
            "test2": (0.6000, 0.6100, 1.2000), "test3": (0.5500, 0.5700, None)},
        2: {"cv": (0.7200, 0.7300, 0.6800), "test1": (0.6600, 0.6700, 0.9400),
            "test2": (0.6100, 0.6200, 1.1900), "test3": (0.5600, 0.5800, None)},
    },
    "exp2": {
        1: {"cv": (0.7300, 0.7400, 0.6600), "test1": (0.6900, 0.7000, 0.9200),
            "test2": (0.6600, 0.6700, 1.1000), "test3": (0.6300, 0.6300, None)},
    },
    "exp4": {
        1: {"cv": (0.7600, 0.7700, 0.6300), "test1": (0.7000, 0.7100, 0.9000),
            "test2": (0.6500, 0.6600, 1.1000), "test3": (0.6000, 0.6200, None)},
        2: {"cv": (0.7500, 0.7650, 0.6400), "test1": (0.7100, 0.7150, 0.9100),
            "test2": (0.6400, 0.6500, 1.1200), "test3": (0.6100, 0.6300, None)},
    },
}

# arm -> seed -> split -> ((f1, acc) of fold 0, (f1, acc) of fold 1)
FOLDS = {
    "exp1": {
        1: {"cv": ((0.6900, 0.7000), (0.7100, 0.7200)), "test1": ((0.6400, 0.6500), (0.6600, 0.6700)),
            "test2": ((0.5900, 0.6000), (0.6100, 0.6200)), "test3": ((0.5400, 0.5600), (0.5600, 0.5800))},
        2: {"cv": ((0.7150, 0.7250), (0.7250, 0.7350)), "test1": ((0.6550, 0.6650), (0.6650, 0.6750)),
            "test2": ((0.6000, 0.6150), (0.6200, 0.6250)), "test3": ((0.5500, 0.5700), (0.5700, 0.5900))},
    },
    "exp2": {
        # test2 has only fold 0: one pair against exp4 -> "n/a (< 2 pairs)"
        1: {"cv": ((0.7200, 0.7300), (0.7450, 0.7480)), "test1": ((0.6800, 0.6900), (0.6950, 0.7050)),
            "test2": ((0.6600, 0.6700),), "test3": ((0.6200, 0.6000), (0.6350, 0.6200))},
    },
    "exp4": {
        1: {"cv": ((0.7500, 0.7600), (0.7700, 0.7800)), "test1": ((0.6900, 0.7000), (0.7100, 0.7200)),
            "test2": ((0.6450, 0.6550), (0.6550, 0.6650)), "test3": ((0.5900, 0.6100), (0.6100, 0.6300))},
        2: {"cv": ((0.7400, 0.7550), (0.7600, 0.7750)), "test1": ((0.7080, 0.7100), (0.7150, 0.7200)),
            "test2": ((0.6350, 0.6450), (0.6450, 0.6550)), "test3": ((0.6050, 0.6250), (0.6150, 0.6350))},
    },
}


def make_summary(arm: str, seed: int) -> dict:
    """A ``summary.json`` dict of the training side's schema, from the tables above."""
    vae, proxy, dropout = SWITCHES[arm]
    metrics = {
        split: {"f1": f1, "acc": acc, "val_mse": val, "n": N_SAMPLES[split]}
        for split, (f1, acc, val) in METRICS[arm][seed].items()
    }
    per_fold = {
        split: [
            {"fold": fold, "f1": f1, "acc": acc, "val_mse": None if split == "test3" else 0.5}
            | ({"best_epoch": 10 + fold} if split == "cv" else {})
            for fold, (f1, acc) in enumerate(folds)
        ]
        for split, folds in FOLDS[arm][seed].items()
    }
    return {
        "dataset": "synthetic",
        "arm": arm,
        "seed": seed,
        "export_name": ARMS[arm]["export_name"],
        "display_name": ARMS[arm]["display_name"],
        "model": "prmf",
        "switches": {"use_vae": vae, "use_proxy_attention": proxy, "use_modality_dropout": dropout},
        "hyper": FULL_HYPER if vae else BASE_HYPER,
        "n_folds": 2,
        "metrics": metrics,
        "per_fold": per_fold,
        "exports": [],
    }


@pytest.fixture
def summaries() -> list[dict]:
    """Summaries as read back from JSON (null val_mse), in a shuffled order."""
    runs = [make_summary(arm, seed) for arm in ("exp4", "exp1", "exp2") for seed in sorted(METRICS[arm], reverse=True)]
    return json.loads(json.dumps(runs))


def _best() -> pd.DataFrame:
    rows = [
        # model, split, f1, acc, timestamp
        ("attention", "cv", 0.7210, 0.7310, 1), ("attention", "cv", 0.7300, 0.7290, 2),
        ("attention", "test1", 0.6600, 0.6700, 1), ("attention", "test3", 0.5600, 0.5800, 1),
        ("attention_robust_v2", "cv", 0.7650, 0.7700, 1), ("attention_robust_v2", "test1", 0.7100, 0.7150, 1),
        ("attention_robust_v2", "test2", 0.6500, 0.6600, 1), ("attention_robust_v2", "test3", 0.6100, 0.6300, 1),
        ("prmf_exp9", "test1", 0.7100, 0.7150, 1),
    ]
    records = pd.DataFrame(
        [{"dir": "d", "file": f"d/{m}_{s}_{ts}.npz", "split": s, "model": m, "features": "a", "dataset": "synthetic",
          "f1": f1, "acc": acc, "val": 0.5, "timestamp": ts} for m, s, f1, acc, ts in rows],
        columns=list(RECORD_COLUMNS),
    )
    return select_best(records)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PRMF_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- hand-computed numbers


def test_mean_std_by_hand() -> None:
    # exp4 cv F1 over seeds: 0.76, 0.75 -> mean 75.50 %, sample std |0.76 - 0.75| / sqrt(2) = 0.7071 %
    assert format_mean_std([0.76, 0.75]) == "75.50 ± 0.71"
    assert format_mean_std([0.6300, 0.6400], scale=1.0, digits=4) == "0.6350 ± 0.0071"
    assert format_mean_std([0.7593]) == "75.93"
    assert format_mean_std([]) == "—"


def _t3_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 3 degrees of freedom, closed form of its CDF."""
    x = abs(t) / math.sqrt(3.0)
    cdf = 0.5 + (x / (1.0 + x * x) + math.atan(x)) / math.pi
    return 2.0 * (1.0 - cdf)


def test_paired_test_by_hand(summaries: list[dict]) -> None:
    from prmf.tables import fold_values

    groups = group_by_arm(summaries)
    result = paired_test(fold_values(groups["exp4"], "cv", "f1"), fold_values(groups["exp1"], "cv", "f1"))
    # pairs (seed, fold): exp4 - exp1 = 0.06, 0.06, 0.025, 0.035
    diffs = [0.06, 0.06, 0.025, 0.035]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    t = mean / (sd / 2.0)
    assert result["n"] == 4
    assert result["diff"] == pytest.approx(0.045)
    assert result["p"] == pytest.approx(_t3_two_sided_p(t), rel=1e-9)
    assert f"{result['p']:.4f}" == "0.0149"


def test_paired_test_not_applicable() -> None:
    assert paired_test({(1, 0): 0.5}, {(1, 0): 0.4}) == {"n": 1, "diff": pytest.approx(0.1), "p": None,
                                                          "why": "< 2 pairs"}
    assert paired_test({}, {(1, 0): 0.4}) == {"n": 0, "diff": None, "p": None, "why": "< 2 pairs"}
    same = paired_test({(1, 0): 0.62, (1, 1): 0.64}, {(1, 0): 0.60, (1, 1): 0.62})
    assert same["p"] is None and same["why"] == "zero variance"


# --------------------------------------------------------------------------- comparison


def test_comparison_golden(summaries: list[dict]) -> None:
    text = comparison_table(summaries, _best(), ARMS, MODEL_NAMES)
    check_golden("comparison.md", text)


def test_comparison_bolds_best_mean_per_column(summaries: list[dict]) -> None:
    lines = comparison_table(summaries, None, ARMS, None).splitlines()
    row = {line.split(" | ")[1]: line for line in lines if line.startswith("| ") and " | exp" in line}
    cells = {arm: [c.strip() for c in line.strip("|").split("|")] for arm, line in row.items()}
    # columns: Method, Arm, Seeds, cv F1, cv ACC, test1 F1, test1 ACC, test2 F1, test2 ACC, test3 F1, test3 ACC
    assert cells["exp4"][3] == "**75.50 ± 0.71**"  # cv F1: exp4 best
    assert cells["exp1"][3] == "71.00 ± 1.41"
    assert cells["exp2"][3] == "73.00"  # one seed: value alone
    assert cells["exp2"][2] == "1"
    assert cells["exp2"][7] == "**66.00**" and cells["exp4"][7] == "64.50 ± 0.71"  # test2 F1: exp2 best
    assert cells["exp2"][10] == "**63.00**" and cells["exp4"][10] == "62.50 ± 0.71"  # test3 ACC
    assert sum("**" in c for c in cells["exp1"]) == 0


def test_comparison_ties_are_all_bold() -> None:
    runs = [make_summary("exp1", 1), make_summary("exp4", 1)]
    runs[0]["metrics"]["cv"]["acc"] = runs[1]["metrics"]["cv"]["acc"] = 0.7777
    text = comparison_table(runs, None, ARMS, None)
    assert text.count("**77.77**") == 2


def test_best_of_runs_bold_and_runs() -> None:
    lines = best_of_runs_table(_best(), MODEL_NAMES).splitlines()
    # attention cv: ACC 73.10 beats 72.90 although its F1 is lower; 2 cv runs, 1 on the other splits
    assert lines[2] == "| Baseline (v0) | attention | 1–2 | 72.10 | 73.10 | 66.00 | 67.00 | — | — | 56.00 | 58.00 |"
    assert lines[3] == ("| P-RMF V2 (VAE) | attention_robust_v2 | 1 | **76.50** | **77.00** | **71.00** | **71.50** "
                        "| **65.00** | **66.00** | **61.00** | **63.00** |")
    # a tie on test1 with attention_robust_v2: both bold
    assert lines[4] == "| Ours (exp9) | prmf_exp9 | 1 | — | — | **71.00** | **71.50** | — | — | — | — |"
    # without a name, a model is shown by its own name
    assert best_of_runs_table(_best()).splitlines()[3].startswith("| attention_robust_v2 | attention_robust_v2 | 1 |")
    assert best_of_runs_table(pd.DataFrame()) == "No MERBench result files were found."


def test_comparison_rejects_mixed_datasets_and_duplicate_seeds() -> None:
    other = make_summary("exp1", 2) | {"dataset": "MER2023"}
    with pytest.raises(ValueError, match="several datasets"):
        comparison_table([make_summary("exp1", 1), other], None, ARMS, None)
    with pytest.raises(ValueError, match="several summaries for one seed"):
        comparison_table([make_summary("exp1", 1), make_summary("exp1", 1)], None, ARMS, None)


# --------------------------------------------------------------------------- P-RMF


def test_prmf_best_golden(summaries: list[dict]) -> None:
    text = prmf_best_table(summaries, arm="exp4")
    check_golden("prmf_best.md", text)
    assert "| test3 | 834 | 60.50 ± 0.71 | 62.50 ± 0.71 | — |" in text
    assert "| cv | 3373 | 75.50 ± 0.71 | 76.75 ± 0.35 | 0.6350 ± 0.0071 |" in text


def test_prmf_best_missing_arm(summaries: list[dict]) -> None:
    with pytest.raises(ValueError, match="exp5"):
        prmf_best_table(summaries, arm="exp5")


# --------------------------------------------------------------------------- sources


def test_sources_golden() -> None:
    report = ScanReport(
        records=pd.DataFrame(columns=list(RECORD_COLUMNS)),
        skipped=[SkippedFile("results/exports", "synthetic/exp1/seed1/junk.npz",
                             "not an NPZ archive (no zip signature)"),
                 ("/old/merbench", "x|y.npz")],  # a plain (dir, name) pair still renders
        missing_dirs=["/data/gone"],
        counts=pd.DataFrame(
            [
                {"dir": "results/exports", "n_npz": 24, "n_parsed": 23, "n_skipped": 1},
                {"dir": "/data/gone", "n_npz": 0, "n_parsed": 0, "n_skipped": 0},
                {"dir": "/old/merbench", "n_npz": 5, "n_parsed": 4, "n_skipped": 1},
            ]
        ),
    )
    text = sources_table(report)
    check_golden("sources.md", text)
    assert "| **Total** | 2 of 3 found | 29 | 27 | 2 |" in text


def test_sources_from_a_real_scan(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    text = sources_table(scan_result_dirs([tmp_path / "r"]))
    assert f"| `{tmp_path / 'r'}` | found | 0 | 0 | 0 |" in text
    assert text.endswith("No file was skipped.\n")


# --------------------------------------------------------------------------- ablation


def test_ablation_golden(summaries: list[dict]) -> None:
    text = ablation_table(summaries, ARMS, ABLATION_ARMS, "exp4")
    check_golden("ablation.md", text)
    # hand-computed exp4 - exp1 on cv F1 (see test_paired_test_by_hand)
    assert "| exp4 − exp1 | 4 | +4.50 | 0.0149 |" in text
    assert "Skipped (no summary.json): `exp3`, `exp5`." in text
    assert "Shared by all arms shown: τ = 0.8, Warm-up = 15." in text


def test_ablation_na_cases(summaries: list[dict]) -> None:
    text = ablation_table(summaries, ARMS, ABLATION_ARMS, "exp4")
    test2 = text.split("#### test2")[1].split("####")[0]
    assert "| exp4 − exp2 | 1 | -1.50 | n/a (< 2 pairs) | -1.50 | n/a (< 2 pairs) |" in test2
    test3 = text.split("#### test3")[1]
    # exp4 seed 1 test3 ACC minus exp2: 0.61 - 0.60 and 0.63 - 0.62: identical differences
    # F1 differences -0.03, -0.025 -> t = -0.0275 / (0.0035355 / sqrt 2) = -11 with 1 df (Cauchy):
    # p = 1 - 2 atan(11) / pi
    assert f"{1 - 2 * math.atan(11) / math.pi:.4f}" == "0.0577"
    assert "| exp4 − exp2 | 2 | -2.75 | 0.0577 | +1.00 | n/a (zero variance) |" in test3


def test_ablation_without_reference(summaries: list[dict]) -> None:
    text = ablation_table([s for s in summaries if s["arm"] != "exp4"], ARMS, ABLATION_ARMS, "exp4")
    assert "The reference arm `exp4` has no runs; no paired comparison." in text
    assert "Skipped (no summary.json): `exp3`, `exp4`, `exp5`." in text


# --------------------------------------------------------------------------- fold health


def _with_health(summary: dict, collapsed: list[int], unknown: list[int] = ()) -> dict:
    """``summary`` plus a ``health`` record (prmf.aggregate.run_health schema) of its ``n_folds`` folds."""
    folds = summary["n_folds"]
    return summary | {"health": {
        "folds": folds, "collapsed_folds": collapsed, "n_collapsed": len(collapsed), "unknown_folds": list(unknown),
        "collapsed_reasons": [["best val acc 0.262 <= majority-class rate 0.258 + 0.05"]] * len(collapsed),
        "best_epochs": [1] * folds, "epochs_run": [12] * folds,
    }}


@pytest.fixture
def collapsed_summaries(summaries: list[dict]) -> list[dict]:
    """exp4: seed 1 fold 1 and seed 2 fold 0 collapsed (2 of 4 folds); exp1 healthy; exp2 without health."""
    out = []
    for s in summaries:
        if s["arm"] == "exp4":
            s = _with_health(s, [1] if s["seed"] == 1 else [0])
        elif s["arm"] == "exp1":
            s = _with_health(s, [])
        out.append(s)
    return out


def _method_cells(text: str, column: int) -> dict[str, str]:
    """Arm -> ``Method`` cell of the first table's rows (``column``: index of the ``Arm`` column)."""
    cells = {}
    for line in text.split("\n\n| Comparison")[0].splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(parts) > 2 and parts[column].startswith("exp"):
            cells.setdefault(parts[column], parts[1 - column])
    return cells


COLLAPSED_NOTE = (
    "⚠ Collapsed folds: best validation accuracy not above the validation part's majority-class rate plus a "
    "margin, or a non-finite training loss (`summary.json` → `health`). "
    "Their results are included in all means and tests.\n"
    "\n"
    "- `exp4`: seed 1 fold 1, seed 2 fold 0\n"
)


def test_comparison_marks_collapsed_folds(collapsed_summaries: list[dict]) -> None:
    text = comparison_table(collapsed_summaries, _best(), ARMS, MODEL_NAMES)
    assert _method_cells(text, 1) == {
        "exp1": "Baseline (Exp1)",
        "exp2": "+ Modality dropout (Exp2)",
        "exp4": "P-RMF (full, Exp4) ⚠ 2/4 folds collapsed",
    }
    assert text.count("⚠") == 2
    assert "| exp4 | 2 | **75.50 ± 0.71** |" in text  # numbers unchanged
    assert "\n\n" + COLLAPSED_NOTE + "\nNot run (no summary.json)" in text
    # removing the marker and the note gives back the golden table
    golden = (GOLDEN / "comparison.md").read_text(encoding="utf-8")
    assert text.replace(" ⚠ 2/4 folds collapsed", "").replace("\n\n" + COLLAPSED_NOTE.rstrip("\n"), "") == golden


def test_ablation_marks_collapsed_folds(collapsed_summaries: list[dict]) -> None:
    text = ablation_table(collapsed_summaries, ARMS, ABLATION_ARMS, "exp4")
    assert _method_cells(text, 0) == {
        "exp1": "Baseline (Exp1)",
        "exp2": "+ Modality dropout (Exp2)",
        "exp4": "P-RMF (full, Exp4) ⚠ 2/4 folds collapsed",
    }
    assert text.count("⚠") == 2
    assert "\n\n" + COLLAPSED_NOTE + "\nShared by all arms shown" in text
    assert "Reference: P-RMF (full, Exp4). Paired" in text  # the reference sentence is not marked
    golden = (GOLDEN / "ablation.md").read_text(encoding="utf-8")
    assert text.replace(" ⚠ 2/4 folds collapsed", "").replace("\n\n" + COLLAPSED_NOTE.rstrip("\n"), "") == golden


def test_healthy_or_unknown_health_leaves_tables_unchanged(summaries: list[dict]) -> None:
    healthy = [_with_health(s, []) if s["arm"] != "exp2" else s | {"health": None} for s in summaries]
    check_golden("comparison.md", comparison_table(healthy, _best(), ARMS, MODEL_NAMES))
    check_golden("ablation.md", ablation_table(healthy, ARMS, ABLATION_ARMS, "exp4"))
    unknown = [_with_health(s, [], unknown=[0, 1]) for s in summaries]
    assert "⚠" not in comparison_table(unknown, None, ARMS) + ablation_table(unknown, ARMS, ABLATION_ARMS, "exp4")


def test_marker_counts_unknown_folds(summaries: list[dict]) -> None:
    # exp4 seed 1: fold 0 collapsed; seed 2: written before fold health existed (2 unknown folds)
    runs = [_with_health(s, [0]) if (s["arm"], s["seed"]) == ("exp4", 1) else s for s in summaries]
    text = comparison_table(runs, None, ARMS)
    assert "| P-RMF (full, Exp4) ⚠ 1/4 folds collapsed, 2 unknown | exp4 | 2 |" in text
    assert "- `exp4`: seed 1 fold 0\n" in text


def test_validate_summary_health() -> None:
    from prmf.tables import validate_summary

    validate_summary(make_summary("exp1", 1))
    validate_summary(_with_health(make_summary("exp1", 1), [1]))
    validate_summary(make_summary("exp1", 1) | {"health": None})
    with pytest.raises(ValueError, match="health lacks collapsed_folds"):
        validate_summary(make_summary("exp1", 1) | {"health": {"folds": 2}})
    with pytest.raises(ValueError, match="not a mapping"):
        validate_summary(make_summary("exp1", 1) | {"health": [0]})
    bad = _with_health(make_summary("exp1", 1), [1])
    bad["health"]["n_collapsed"] = 2
    with pytest.raises(ValueError, match="n_collapsed 2 != 1"):
        validate_summary(bad)


# --------------------------------------------------------------------------- prmf.markdown: one rule for every table


def test_markdown_table_rows_alignment_and_escaping() -> None:
    assert markdown_table(["a", "b"], [["x|y", 1], {"a": "multi\nline"}]) == (
        "| a | b |\n|:---|---:|\n| x\\|y | 1 |\n| multi line | — |")
    assert markdown_table(["a", "b", "c"], [], ["c", "l", "r"]) == "| a | b | c |\n|:---:|:---|---:|"
    with pytest.raises(ValueError, match="2 alignments for 3 columns"):
        markdown_table(["a", "b", "c"], [], ["l", "r"])
    with pytest.raises(ValueError, match="a row of 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["only"]])


def test_format_stat_and_missing_cell() -> None:
    assert MISSING_CELL == "—"
    assert format_stat(0.75929, 0.00424) == "75.93 ± 0.42"
    assert format_stat(0.75929, float("nan")) == "75.93"  # one seed: no std
    assert format_stat(0.6317, None, scale=1.0, digits=4) == "0.6317"
    for missing in (None, float("nan"), float("inf")):
        assert format_stat(missing) == "—"


def test_bold_rule_ties_at_displayed_precision() -> None:
    # 75.934 and 75.931 are both shown as 75.93: a tie, both bold; 75.92 is not
    assert best_rows([75.934, 75.931, 75.92], digits=2) == {0, 1}
    assert best_rows([75.934, 75.931, 75.92], digits=3) == {0}
    # lower is better (ECE, MSE); missing values never win
    assert best_rows([None, 0.031, float("nan"), 0.0312], digits=3, higher_is_better=False) == {1, 3}
    assert best_rows([None, float("nan")], digits=2) == set()
    # a single row: nothing to compare, nothing bold
    assert best_rows([75.0], digits=2) == set()
    assert bold_best(["1.00", "—", "1.00"], [1.0, None, 1.0], 2) == ["**1.00**", "—", "**1.00**"]


# --------------------------------------------------------------------------- robustness


def _robustness_frame(values: dict[tuple[str, str, str], tuple[float, float]]) -> pd.DataFrame:
    """Long robustness frame: (arm, condition, metric) -> (seed 0 value, seed 1 value) on test1."""
    rows = [(arm, seed, "test1", cond, metric, v) for (arm, cond, metric), pair in values.items()
            for seed, v in enumerate(pair)]
    return pd.DataFrame(rows, columns=["arm", "seed", "split", "condition", "metric", "value"])


def _row(md: str, section: str, name: str) -> list[str]:
    """Cells of arm ``name``'s row in the first table after the heading ``section``."""
    text = md.split(section, 1)[1]
    line = next(x for x in text.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


CLEAN = "subset:audio+text+video"


def test_robustness_markdown_mean_std_and_bold() -> None:
    df = _robustness_frame({
        ("a", CLEAN, "acc"): (0.49, 0.51), ("a", CLEAN, "ece"): (0.05, 0.05),
        ("b", CLEAN, "acc"): (0.59, 0.61), ("b", CLEAN, "ece"): (0.06, 0.06),
    })
    md = robustness_markdown(df, {"a": "Arm A", "b": "Arm B"}, ["audio", "text", "video"], {"splits": ["test1"]})
    subsets_acc = "## test1 (fold ensemble): accuracy (%)\n\n### Modality subsets present"
    # columns A, T, V, A+T, A+V, T+V, A+T+V (clean), mean incomplete; mean ± sample std over the 2 seeds in %
    assert _row(md, subsets_acc, "Arm A") == ["Arm A", "—", "—", "—", "—", "—", "—", "50.00 ± 1.41", "—"]
    assert _row(md, subsets_acc, "Arm B")[7] == "**60.00 ± 1.41**"
    ece = "calibration and uncertainty diagnostics"
    assert _row(md, ece, "Arm A") == ["Arm A", "**5.00 ± 0.00**"]  # lower ECE is better
    assert _row(md, ece, "Arm B") == ["Arm B", "6.00 ± 0.00"]
    assert "'—': the arm has no uncertainty." in md and "–" not in md


def test_robustness_markdown_ties_and_single_arm() -> None:
    # 50.001 % and 49.999 % are both shown as 50.00: both bold
    df = _robustness_frame({("a", CLEAN, "acc"): (0.50001, 0.50001), ("b", CLEAN, "acc"): (0.49999, 0.49999),
                            ("c", CLEAN, "acc"): (0.40, 0.40)})
    md = robustness_markdown(df, {"a": "A", "b": "B", "c": "C"}, ["audio", "text", "video"], {"splits": ["test1"]})
    section = "## test1 (fold ensemble): accuracy (%)"
    assert _row(md, section, "A")[7] == "**50.00 ± 0.00**" and _row(md, section, "B")[7] == "**50.00 ± 0.00**"
    assert _row(md, section, "C")[7] == "40.00 ± 0.00"
    one = robustness_markdown(df[df.arm == "a"], {"a": "A"}, ["audio", "text", "video"], {"splits": ["test1"]})
    assert "**" not in one.split("\n## ", 1)[1]  # one arm: nothing bold in the tables
