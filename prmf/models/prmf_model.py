"""P-RMF: probabilistic proxy-modality robust fusion, with its ablation switches.

::

    (0) present <- modality dropout (training); absent inputs zeroed
    (1) use_vae:  (z, mu, logvar, std) = VariationalEncoders(x)     each [B, M, H]
        else:     h = ModalityEncoders(x)                           [B, M, H]
    (2) use_vae:                      proxy, w, u = UncertaintyWeightedFusion(mu, std, present)
        not use_vae, proxy attention: proxy, w    = MaskedMeanFusion(h, present)       (Exp5)
        neither:                      proxy, w    = AttentionWeightFusion(h, present)  (Exp1)
    (3) use_proxy_attention: rep = ProxyCrossModalAttention(proxy, mu or h, w, present)
        else:                rep = proxy                                           (Exp2)
    (4) logits = Linear(H, C)(rep); valence = Linear(H, 1)(rep)
    (5) decoders (use_vae and recon_weight > 0): recon_m = ModalityDecoders(z)[m]

Decoders are built and run only when ``use_vae`` and ``recon_weight > 0``;
otherwise ``recons``/``targets`` are ``None`` and the reconstruction loss is 0.
The reconstruction target is the masked input, or its length-masked
time-mean for frame-level modalities.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import ProxyCrossModalAttention
from .base import MultimodalModel
from .decoders import ModalityDecoders
from .encoders import ModalityEncoders, VariationalEncoders, masked_time_mean
from .fusion import AttentionWeightFusion, MaskedMeanFusion, UncertaintyWeightedFusion
from .heads import PredictionHeads
from .output import ModelOutput


class PRMFModel(MultimodalModel):
    """P-RMF with switches ``use_vae``, ``use_proxy_attention``, ``use_modality_dropout``.

    ``fusion``/``uncertainty``/``tau`` configure :class:`UncertaintyWeightedFusion`
    (VAE on only; ``fusion="precision"`` without the VAE is rejected).
    """

    def __init__(
        self,
        input_dims: list[int],
        n_classes: int,
        frame_level: list[bool] | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.4,
        use_vae: bool = False,
        use_proxy_attention: bool = False,
        use_modality_dropout: bool = False,
        fusion: str = "uncertainty",
        uncertainty: str = "std",
        tau: float = 1.0,
        num_attention_heads: int = 4,
        modality_dropout_max: float = 0.5,
        warmup_epochs: int = 0,
        recon_weight: float = 0.0,
    ) -> None:
        super().__init__(input_dims, frame_level, use_modality_dropout, modality_dropout_max, warmup_epochs)
        if not use_vae and fusion != "uncertainty":
            raise ValueError(f"fusion={fusion!r} needs use_vae=True (it fuses posteriors)")
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
        if self.use_vae:
            z, mu, logvar, std = self.encoders(xs, lengths)  # each [B, M, H]
            keys = mu
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

        rep = proxy if self.proxy_attention is None else self.proxy_attention(proxy, keys, weights, present)
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
