"""Seconds per training epoch and peak memory at MER2023's real shape.

Random features of MER2023's shape (3373 train samples, 4/5 used per fold;
dims 1024 / 5120 / 768) go through ``prmf.train``'s own epoch loop for the
attention baseline and the full P-RMF arm (Exp4), on CPU (``--threads``,
default 2) and on CUDA when present. The arms are the paper study's
(``config/config.yaml`` + ``config/mer2023.yaml``: hidden 128, batch 32, ...)
with one change: no modality-dropout warm-up, so every timed epoch drops
modalities. Each (arm, device) runs in
a fresh subprocess so peak RSS is its own. Prints one Markdown table.

A "floor" row per arm (``--floor``, on by default) times only the arm's matrix
products and its Adam step: every GEMM layer of the real model (same shapes,
batch 32) runs forward and backward on random inputs (input gradients only
where the model needs them), then ``LeanAdam`` updates all of the model's
parameters. No dropout, masking, fusion, loss or sampling work is done, so
the real loop cannot be faster than this row on the same machine.

    python benchmarks/bench_train.py [--epochs 5] [--threads 2] [--devices cpu,cuda] [--no-floor]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = ("config/config.yaml", "config/mer2023.yaml")
#: what the benchmark changes of the study's arms
OVERRIDES = {"warmup_epochs": 0}
DIMS = (1024, 5120, 768)
N_TRAIN = 3373 * 4 // 5


def arm_params(arm: str) -> dict:
    """The arm as the paper study resolves it, with :data:`OVERRIDES`."""
    from prmf.config import PACKAGE_ROOT, load_config, resolve_arm

    return {**resolve_arm(load_config(*(PACKAGE_ROOT / c for c in CONFIGS)), arm), **OVERRIDES}


def setup(arm: str, device: str, threads: int):
    """Allocator, threads and seed as ``train_fold`` sets them; returns ``(device, arm params, model)``."""
    import torch

    from prmf.models import build_model
    from prmf.train import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    params = arm_params(arm)
    return dev, params, build_model(params, list(DIMS), 6).to(dev)


def result_row(arm: str, device: str, threads: int, batch_size: int, times: list[float],
               eval_times: list[float] | None) -> dict:
    """One table row from per-epoch wall times (the first epoch is warm-up and left out)."""
    return {"arm": arm, "device": device, "threads": threads,
            "train_s_per_epoch": statistics.median(times[1:]),
            "eval_s_per_pass": statistics.median(eval_times[1:]) if eval_times else float("nan"),
            "steps_per_epoch": -(-N_TRAIN // batch_size),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker(arm: str, device: str, epochs: int, threads: int, graphs: bool = True) -> dict:
    import numpy as np
    import torch

    from prmf.losses import TrainingLoss
    from prmf.train import GraphedSteps, TensorSet, make_optimizer, predict, train_epoch

    dev, params, model = setup(arm, device, threads)
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.standard_normal((N_TRAIN, d), dtype=np.float32)).to(dev) for d in DIMS]
    data = TensorSet(names=np.arange(N_TRAIN).astype(str), xs=xs,
                     present=torch.ones(N_TRAIN, 3, dtype=torch.bool, device=dev), lengths=[None] * 3,
                     labels=torch.from_numpy(rng.integers(0, 6, N_TRAIN)).to(dev),
                     valence=torch.from_numpy(rng.uniform(-5, 5, N_TRAIN).astype(np.float32)).to(dev))
    loss_fn = TrainingLoss.from_arm(params)
    opt = make_optimizer(model, params["lr"], params["weight_decay"])
    gen = torch.Generator().manual_seed(0)
    graphed = GraphedSteps(model, loss_fn, opt, data, params["batch_size"]) if graphs and dev.type == "cuda" else None
    times, eval_times = [], []
    for e in range(epochs + 1):  # first epoch is warm-up
        model.set_epoch(e, 150)
        t = time.perf_counter()
        train_epoch(model, loss_fn, opt, data, params["batch_size"], gen, graphed)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        predict(model, data)  # eval pass over the same number of samples (a fold's val is 1/4 of this)
        eval_times.append(time.perf_counter() - t)
    return result_row(arm + (" (CUDA graph)" if graphed is not None else ""), device, threads,
                      params["batch_size"], times, eval_times)


def gemm_floor_step(model, params: dict, device):
    """A closure running one step of ``model``'s matrix products (forward + backward) and its Adam update."""
    import torch

    from prmf.models import InputMajorLinear, ProxyCrossModalAttention, StackedLinear
    from prmf.models.attention import single_key_attention
    from prmf.train import make_optimizer

    batch = params["batch_size"]
    gen = torch.Generator(device=device).manual_seed(0)
    rand = lambda *shape, grad=False: torch.randn(*shape, device=device, generator=gen).requires_grad_(grad)  # noqa: E731
    jobs = []  # (function of input, input, output-grad)
    # the attention blocks' projections as the model runs them (their out_proj is not a job of its own)
    skip = {id(blk.out_proj) for mod in model.modules() if isinstance(mod, ProxyCrossModalAttention)
            for blk in mod.attn}
    for mod in model.modules():
        if isinstance(mod, InputMajorLinear):  # the wide first layers: no input gradient
            jobs.append((mod, rand(batch, mod.in_features), rand(batch, mod.out_features)))
        elif isinstance(mod, StackedLinear):
            jobs.append((mod, rand(mod.num_layers, batch, mod.in_features, grad=True),
                         rand(mod.num_layers, batch, mod.out_features)))
        elif isinstance(mod, torch.nn.Linear) and id(mod) not in skip:
            jobs.append((mod, rand(batch, mod.in_features, grad=True), rand(batch, mod.out_features)))
        elif isinstance(mod, ProxyCrossModalAttention):  # single key: value + output projections, stacked
            shape = (len(mod.attn), batch, mod.attn[0].embed_dim)
            jobs.append((lambda x, blocks=mod.attn: single_key_attention(blocks, x), rand(*shape, grad=True),
                         rand(*shape)))
    opt = make_optimizer(model, params["lr"], params["weight_decay"])

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        outs = [fn(x) for fn, x, _ in jobs]
        torch.autograd.backward(outs, [g for _, _, g in jobs])
        opt.step()

    return step


