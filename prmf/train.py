"""Training of one cross-validation fold (MERBench's protocol, made fast and reproducible).

One fold = train on the fold's training part of the train split, select the
epoch on its held-out part by ``weighted_f1 - 0.25 * valence_mse`` (F1 alone
when that part has no valence), stop after ``early_stop`` epochs without
improvement, restore the best weights, then predict the held-out part and
test1/test2/test3 once.

All features live as tensors on the device; a batch is an index into them
(no Dataset, no collate); evaluation runs under ``torch.inference_mode``; test
sets are predicted once, with the best weights; Adam is :class:`prmf.optim.LeanAdam`.
Seconds per epoch: ``benchmarks/bench_train.py``.

:class:`FoldTrainer` holds one fold's state and advances it an epoch at a time;
:func:`train_fold` runs one fold, :func:`train_pack` several in one process (a
``training.pack`` job: one process start for all of them, and on a GPU their
kernels side by side on per-fold CUDA streams), each with exactly the numbers
it gets alone. :func:`train_and_save_folds` is the workflow's training job.
Seconds per study: ``benchmarks/bench_study.py``.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from prmf.config import require_keys
from prmf.data.store import FeatureStore
from prmf.health import assess_fold, health_line
from prmf.metrics import emotion_metrics, selection_score
from prmf.models import ModalityDropout, build_model
from prmf.losses import TERM_KEYS, TrainingLoss
from prmf.optim import LeanAdam

log = logging.getLogger(__name__)
EVAL_SPLITS: tuple[str, ...] = ("val", "test1", "test2", "test3")


def tune_allocator() -> None:
    """Keep freed tensor buffers in the heap (glibc ``mallopt``) instead of returning them to the OS.

    Every training step allocates gradient and activation buffers of a few
    hundred KiB; glibc's defaults hand them back with ``munmap`` and take page
    faults to get them again. Raising the mmap and trim thresholds to 16 / 256
    MiB (the same as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``)
    removes that cost. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def resolve_device(device: str = "auto", warn: Callable[[str], None] | None = None) -> torch.device:
    """``auto`` -> the first visible CUDA device, else CPU with a warning.

    Under SLURM the granted GPU is the one in ``CUDA_VISIBLE_DEVICES``, which
    torch sees as ``cuda:0``.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        msg = (f"no CUDA device visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
               "training on CPU")
        (warn or log.warning)(msg)
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"training.device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(device)


@dataclass
class TensorSet:
    """Features of a subset of samples on the device.

    ``xs[m]``: ``[N, D_m]`` (or ``[N, T, D_m]``); ``present``: ``[N, M]`` bool;
    ``lengths[m]``: ``[N]`` or None; ``labels``: ``[N]`` int64; ``valence``: ``[N]`` (NaN unknown).
    """

    names: np.ndarray
    xs: list[torch.Tensor]
    present: torch.Tensor
    lengths: list[torch.Tensor | None]
    labels: torch.Tensor
    valence: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, idx: torch.Tensor) -> tuple:
        """Rows ``idx`` ``[b]`` of every tensor (``torch.index_select``)."""
        take = lambda t: torch.index_select(t, 0, idx)  # noqa: E731
        xs = [take(x) for x in self.xs]
        lengths = [None if ln is None else take(ln) for ln in self.lengths]
        return xs, take(self.present), lengths, take(self.labels), take(self.valence)


@dataclass
class TensorSubset:
    """Rows ``index`` of a :class:`TensorSet` without a copy of its features.

    A batch gathers ``base``'s rows ``index[idx]``: the same values a copied
    :class:`TensorSet` of those rows gives, so training on it gives the same
    numbers, while the folds of a pack share one copy of the train split.
    ``index``: ``[n]`` int64 on the device; ``names``/``labels``/``valence``
    are the subset's own (``[n]``).
    """

    base: TensorSet
    index: torch.Tensor
    names: np.ndarray
    labels: torch.Tensor
    valence: torch.Tensor

    @property
    def xs(self) -> list[torch.Tensor]:
        """The base set's feature tensors (one per modality; only their number is read)."""
        return self.base.xs

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, idx: torch.Tensor) -> tuple:
        """Rows ``idx`` ``[b]`` of the subset: rows ``index[idx]`` of the base set."""
        return self.base.batch(torch.index_select(self.index, 0, idx))


