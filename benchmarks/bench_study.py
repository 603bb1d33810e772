"""Study-level benchmark: the real Snakemake workflow on MER2023-shaped features,
and MERBench's own training loop side by side on the same data.

    python benchmarks/bench_study.py --scale 0.2                       # our side only
    python benchmarks/bench_study.py --scale 0.2 --merbench ~/MERTools/MERBench
    # the paper's study on a GPU: 7 arms x 5 seeds x 5 folds at MER2023's size
    python benchmarks/bench_study.py --scale 1 --seeds 5 --epochs 150 --arms paper --device cuda

What it does, all in a temporary folder:

1. writes a MERBench ``mer2023-dataset-process``-layout folder with MER2023's
   dimensions (audio 1024, text 5120, video 768), MER2023's split sizes times
   ``--scale``, six classes in MER2023's train proportions, class-informative
   random features (a class prototype plus noise per modality), a few all-zero
   "absent" rows, and test3's ``-10`` valence placeholder;
2. runs the study through the real workflow (``config/mer2023.yaml`` over
   ``config/config.yaml``, plus a small overlay for the data folder, folds,
   seeds, arms and epochs) and reads every fold's Snakemake ``benchmark:`` file
   and every run's ``summary.json``;
3. with ``--merbench DIR``: copies that MERBench checkout, patches *in the copy*
   its hard-coded CUDA calls and its unused ``torchaudio`` import
   (:mod:`prmf.interop.merbench_run`), and runs its ``main-release.py --model
   attention`` with fixed hyper-parameters (hidden 128, dropout 0.4, lr 1e-3,
   its L2 1e-5, ``--epochs``) on the same folder; its five folds run in one
   process, so its per-fold time is its wall time / 5.

It prints the wall time, fold jobs per minute, per-fold seconds (median of the
Snakemake benchmark files; a pack job's time shared by its folds, ``--pack``),
start-up seconds per fold (process start to first step, ``metrics.json``'s
``startup_seconds`` over the pack size) and test1 accuracy (fold ensemble) per arm, and the
ratio to MERBench's per-fold time. Nothing here is copied from MERBench.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prmf.data.store import EMOTIONS  # noqa: E402

DIMS = {"audio": 1024, "text": 5120, "video": 768}
FEATURES = {"audio": "chinese-hubert-large-UTT", "text": "Baichuan-13B-Base-UTT",
            "video": "clip-vit-large-patch14-UTT"}
SPLIT_SIZES = {"train": 3373, "test1": 411, "test2": 412, "test3": 834}
TRAIN_PROPORTIONS = np.array([871, 822, 689, 383, 462, 146], dtype=float)
#: the arms timed by default: MERBench's protocol (the side-by-side row), the same with
#: early stopping, and the paper's protocol for the baseline and full P-RMF
DEFAULT_ARMS = "baseline_merbench,baseline_merbench_es,baseline,exp4"
#: ``--arms paper``: the paper's seven arms (Table of SEED.md; exp1 trains once with robust_v1)
PAPER_ARMS = "baseline,robust_v1,exp1,exp2,exp3,exp4,exp5"


def write_merbench_folder(root: Path, scale: float, seed: int = 0, separation: float = 0.08,
                          zero_rate: float = 0.02) -> dict[str, int]:
    """Write a MER2023-shaped MERBench folder; returns the split sizes."""
    rng = np.random.default_rng(seed)
    protos = {m: rng.standard_normal((6, d)) * separation for m, d in DIMS.items()}
    scales = {"audio": 0.1, "text": 10.0, "video": 1.0}  # MERBench-like scales
    for feat in FEATURES.values():
        (root / "features" / feat).mkdir(parents=True, exist_ok=True)
    sizes = {s: max(12, round(n * scale)) for s, n in SPLIT_SIZES.items()}
    corpora = {}
    for split, n in sizes.items():
        p = TRAIN_PROPORTIONS / TRAIN_PROPORTIONS.sum()
        labels = rng.choice(6, size=n, p=p)
        corpus = {}
        for i, c in enumerate(labels):
            name = f"{split}_{i:05d}"
            val = -10.0 if split == "test3" else float(np.clip(rng.normal((c - 2.5) * 0.8, 1.0), -5, 5))
            corpus[name] = {"emo": EMOTIONS[int(c)], "val": val}
            for m, d in DIMS.items():
                x = (protos[m][c] + rng.standard_normal(d)) * scales[m]
                if m != "audio" and rng.random() < zero_rate:
                    x = np.zeros(d)  # MERBench's absent vector (no face / empty transcript)
                np.save(root / "features" / FEATURES[m] / f"{name}.npy", x.astype(np.float32))
        corpora[f"{split}_corpus"] = corpus
    np.savez(root / "label-6way.npz", **{k: np.array(v, dtype=object) for k, v in corpora.items()})
    return sizes


def job_seconds(benchmark: Path) -> float:
    """Wall seconds of a job from its Snakemake ``benchmark:`` file."""
    return float(benchmark.read_text().splitlines()[1].split("\t")[0])


def run_ours(work: Path, data: Path, args: argparse.Namespace) -> dict:
    """The study through Snakemake in ``work``; returns wall time and per-arm rows."""
    for part in ("workflow", "config"):
        shutil.copytree(REPO / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
    patiences = [int(x) for x in str(args.patience).split(",")]
    arms = []
    for arm in (PAPER_ARMS if args.arms == "paper" else args.arms).split(","):
        # baseline_merbench_es: MERBench's protocol with early stopping, one arm per --patience value
        arms += [f"baseline_merbench_es{p}" for p in patiences] if arm == "baseline_merbench_es" else [arm]
    early_stop_arms = {
        f"baseline_merbench_es{p}": {"base": "baseline_merbench", "epochs": args.epochs, "early_stop": p,
                                     "display_name": f"Baseline (v0), MERBench protocol + early stop {p}"}
        for p in patiences}
    overlay = {
        "dataset": {"root": str(data), "features": FEATURES, "import_workers": args.cores},
        "cv": {"folds": 5}, "seeds": list(range(args.seeds)),
        "training": {"epochs": args.epochs, "threads": args.threads, "device": args.device, "pack": args.pack},
        "arms": {"baseline_merbench": {"epochs": args.epochs}, **early_stop_arms},
        "run_arms": arms,
    }
    (work / "bench.yaml").write_text(yaml.safe_dump(overlay))
    targets = [f"results/runs/MER2023/{arm}/seed{s}/summary.json" for arm in arms for s in range(args.seeds)]
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--resources", "gpu=1",
           "--configfile", "config/mer2023.yaml", "bench.yaml", "--", *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    rows = []
    bench_dir = work / "results/benchmarks/MER2023/train"
    for arm in arms:
        infos = [json.loads(f.read_text())
                 for f in (work / "results/runs/MER2023").glob(f"{arm}/seed*/fold*/metrics.json")]
        # a training job's wall time (Snakemake benchmark file) shared by the folds it trained
        per_fold = [job_seconds(f) for f in bench_dir.glob(f"{arm}/seed*/fold*.tsv")]
        for f in [*bench_dir.glob(f"{arm}/pack.tsv"), *bench_dir.glob(f"{arm}/seed*/pack.tsv")]:
            size = next(i["pack_size"] for i in infos)
            per_fold += [job_seconds(f) / size] * size
        startup = [i["startup_seconds"] / i["pack_size"] for i in infos if i.get("startup_seconds") is not None]
        sums = [json.loads((work / t).read_text()) for t in targets if f"/{arm}/" in t]
        rows.append({
            "side": "ours", "arm": arm,
            "per_fold_s": statistics.median(per_fold) if per_fold else float("nan"), "fold_jobs": len(per_fold),
            "startup_s": statistics.median(startup) if startup else float("nan"),
            "epochs_run": statistics.median(e for s in sums for e in s["epochs_run"]),
            "test1_acc": statistics.mean(s["metrics"]["test1"]["acc"] for s in sums),
        })
    n_jobs = sum(r["fold_jobs"] for r in rows)
    return {"wall_s": wall, "fold_jobs": n_jobs, "rows": rows}


def run_merbench(work: Path, data: Path, merbench: Path, args: argparse.Namespace) -> dict:
    """MERBench's ``main-release.py --model attention`` on ``data`` from a patched copy."""
    from prmf.interop.merbench_run import copy_checkout, prepare_for_cpu, run_main_release, write_import_stubs

    checkout = copy_checkout(merbench, work / "MERBench")
    prepare_for_cpu(checkout, data)
    stubs = write_import_stubs(work / "stubs")
    hyper = work / "attention.yaml"
    hyper.write_text("attention:\n  hidden_dim: 128\n  dropout: 0.4\n  grad_clip: -1.0\n  lr: 1.0e-3\n")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # as many threads as one of our fold jobs
    feats = ["--audio_feature", FEATURES["audio"], "--text_feature", FEATURES["text"],
             "--video_feature", FEATURES["video"]]
    t0 = time.perf_counter()
    proc = run_main_release(checkout, ["--dataset", "MER2023", "--model", "attention", "--feat_type", "utt",
                                       *feats, "--epochs", str(args.epochs), "--batch_size", "32",
                                       "--hyper_path", str(hyper), "--save_root", str(work / "saved")],
                            stubs, timeout=24 * 3600)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"MERBench failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    test1 = [p.name for p in (work / "saved-trimodal" / "result").glob("test1_*.npz")]
    acc = float(re.search(r"_acc:(\d+\.\d+)", test1[0]).group(1)) if test1 else float("nan")
    return {"side": "MERBench", "arm": "attention (main-release.py)", "per_fold_s": wall / 5, "fold_jobs": 5,
            "startup_s": float("nan"),
            "epochs_run": args.epochs, "test1_acc": acc, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.2, help="MER2023 split sizes x this (default 0.2)")
    ap.add_argument("--arms", default=DEFAULT_ARMS,
                    help=f"our arms, or 'paper' for the paper's seven ({PAPER_ARMS}); default {DEFAULT_ARMS}")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=100, help="epoch limit of every arm and of MERBench (100)")
    ap.add_argument("--patience", default="20",
                    help="early stop(s) of baseline_merbench_es, comma-separated: one arm each (default 20)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per fold job and for MERBench (2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pack", default="auto", choices=["auto", "none", "folds", "seeds"],
                    help="training.pack: fold models per training job (default auto: seeds on a GPU, none on CPU)")
    ap.add_argument("--merbench", type=Path, default=None, help="MERBench/ folder of a MERTools checkout")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_study_"))
    try:
        data = work / "mer2023-dataset-process"
        sizes = write_merbench_folder(data, args.scale)
        ours = run_ours(work / "ours", data, args)
        rows = list(ours["rows"])
        mb = run_merbench(work / "mb", data, args.merbench, args) if args.merbench else None
        if mb:
            rows.append(mb)
        import torch

        print(f"MER2023-shaped data x {args.scale}: {sizes}; dims {DIMS}; {args.epochs} epochs max; "
              f"torch {torch.__version__}, {args.cores} cores, {args.threads} threads per training job, "
              f"training.pack {args.pack}")
        print(f"ours: {ours['fold_jobs']} fold jobs in {ours['wall_s']:.1f} s wall through Snakemake "
              f"({ours['fold_jobs'] / ours['wall_s'] * 60:.1f} fold jobs/min)")
        print()
        print("| side | arm | per-fold s (median) | start-up s per fold | epochs run (median) | test1 ACC "
              "| MERBench per-fold s / ours |")
        print("|---|---|--:|--:|--:|--:|--:|")
        for r in rows:
            ratio = f"{mb['per_fold_s'] / r['per_fold_s']:.2f}" if mb else "–"
            startup = "–" if r["startup_s"] != r["startup_s"] else f"{r['startup_s']:.2f}"
            print(f"| {r['side']} | {r['arm']} | {r['per_fold_s']:.1f} | {startup} | {r['epochs_run']:.0f} | "
                  f"{r['test1_acc']:.3f} | {ratio} |")
        if not mb:
            print("\n(MERBench's loop not run: pass --merbench DIR for the side-by-side rows)")
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
