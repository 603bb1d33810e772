"""MERBench's ``attention`` model (the baseline; "Robust v1" with modality dropout).

::

    h       = ModalityEncoders(x)  (MERBench MLPEncoder per modality,
              LSTMEncoder for frame-level m)                        [B, M, H]
    h_m     = 0 for absent m
    fused,w = AttentionWeightFusion(h, present)                    [B, H], [B, M]
              (attention_mlp = MLPEncoder(M*H, H), fc_att = Linear(H, M))
    logits  = Linear(H, C)(fused); valence = Linear(H, 1)(fused)

Layer for layer MERBench's ``Attention`` (``toolkit/models/attention.py``):
``{audio,text,video}_encoder`` = ``MLPEncoder(D_m, H)`` (``LSTMEncoder`` for
frame-level features), ``attention_mlp = MLPEncoder(3H, H)``,
``fc_att = Linear(H, 3)``, ``fc_out_1 = Linear(H, C)``, ``fc_out_2 = Linear(H, 1)``;
the same parameters, stored differently (the encoders' middle layers stacked,
the wide first layers input-major). For MER2023's utterance features
(1024 / 5120 / 768), ``H = 128`` and 6 classes both have 1,067,786 parameters.
Differences, all deliberate: absent modalities are masked (MERBench feeds the
extractors' all-zero vectors through the encoders), the LSTM reads only the
valid frames, and the inputs may be standardized (``standardize: zscore``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import MultimodalModel
from .encoders import ModalityEncoders
from .fusion import AttentionWeightFusion
from .heads import PredictionHeads
from .output import ModelOutput

#: MERBench's names of the three modalities' encoders, in our modality order
MERBENCH_ENCODERS = ("audio_encoder", "text_encoder", "video_encoder")


class AttentionBaseline(MultimodalModel):
    """MERBench ``attention`` fusion with optional modality dropout.

    Every setting is an explicit keyword argument (the study's values come
    from the resolved arm, see :func:`prmf.models.build_model`).

    ``fusion_weights`` in the output are the raw (unnormalised) attention
    weights, 0 for absent modalities; ``uncertainty``/``mus``/... are ``None``.
    """

    def __init__(
        self,
        input_dims: list[int],
        n_classes: int,
        frame_level: list[bool] | None = None,
        *,
        hidden_dim: int,
        dropout: float,
        use_modality_dropout: bool,
        modality_dropout_max: float,
        warmup_epochs: int,
        modality_dropout_unit: str,
        standardize: str,
    ) -> None:
        super().__init__(input_dims, frame_level, use_modality_dropout=use_modality_dropout,
                         modality_dropout_max=modality_dropout_max, warmup_epochs=warmup_epochs,
                         modality_dropout_unit=modality_dropout_unit, standardize=standardize)
        self.encoders = ModalityEncoders(self.input_dims, self.frame_level, hidden_dim, dropout)
        self.fusion = AttentionWeightFusion(self.num_modalities, hidden_dim, dropout)
        self.heads = PredictionHeads(hidden_dim, n_classes)

    def forward(
        self,
        xs: list[Tensor],
        present: Tensor,
        lengths: list[Tensor | None] | None = None,
    ) -> ModelOutput:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]``, ``present`` ``[B, M]`` -> :class:`ModelOutput`."""
        xs, present, lengths = self.prepare_inputs(xs, present, lengths)
        h = self.encoders(xs, lengths)  # [B, M, H]
        fused, weights = self.fusion(h, present)
        logits, valence = self.heads(fused)
        return ModelOutput(logits=logits, valence=valence, present=present, fusion_weights=weights)


def merbench_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The parameters of an ``attention`` model under MERBench's names and layouts.

    ``model``: an :class:`AttentionBaseline`, or a
    :class:`~prmf.models.prmf_model.PRMFModel` with neither the VAE nor the
    proxy attention (Exp1), with three modalities (audio, text, video). The
    result has exactly the keys and shapes of the ``state_dict`` of MERBench's
    ``Attention`` (``{audio,text,video}_encoder.linear_{1,2,3}`` or
    ``.rnn.*`` + ``.linear_1`` for frame-level, ``attention_mlp.linear_{1,2,3}``,
    ``fc_att``, ``fc_out_1``, ``fc_out_2``; weights ``[out, in]``), each a
    detached copy: the stacked and input-major weights are unstacked and
    transposed. Standardization statistics are not part of it (MERBench has
    none).
    """
    encoders, fusion, heads = model.encoders, model.fusion, model.heads
    if not isinstance(encoders, ModalityEncoders) or not isinstance(fusion, AttentionWeightFusion):
        raise ValueError("merbench_state_dict needs MERBench's attention model (no VAE, no proxy attention)")
    if len(encoders.inputs) != len(MERBENCH_ENCODERS):
        raise ValueError(f"MERBench's attention model has 3 modalities, this one {len(encoders.inputs)}")
    out: dict[str, Tensor] = {}
    for m, (name, stage) in enumerate(zip(MERBENCH_ENCODERS, encoders.inputs)):
        if stage.lstm is not None:
            for key, value in stage.lstm.lstm.state_dict().items():
                out[f"{name}.rnn.{key}"] = value
            out[f"{name}.linear_1.weight"] = stage.lstm.linear_1.weight
            out[f"{name}.linear_1.bias"] = stage.lstm.linear_1.bias
            continue
        k = encoders.mlp_index.index(m)
        out[f"{name}.linear_1.weight"] = stage.linear.weight.T
        out[f"{name}.linear_1.bias"] = stage.linear.bias
        for layer, stacked in (("linear_2", encoders.hidden[0]), ("linear_3", encoders.hidden[2])):
            out[f"{name}.{layer}.weight"] = stacked.weight[k].T
            out[f"{name}.{layer}.bias"] = stacked.bias[k, 0]
    for key, value in fusion.attention_mlp.state_dict().items():
        out[f"attention_mlp.{key}"] = value
    for key, value in fusion.fc_att.state_dict().items():
        out[f"fc_att.{key}"] = value
    for key, value in heads.emotion.state_dict().items():
        out[f"fc_out_1.{key}"] = value
    for key, value in heads.valence.state_dict().items():
        out[f"fc_out_2.{key}"] = value
    return {key: value.detach().clone().contiguous() for key, value in out.items()}