def subset(base: TensorSet, positions: np.ndarray) -> TensorSubset:
    """The rows at ``positions`` of ``base`` as a :class:`TensorSubset`."""
    index = torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(base.labels.device)
    return TensorSubset(base=base, index=index, names=base.names[positions],
                        labels=torch.index_select(base.labels, 0, index),
                        valence=torch.index_select(base.valence, 0, index))


def tensor_set(store: FeatureStore, rows: np.ndarray, device: torch.device) -> TensorSet:
    """Select ``rows`` of the store and move them to ``device``."""
    mods = store.modalities
    xs = [torch.from_numpy(np.ascontiguousarray(store.features[m][rows])).to(device) for m in mods]
    present = torch.from_numpy(store.present(rows)).to(device)
    lengths = [torch.from_numpy(store.lengths[m][rows]).to(device) if m in store.lengths else None for m in mods]
    return TensorSet(
        names=store.names[rows],
        xs=xs,
        present=present,
        lengths=lengths,
        labels=torch.from_numpy(store.labels[rows].astype(np.int64)).to(device),
        valence=torch.from_numpy(store.valence[rows].astype(np.float32)).to(device),
    )


@dataclass
class Predictions:
    """Model outputs on one set: logits ``[N, C]``, valence ``[N]``, weights/uncertainty ``[N, M]`` (NaN if none)."""

    names: np.ndarray
    labels: np.ndarray
    valence_true: np.ndarray
    logits: np.ndarray
    valence: np.ndarray
    fusion_weights: np.ndarray
    uncertainty: np.ndarray

    def metrics(self) -> dict:
        return emotion_metrics(self.logits.argmax(1), self.labels, self.valence, self.valence_true)


@torch.inference_mode()
def predict(model: torch.nn.Module, data: TensorSet, batch_size: int = 1024,
            present: torch.Tensor | None = None) -> Predictions:
    """Run ``model`` in eval mode over ``data`` (optionally with an overriding ``present`` mask ``[N, M]``)."""
    model.eval()
    n, m = len(data), len(data.xs)
    logits, val, w, u = [], [], [], []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size), device=data.labels.device)
        xs, pres, lengths, _, _ = data.batch(idx)
        if present is not None:
            pres = present[idx]  # the model masks (and zeroes) absent modalities itself
        out = model(xs, pres, lengths)
        logits.append(out.logits.float().cpu())
        val.append(out.valence.float().cpu())
        nan = torch.full((len(idx), m), float("nan"))
        w.append(out.fusion_weights.float().cpu() if out.fusion_weights is not None else nan)
        # an absent modality has no uncertainty: NaN, not the model's placeholder 0
        u.append(out.uncertainty.float().cpu().masked_fill(~out.present.cpu(), float("nan"))
                 if out.uncertainty is not None else nan)
    cat = lambda xs_, shape: torch.cat(xs_).numpy() if xs_ else np.zeros(shape, np.float32)  # noqa: E731
    return Predictions(
        names=data.names,
        labels=data.labels.cpu().numpy(),
        valence_true=data.valence.cpu().numpy(),
        logits=cat(logits, (0, 0)),
        valence=cat(val, (0,)),
        fusion_weights=cat(w, (0, m)),
        uncertainty=cat(u, (0, m)),
    )


