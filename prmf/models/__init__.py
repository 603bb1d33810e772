"""Model family of P-RMF and its MERBench attention baseline.

Read in method order: :mod:`.standardize` and :mod:`.modality_dropout`
(step 0), :mod:`.encoders` and :mod:`.decoders` (step 1), :mod:`.fusion`
(step 2), :mod:`.attention` (step 3), :mod:`.heads` (step 4), assembled by
:mod:`.baseline` (MERBench's ``attention``, layer for layer) and
:mod:`.prmf_model`. Building blocks: :mod:`.dropout` (the models' dropout),
:mod:`.linear` (the wide first layers), :mod:`.stacked` (per-modality layers
of equal shape run as one batched GEMM). Losses live in :mod:`prmf.losses`.

:func:`build_model` turns an experiment arm (a dict from the study config)
into a model. The study's arms are defined in ``config/config.yaml`` and
nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .attention import ProxyCrossModalAttention
from .base import MultimodalModel
from .baseline import AttentionBaseline, merbench_state_dict
from .decoders import ModalityDecoders
from .dropout import FastDropout
from .encoders import (
    InputStage,
    LSTMEncoder,
    MLPEncoder,
    ModalityEncoders,
    VariationalEncoders,
    masked_time_mean,
)
from .fusion import (
    AttentionWeightFusion,
    MaskedMeanFusion,
    UncertaintyWeightedFusion,
    modality_uncertainty,
    std_for_fusion,
)
from .heads import PredictionHeads
from .linear import InputMajorLinear
from .modality_dropout import (
    DROPOUT_UNITS,
    ModalityDropout,
    apply_modality_dropout,
    drop_modes,
    dropout_rate,
    mask_inputs,
)
from .output import ModelOutput
from .prmf_model import DROPPED_MODALITY_RULES, PRMFModel
from .stacked import StackedLinear
from .standardize import STANDARDIZE_MODES, FeatureStandardizer, standardization_stats

__all__ = [
    "DROPOUT_UNITS",
    "DROPPED_MODALITY_RULES",
    "STANDARDIZE_MODES",
    "AttentionBaseline",
    "AttentionWeightFusion",
    "FastDropout",
    "FeatureStandardizer",
    "InputMajorLinear",
    "InputStage",
    "LSTMEncoder",
    "MLPEncoder",
    "MaskedMeanFusion",
    "ModalityDecoders",
    "ModalityEncoders",
    "ModalityDropout",
    "ModelOutput",
    "MultimodalModel",
    "PRMFModel",
    "PredictionHeads",
    "ProxyCrossModalAttention",
    "StackedLinear",
    "UncertaintyWeightedFusion",
    "VariationalEncoders",
    "apply_modality_dropout",
    "build_model",
    "drop_modes",
    "dropout_rate",
    "mask_inputs",
    "masked_time_mean",
    "merbench_state_dict",
    "modality_uncertainty",
    "standardization_stats",
    "std_for_fusion",
]

MODEL_KINDS = ("attention", "prmf")


def _get(arm: Mapping[str, Any], key: str, default: Any) -> Any:
    """``arm[key]``, or ``default`` when the key is missing or ``None``."""
    value = arm.get(key)
    return default if value is None else value


def _choice(arm: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    """A string option ``arm[key]`` (default ``default``) checked against ``allowed``."""
    value = _get(arm, key, default)
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _flag(arm: Mapping[str, Any], key: str) -> bool:
    """A boolean switch (default False); rejects strings such as ``"false"``."""
    value = _get(arm, key, False)
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{key} must be a boolean, got {value!r}")


def build_model(
    arm: Mapping[str, Any],
    input_dims: list[int],
    n_classes: int,
    frame_level: list[bool] | None = None,
) -> MultimodalModel:
    """Build the model of an experiment arm.

    Args:
        arm: arm config. ``model`` ("attention" | "prmf") is required; read with
            defaults: ``use_vae`` [False], ``use_proxy_attention`` [False],
            ``use_modality_dropout`` [False], ``fusion`` ["uncertainty"],
            ``uncertainty`` ["std"], ``tau`` [1.0], ``hidden_dim`` [128],
            ``dropout`` [0.4], ``num_attention_heads`` [4],
            ``modality_dropout_max`` [0.2], ``warmup_epochs`` [0],
            ``recon_weight`` [0.0] (decoders are built only when > 0 with the
            VAE), and

            * ``modality_dropout_unit`` ["batch"]: ``"batch"`` -- one hit draw
              and one drop mode per training batch, applied to every sample
              (the author's code); ``"sample"`` -- each sample hit and given a
              mode independently (:mod:`.modality_dropout`);
            * ``dropped_modality`` ["mask"]: ``"mask"`` -- an absent / dropped
              modality gets fusion weight exactly 0 and no proxy attention;
              ``"std_1e6"`` -- the author's rule for VAE models: its std is set
              to 1e6 before an unmasked uncertainty-weighted fusion and the
              proxy attention is not masked (losses stay masked either way;
              without the VAE ``std_1e6`` is ``mask``);
            * ``standardize`` ["none"]: ``"zscore"`` gives the model a
              :class:`FeatureStandardizer` (``model.standardizer``) whose
              statistics, set with ``set_stats``, are saved in ``state_dict``;
              ``"none"``: ``model.standardizer`` is ``None``.

            Every other key is ignored. ``model: attention`` rejects
            ``use_vae``/``use_proxy_attention`` set to True.
        input_dims: feature dimension ``D_m`` of each modality.
        n_classes: number of emotion classes ``C``.
        frame_level: per modality, True for ``[B, T, D_m]`` inputs (LSTM
            encoders); default all utterance-level.

    Returns:
        An :class:`AttentionBaseline` or :class:`PRMFModel`.
    """
    if "model" not in arm:
        raise ValueError("arm must set 'model' to one of " + ", ".join(MODEL_KINDS))
    kind = arm["model"]
    common = dict(
        input_dims=list(input_dims),
        n_classes=int(n_classes),
        frame_level=None if frame_level is None else list(frame_level),
        hidden_dim=int(_get(arm, "hidden_dim", 128)),
        dropout=float(_get(arm, "dropout", 0.4)),
        use_modality_dropout=_flag(arm, "use_modality_dropout"),
        modality_dropout_max=float(_get(arm, "modality_dropout_max", 0.2)),
        warmup_epochs=int(_get(arm, "warmup_epochs", 0)),
        modality_dropout_unit=_choice(arm, "modality_dropout_unit", "batch", DROPOUT_UNITS),
        standardize=_choice(arm, "standardize", "none", STANDARDIZE_MODES),
    )
    # checked for every model; only the VAE models have a std to replace
    dropped_modality = _choice(arm, "dropped_modality", "mask", DROPPED_MODALITY_RULES)
    if kind == "attention":
        for key in ("use_vae", "use_proxy_attention"):
            if _flag(arm, key):
                raise ValueError(f"model 'attention' does not support {key}=True")
        return AttentionBaseline(**common)
    if kind == "prmf":
        return PRMFModel(
            **common,
            use_vae=_flag(arm, "use_vae"),
            use_proxy_attention=_flag(arm, "use_proxy_attention"),
            fusion=str(_get(arm, "fusion", "uncertainty")),
            uncertainty=str(_get(arm, "uncertainty", "std")),
            tau=float(_get(arm, "tau", 1.0)),
            num_attention_heads=int(_get(arm, "num_attention_heads", 4)),
            recon_weight=float(_get(arm, "recon_weight", 0.0)),
            dropped_modality=dropped_modality,
        )
    raise ValueError(f"unknown model {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
