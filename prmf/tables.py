"""Paper tables as Markdown strings.

Inputs are the per-run ``summary.json`` dicts written by the training side
(one per arm x seed; schema in :func:`validate_summary`), for the
best-of-runs tables :func:`prmf.merbench_results.select_best` output and
:class:`prmf.merbench_results.ScanReport`, and for the robustness table the
long robustness TSVs (:mod:`prmf.robustness`).

Names shown come from the caller: arm configs (``display_name``) and a
``display_names`` mapping for model (export) names; a name without an entry is
shown as it is. Which arms form the ablation and which is the reference are
arguments too (the study config's ``tables`` block).

Conventions shared by every table:

* F1 and ACC are fractions in the data and are shown as percentages with two
  decimals (MERBench style, ``0.7593`` -> ``75.93``); valence MSE is shown
  with four decimals.
* "mean ± std" is over seeds, ``std`` the sample standard deviation
  (``ddof=1``); with a single seed only the value is shown (the ``Seeds``
  column says how many seeds there were).
* Rendering, bold best values (ties at the displayed precision all bold) and
  the missing-value mark ``—`` (e.g. ``val_mse`` null: no valence labels) are
  :mod:`prmf.markdown`'s.
* Output is deterministic: no dates, rows in a fixed order, and it always ends
  with a single newline.
* Fold health (comparison and ablation tables): an arm with at least one
  collapsed fold (``summary.json`` -> ``health``, see :mod:`prmf.health`) has
  ``" ⚠ c/K folds collapsed"`` appended to its ``Method`` cell (``c``
  collapsed folds of ``K`` over all its seeds; ``", u unknown"`` added when
  ``u`` folds have no health record), and a list under the table names them
  (``seed 0 fold 3``). Collapsed folds stay in every mean and test. Arms
  without collapsed folds look exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from prmf.markdown import MISSING_CELL, bold_best, format_stat, markdown_table
from prmf.merbench_results import RESULT_SPLITS, ScanReport, display_name
from prmf.robustness.conditions import (
    MISSING_MEAN,
    NOISE_MEAN,
    SUBSET_MEAN_INCOMPLETE,
    missing_condition,
    noise_condition,
    subset_condition,
    subsets,
)
from prmf.robustness.config import RobustnessConfig
from prmf.tuning import METRIC_LABELS as TUNING_METRIC_LABELS
from prmf.tuning import budget_text, budgets_equal, format_values

Summary = Mapping[str, Any]

METRIC_LABELS: tuple[tuple[str, str], ...] = (("f1", "F1"), ("acc", "ACC"))
SWITCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("use_vae", "VAE"),
    ("use_proxy_attention", "Proxy attention"),
    ("use_modality_dropout", "Modality dropout"),
)
HYPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kl_weight", "KL"),
    ("recon_weight", "Recon"),
    ("cross_kl_weight", "Cross-KL"),
    ("tau", "τ"),
    ("warmup_epochs", "Warm-up"),
)
#: loss weights that act only with the VAE: shown as a missing cell for arms without it
VAE_ONLY_KEYS: tuple[str, ...] = ("kl_weight", "recon_weight", "cross_kl_weight")
REQUIRED_KEYS: tuple[str, ...] = ("dataset", "arm", "seed", "metrics")
HEALTH_KEYS: tuple[str, ...] = ("folds", "collapsed_folds")
HEALTH_MARK = "⚠"
ZERO_VARIANCE_TOL = 1e-12


# --------------------------------------------------------------------------- input


def validate_summary(summary: Summary) -> None:
    """Check the keys the tables rely on.

    Required: ``dataset``, ``arm``, ``seed``, ``metrics`` (split -> ``{f1, acc,
    val_mse, n}``). Used when present: ``display_name``, ``switches``,
    ``hyper``, ``n_folds``, ``per_fold`` (split -> list of ``{fold, f1, acc,
    ...}``), ``health`` (``{folds: K, collapsed_folds: [fold, ...],
    n_collapsed, unknown_folds: [fold, ...], ...}``, see
    :func:`prmf.aggregate.run_health`; absent or ``null`` in summaries
    written before fold health existed: health unknown).

    Raises:
        ValueError: naming the missing key, or for a malformed ``health``.
    """
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        raise ValueError(f"summary.json lacks {', '.join(missing)}: {dict(summary)!r:.200}")
    health = summary.get("health")
    if health is None:
        return
    where = f"summary.json of {summary['arm']} seed {summary['seed']}"
    if not isinstance(health, Mapping):
        raise ValueError(f"{where}: health is not a mapping: {health!r:.200}")
    missing = [key for key in HEALTH_KEYS if key not in health]
    if missing:
        raise ValueError(f"{where}: health lacks {', '.join(missing)}: {dict(health)!r:.200}")
    if not isinstance(health["collapsed_folds"], list) or not isinstance(health.get("unknown_folds", []), list):
        raise ValueError(f"{where}: health collapsed_folds / unknown_folds must be lists: {dict(health)!r:.200}")
    if health.get("n_collapsed", len(health["collapsed_folds"])) != len(health["collapsed_folds"]):
        raise ValueError(f"{where}: health n_collapsed {health['n_collapsed']} != "
                         f"{len(health['collapsed_folds'])} collapsed_folds")


def group_by_arm(summaries: Sequence[Summary]) -> dict[str, list[Summary]]:
    """Summaries per arm, each list sorted by seed.

    Raises:
        ValueError: for a summary without the required keys, for two
            summaries of the same (arm, seed), or for summaries of more than
            one dataset (tables never mix datasets).
    """
    datasets = set()
    groups: dict[str, list[Summary]] = {}
    for summary in summaries:
        validate_summary(summary)
        datasets.add(summary["dataset"])
        groups.setdefault(summary["arm"], []).append(summary)
    if len(datasets) > 1:
        raise ValueError(f"summaries of several datasets: {sorted(datasets)}; make one table per dataset")
    for arm, runs in groups.items():
        runs.sort(key=lambda s: s["seed"])
        seeds = [s["seed"] for s in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"arm {arm}: several summaries for one seed ({seeds})")
    return groups


def _dataset_of(summaries: Sequence[Summary]) -> str | None:
    """The dataset of the summaries (they share one), ``None`` when empty."""
    return summaries[0]["dataset"] if summaries else None


def split_values(runs: Sequence[Summary], split: str, metric: str) -> list[float]:
    """``metrics[split][metric]`` of each run, skipping missing and null values."""
    values = []
    for run in runs:
        value = run["metrics"].get(split, {}).get(metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            values.append(float(value))
    return values


# --------------------------------------------------------------------------- format


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (``ddof=1``); std ``None`` below two values, both ``None`` for none."""
    if len(values) == 0:
        return None, None
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    return float(array.mean()), std


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"75.93 ± 0.42"`` (values x ``scale``); one value alone; none -> ``—``."""
    return format_stat(*mean_std(values), scale=scale, digits=digits)


def _bold_best_columns(rows: Sequence[dict[str, str]], means: Mapping[str, Sequence[float | None]]) -> None:
    """Bold, in each column of ``means`` (percent values, one per row), the best displayed mean (in place)."""
    for column, column_means in means.items():
        cells = bold_best([row[column] for row in rows], column_means, digits=2)
        for row, cell in zip(rows, cells):
            row[column] = cell


def _metric_columns() -> list[str]:
    return [f"{split} {label}" for split in RESULT_SPLITS for _, label in METRIC_LABELS]


def _arm_label(arm: str, arms: Mapping[str, Mapping[str, Any]], runs: Sequence[Summary]) -> str:
    """Display name of an arm: ``arms[arm]["display_name"]``, else the summary's, else the arm."""
    configured = arms.get(arm, {}) if arms else {}
    if configured.get("display_name"):
        return str(configured["display_name"])
    if runs and runs[0].get("display_name"):
        return str(runs[0]["display_name"])
    return arm


