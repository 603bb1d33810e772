"""P-RMF: probabilistic proxy-modality robust fusion, with its ablation switches.

::

    (0) x <- standardized x (standardize: zscore); present <- modality dropout
        (training); absent inputs zeroed
    (1) use_vae:  (z, mu, logvar, std) = VariationalEncoders(x)     each [B, M, H]
        else:     h = ModalityEncoders(x)                           [B, M, H]
    (2) use_vae:                      proxy, w, u = UncertaintyWeightedFusion(mu, std, present)
        not use_vae, proxy attention: proxy, w    = MaskedMeanFusion(h, present)       (Exp5)
        neither:                      proxy, w    = AttentionWeightFusion(h, present)  (Exp1)
    (3) use_proxy_attention: rep = ProxyCrossModalAttention(proxy, mu or h, w, present)
        else:                rep = proxy                                           (Exp2)
    (4) logits = Linear(H, C)(rep); valence = Linear(H, 1)(rep)
    (5) decoders (use_vae and recon_weight > 0): recon_m = ModalityDecoders(z)[m]

With ``use_vae`` and ``use_proxy_attention`` off (Exp1) the model is
MERBench's ``attention`` module for module (the same layers, created in the
same order, so the same seed gives the same initial weights as
:class:`~prmf.models.baseline.AttentionBaseline`).

Dropped / absent modalities (``dropped_modality``):

* ``"mask"``: the modality gets fusion weight exactly 0 and is left
  out of the proxy attention (steps 2-3).
* ``"std_1e6"`` (the author's code, VAE models only): the encoder still runs on
  the zeroed input; for the fusion its ``std`` is replaced by ``1e6``
  (:func:`~prmf.models.fusion.std_for_fusion`) and the softmax is not masked,
  so it keeps the small weight ``softmax(1 / (1e6 + 1e-6) / tau)`` and its
  ``mu`` enters the proxy; the proxy attention attends over all modalities
  with those weights (no key mask). ``fusion_weights`` and ``uncertainty``
  then report that nonzero weight and ``u = 1e6`` for the absent entries.
  Without the VAE there is no std to replace and ``std_1e6`` is ``mask``.

Either way the losses stay masked: ``ModelOutput.present`` is the mask after
modality dropout, and KL, reconstruction and cross-KL skip the absent
entries (they read the encoder's own ``logvar``, never the ``1e6``).

Decoders are built and run only when ``use_vae`` and ``recon_weight > 0``;
otherwise ``recons``/``targets`` are ``None`` and the reconstruction loss is 0.
The reconstruction target is the masked (and, with ``standardize: zscore``,
standardized) input, or its length-masked time-mean for frame-level
modalities.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import ProxyCrossModalAttention
from .base import MultimodalModel
from .decoders import ModalityDecoders
from .encoders import ModalityEncoders, VariationalEncoders, masked_time_mean
from .fusion import AttentionWeightFusion, MaskedMeanFusion, UncertaintyWeightedFusion, std_for_fusion
from .heads import PredictionHeads
from .output import ModelOutput

DROPPED_MODALITY_RULES = ("mask", "std_1e6")


class PRMFModel(MultimodalModel):
    """P-RMF with switches ``use_vae``, ``use_proxy_attention``, ``use_modality_dropout``.

    ``fusion``/``uncertainty``/``tau`` configure :class:`UncertaintyWeightedFusion`
    (VAE on only; ``fusion="precision"`` without the VAE is rejected).
    ``dropped_modality`` (``"mask"`` | ``"std_1e6"``) is the rule for absent
    modalities in steps 2-3 (see the module docstring). Every setting is an
    explicit keyword argument (the study's values come from the resolved arm,
    see :func:`prmf.models.build_model`).
    """

    def __init__(
        self,
        input_dims: list[int],
        n_classes: int,
        frame_level: list[bool] | None = None,
        *,
        hidden_dim: int,
        dropout: float,
        use_vae: bool,
        use_proxy_attention: bool,
        use_modality_dropout: bool,
        fusion: str,
        uncertainty: str,
        tau: float,
        num_attention_heads: int,
        modality_dropout_max: float,
        warmup_epochs: int,
        recon_weight: float,
        modality_dropout_unit: str,
        dropped_modality: str,
        standardize: str,
    ) -> None:
        super().__init__(input_dims, frame_level, use_modality_dropout=use_modality_dropout,
                         modality_dropout_max=modality_dropout_max, warmup_epochs=warmup_epochs,
                         modality_dropout_unit=modality_dropout_unit, standardize=standardize)
        if not use_vae and fusion != "uncertainty":
            raise ValueError(f"fusion={fusion!r} needs use_vae=True (it fuses posteriors)")
        if dropped_modality not in DROPPED_MODALITY_RULES:
            raise ValueError(f"dropped_modality must be one of {DROPPED_MODALITY_RULES}, got {dropped_modality!r}")
        self.dropped_modality = dropped_modality
        self.use_vae = bool(use_vae)
        self.use_proxy_attention = bool(use_proxy_attention)
        M = self.num_modalities

        # (1) encoders
        self.encoders: nn.Module = (VariationalEncoders if self.use_vae else ModalityEncoders)(
            self.input_dims, self.frame_level, hidden_dim, dropout
        )

        # (2) fusion
        self.fusion: nn.Module
        if self.use_vae:
            self.fusion = UncertaintyWeightedFusion(fusion, uncertainty, tau)
        elif self.use_proxy_attention:
            self.fusion = MaskedMeanFusion()
        else:
            self.fusion = AttentionWeightFusion(M, hidden_dim, dropout)

        # (3) proxy attention
        self.proxy_attention = (
            ProxyCrossModalAttention(M, hidden_dim, num_attention_heads, dropout)
            if self.use_proxy_attention
            else None
        )

        # (4) heads
        self.heads = PredictionHeads(hidden_dim, n_classes)

        # (5) decoders
        self.decoders = (
            ModalityDecoders(hidden_dim, self.input_dims) if self.use_vae and recon_weight > 0 else None
        )

    def forward(
        self,
        xs: list[Tensor],
        present: Tensor,
        lengths: list[Tensor | None] | None = None,
    ) -> ModelOutput:
        """``xs[m]`` ``[B, D_m]`` / ``[B, T, D_m]`` (+ ``lengths[m]`` ``[B]``),
        ``present`` ``[B, M]`` bool -> :class:`ModelOutput`."""
        xs, present, lengths = self.prepare_inputs(xs, present, lengths)

        uncertainty = mu = logvar = recons = targets = None
        key_mask: Tensor | None = present
        if self.use_vae:
            z, mu, logvar, std = self.encoders(xs, lengths)  # each [B, M, H]
            keys = mu
            if self.dropped_modality == "std_1e6":  # the author's rule: no mask, std 1e6 when absent
                key_mask = None
                proxy, weights, uncertainty = self.fusion(mu, std_for_fusion(std, present), None)
            else:
                proxy, weights, uncertainty = self.fusion(mu, std, present)
            if self.decoders is not None:
                recons = self.decoders(z)
                targets = [
                    masked_time_mean(x, n) if frames else x
                    for x, n, frames in zip(xs, lengths, self.frame_level)
                ]
        else:
            # Absent h_m (encodings of zeroed inputs) are excluded by the fusion's mask.
            keys = self.encoders(xs, lengths)  # [B, M, H]
            proxy, weights = self.fusion(keys, present)

        rep = proxy if self.proxy_attention is None else self.proxy_attention(proxy, keys, weights, key_mask)
        logits, valence = self.heads(rep)
        return ModelOutput(
            logits=logits,
            valence=valence,
            present=present,
            fusion_weights=weights,
            uncertainty=uncertainty,
            mu=mu,
            logvar=logvar,
            recons=recons,
            targets=targets,
        )