def fit_standardizer(model: torch.nn.Module, store: FeatureStore, rows: np.ndarray) -> None:
    """Fit the model's feature standardizer on ``rows`` of ``store`` (a fold's training part).

    Mean and std per feature dimension over the rows where the modality is present
    (absent and all-zero rows excluded; frame level: valid frames only); they become
    the model's buffers, so ``model.pt`` carries them.
    """
    from prmf.models.standardize import standardization_stats

    mods = store.modalities
    xs = [store.features[m][rows] for m in mods]
    present = store.present(rows)
    lengths = [store.lengths[m][rows] if m in store.lengths else None for m in mods]
    model.standardizer.set_stats(standardization_stats(xs, present, lengths))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> LeanAdam:
    """:class:`~prmf.optim.LeanAdam` over the model's parameters (``torch.optim.Adam``'s update, L2 decay)."""
    return LeanAdam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _step(model: torch.nn.Module, loss_fn: TrainingLoss, opt: LeanAdam, data: TensorSet,
          idx: torch.Tensor, grad_clip: float | None = None) -> torch.Tensor:
    """One optimisation step on rows ``idx`` of ``data``; returns the detached loss terms ``[6]``.

    ``grad_clip``: clamp every gradient element to ``[-grad_clip, grad_clip]`` before the update
    (MERBench's ``clip_grad_value_``; ``None`` = off).
    """
    xs, pres, lengths, y, v = data.batch(idx)
    out = model(xs, pres, lengths)
    loss, terms = loss_fn.terms(out, y, v)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_value_(opt.params, grad_clip)  # the trainable parameters, listed once
    opt.step()
    return terms


