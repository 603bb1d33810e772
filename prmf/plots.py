"""Figures of the robustness evaluation and of training (matplotlib, Agg backend).

Every figure is written as PNG (200 dpi) and SVG, sized for a printed page
(single figure width ~ 7 in), with labelled axes and units, a legend and the
arms' display names. Arms keep one colour across figures (their order in the
study). Input frames are the long robustness TSVs (:func:`prmf.robustness.read_robustness`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prmf.robustness.conditions import (  # noqa: E402
    missing_condition,
    noise_condition,
    subset_condition,
    subsets,
)

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
}
SPLIT_LABEL = {"cv": "cross-validation (pooled out-of-fold)"}


def _split_label(split: str) -> str:
    return SPLIT_LABEL.get(split, f"{split} (fold ensemble)")


def _colors(arms: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def save_figure(fig, paths: Sequence[str | Path]) -> None:
    """Save ``fig`` to each path (format from the suffix), all or none, atomically; close it.

    Raises:
        prmf.atomic.OutputError: a file could not be written; none changed.
    """
    from prmf.atomic import figure_bytes, write_files

    try:
        images = {p: figure_bytes(fig, Path(p).suffix.lstrip(".") or "png", dpi=200, bbox_inches="tight")
                  for p in paths}
    finally:
        plt.close(fig)
    write_files(images)


def _arms(df: pd.DataFrame, display_names: Mapping[str, str]) -> list[str]:
    present = set(df["arm"])
    return [a for a in display_names if a in present] + sorted(present - set(display_names))


def _seed_stats(df: pd.DataFrame, arm: str, split: str, conditions: Sequence[str], metric: str):
    """Mean and std over seeds (std 0 for one seed) of ``metric`` per condition; NaN where absent."""
    sel = df[(df.arm == arm) & (df.split == split) & (df.metric == metric)]
    g = sel.groupby("condition")["value"]
    mean = g.mean().reindex(list(conditions)).to_numpy(float)
    std = g.std(ddof=1).reindex(list(conditions)).fillna(0.0).to_numpy(float)
    return mean, std


def _line(ax, x, mean, std, color, label, marker="o"):
    ax.plot(x, mean, marker=marker, ms=3.5, lw=1.6, color=color, label=label)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def plot_missing_rate(df: pd.DataFrame, display_names: Mapping[str, str], rates: Sequence[float],
                      n_modalities: int, paths: Sequence[str | Path], splits: Sequence[str] | None = None) -> None:
    """Accuracy and weighted F1 vs random missing rate, one line per arm, ± std over seeds."""
    arms = _arms(df, display_names)
    colors = _colors(arms)
    splits = [s for s in (splits or sorted(df["split"].unique())) if s in set(df["split"])]
    conds = [missing_condition(r) for r in rates]
    cap = (n_modalities - 1) / n_modalities if n_modalities > 1 else None
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(splits), 2, figsize=(7.0, 2.7 * len(splits) + 0.6), squeeze=False)
        for r, split in enumerate(splits):
            for c, (metric, ylabel) in enumerate((("acc", "Accuracy (%)"), ("f1", "Weighted F1 (%)"))):
                ax = axes[r, c]
                for a in arms:
                    mean, std = _seed_stats(df, a, split, conds, metric)
                    _line(ax, np.asarray(rates), 100 * mean, 100 * std, colors[a], display_names.get(a, a))
                if cap is not None and max(rates, default=0) > cap:
                    ax.axvline(cap, color="0.4", ls=":", lw=1)
                    ax.text(cap, 0.98, "(M−1)/M ", transform=ax.get_xaxis_transform(), fontsize=7, color="0.3",
                            va="top", ha="right")
                ax.set_xlabel("Missing rate η")
                ax.set_ylabel(ylabel)
                ax.set_title(_split_label(split))
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), frameon=False,
                   bbox_to_anchor=(0.5, -0.01))
        fig.suptitle("Random missing modalities: η = fraction of (sample, modality) entries dropped, "
                     "≥ 1 kept per sample\n(CPM-Net masks; dotted: largest achievable η; band: ± std over seeds)")
        fig.tight_layout(rect=(0, 0.06 + 0.02 * ((len(labels) - 1) // 4), 1, 1))
        save_figure(fig, paths)


def plot_subsets_heatmap(df: pd.DataFrame, display_names: Mapping[str, str], modalities: Sequence[str],
                         split: str, paths: Sequence[str | Path], metric: str = "acc") -> None:
    """Heat map arms x present-modality subsets of ``metric`` (mean over seeds, annotated)."""
    arms = _arms(df, display_names)
    subs = subsets(modalities)
    conds = [subset_condition(s) for s in subs]
    mat = np.array([_seed_stats(df, a, split, conds, metric)[0] for a in arms]) * 100
    label = {"acc": "Accuracy (%)", "f1": "Weighted F1 (%)"}.get(metric, metric)
    with plt.rc_context({**RC, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(arms) + 1.8))
        im = ax.imshow(mat, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(subs)), ["+".join(subs_) for subs_ in subs], rotation=30, ha="right")
        ax.set_yticks(range(len(arms)), [display_names.get(a, a) for a in arms])
        finite = mat[np.isfinite(mat)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.1f}", ha="center", va="center", fontsize=7,
                            color="black" if mat[i, j] > mid else "white")
        ax.set_xlabel("Modalities present at test time")
        ax.set_ylabel("Arm")
        ax.set_title(f"{label} by present modalities — {_split_label(split)}, mean over seeds")
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(label)
        fig.tight_layout()
        save_figure(fig, paths)


def plot_fusion_weights(df: pd.DataFrame, display_names: Mapping[str, str], modalities: Sequence[str],
                        snr_db: Sequence[float], split: str, paths: Sequence[str | Path]) -> None:
    """Mean fusion weight and uncertainty of the noised modality vs its noise level (arms with uncertainty).

    Columns: the modality receiving noise; x: clean, then decreasing SNR. Only
    arms with VAE uncertainties are drawn (their weights are normalised; the
    deterministic arms' raw attention weights are not comparable).
    """
    arms = _arms(df, display_names)
    sel = df[(df.split == split) & df.metric.str.startswith("uncertainty:")]
    u_arms = [a for a in arms if sel[sel.arm == a]["value"].notna().any()]
    colors = _colors(arms)
    levels = sorted(snr_db, reverse=True)
    xt = ["clean"] + [f"{s:g}" for s in levels]
    x = np.arange(len(xt))
    with plt.rc_context(RC):
        fig, axes = plt.subplots(2, len(modalities), figsize=(7.0, 4.6), squeeze=False, sharex=True)
        for c, mod in enumerate(modalities):
            conds = [subset_condition(modalities)] + [noise_condition(mod, s) for s in levels]
            for r, (metric, ylabel) in enumerate(((f"weight:{mod}", "Fusion weight"),
                                                  (f"uncertainty:{mod}", "Uncertainty u"))):
                ax = axes[r, c]
                for a in u_arms:
                    mean, std = _seed_stats(df, a, split, conds, metric)
                    _line(ax, x, mean, std, colors[a], display_names.get(a, a))
                if not u_arms:
                    ax.text(0.5, 0.5, "no arm with\nVAE uncertainty", ha="center", va="center",
                            transform=ax.transAxes, color="0.4")
                ax.set_xticks(x, xt)
                if c == 0:
                    ax.set_ylabel(ylabel)
                if r == 0:
                    ax.set_title(f"noise on {mod}")
                else:
                    ax.set_xlabel(f"SNR of {mod} (dB)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False,
                       bbox_to_anchor=(0.5, -0.01))
        fig.suptitle(f"Fusion weight and uncertainty u (mean posterior std) of the noised modality\n"
                     f"{_split_label(split)}; mean over samples, band: ± std over seeds")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        save_figure(fig, paths)


def _read_history(path: str | Path) -> pd.DataFrame:
    h = pd.read_csv(path, sep="\t")
    m = re.search(r"seed(\d+)/fold(\d+)", str(path).replace("\\", "/"))
    h["run"] = f"seed {m.group(1)} fold {m.group(2)}" if m else str(path)
    return h


def plot_training_curves(history_paths: Sequence[str | Path], display_name: str, paths: Sequence[str | Path]) -> None:
    """Train loss and validation weighted F1 per epoch: each seed x fold thin, mean ± std thick."""
    hist = pd.concat([_read_history(p) for p in history_paths], ignore_index=True)
    hist["epoch1"] = hist["epoch"] + 1
    panels = [("train_loss", "Training loss (total objective)", 1.0), ("val_f1", "Validation weighted F1 (%)", 100.0)]
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9))
        for ax, (col, ylabel, scale) in zip(axes, panels):
            if col not in hist:
                ax.text(0.5, 0.5, f"no '{col}' column", ha="center", va="center", transform=ax.transAxes)
                continue
            for i, (_, h) in enumerate(hist.groupby("run", sort=True)):
                ax.plot(h["epoch1"], h[col] * scale, color="0.55", lw=0.7, alpha=0.6,
                        label="individual runs (seed × fold)" if i == 0 else None)
            g = hist.groupby("epoch1")[col]
            mean, std = g.mean() * scale, g.std(ddof=1).fillna(0.0) * scale
            ax.plot(mean.index, mean.to_numpy(), color="C0", lw=2, label="mean ± std")
            ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(), color="C0", alpha=0.2, lw=0)
            ax.set_xlabel("Epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.legend(frameon=False)
        n_runs = hist["run"].nunique()
        fig.suptitle(f"Training curves — {display_name} ({n_runs} runs)")
        fig.tight_layout()
        save_figure(fig, paths)


def plot_tuning_draws(tables: Mapping[str, Any], display_names: Mapping[str, str], metric: str,
                      paths: Sequence[str | Path]) -> None:
    """The CV score of every draw, sorted best first, one line per arm (± std over folds shaded)."""
    from prmf.tuning import METRIC_LABELS

    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        colors = _colors(list(tables))
        for arm, df in tables.items():
            ok = df[df["status"] == "ok"].sort_values("rank")
            x = np.arange(1, len(ok) + 1)
            mean, std = ok["cv_mean"].to_numpy(float), np.nan_to_num(ok["cv_std"].to_numpy(float))
            ax.plot(x, mean, marker="o", ms=3, color=colors[arm], label=display_names.get(arm, arm))
            ax.fill_between(x, mean - std, mean + std, color=colors[arm], alpha=0.15, lw=0)
            ax.plot([1], mean[:1], marker="*", ms=11, color=colors[arm], ls="none")
        ax.set_xlabel("draw, ranked by its mean over the CV folds (1 = chosen, ★)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title("Random search: every draw's CV score (± std over folds)")
        ax.legend(loc="best")
        save_figure(fig, paths)