def arm_health(runs: Sequence[Summary]) -> dict[str, Any]:
    """Fold health of one arm over its runs (seeds).

    Returns:
        ``folds`` (total folds over the runs: ``health.folds``, else
        ``n_folds``, else 0), ``collapsed`` (``[(seed, fold), ...]`` sorted)
        and ``unknown`` (folds without a health record: ``health.unknown_folds``,
        or all folds of a run without ``health``).
    """
    folds, unknown, collapsed = 0, 0, []
    for run in runs:
        health = run.get("health")
        if health is None:
            n = int(run.get("n_folds") or 0)
            folds += n
            unknown += n
            continue
        folds += int(health["folds"])
        unknown += len(health.get("unknown_folds") or [])
        collapsed += [(run["seed"], fold) for fold in health["collapsed_folds"]]
    return {"folds": folds, "collapsed": sorted(collapsed), "unknown": unknown}


def _health_mark(runs: Sequence[Summary]) -> str:
    """``" ⚠ 2/10 folds collapsed"`` (``", 4 unknown"`` added when folds lack health); ``""`` when none collapsed."""
    health = arm_health(runs)
    if not health["collapsed"]:
        return ""
    text = f" {HEALTH_MARK} {len(health['collapsed'])}/{health['folds']} folds collapsed"
    return text + (f", {health['unknown']} unknown" if health["unknown"] else "")


def _marked_label(arm: str, arms: Mapping[str, Mapping[str, Any]], runs: Sequence[Summary]) -> str:
    """:func:`_arm_label` plus :func:`_health_mark` (unchanged for arms without collapsed folds)."""
    return _arm_label(arm, arms, runs) + _health_mark(runs)


def _collapsed_note(groups: Mapping[str, list[Summary]], shown: Sequence[str]) -> list[str]:
    """Lines under a table naming the collapsed folds of the arms ``shown``; none when there are none."""
    items = []
    for arm in shown:
        collapsed = arm_health(groups[arm])["collapsed"]
        if collapsed:
            items.append(f"- `{arm}`: " + ", ".join(f"seed {seed} fold {fold}" for seed, fold in collapsed))
    if not items:
        return []
    return [
        "",
        f"{HEALTH_MARK} Collapsed folds: best validation accuracy not above the validation part's "
        "majority-class rate plus a margin, or a non-finite training loss (`summary.json` → `health`). "
        "Their results are included in all means and tests.",
        "",
        *items,
    ]