class GraphedSteps:
    """Full-size training steps replayed from a CUDA graph.

    On a GPU a step of these small models is bound by launching hundreds of
    kernels from Python, not by the GPU. The whole step -- batch gather from
    a static index buffer, forward, loss, backward and the fused Adam update
    -- is captured once per fold as a ``torch.cuda.CUDAGraph`` and then
    replayed with one launch. Random numbers (input dropout, modality
    dropout, VAE sampling) come from ``generator``, the fold's own CUDA
    generator (:meth:`~prmf.models.MultimodalModel.set_generator`; ``None``:
    torch's default one), registered with the graph so that its graph-safe
    Philox offsets advance on every replay: a seed still fixes the run.
    The modality-dropout rate is read from a device tensor that ``set_epoch``
    updates (``ModalityDropout.graph_safe``), so one capture serves every
    epoch. The first ``warmup`` steps run eagerly on a side stream (as the
    PyTorch recipe asks); only full batches use the graph, the last, smaller
    batch of an epoch runs eagerly.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: TrainingLoss, opt: LeanAdam, data: TensorSet,
                 batch_size: int, warmup: int = 2, grad_clip: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.model, self.loss_fn, self.opt, self.data = model, loss_fn, opt, data
        self.grad_clip, self.generator = grad_clip, generator
        self.idx = torch.zeros(batch_size, dtype=torch.int64, device=data.labels.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.terms: torch.Tensor | None = None
        self._eager_left = warmup
        for module in model.modules():
            if isinstance(module, ModalityDropout):
                module.graph_safe = True

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """Train on rows ``idx`` (``[batch_size]``, on the device); returns the loss terms ``[6]``."""
        self.idx.copy_(idx)
        if self._eager_left > 0:
            self._eager_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                terms = _step(self.model, self.loss_fn, self.opt, self.data, self.idx, self.grad_clip)
            current = torch.cuda.current_stream()
            current.wait_stream(side)
            # made on the side stream, read on this one: keep its memory from being reused meanwhile
            # (torch hands out pooled streams, so in a pack the side stream may be another fold's)
            terms.record_stream(current)
            return terms
        if self.graph is None:
            self.opt.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            if self.generator is not None:
                self.graph.register_generator_state(self.generator)
            with torch.cuda.graph(self.graph):
                self.terms = _step(self.model, self.loss_fn, self.opt, self.data, self.idx, self.grad_clip)
        self.graph.replay()
        return self.terms.clone()


def train_epoch_sums(model: torch.nn.Module, loss_fn: TrainingLoss, opt: LeanAdam, train: TensorSet,
                     batch_size: int, gen: torch.Generator, graphed: GraphedSteps | None = None,
                     grad_clip: float | None = None) -> tuple[torch.Tensor, int]:
    """One pass over ``train`` in a random order drawn from ``gen``; returns (summed loss terms ``[6]``
    on the device, float64, in :data:`prmf.losses.TERM_KEYS` order; steps).

    Nothing is read back to the host, so on a GPU the call only queues work.
    With ``graphed``, full batches replay its CUDA graph.
    """
    model.train()
    n = len(train)
    perm = torch.randperm(n, generator=gen).to(train.labels.device)
    sums = torch.zeros(len(TERM_KEYS), dtype=torch.float64, device=train.labels.device)
    steps = 0
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if graphed is not None and len(idx) == batch_size:
            sums += graphed.step(idx)
        else:
            sums += _step(model, loss_fn, opt, train, idx, grad_clip)
        steps += 1
    return sums, steps


def train_epoch(model: torch.nn.Module, loss_fn: TrainingLoss, opt: LeanAdam, train: TensorSet,
                batch_size: int, gen: torch.Generator, graphed: GraphedSteps | None = None,
                grad_clip: float | None = None) -> tuple[dict[str, float], int]:
    """:func:`train_epoch_sums` with the sums read back: ``({term: summed value}, steps)``."""
    sums, steps = train_epoch_sums(model, loss_fn, opt, train, batch_size, gen, graphed, grad_clip)
    return dict(zip(TERM_KEYS, sums.tolist())), steps


def use_cuda_graphs(requested: bool, device: torch.device, frame_level: list[bool]) -> bool:
    """CUDA graphs are used when asked for, on a CUDA device, for utterance-level inputs only
    (the LSTM path packs sequences with lengths on the host, which a graph cannot capture)."""
    return bool(requested) and device.type == "cuda" and not any(frame_level)


@dataclass
class FoldResult:
    """Everything one fold produces."""

    state_dict: dict
    history: list[dict]
    best_epoch: int
    epochs_run: int
    predictions: dict[str, Predictions]
    metrics: dict[str, dict]
    seconds: float
    device: str
    health: dict = field(default_factory=dict)
    #: seconds from the process start to the job's first training step (in a pack: the first
    #: member's; None where unknown)
    startup_seconds: float | None = None
    #: fold models trained in the same process (1: the fold alone; see train_pack)
    pack_size: int = 1


#: keys of a resolved arm that :func:`train_fold` reads (besides the model's, see ``build_model``)
TRAIN_KEYS = ("arm", "epochs", "early_stop", "lr", "weight_decay", "batch_size", "grad_clip", "standardize",
              "valence_weight_in_selection")


def fold_seed(seed: int, fold: int) -> int:
    """The torch seed of one (seed, fold) job."""
    return int(seed) * 1000 + int(fold)


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; 10 ms resolution), else ``None``.

    A training job's start-up -- interpreter, imports, store read, model
    build -- is this age when its first training step begins.
    """
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _member_generator(dev: torch.device) -> torch.Generator:
    """A generator on ``dev`` that continues torch's global RNG from where it stands now.

    After ``torch.manual_seed`` and the model's initialisation a fold's
    training draws come from this copy, so they are the draws the global RNG
    would give -- whether the fold trains alone or packed with others.
    """
    gen = torch.Generator(device=dev)
    gen.set_state(torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state())
    return gen


def _shared_sets(store: FeatureStore, dev: torch.device) -> dict[str, TensorSet]:
    """The sets every fold reads, on ``dev`` once: ``train`` (the whole train split, of which
    each fold's training and validation parts are :class:`TensorSubset` s) and the non-empty
    test1/test2/test3. Shared by the members of a pack."""
    out = {"train": tensor_set(store, store.indices("train"), dev)}
    for split in EVAL_SPLITS[1:]:
        rows = store.indices(split)
        if len(rows):
            out[split] = tensor_set(store, rows, dev)
    return out


