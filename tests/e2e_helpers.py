"""Helpers for end-to-end tests: a tiny study in a temporary project folder.

``make_tiny_project(tmp_path)`` copies ``workflow/`` and ``config/`` into
``tmp_path / "project"`` and writes a tiny ``config/config.yaml``
(:data:`TINY_CONFIG`: synthetic data at 5 % of MER2023's size, 2 folds, 2
epochs, 1 seed, small hidden size; its arms ``baseline`` and ``exp4`` are
copied from the repository's ``config/config.yaml`` when this module is
imported, so they are the study's arms); keyword overrides are deep-merged into
that config. ``copy_project(project, dest)`` copies a project with its results
(for a test that edits it). ``run_snakemake(project, *args)`` runs Snakemake
there with 2 cores.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

#: arms of the tiny study: the study's own, taken from config/config.yaml
TINY_ARMS = ("baseline", "exp4")


def study_arms(names: tuple[str, ...] = TINY_ARMS) -> dict[str, dict]:
    """Copies of the arm blocks ``names`` as ``config/config.yaml`` writes them."""
    arms = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["arms"]
    return {name: copy.deepcopy(arms[name]) for name in names}


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
        # one fold per job, the per-fold logs and benchmarks these tests read (packs: test_workflow)
        "pack": "none",
    },
    "arms": study_arms(),
    "run_arms": list(TINY_ARMS),
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


def copy_project(project: Path, dest: Path) -> Path:
    """A copy of ``project`` -- workflow, config, results and Snakemake's metadata -- at ``dest``.

    File times are kept, so Snakemake sees the copy as up to date exactly when the original is.
    """
    shutil.copytree(project, dest, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    return Path(dest)


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
