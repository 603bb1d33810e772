"""Model family of P-RMF and its MERBench attention baseline.

Read in method order: :mod:`.standardize` and :mod:`.modality_dropout`
(step 0), :mod:`.encoders` and :mod:`.decoders` (step 1), :mod:`.fusion`
(step 2), :mod:`.attention` (step 3), :mod:`.heads` (step 4), assembled by
:mod:`.baseline` (MERBench's ``attention``, layer for layer) and
:mod:`.prmf_model`. Building blocks: :mod:`.dropout` (the models' dropout),
:mod:`.linear` (the wide first layers), :mod:`.stacked` (per-modality layers
of equal shape run as one batched GEMM). Losses live in :mod:`prmf.losses`.

:func:`build_model` turns a resolved experiment arm
(:func:`prmf.config.resolve_arm`) into a model. The study's arms are defined
in ``config/config.yaml`` and the defaults of their keys in the config schema
(``workflow/schemas/config.schema.yaml``), nowhere else: the model classes
take every setting as an explicit argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prmf.config import require_keys

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
    "COMMON_KEYS",
    "DROPOUT_UNITS",
    "DROPPED_MODALITY_RULES",
    "PRMF_KEYS",
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
#: arm keys every model reads
COMMON_KEYS = ("hidden_dim", "dropout", "use_modality_dropout", "modality_dropout_max", "warmup_epochs",
               "modality_dropout_unit", "standardize", "dropped_modality", "use_vae", "use_proxy_attention")
#: further arm keys the P-RMF family reads
PRMF_KEYS = ("fusion", "uncertainty", "tau", "num_attention_heads", "recon_weight")


def _require(arm: Mapping[str, Any], key: str) -> Any:
    """``arm[key]``; a missing (or null) key is a :class:`ValueError` naming it."""
    require_keys(arm, (key,), "build_model")
    return arm[key]


def _choice(arm: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    """A string option ``arm[key]`` checked against ``allowed``."""
    value = _require(arm, key)
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _flag(arm: Mapping[str, Any], key: str) -> bool:
    """A boolean switch ``arm[key]``; rejects strings such as ``"false"``."""
    value = _require(arm, key)
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{key} must be a boolean, got {value!r}")


def build_model(
    arm: Mapping[str, Any],
    input_dims: list[int],
    n_classes: int,
    frame_level: list[bool] | None = None,
) -> MultimodalModel:
    """Build the model of a resolved experiment arm.

    Args:
        arm: a resolved arm (:func:`prmf.config.resolve_arm`): every key below
            must be set; their defaults live in the config schema
            (``workflow/schemas/config.schema.yaml``), nowhere else. A missing
            key is a :class:`ValueError` naming it. Read by both families
            (:data:`COMMON_KEYS`): ``model`` ("attention" | "prmf"),
            ``hidden_dim``, ``dropout``, ``use_modality_dropout``,
            ``modality_dropout_max``, ``warmup_epochs``, ``use_vae`` and
            ``use_proxy_attention`` (``model: attention`` rejects either set
            to True), and

            * ``modality_dropout_unit``: ``"batch"`` -- one hit draw and one
              drop mode per training batch, applied to every sample (the
              author's code); ``"sample"`` -- each sample hit and given a mode
              independently (:mod:`.modality_dropout`);
            * ``dropped_modality``: ``"mask"`` -- an absent / dropped modality
              gets fusion weight exactly 0 and no proxy attention;
              ``"std_1e6"`` -- the author's rule for VAE models: its std is set
              to 1e6 before an unmasked uncertainty-weighted fusion and the
              proxy attention is not masked (losses stay masked either way;
              without the VAE ``std_1e6`` is ``mask``);
            * ``standardize``: ``"zscore"`` gives the model a
              :class:`FeatureStandardizer` (``model.standardizer``) whose
              statistics, set with ``set_stats``, are saved in ``state_dict``;
              ``"none"``: ``model.standardizer`` is ``None``.

            ``model: prmf`` also reads (:data:`PRMF_KEYS`) ``fusion``,
            ``uncertainty``, ``tau``, ``num_attention_heads`` and
            ``recon_weight`` (decoders are built only when > 0 with the VAE).
            Every other key is ignored.
        input_dims: feature dimension ``D_m`` of each modality.
        n_classes: number of emotion classes ``C``.
        frame_level: per modality, True for ``[B, T, D_m]`` inputs (LSTM
            encoders); ``None``: all utterance-level.

    Returns:
        An :class:`AttentionBaseline` or :class:`PRMFModel`.
    """
    if "model" not in arm:
        raise ValueError("arm must set 'model' to one of " + ", ".join(MODEL_KINDS))
    kind = arm["model"]
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    common = dict(
        input_dims=list(input_dims),
        n_classes=int(n_classes),
        frame_level=None if frame_level is None else list(frame_level),
        hidden_dim=int(_require(arm, "hidden_dim")),
        dropout=float(_require(arm, "dropout")),
        use_modality_dropout=_flag(arm, "use_modality_dropout"),
        modality_dropout_max=float(_require(arm, "modality_dropout_max")),
        warmup_epochs=int(_require(arm, "warmup_epochs")),
        modality_dropout_unit=_choice(arm, "modality_dropout_unit", DROPOUT_UNITS),
        standardize=_choice(arm, "standardize", STANDARDIZE_MODES),
    )
    # checked for every model; only the VAE models have a std to replace
    dropped_modality = _choice(arm, "dropped_modality", DROPPED_MODALITY_RULES)
    use_vae, use_proxy_attention = _flag(arm, "use_vae"), _flag(arm, "use_proxy_attention")
    if kind == "attention":
        for key, on in (("use_vae", use_vae), ("use_proxy_attention", use_proxy_attention)):
            if on:
                raise ValueError(f"model 'attention' does not support {key}=True")
        return AttentionBaseline(**common)
    return PRMFModel(
        **common,
        use_vae=use_vae,
        use_proxy_attention=use_proxy_attention,
        fusion=str(_require(arm, "fusion")),
        uncertainty=str(_require(arm, "uncertainty")),
        tau=float(_require(arm, "tau")),
        num_attention_heads=int(_require(arm, "num_attention_heads")),
        recon_weight=float(_require(arm, "recon_weight")),
        dropped_modality=dropped_modality,
    )