class FoldTrainer:
    """The training of one fold, advanced one epoch at a time.

    :func:`train_fold` runs one to the end; :func:`train_pack` interleaves
    several in one process. Everything random in a fold comes from its own
    generators (the batch order from a CPU generator, the model's draws from
    :func:`_member_generator`), both seeded by :func:`fold_seed`, so a fold
    gives the same numbers alone or packed. ``own_stream`` (a pack's members
    on a GPU): all the fold's device work -- training, validation, the copies
    of its best weights -- goes to its own CUDA stream, so the (small) kernels
    of several folds overlap on the device.

    Use: ``launch_epoch()`` (queues the epoch's training steps), then
    ``finish_epoch()`` (validation, selection, early stopping) until
    :attr:`done`; then :meth:`result`.
    """

    def __init__(self, store: FeatureStore, folds: dict, fold: int, arm: dict, seed: int, dev: torch.device, *,
                 say: Callable[[str], None], cuda_graphs: bool = True,
                 shared_sets: dict[str, TensorSet] | None = None, own_stream: bool = False) -> None:
        require_keys(arm, TRAIN_KEYS, "train_fold", allow_none=True)
        self.t0 = time.perf_counter()
        self.arm, self.seed, self.fold, self.dev, self.say = arm, int(seed), int(fold), dev, say
        self.n_classes = len(store.class_names)
        self.mods = store.modalities
        torch.manual_seed(fold_seed(seed, fold))
        self.order_gen = torch.Generator(device="cpu").manual_seed(fold_seed(seed, fold))

        shared = shared_sets if shared_sets is not None else _shared_sets(store, dev)
        pool = shared["train"]
        spec = folds["folds"][fold]
        pos_of = {n: i for i, n in enumerate(pool.names)}
        try:
            tr_pos = np.array([pos_of[n] for n in spec["train"]], dtype=np.int64)
            va_pos = np.array([pos_of[n] for n in spec["val"]], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"folds.json names sample {e} that is not in the feature store's train split; "
                             "the store changed after the folds were made: rerun make_folds") from None
        tr_rows = store.indices("train")[tr_pos]  # the store rows, for the standardizer
        self.train = subset(pool, tr_pos)
        self.sets = {"val": subset(pool, va_pos), **{k: v for k, v in shared.items() if k != "train"}}

        frame = list(store.frame_level().values())
        self.model = build_model(arm, list(store.dims().values()), self.n_classes, frame_level=frame).to(dev)
        if arm["standardize"] == "zscore":
            fit_standardizer(self.model, store, tr_rows)
            say(f"standardize: z-scores fitted on the fold's {len(tr_rows)} training samples")
        self.generator = _member_generator(dev)
        self.model.set_generator(self.generator)
        self.loss_fn = TrainingLoss.from_arm(arm)
        self.opt = make_optimizer(self.model, arm["lr"], arm["weight_decay"])
        self.grad_clip = None if arm["grad_clip"] is None else float(arm["grad_clip"])
        self.graphed = (GraphedSteps(self.model, self.loss_fn, self.opt, self.train, int(arm["batch_size"]),
                                     grad_clip=self.grad_clip, generator=self.generator)
                        if use_cuda_graphs(cuda_graphs, dev, frame) else None)
        if self.graphed is not None:
            say("CUDA graphs: a full training step is captured once and replayed")
        self.stream = torch.cuda.Stream(dev) if own_stream and dev.type == "cuda" else None
        if self.stream is not None:  # everything above was made on the default stream
            self.stream.wait_stream(torch.cuda.current_stream(dev))

        self.epochs, self.batch_size = int(arm["epochs"]), int(arm["batch_size"])
        self.patience = None if arm["early_stop"] is None else int(arm["early_stop"])
        self.valence_weight = float(arm["valence_weight_in_selection"])
        self.best_score, self.best_epoch, self.best_state, self.since_best = -float("inf"), -1, None, 0
        self.history: list[dict] = []
        self.epoch = 0
        self.done = self.epochs <= 0
        self.first_step_age: float | None = None
        self._pending: tuple[torch.Tensor, int, float] | None = None

    def _on_stream(self):
        """A context running work on this fold's CUDA stream (a no-op on CPU)."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def launch_epoch(self) -> None:
        """Queue one pass over the training part (on a GPU: asynchronously, on the fold's stream)."""
        if self.first_step_age is None:
            self.first_step_age = process_age()
        te = time.perf_counter()
        with self._on_stream():  # set_epoch writes the device-side dropout rate the steps read
            self.model.set_epoch(self.epoch, self.epochs)
            sums, steps = train_epoch_sums(self.model, self.loss_fn, self.opt, self.train, self.batch_size,
                                           self.order_gen, self.graphed, self.grad_clip)
        self._pending = (sums, steps, te)

    def finish_epoch(self) -> None:
        """Validate the epoch just trained, keep the best weights, decide on early stopping."""
        sums_t, steps, te = self._pending
        self._pending = None
        with self._on_stream():
            sums = dict(zip(TERM_KEYS, sums_t.tolist()))
            val_pred = predict(self.model, self.sets["val"])
            self._select(val_pred, sums, steps, te)

    def _select(self, val_pred: Predictions, sums: dict[str, float], steps: int, te: float) -> None:
        """Record the epoch's row, copy the weights when the selection score improved, check early stop."""
        vm = val_pred.metrics()
        score = selection_score(vm, self.valence_weight)
        epoch, epochs = self.epoch, self.epochs
        row = {"epoch": epoch, **{f"train_{k}": s / max(steps, 1) for k, s in sums.items()},
               "val_f1": vm["f1"], "val_acc": vm["acc"],
               "val_mse": float("nan") if vm["val_mse"] is None else vm["val_mse"],
               "val_score": score, "modality_dropout_rate": float(self.model.modality_dropout_rate)}
        w = np.nanmean(val_pred.fusion_weights, axis=0) if np.isfinite(val_pred.fusion_weights).any() \
            else np.full(len(self.mods), np.nan)
        row.update({f"weight_{m}": float(w[j]) for j, m in enumerate(self.mods)})
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.since_best = score, epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.since_best += 1
        row["seconds"] = time.perf_counter() - te
        self.history.append(row)
        self.say(f"epoch {epoch + 1:3d}/{epochs} loss {row.get('train_loss', float('nan')):.4f} "
                 f"val f1 {vm['f1']:.4f} acc {vm['acc']:.4f} mse {row['val_mse']:.4f} "
                 f"score {score:.4f}{' *' if improved else ''} p_drop {row['modality_dropout_rate']:.3f} "
                 f"({row['seconds']:.2f}s)")
        self.epoch += 1
        if self.patience is not None and self.since_best >= self.patience:
            self.say(f"early stop: no improvement for {self.patience} epochs (best epoch {self.best_epoch + 1})")
            self.done = True
        elif self.epoch >= epochs:
            self.done = True

    def result(self) -> FoldResult:
        """Restore the best epoch's weights, predict every split once, assess the fold's health."""
        model = self.model
        with self._on_stream():
            if self.best_state is None:  # no finite selection score in any epoch (e.g. the loss went NaN)
                self.say("no epoch had a finite selection score: keeping the last epoch's weights")
                self.best_epoch, self.best_state = len(self.history) - 1, copy.deepcopy(model.state_dict())
            model.load_state_dict(self.best_state)
            preds = {split: predict(model, data) for split, data in self.sets.items()}
            state = {k: v.detach().cpu() for k, v in self.best_state.items()}
        metrics = {split: p.metrics() for split, p in preds.items()}
        metrics["val"]["best_epoch"] = self.best_epoch
        health = assess_fold(
            preds["val"].labels, max((float(r["val_acc"]) for r in self.history), default=float("nan")),
            [r["train_loss"] for r in self.history], self.n_classes,
        )
        self.say(health_line(self.arm["arm"], self.seed, self.fold, health))
        return FoldResult(
            state_dict=state,
            history=self.history,
            best_epoch=self.best_epoch,
            epochs_run=len(self.history),
            predictions=preds,
            metrics=metrics,
            seconds=time.perf_counter() - self.t0,
            device=str(self.dev),
            health=health,
            startup_seconds=self.first_step_age,
        )


def _setup(device: str, threads: int, say: Callable[[str], None]) -> torch.device:
    tune_allocator()
    torch.set_num_threads(int(threads))
    return resolve_device(device, warn=say)


def train_fold(
    store: FeatureStore,
    folds: dict,
    fold: int,
    arm: dict,
    seed: int,
    device: str = "auto",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    cuda_graphs: bool = True,
) -> FoldResult:
    """Train ``arm`` on fold ``fold`` of ``folds`` with ``seed``; see module docstring.

    ``arm`` is the resolved arm dict (``prmf.config.resolve_arm``), with every
    key of :data:`TRAIN_KEYS` -- epochs, early_stop (``None``: no early
    stopping, MERBench's loop), lr, weight_decay, batch_size, grad_clip
    (``None``: off), standardize, valence_weight_in_selection -- and the
    model's and loss's keys (``build_model``, ``TrainingLoss.from_arm``); a
    missing key is a :class:`ValueError` naming it. With ``standardize: zscore`` the model's standardizer is
    fitted on the fold's training part only (present, non-zero rows) before
    the first step; the statistics are buffers of the saved state dict.
    ``cuda_graphs``: replay full training steps from a CUDA graph on a GPU
    (see :class:`GraphedSteps`; ignored on CPU and for frame-level inputs).
    """
    say = progress or (lambda s: log.info(s))
    dev = _setup(device, threads, say)
    trainer = FoldTrainer(store, folds, fold, arm, seed, dev, say=say, cuda_graphs=cuda_graphs)
    while not trainer.done:
        trainer.launch_epoch()
        trainer.finish_epoch()
    return trainer.result()


def train_pack(
    store: FeatureStore,
    folds: dict,
    members: list[tuple[int, int]],
    arm: dict,
    device: str = "auto",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    cuda_graphs: bool = True,
) -> list[FoldResult]:
    """Train ``arm`` on several ``(seed, fold)`` members in one process; one result per member, in order.

    Each member is exactly the :func:`train_fold` of its seed and fold: its
    own data order, model draws, early stopping and best-epoch selection (a
    stopped member takes no more steps). The members advance epoch by epoch
    in turn; on a GPU each queues its epoch on its own CUDA stream before any
    is validated, so their kernels run side by side on the device. The pack
    pays the process start, imports and store read once, and shares the test
    sets. Progress lines are prefixed ``[seed S fold F]`` (when there are several).
    """
    say = progress or (lambda s: log.info(s))
    if len(set(members)) != len(members):
        raise ValueError(f"train_pack: a (seed, fold) member is listed twice: {members}")
    dev = _setup(device, threads, say)
    shared = _shared_sets(store, dev)
    trainers = []
    for seed, fold in members:
        tag = f"[seed {seed} fold {fold}] " if len(members) > 1 else ""
        trainers.append(FoldTrainer(store, folds, fold, arm, seed, dev, cuda_graphs=cuda_graphs, shared_sets=shared,
                                    own_stream=len(members) > 1, say=lambda line, tag=tag: say(tag + line)))
    active = [t for t in trainers if not t.done]
    while active:
        for trainer in active:
            trainer.launch_epoch()
        for trainer in active:
            trainer.finish_epoch()
        active = [t for t in active if not t.done]
    results = [t.result() for t in trainers]
    ages = [r.startup_seconds for r in results if r.startup_seconds is not None]
    for res in results:  # the job's start-up: process start to its first training step
        res.pack_size, res.startup_seconds = len(results), (min(ages) if ages else None)
    return results


def train_and_save_folds(
    store_path: str | Path, folds_path: str | Path, members: list[tuple[int, int]], arm: dict, *,
    predictions: list, metrics: list, histories: list, models: list | None = None,
    device: str = "auto", cuda_graphs: bool = True, threads: int = 1, progress: Callable[[str], None] | None = None,
) -> None:
    """A training job of the workflow: train the ``(seed, fold)`` members of ``arm`` (one alone,
    several as a pack, :func:`train_pack`) and write each member's files (:func:`save_fold`).

    The file lists run parallel to ``members``. ``models=None``: the weights are not kept
    (tuning draws: nothing reads them).
    """
    import tempfile

    from prmf.data.folds import read_folds
    from prmf.data.store import read_store

    store = read_store(store_path)
    members = [(int(seed), int(fold)) for seed, fold in members]
    results = train_pack(store, read_folds(folds_path), members, arm, device=device, cuda_graphs=cuda_graphs,
                         threads=threads, progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        for i, ((seed, fold), result) in enumerate(zip(members, results)):
            model = models[i] if models is not None else Path(tmp) / f"model{i}.pt"
            save_fold(result, store, arm, seed, fold, model=model, predictions=predictions[i],
                      metrics=metrics[i], history=histories[i])


def fold_output_paths(outdir: str | Path) -> dict[str, Path]:
    """The four files of one fold inside ``outdir``."""
    outdir = Path(outdir)
    return {"model": outdir / "model.pt", "predictions": outdir / "predictions.npz",
            "metrics": outdir / "metrics.json", "history": outdir / "history.tsv"}


def history_tsv(rows: list[dict]) -> str:
    """The epoch rows as ``history.tsv``: a header of the first row's keys, one line per epoch,
    NaN as an empty field -- the text ``pandas.DataFrame(rows).to_csv(sep="\\t", index=False)``
    writes, without importing pandas in every training job."""
    if not rows:
        return "\n"
    keys = list(rows[0])

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return str(value)

    lines = ["\t".join(keys)] + ["\t".join(cell(row.get(k)) for k in keys) for row in rows]
    return "\n".join(lines) + "\n"


def save_fold(result: FoldResult, store: FeatureStore, arm: dict, seed: int, fold: int, *,
              model: str | Path, predictions: str | Path, metrics: str | Path, history: str | Path) -> None:
    """Write ``model.pt`` (state dict), ``predictions.npz``, ``metrics.json``, ``history.tsv`` of one fold.

    All four are serialized in memory and written atomically, all or none
    (:func:`prmf.atomic.write_files`), so a full disk never leaves a
    truncated ``model.pt``.

    Raises:
        prmf.atomic.OutputError: naming the file that could not be written.
    """
    from prmf.atomic import torch_bytes, write_files
    from prmf.predictions import fold_payload

    args = {"arm": arm, "seed": seed, "fold": fold, "dataset": store.dataset,
            "store_hash": store.content_hash, "device": result.device}
    info = {"arm": arm["arm"], "seed": seed, "fold": fold, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "seconds": round(result.seconds, 3),
            "device": result.device, "pack_size": result.pack_size,
            "startup_seconds": None if result.startup_seconds is None else round(result.startup_seconds, 3),
            "health": result.health, "metrics": result.metrics}
    write_files({
        model: torch_bytes(result.state_dict),
        predictions: fold_payload(result.predictions, store.class_names, store.modalities, args),
        metrics: json.dumps(info, indent=2) + "\n",
        history: history_tsv(result.history),
    })