def floor_worker(arm: str, device: str, epochs: int, threads: int) -> dict:
    import torch

    dev, params, model = setup(arm, device, threads)
    step = gemm_floor_step(model, params, dev)
    steps = -(-N_TRAIN // params["batch_size"])
    times = []
    for _ in range(epochs + 1):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return result_row(f"{arm} floor", device, threads, params["batch_size"], times, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--arms", default="baseline,exp4")
    p.add_argument("--no-cuda-graphs", dest="graphs", action="store_false",
                   help="on CUDA, time the eager loop instead of CUDA-graph replay")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the matrix-products-and-Adam-only floor rows")
    p.add_argument("--worker", nargs=2, metavar=("ARM", "DEVICE"), help=argparse.SUPPRESS)
    p.add_argument("--floor-worker", nargs=2, metavar=("ARM", "DEVICE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.epochs, a.threads, a.graphs)))
        return
    if a.floor_worker:
        print(json.dumps(floor_worker(a.floor_worker[0], a.floor_worker[1], a.epochs, a.threads)))
        return
    import torch

    devices = [d for d in a.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    rows = []
    for device in devices:
        for arm in a.arms.split(","):
            for flag in ("--worker", "--floor-worker") if a.floor else ("--worker",):
                out = subprocess.run([sys.executable, __file__, flag, arm, device, "--epochs", str(a.epochs),
                                      "--threads", str(a.threads)] + ([] if a.graphs else ["--no-cuda-graphs"]),
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    name = torch.cuda.get_device_name(0) if "cuda" in devices else ""
    p = arm_params("exp4")
    print(f"torch {torch.__version__}, {a.threads} CPU threads{', GPU ' + name if name else ''}; "
          f"MER2023 shape: {N_TRAIN} train samples/fold, dims {DIMS}, hidden {p['hidden_dim']}, "
          f"batch {p['batch_size']}; "
          f"median of {a.epochs} epochs\n")
    print("| arm | device | steps/epoch | train s/epoch | ms/step | eval s/pass (2698 samples) | peak RSS MiB |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['arm']} | {r['device']} | {r['steps_per_epoch']} | {r['train_s_per_epoch']:.3f} | "
              f"{1000 * r['train_s_per_epoch'] / r['steps_per_epoch']:.2f} | "
              f"{'–' if r['eval_s_per_pass'] != r['eval_s_per_pass'] else format(r['eval_s_per_pass'], '.3f')} | "
              f"{r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