def _join(items: Sequence[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _dataset_line(dataset: str | None) -> str:
    return f"Dataset `{dataset}`." if dataset is not None else "No runs."


# --------------------------------------------------------------------------- tuning budget


def _active_tuning(tuning: Mapping[str, Mapping[str, Any]] | None, shown: Sequence[str]):
    """``tuning`` when one of the arms ``shown`` is tuned, else ``None`` (the table stays as without tuning)."""
    return tuning if tuning and any(tuning.get(arm) for arm in shown) else None


def _tuning_note(tuning: Mapping[str, Mapping[str, Any]] | None, shown: Sequence[str]) -> list[str]:
    """Lines under a table explaining the ``Tuning`` column; none without tuning."""
    if not _active_tuning(tuning, shown):
        return []
    budgets = {arm: tuning.get(arm) for arm in shown}
    tuned = [b for b in budgets.values() if b]
    metrics = " / ".join(sorted({TUNING_METRIC_LABELS.get(b["metric"], b["metric"]) for b in tuned}))
    equal = budgets_equal(tuned)
    lines = [
        "",
        "Tuning: a tuned arm's hyper-parameters were chosen by MERBench's random search — `draws` "
        f"configurations of its space, each trained on every CV fold, the draw with the best mean {metrics} "
        "on the folds' validation parts (test splits never read) retrained on its final seeds, the runs shown "
        "here (`tuning.md`: space, chosen values, best vs median draw). `none: config values`: no search, the "
        "config's values (one configuration).",
    ]
    if len(tuned) < len(budgets) and tuned:
        lines += ["", "**Tuned and untuned arms are compared here: their tuning budgets differ.**"]
    elif not equal:
        lines += ["", "**The tuned arms' budgets differ.**"]
    return lines


# --------------------------------------------------------------------------- comparison


def _mean_std_section(
    groups: Mapping[str, list[Summary]], arms: Mapping[str, Mapping[str, Any]],
    tuning: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, list[str]]:
    """Table of mean ± std per arm (with the collapsed-fold list under it), and the arms without runs.

    With ``tuning``, a ``Tuning`` column after ``Seeds`` states each arm's budget (:func:`_tuning_cell`)."""
    present = [arm for arm in arms if arm in groups]
    not_run = [arm for arm in arms if arm not in groups]
    tuning = _active_tuning(tuning, present)
    rows, means = [], {column: [] for column in _metric_columns()}
    for arm in present:
        runs = groups[arm]
        row = {"Method": _marked_label(arm, arms, runs), "Arm": arm, "Seeds": str(len(runs))}
        if tuning:
            row["Tuning"] = budget_text(tuning.get(arm))
        for split in RESULT_SPLITS:
            for metric, label in METRIC_LABELS:
                values = split_values(runs, split, metric)
                row[f"{split} {label}"] = format_mean_std(values)
                mean = mean_std(values)[0]
                means[f"{split} {label}"].append(None if mean is None else 100.0 * mean)
        rows.append(row)
    _bold_best_columns(rows, means)
    tuned = ["Tuning"] if tuning else []
    columns = ["Method", "Arm", "Seeds", *tuned, *_metric_columns()]
    aligns = ["l", "l", "r"] + ["l"] * len(tuned) + ["r"] * 8
    table = "\n".join([markdown_table(columns, rows, aligns), *_collapsed_note(groups, present),
                       *_tuning_note(tuning, present)])
    return table, not_run


def _runs_label(n_runs: Sequence[int]) -> str:
    """``"5"`` when every split had 5 candidates, else ``"3–5"``."""
    low, high = min(n_runs), max(n_runs)
    return str(low) if low == high else f"{low}–{high}"


def best_of_runs_table(best: pd.DataFrame, display_names: Mapping[str, str] | None = None) -> str:
    """Markdown table of :func:`prmf.merbench_results.select_best` output, best per column bold.

    Rows: one per model (sorted by model name), ``Method`` its display name
    (``display_names``, else the model name),
    ``Runs`` the number of candidate files per split; columns F1/ACC in % per
    split. Returns a sentence instead of a table when ``best`` is empty.
    """
    if best is None or best.empty:
        return "No MERBench result files were found."
    cells = {(r.model, r.split): r for r in best.itertuples(index=False)}
    rows, means = [], {column: [] for column in _metric_columns()}
    for model in sorted(best["model"].unique()):
        n_runs = [int(r.n_runs) for (m, _), r in cells.items() if m == model]
        row = {"Method": display_name(model, display_names), "Model": model, "Runs": _runs_label(n_runs)}
        for split in RESULT_SPLITS:
            hit = cells.get((model, split))
            for metric, label in METRIC_LABELS:
                value = None if hit is None else float(getattr(hit, metric))
                row[f"{split} {label}"] = format_stat(value)
                means[f"{split} {label}"].append(None if value is None else 100.0 * value)
        rows.append(row)
    _bold_best_columns(rows, means)
    return markdown_table(["Method", "Model", "Runs", *_metric_columns()], rows, ["l", "l", "r"] + ["r"] * 8)


def comparison_table(
    summaries: Sequence[Summary],
    best: pd.DataFrame | None,
    arms: Mapping[str, Mapping[str, Any]],
    display_names: Mapping[str, str] | None = None,
    tuning: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Method comparison: mean ± std over seeds, then the optimistic best-of-runs.

    Args:
        summaries: ``summary.json`` dicts of one dataset; arms not in ``arms``
            are left out (and named in a note).
        best: :func:`prmf.merbench_results.select_best` output, or ``None`` to omit
            the second section's table (a sentence says so).
        arms: arm name -> arm config; its order is the row order and its
            ``display_name`` the row label (plus the collapsed-fold marker, see
            the module docstring).
        display_names: model name -> display name for the best-of-runs rows
            (a model without one is shown by its name).
        tuning: tuned arm -> its budget (:meth:`prmf.tuning.TuningPlan.budgets`); when
            given and not empty, a ``Tuning`` column states every arm's budget and a
            note explains it (tuned arms: random-search draws × folds, final seeds;
            others: the config's values). ``None`` or empty: the table is unchanged.
    """
    groups = group_by_arm(summaries)
    table, not_run = _mean_std_section(groups, arms, tuning)
    ignored = sorted(arm for arm in groups if arm not in arms)
    parts = [
        "## Method comparison",
        "",
        _dataset_line(_dataset_of(summaries)),
        "",
        "### Mean ± std over seeds",
        "",
        "F1 and ACC in %: mean ± sample standard deviation (ddof=1) over seeds of each arm's "
        "per-split metric; a single seed shows its value alone. `Seeds`: number of seeds per arm. "
        "Bold: best mean per column.",
        "",
        table,
    ]
    if not_run:
        parts += ["", f"Not run (no summary.json): {_join(not_run)}."]
    if ignored:
        parts += ["", f"Not in the arm list, left out: {_join(ignored)}."]
    parts += [
        "",
        "### Best of runs (optimistic)",
        "",
        "F1 and ACC in %, selected by the highest ACC on each split (best of N runs, "
        "N = `Runs`), optimistic: the selection uses the reported split itself. "
        "Bold: best per column.",
        "",
        best_of_runs_table(best, display_names) if best is not None else "No best-of-runs input was given.",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- P-RMF


def _samples(runs: Sequence[Summary], split: str) -> str:
    """Number of samples of a split (first run that states it), else ``—``."""
    for run in runs:
        n = run["metrics"].get(split, {}).get("n")
        if n is not None:
            return str(int(n))
    return MISSING_CELL


def _folds_label(runs: Sequence[Summary]) -> str:
    """``"5"``, ``"3/5"`` when the runs differ, ``"?"`` when unknown."""
    folds = sorted({int(r["n_folds"]) for r in runs if r.get("n_folds") is not None})
    return "/".join(str(f) for f in folds) if folds else "?"


def prmf_best_table(
    summaries: Sequence[Summary],
    arm: str,
    display_name: str | None = None,
) -> str:
    """The full P-RMF arm per split: F1, ACC (in %) and valence MSE, mean ± std over seeds.

    Args:
        summaries: ``summary.json`` dicts; only those of ``arm`` are used.
        arm: the arm to show (the study's ``tables.reference_arm``).
        display_name: heading name; default the summaries' ``display_name``.

    Raises:
        ValueError: when no summary belongs to ``arm``.
    """
    runs = group_by_arm(summaries).get(arm)
    if not runs:
        raise ValueError(f"no summary.json of arm {arm!r}")
    name = display_name or runs[0].get("display_name") or arm
    rows = [
        {
            "Split": split,
            "Samples": _samples(runs, split),
            "F1": format_mean_std(split_values(runs, split, "f1")),
            "ACC": format_mean_std(split_values(runs, split, "acc")),
            "Valence MSE": format_mean_std(split_values(runs, split, "val_mse"), scale=1.0, digits=4),
        }
        for split in RESULT_SPLITS
    ]
    parts = [
        f"## {name}",
        "",
        f"Arm `{arm}`, dataset `{runs[0]['dataset']}`, {len(runs)} seed(s) × {_folds_label(runs)} folds. "
        "F1 and ACC in %, valence MSE (lower is better): mean ± sample standard deviation (ddof=1) "
        f"over seeds. `{MISSING_CELL}`: no valence labels in that split.",
        "",
        markdown_table(["Split", "Samples", "F1", "ACC", "Valence MSE"], rows, ["l", "r", "r", "r", "r"]),
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- sources


def sources_table(report: ScanReport) -> str:
    """Each scanned result folder with its NPZ count, parsed and skipped names, and a total.

    Missing folders are marked ``missing``; skipped names are listed below
    the table.
    """
    missing = set(report.missing_dirs)
    rows = []
    for r in report.counts.itertuples(index=False):
        if r.dir in missing:
            rows.append({"Folder": f"`{r.dir}`", "Status": "missing", "NPZ files": MISSING_CELL,
                         "Parsed": MISSING_CELL, "Skipped": MISSING_CELL})
        else:
            rows.append({"Folder": f"`{r.dir}`", "Status": "found", "NPZ files": str(int(r.n_npz)),
                         "Parsed": str(int(r.n_parsed)), "Skipped": str(int(r.n_skipped))})
    n_dirs = len(report.counts)
    rows.append({
        "Folder": "**Total**",
        "Status": f"{n_dirs - len(missing)} of {n_dirs} found",
        "NPZ files": str(int(report.counts["n_npz"].sum())),
        "Parsed": str(int(report.counts["n_parsed"].sum())),
        "Skipped": str(int(report.counts["n_skipped"].sum())),
    })
    parts = [
        "## Result sources",
        "",
        "Folders searched recursively for MERBench result files (`*.npz`). "
        "Skipped: `*.npz` entries whose name is not a MERBench result name, whose contents are not "
        "a readable NPZ archive, or that are folders.",
        "",
        markdown_table(["Folder", "Status", "NPZ files", "Parsed", "Skipped"], rows, ["l", "l", "r", "r", "r"]),
        "",
    ]
    if report.skipped:
        parts.append("Skipped files:")
        parts.append("")
        parts += [f"- `{entry[0]}`: `{entry[1]}`" + (f" ({entry[2]})" if len(entry) > 2 and entry[2] else "")
                  for entry in report.skipped]
    else:
        parts.append("No file was skipped.")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- ablation


def _tick(value: Any) -> str:
    if value is None:
        return MISSING_CELL
    return "✓" if value else "✗"


def _format_hyper(value: Any) -> str:
    if value is None:
        return MISSING_CELL
    if isinstance(value, bool):
        return _tick(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _hyper(runs: Sequence[Summary], key: str) -> Any:
    """A hyper-parameter of an arm, read from its lowest seed's summary."""
    return runs[0].get("hyper", {}).get(key)


def _acting_hyper(runs: Sequence[Summary], key: str) -> Any:
    """The arm's value of ``key``, or ``None`` (a missing cell) for a VAE loss weight of an arm without the VAE."""
    if key in VAE_ONLY_KEYS and not runs[0].get("switches", {}).get("use_vae", False):
        return None
    return _hyper(runs, key)


def _differing_hypers(
    groups: Mapping[str, list[Summary]], arms: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Hyper columns whose values differ between ``arms``, and ``key=value`` texts of the shared ones."""
    differing, shared = [], []
    for key, label in HYPER_COLUMNS:
        values = [_acting_hyper(groups[arm], key) for arm in arms]
        if len({repr(v) for v in values}) > 1:
            differing.append((key, label))
        elif values:
            shared.append(f"{label} = {_format_hyper(values[0])}")
    return differing, shared


def _ablation_table(
    groups: Mapping[str, list[Summary]], arms: Mapping[str, Mapping[str, Any]], present: Sequence[str],
    hypers: Sequence[tuple[str, str]], tuning: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Configuration and mean ± std results of each present ablation arm."""
    tuning = _active_tuning(tuning, present)
    rows = []
    for arm in present:
        runs = groups[arm]
        switches = runs[0].get("switches", {})
        row = {"Arm": arm, "Method": _marked_label(arm, arms, runs)}
        row |= {label: _tick(switches.get(key)) for key, label in SWITCH_COLUMNS}
        row |= {label: _format_hyper(_acting_hyper(runs, key)) for key, label in hypers}
        row["Seeds"] = str(len(runs))
        if tuning:
            row["Tuning"] = budget_text(tuning.get(arm))
        for split in RESULT_SPLITS:
            for metric, label in METRIC_LABELS:
                row[f"{split} {label}"] = format_mean_std(split_values(runs, split, metric))
        rows.append(row)
    tuned = ["Tuning"] if tuning else []
    columns = ["Arm", "Method", *(lab for _, lab in SWITCH_COLUMNS), *(lab for _, lab in hypers), "Seeds",
               *tuned, *_metric_columns()]
    return markdown_table(columns, rows, ["l", "l", "c", "c", "c", *(["r"] * len(hypers)), "r",
                                          *(["l"] * len(tuned)), *(["r"] * 8)])


def fold_values(runs: Sequence[Summary], split: str, metric: str) -> dict[tuple[Any, Any], float]:
    """``(seed, fold) -> per_fold[split][i][metric]`` over the runs of one arm (nulls left out)."""
    values = {}
    for run in runs:
        for entry in run.get("per_fold", {}).get(split, []) or []:
            value = entry.get(metric)
            if value is not None:
                values[(run["seed"], entry["fold"])] = float(value)
    return values


def paired_test(reference: Mapping[Any, float], other: Mapping[Any, float]) -> dict[str, Any]:
    """Paired comparison over the units present in both mappings.

    Returns:
        ``n`` (pairs), ``diff`` (mean of reference − other, fraction or
        ``None`` without pairs), ``p`` (two-sided ``scipy.stats.ttest_rel``
        p-value or ``None``) and ``why`` (reason ``p`` is ``None``).
    """
    units = sorted(set(reference) & set(other), key=repr)
    ref = np.array([reference[u] for u in units], dtype=float)
    oth = np.array([other[u] for u in units], dtype=float)
    result: dict[str, Any] = {"n": len(units), "diff": None, "p": None, "why": None}
    if units:
        result["diff"] = float((ref - oth).mean())
    if len(units) < 2:
        result["why"] = "< 2 pairs"
    elif float(np.ptp(ref - oth)) <= ZERO_VARIANCE_TOL:
        result["why"] = "zero variance"
    else:
        result["p"] = float(stats.ttest_rel(ref, oth).pvalue)
    return result


def _format_p(p: float | None, why: str | None) -> str:
    if p is None:
        return f"n/a ({why})"
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def _format_diff(diff: float | None) -> str:
    return MISSING_CELL if diff is None else f"{100.0 * diff:+.2f}"


def _paired_split_table(groups: Mapping[str, list[Summary]], reference: str, others: Sequence[str], split: str) -> str:
    """Rows ``reference − other`` with n pairs, Δ and p for F1 and ACC on one split."""
    rows = []
    for other in others:
        row = {"Comparison": f"{reference} − {other}"}
        tests = {
            label: paired_test(fold_values(groups[reference], split, metric), fold_values(groups[other], split, metric))
            for metric, label in METRIC_LABELS
        }
        row["Pairs"] = "/".join(sorted({str(t["n"]) for t in tests.values()}))
        for label, test in tests.items():
            row[f"Δ {label} (pp)"] = _format_diff(test["diff"])
            row[f"p ({label})"] = _format_p(test["p"], test["why"])
        rows.append(row)
    columns = ["Comparison", "Pairs"] + [c for _, lab in METRIC_LABELS for c in (f"Δ {lab} (pp)", f"p ({lab})")]
    return markdown_table(columns, rows, ["l", "r", "r", "r", "r", "r"])


def _paired_section(
    groups: Mapping[str, list[Summary]], arms: Mapping[str, Mapping[str, Any]], present: Sequence[str], reference: str
) -> list[str]:
    """Paired comparisons of ``reference`` against every other present arm, per split."""
    others = [arm for arm in present if arm != reference]
    header = [f"### Paired comparison against `{reference}`", ""]
    if reference not in present:
        return header + [f"The reference arm `{reference}` has no runs; no paired comparison."]
    if not others:
        return header + ["No other ablation arm has runs; no paired comparison."]
    parts = header + [
        f"Reference: {_arm_label(reference, arms, groups[reference])}. Paired t-test across seeds × folds "
        "(n pairs): a pair is one (seed, fold) present in both arms' per-fold results. "
        "Δ = reference − other, mean over the pairs, in percentage points; "
        "p: two-sided `scipy.stats.ttest_rel`; n/a with fewer than 2 pairs or when every "
        "difference is the same (zero variance).",
    ]
    for split in RESULT_SPLITS:
        parts += ["", f"#### {split}", "", _paired_split_table(groups, reference, others, split)]
    return parts


def ablation_table(
    summaries: Sequence[Summary],
    arms: Mapping[str, Mapping[str, Any]],
    ablation_arms: Sequence[str],
    reference: str,
    tuning: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Ablation: components, differing hyper-parameters, results, paired tests.

    The first table has one row per ablation arm with runs: ✓/✗ for VAE,
    proxy attention and modality dropout (``switches``), those of the five
    hyper-parameters KL / recon / cross-KL weights, τ and warm-up epochs whose
    values differ between the arms shown (shared values are stated below the
    table), the number of seeds and mean ± std F1/ACC per split. Then, per
    split, ``reference`` is compared with every other arm by a paired t-test
    over (seed, fold) units. ``ablation_arms`` and ``reference`` are the
    study's ``tables.ablation_arms`` and ``tables.reference_arm``. Arms without summaries are skipped with a note.
    Arms with collapsed folds are marked (see the module docstring). ``tuning``: as in
    :func:`comparison_table` (a tuned arm's hyper-parameter cells are its chosen values).
    """
    groups = group_by_arm(summaries)
    present = [arm for arm in ablation_arms if arm in groups]
    skipped = [arm for arm in ablation_arms if arm not in groups]
    hypers, shared = _differing_hypers(groups, present)
    parts = [
        "## Ablation",
        "",
        f"{_dataset_line(_dataset_of([s for a in present for s in groups[a]]))} "
        f"Arms: {_join(ablation_arms)}; reference `{reference}`.",
        "",
        "### Components and results",
        "",
        "✓/✗: component on/off. Hyper-parameter columns: only those of KL, recon and cross-KL "
        "weights, τ and warm-up epochs that differ between the arms shown. F1 and ACC in %: "
        "mean ± sample standard deviation (ddof=1) over seeds; `Seeds`: number of seeds.",
        "",
        _ablation_table(groups, arms, present, hypers, tuning),
        *_collapsed_note(groups, present),
        *_tuning_note(tuning, present),
    ]
    if shared:
        parts += ["", f"Shared by all arms shown: {', '.join(shared)}."]
    if skipped:
        parts += ["", f"Skipped (no summary.json): {_join(skipped)}."]
    parts += ["", *_paired_section(groups, arms, present, reference)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- robustness

#: robustness metrics that are better when lower
ROBUSTNESS_LOWER_IS_BETTER: tuple[str, ...] = ("val_mse", "ece")


def summarize_robustness(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1, NaN for one seed) and seed count per arm x split x condition x metric."""
    g = df.groupby(["arm", "split", "condition", "metric"], sort=False)["value"]
    return g.agg(mean="mean", std=lambda v: float(np.std(v.dropna(), ddof=1)) if v.notna().sum() > 1 else np.nan,
                 n="count").reset_index()


def _short(subset_cond: str) -> str:
    """``subset:audio+text`` -> ``A+T``."""
    mods = subset_cond.split(":", 1)[1].split("+")
    return "+".join(x[:1].upper() for x in mods)


def _robustness_table(stats: pd.DataFrame, arms: Sequence[str], names: Mapping[str, str], split: str,
                      columns: list[tuple[str, str, str]], scale: float = 100.0, digits: int = 2,
                      bold: bool = True) -> list[str]:
    """Rows arms, columns ``(header, condition, metric)``: mean ± std over seeds; best mean per column bold."""
    idx = stats[stats.split == split].set_index(["arm", "condition", "metric"])
    cells: dict[tuple[str, int], tuple[float, float]] = {}
    for a in arms:
        for c, (_, cond, metric) in enumerate(columns):
            key = (a, cond, metric)
            if key in idx.index:
                r = idx.loc[key]
                cells[(a, c)] = (float(r["mean"]), float(r["std"]))
    rows = [[names.get(a, a)] for a in arms]
    for c, (_, _, metric) in enumerate(columns):
        stat = [cells.get((a, c), (np.nan, np.nan)) for a in arms]
        column = [format_stat(mean, std, scale, digits) for mean, std in stat]
        if bold:
            column = bold_best(column, [scale * mean for mean, _ in stat], digits,
                               higher_is_better=metric not in ROBUSTNESS_LOWER_IS_BETTER)
        for row, cell in zip(rows, column):
            row.append(cell)
    return markdown_table(["Arm", *(h for h, _, _ in columns)], rows).split("\n")


def robustness_markdown(df: pd.DataFrame, display_names: Mapping[str, str], modalities: Sequence[str] | None = None,
                        cfg: RobustnessConfig | Mapping | None = None, dataset: str = "") -> str:
    """``robustness.md``: per split, subset / missing-rate / noise tables (F1 and accuracy) and diagnostics.

    Args:
        df: the long robustness frame (:func:`prmf.robustness.read_robustness`).
        display_names: arm -> display name; its order is the row order (arms
            not in it follow, sorted, shown by their names).
        modalities: column order of the subset and noise tables; default: the
            largest subset found in ``df``.
        cfg: the protocol settings the frame was made with (for the columns and
            the protocol sentence).
        dataset: named in the title.
    """
    cfg = RobustnessConfig.coerce(cfg)
    arms = [a for a in display_names if a in set(df["arm"])] + sorted(set(df["arm"]) - set(display_names))
    names = dict(display_names)
    stats = summarize_robustness(df)
    if modalities is None:
        full = [c for c in df["condition"].unique() if c.startswith("subset:") and c != SUBSET_MEAN_INCOMPLETE]
        modalities = max((c.split(":", 1)[1].split("+") for c in full), key=len, default=[])
    modalities = list(modalities)
    seeds = sorted(df["seed"].unique().tolist())
    out = [f"# Robustness to missing and noisy modalities{f' ({dataset})' if dataset else ''}", "",
           f"Mean ± std over {len(seeds)} seed(s) {seeds} (std shown for ≥ 2 seeds); best mean per column in "
           "**bold**. Accuracy and weighted F1 in %. Test splits: fold ensemble (mean logits); cv: each fold model "
           "on its own validation part, predictions pooled. No retraining: every condition is inference of the "
           "trained fold models.", "",
           f"Protocol: missing rates {list(cfg.missing_rates)} ({cfg.mask_seeds} CPM-Net masks per rate, ≥ 1 "
           f"modality kept per sample; with {len(modalities)} modalities at most "
           f"{(len(modalities) - 1) / max(len(modalities), 1):.3f} of the entries can be dropped, higher rates are "
           f"capped); Gaussian feature noise at SNR {[f'{s:g}' for s in cfg.snr_db]} dB on one modality "
           f"(std = RMS / 10^(SNR/20), RMS per {cfg.noise_scope}; {cfg.noise_seeds} draws per level); "
           f"ECE with {cfg.ece_bins} equal-width bins.", ""]
    subs = subsets(modalities)
    clean = subset_condition(modalities)
    for split in [s for s in cfg.splits if s in set(df["split"])] + sorted(set(df["split"]) - set(cfg.splits)):
        label = "cross-validation (pooled out-of-fold)" if split == "cv" else f"{split} (fold ensemble)"
        table = partial(_robustness_table, stats, arms, names, split)

        for metric, mname in (("f1", "weighted F1 (%)"), ("acc", "accuracy (%)")):
            out += [f"## {label}: {mname}", ""]
            cols = [(_short(subset_condition(s)) + (" (clean)" if len(s) == len(modalities) else ""),
                     subset_condition(s), metric) for s in subs]
            cols.append(("mean incomplete", SUBSET_MEAN_INCOMPLETE, metric))
            out += ["### Modality subsets present", ""] + table(cols) + [""]
            cols = [("η=" + missing_condition(r).split(":", 1)[1], missing_condition(r), metric)
                    for r in cfg.missing_rates]
            cols.append(("mean", MISSING_MEAN, metric))
            out += ["### Random missing rate η", ""] + table(cols) + [""]
            cols = [(f"{mod[:1].upper()} {s:g} dB", noise_condition(mod, s), metric)
                    for mod in modalities for s in cfg.snr_db]
            cols.append(("mean", NOISE_MEAN, metric))
            out += ["### Gaussian noise on one modality (SNR)", ""] + table(cols) + [""]
        out += [f"## {label}: calibration and uncertainty diagnostics", "",
                "ECE (%, lower is better) of the emotion probabilities on the clean condition (all arms). "
                "For arms with VAE encoders: AUROC of the noised modality's uncertainty for noisy vs clean copies "
                "of the same samples (mean over SNR levels), and the Spearman correlation between noise level and "
                "the modality's mean uncertainty (+1: uncertainty rises monotonically with noise). "
                f"'{MISSING_CELL}': the arm has no uncertainty.", ""]
        out += table([("ECE", clean, "ece")]) + [""]
        cols = [(f"AUROC {mod}", noise_condition(mod), "auroc_uncertainty") for mod in modalities]
        cols += [(f"ρ {mod}", noise_condition(mod), "spearman_uncertainty") for mod in modalities]
        out += table(cols, scale=1.0, digits=3) + [""]
        cols = [(f"w {mod}", clean, f"weight:{mod}") for mod in modalities]
        cols += [(f"u {mod}", clean, f"uncertainty:{mod}") for mod in modalities]
        out += ["Mean fusion weight w and uncertainty u per modality on the clean condition, over the samples "
                "where the modality is present (deterministic arms: MERBench's raw attention weights or a uniform "
                "mean; no uncertainty).", ""]
        out += table(cols, scale=1.0, digits=3, bold=False) + [""]
    return "\n".join(out).rstrip() + "\n"


def tuning_table(records: Sequence[Mapping[str, Any]], display_names: Mapping[str, str] | None = None,
                 dataset: str | None = None) -> str:
    """``tuning.md``: per tuned arm the budget, the chosen values, the best vs the median draw's CV score."""
    display_names = display_names or {}
    rows = []
    for r in records:
        b = r["budget"]
        std = r["cv"].get("std")
        best = f"{r['cv']['mean']:.4f}" + (f" ± {std:.4f}" if std is not None and math.isfinite(std) else "")
        rows.append({
            "Arm": r["arm"],
            "Method": display_names.get(r["arm"], r["arm"]),
            "Budget": f"{b['draws']} draws × {b['folds']} folds = {b['runs']} runs",
            "Space": f"{len(b['keys'])} keys, {b['combinations']} combinations",
            "Final seeds": str(b["final_seeds"]),
            "Chosen (draw)": str(r["draw"]),
            "Chosen values": format_values(r["values"]) + (f"; pinned {format_values(r['pinned'])}"
                                                            if r.get("pinned") else ""),
            "Best draw": best,
            "Median draw": f"{r['median_draw_cv']:.4f}",
        })
    metrics = sorted({r["metric"] for r in records})
    label = " / ".join(TUNING_METRIC_LABELS.get(m, m) for m in metrics)
    equal = budgets_equal([r["budget"] for r in records])
    parts = [
        "## Hyper-parameter tuning",
        "",
        (f"Dataset `{dataset}`. " if dataset else "")
        + "MERBench's protocol: random search (Optuna `RandomSampler`, seeded per arm from `tuning.seed`) over each "
        "arm's space, every draw trained on every CV fold; the draw with the best mean "
        f"{label} on the folds' validation parts is retrained on the final seeds, whose runs feed every other "
        "table. Test splits are never read by the selection. Best / median draw: mean (± std over folds) of "
        "the metric, as fractions. "
        + ("Every arm got the same budget." if equal else "**The arms' budgets differ.**"),
        "",
        markdown_table(list(rows[0]) if rows else ["Arm"], rows,
                       ["l", "l", "l", "l", "r", "r", "l", "r", "r"] if rows else None),
    ]
    failed = [f"`{r['arm']}`: {r['failed_draws']}" for r in records if r.get("failed_draws")]
    if failed:
        parts += ["", f"Draws without a finite CV score (failed, never chosen): {', '.join(failed)}."]
    return "\n".join(parts) + "\n"
