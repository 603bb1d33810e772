"""Helpers for end-to-end tests: a tiny study in a temporary project folder.

``make_tiny_project(tmp_path)`` copies ``workflow/`` and ``config/`` into
``tmp_path / "project"`` and writes a tiny ``config/config.yaml`` (synthetic
data at 5 % of MER2023's size, 2 folds, 2 epochs, 1 seed, arms baseline and
exp4); keyword overrides are deep-merged into that config.
``run_snakemake(project, *args)`` runs Snakemake there with 2 cores.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

TINY_CONFIG: dict = {
    "dataset": {
        "name": "tiny",
        "source": "synthetic",
        "modalities": ["audio", "text", "video"],
        "features": {"audio": "synthetic-audio-UTT", "text": "synthetic-text-UTT", "video": "synthetic-video-UTT"},
        "synthetic": {"seed": 0, "scale": 0.05, "dims": {"audio": 8, "text": 12, "video": 6}},
    },
    "cv": {"folds": 2, "split_seed": 0},
    "seeds": [0],
    "training": {
        "epochs": 2, "early_stop": 2, "batch_size": 32, "hidden_dim": 16,
        "num_attention_heads": 2, "threads": 1, "device": "cpu",
    },
    "arms": {
        "baseline": {"model": "attention", "display_name": "Baseline (v0)", "export_name": "attention"},
        "exp4": {
            "model": "prmf", "use_vae": True, "use_proxy_attention": True, "use_modality_dropout": True,
            "kl_weight": 0.005, "recon_weight": 0.15, "cross_kl_weight": 0.01, "tau": 0.8, "warmup_epochs": 1,
            "display_name": "Exp4: P-RMF (full)", "export_name": "attention_robust_v2",
        },
    },
    "run_arms": ["baseline", "exp4"],
    "tables": {"reference_arm": "exp4", "ablation_arms": ["exp4"]},
}


def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` updated recursively by ``extra`` (a value of None deletes the key)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def write_config(project: Path, config: dict) -> Path:
    path = project / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_tiny_project(tmp_path: Path, **overrides) -> Path:
    """A runnable copy of the workflow with the tiny study config; returns the project folder."""
    project = Path(tmp_path) / "project"
    shutil.copytree(REPO / "workflow", project / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "config", project / "config")
    write_config(project, deep_merge(TINY_CONFIG, overrides))
    return project


def read_config(project: Path) -> dict:
    return yaml.safe_load((project / "config" / "config.yaml").read_text())


def run_snakemake(project: Path, *args: str, check: bool = True, cores: int = 2,
                  timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``snakemake --cores N *args`` in ``project``; on failure with ``check`` raise with its output."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *args]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        logs = ""
        for log in sorted((project / "results" / "logs").rglob("*.log"))[-5:]:
            logs += f"\n--- {log}\n{log.read_text()[-3000:]}"
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-5000:]}\n"
            f"STDERR:\n{proc.stderr[-8000:]}{logs}"
        )
    return proc


def jobs_run(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from Snakemake's 'Job stats' table (empty when nothing ran)."""
    text = proc.stdout + proc.stderr
    counts: dict[str, int] = {}
    if "Job stats:" not in text:
        return counts
    block = text.split("Job stats:", 1)[1].splitlines()[3:]
    for line in block:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts
