"""The P-RMF models as MERBench models (what ``toolkit/models/attention_robust*.py`` import).

MERBench's ``get_models`` builds ``MODEL_MAP[args.model](args)`` and its loop
(``main-release.py``) calls ``features, emos_out, vals_out, interloss =
model(batch)``, adds ``CELoss(emos_out, emos)`` and ``MSELoss(vals_out, vals)``
to ``interloss``, clips gradients by value with ``model.model.grad_clip``
(``-1``: off) and steps its own Adam. The classes here fit that interface:

* ``AttentionRobust`` (MERBench name ``attention_robust``): the study's arm
  ``robust_v1`` -- MERBench's ``attention`` with progressive modality dropout;
* ``AttentionRobustV2`` (``attention_robust_v2``): the arm ``exp4`` -- full
  P-RMF; its switches (:data:`SWITCHES`) make every ablation arm.

**Constructor** (``args``: MERBench's namespace): the arm is
``resolve_arm(load_config(config/config.yaml), ARM)`` (``--prmf_config``
layers other study configs instead), overlaid with MERBench's ``hidden_dim``,
``dropout`` and ``grad_clip`` and with every switch of :data:`SWITCHES` that
``args`` sets (``--use_vae false``, or a key of the ``--hyper_path`` /
``model-tune.yaml`` entry: MERBench copies those keys into ``args``).
``standardize`` is always ``none``: MERBench feeds raw features and has no
training statistics to give (the paper did the same). Input dims are
``args.audio_dim``, ``text_dim``, ``video_dim``; ``args.output_dim1`` classes;
``args.feat_type`` ``utt`` (``[B, D]`` inputs) or ``frm_align`` /
``frm_unalign`` (``[B, T, D]``, LSTM encoders). The model is
``prmf.models.build_model(arm, dims, output_dim1, frame_level)`` (``.model``).

**forward(batch)**: ``batch`` holds ``audios``, ``texts``, ``videos`` (the
keys of MERBench's ``Data_Feat.collater``; MERBench has no mask keys):
``[B, D_m]`` utterance-level, or ``[B, T_m, D_m]`` frame-level, padded with
zero frames *in front* (``func_mapping_feature``). A modality is absent for a
sample when its row (every frame) is all zeros -- MERBench's extractors write
zeros for no face / an empty transcript; the model then masks it exactly, so
the output does not depend on those values. Frame-level inputs are moved to
our layout (valid frames first, ``lengths`` = frames after the leading zero
frames), so the LSTM reads only the valid frames. Returns
``(features [B, H], emos_out [B, output_dim1], vals_out [B, 1], interloss [])``
like MERBench's ``attention``: ``features`` is the fused representation the
heads read, ``interloss`` the weighted auxiliary terms of our objective
(``kl_weight * KL + recon_weight * recon + cross_kl_weight * cross-KL``, from
:mod:`prmf.losses`; 0 without a VAE), since MERBench adds CE and valence MSE.

**Epoch hook** (progressive modality dropout needs the epoch): the adapter
counts training passes. A forward in training mode that follows a forward in
eval mode -- or is the first forward of the model -- starts a new epoch, and
the adapter calls ``model.set_epoch(epoch, args.epochs)`` (0-based epoch).
MERBench's loop runs per epoch one training pass (``model.train()``) and
then evaluation passes (``model.eval()``) over the eval and test loaders, and
builds a new model per fold, so the count is MERBench's epoch. A loop that
evaluates in the middle of an epoch would advance the count; call
:meth:`MerbenchModel.set_epoch` yourself there. ``epoch`` reports the current value.
"""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from prmf.losses import TrainingLoss

#: MERBench's batch keys, in our modality order (audio, text, video)
BATCH_KEYS = ("audios", "texts", "videos")
#: MERBench's args that hold the input dimensions, same order
DIM_ARGS = ("audio_dim", "text_dim", "video_dim")
FRAME_FEAT_TYPES = ("frm_align", "frm_unalign")


def parse_bool(value: Any) -> bool:
    """``True``/``False``, 1/0 or the strings true/false/yes/no/on/off/1/0 -> bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


#: arm keys a MERBench run may set (command line or hyper-parameter file) -> converter
SWITCHES: dict[str, Callable[[Any], Any]] = {
    "use_vae": parse_bool,
    "use_proxy_attention": parse_bool,
    "use_modality_dropout": parse_bool,
    "kl_weight": float,
    "recon_weight": float,
    "cross_kl_weight": float,
    "tau": float,
    "modality_dropout_max": float,
    "warmup_epochs": int,
    "num_attention_heads": int,
    "dropped_modality": str,
    "modality_dropout_unit": str,
}
_SWITCH_HELP = {
    "use_vae": "variational encoders (true/false)",
    "use_proxy_attention": "proxy cross-modal attention (true/false)",
    "use_modality_dropout": "progressive modality dropout (true/false)",
    "kl_weight": "weight of KL(q || N(0, I))",
    "recon_weight": "weight of the reconstruction MSE",
    "cross_kl_weight": "weight of the cross-modal symmetric KL",
    "tau": "temperature of the uncertainty-weighted fusion",
    "modality_dropout_max": "p_max of the progressive modality dropout",
    "warmup_epochs": "epochs before modality dropout starts",
    "num_attention_heads": "heads of the proxy attention",
    "dropped_modality": "mask (exact) | std_1e6 (the author's rule)",
    "modality_dropout_unit": "batch (the author's) | sample",
}


# --------------------------------------------------------------------------- arguments


def add_merbench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--prmf_config`` and one option per :data:`SWITCHES` key to MERBench's parser.

    Every default is ``None`` (= the arm's value), so MERBench's
    ``merge_args_config`` still fills them from a ``--hyper_path`` entry.
    Options the parser already has are left alone.
    """
    known = set(parser._option_string_actions)  # noqa: SLF001 -- argparse has no public lookup
    group = parser.add_argument_group("P-RMF (prmf) models attention_robust / attention_robust_v2")
    if "--prmf_config" not in known:
        group.add_argument("--prmf_config", action="append", default=None, metavar="YAML",
                           help="prmf study config(s) whose arms the models take (repeat to layer; "
                                "default: prmf's config/config.yaml)")
    for key, convert in SWITCHES.items():
        option = f"--{key}"
        if option in known:
            continue
        group.add_argument(option, type=convert, default=None,
                           help=f"{_SWITCH_HELP[key]} (default: the prmf arm's value)")


# --------------------------------------------------------------------------- the arm


@functools.lru_cache(maxsize=8)
def _load_study_config(paths: tuple[str, ...]) -> dict:
    from prmf.config import load_config

    return load_config(*paths)


def default_config_path() -> Path:
    """prmf's study config (``config/config.yaml`` beside the package)."""
    from prmf.config import PACKAGE_ROOT

    return PACKAGE_ROOT / "config" / "config.yaml"


def study_config(paths: str | Sequence[str] | None = None) -> dict:
    """The validated study config (a copy): ``paths`` layered, or :func:`default_config_path`."""
    if paths is None or paths == [] or paths == ():
        paths = [str(default_config_path())]
    elif isinstance(paths, (str, Path)):
        paths = [str(paths)]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"prmf study config not found: {', '.join(missing)} (pass --prmf_config YAML "
                                "with the study's config/config.yaml)")
    return copy.deepcopy(_load_study_config(tuple(str(p) for p in paths)))


def merbench_arm(arm: str, args: Any, config: Mapping | None = None) -> dict[str, Any]:
    """The resolved arm ``arm`` overlaid with MERBench's ``args``.

    ``hidden_dim``, ``dropout`` and ``grad_clip`` (MERBench's ``-1`` = off ->
    ``None``) from ``args`` when set; every :data:`SWITCHES` key that ``args``
    sets (not ``None``); ``standardize = "none"``. Also recorded (not read by
    the model): ``epochs``, ``lr``, ``weight_decay`` (MERBench's ``l2``),
    ``batch_size``.
    """
    from prmf.config import resolve_arm

    if config is None:
        config = study_config(getattr(args, "prmf_config", None))
    params = resolve_arm(dict(config), arm)
    for key, convert in (("hidden_dim", int), ("dropout", float)):
        if getattr(args, key, None) is not None:
            params[key] = convert(getattr(args, key))
    clip = getattr(args, "grad_clip", None)
    if clip is not None:
        params["grad_clip"] = None if float(clip) == -1 else float(clip)
    for key, convert in SWITCHES.items():
        value = getattr(args, key, None)
        if value is not None:
            params[key] = convert(value)
    params["standardize"] = "none"
    for key, name in (("epochs", "epochs"), ("lr", "lr"), ("weight_decay", "l2"), ("batch_size", "batch_size")):
        if getattr(args, name, None) is not None:
            params[key] = getattr(args, name)
    return params


# --------------------------------------------------------------------------- batches


def front_padded_to_lengths(x: Tensor) -> tuple[Tensor, Tensor]:
    """MERBench frames (zero padding in front) -> our layout (valid frames first).

    ``x`` ``[B, T, D]`` -> ``(x' [B, T, D], lengths [B] int64)``: the frames
    after the leading all-zero frames, moved to the front, zeros after them;
    ``lengths[b]`` = their count (0 when every frame is zero).
    """
    batch, steps = x.shape[0], x.shape[1]
    nonzero = (x != 0).any(dim=-1)  # [B, T]
    # index of the first non-zero frame (argmax returns the first maximum); T when there is none
    first = torch.where(nonzero.any(dim=1), nonzero.to(torch.int8).argmax(dim=1), steps)
    lengths = steps - first  # [B]
    pos = torch.arange(steps, device=x.device).unsqueeze(0)  # [1, T]
    src = (pos + first.unsqueeze(1)).clamp(max=steps - 1)  # [B, T]
    moved = x.gather(1, src.unsqueeze(-1).expand(batch, steps, x.shape[2]))
    valid = (pos < lengths.unsqueeze(1)).unsqueeze(-1)  # [B, T, 1]
    return torch.where(valid, moved, moved.new_zeros(())), lengths


def merbench_inputs(
    batch: Mapping[str, Tensor], frame_level: Sequence[bool]
) -> tuple[list[Tensor], Tensor, list[Tensor | None]]:
    """MERBench batch dict -> ``(xs, present [B, M] bool, lengths)`` for our models.

    ``xs[m]`` ``[B, D_m]`` (utterance) or ``[B, T_m, D_m]`` (frames, valid
    first, with ``lengths[m]`` ``[B]``); ``present[b, m]``: the row of sample
    ``b`` is not all zeros.
    """
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise KeyError(f"MERBench batch lacks {missing} (has {sorted(batch)})")
    xs: list[Tensor] = []
    lengths: list[Tensor | None] = []
    present: list[Tensor] = []
    for key, frames in zip(BATCH_KEYS, frame_level):
        x = batch[key].float()
        if frames:
            x, n = front_padded_to_lengths(x)
            present.append(n > 0)
        else:
            n = None
            present.append((x != 0).any(dim=-1))
        xs.append(x)
        lengths.append(n)
    return xs, torch.stack(present, dim=1), lengths


# --------------------------------------------------------------------------- models


class MerbenchModel(nn.Module):
    """A prmf model behind MERBench's model interface (module docstring).

    Attributes:
        model: the prmf model (``AttentionBaseline`` or ``PRMFModel``).
        arm: the parameters it was built from (:func:`merbench_arm`).
        grad_clip: MERBench's gradient clip value (``-1``: off), read by
            ``main-release.py`` as ``model.model.grad_clip``.
        frame_level: per modality, whether inputs are ``[B, T, D]``.
        total_epochs: ``args.epochs`` (the arm's ``epochs`` if unset).
        epoch: the current 0-based epoch (``-1`` before the first training pass).
    """

    ARM: ClassVar[str] = ""

    def __init__(self, args: Any, config: Mapping | None = None) -> None:
        super().__init__()
        from prmf.models import build_model

        self.arm = merbench_arm(self.ARM, args, config)
        feat_type = getattr(args, "feat_type", None) or "utt"
        self.frame_level = [feat_type in FRAME_FEAT_TYPES] * len(BATCH_KEYS)
        dims = [int(getattr(args, name)) for name in DIM_ARGS]
        self.model = build_model(self.arm, dims, int(args.output_dim1), self.frame_level)
        clip = getattr(args, "grad_clip", None)
        self.grad_clip = float(clip) if clip is not None else (
            -1.0 if self.arm.get("grad_clip") is None else float(self.arm["grad_clip"]))
        self.total_epochs = int(getattr(args, "epochs", None) or self.arm["epochs"])
        self.loss_terms = TrainingLoss.from_arm(self.arm)
        self.epoch = -1
        self._in_training_pass = False
        self._features: Tensor | None = None
        self.model.heads.register_forward_pre_hook(self._keep_features)

    def _keep_features(self, _module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self._features = inputs[0]

    def set_epoch(self, epoch: int, total_epochs: int | None = None) -> None:
        """Set the 0-based epoch of the modality-dropout schedule (``total_epochs``: ``args.epochs``)."""
        self.epoch = int(epoch)
        if total_epochs is not None:
            self.total_epochs = int(total_epochs)
        self.model.set_epoch(self.epoch, self.total_epochs)

    def _count_epoch(self) -> None:
        """The epoch hook: the first training-mode forward after eval mode starts a new epoch."""
        if not self.training:
            self._in_training_pass = False
        elif not self._in_training_pass:
            self._in_training_pass = True
            self.set_epoch(self.epoch + 1)

    def auxiliary_loss(self, out: Any) -> Tensor:
        """``kl_weight * KL + cross_kl_weight * cross-KL + recon_weight * recon`` (scalar), 0 without a VAE."""
        return self.loss_terms.add_auxiliary(out.logits.new_zeros(()), out)[0]

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """MERBench batch -> ``(features [B, H], emos_out [B, C], vals_out [B, 1], interloss [])``."""
        self._count_epoch()
        xs, present, lengths = merbench_inputs(batch, self.frame_level)
        out = self.model(xs, present, lengths)
        features, self._features = self._features, None
        return features, out.logits, out.valence.unsqueeze(-1), self.auxiliary_loss(out)


class AttentionRobust(MerbenchModel):
    """MERBench ``attention_robust``: Robust v1, the study's arm ``robust_v1``."""

    ARM = "robust_v1"


class AttentionRobustV2(MerbenchModel):
    """MERBench ``attention_robust_v2``: full P-RMF, the study's arm ``exp4`` (switches: :data:`SWITCHES`)."""

    ARM = "exp4"


__all__ = [
    "BATCH_KEYS",
    "SWITCHES",
    "AttentionRobust",
    "AttentionRobustV2",
    "MerbenchModel",
    "add_merbench_arguments",
    "default_config_path",
    "front_padded_to_lengths",
    "merbench_arm",
    "merbench_inputs",
    "parse_bool",
    "study_config",
]
