"""P-RMF: probabilistic proxy-modality robust fusion, with its ablation switches.

::

    (0) present <- modality dropout (training); absent inputs zeroed
    (1) use_vae:  (z_m, mu_m, logvar_m, std_m) = VariationalEncoder_m(x_m)
        else:     h_m = Encoder_m(x_m)
    (2) use_vae:                      proxy, w, u = UncertaintyWeightedFusion(mu, std, present)
        not use_vae, proxy attention: proxy, w    = MaskedMeanFusion(h, present)       (Exp5)
        neither:                      proxy, w    = AttentionWeightFusion(h, present)  (Exp1)
    (3) use_proxy_attention: rep = ProxyCrossModalAttention(proxy, mu or h, w, present)
        else:                rep = proxy                                           (Exp2)
    (4) logits = Linear(H, C)(rep); valence = Linear(H, 1)(rep)
    (5) decoders (use_vae and recon_weight > 0): recon_m = Decoder_m(z_m)

Decoders are built and run only when ``use_vae`` and ``recon_weight > 0``;
otherwise ``recons``/``targets`` are ``None`` and the reconstruction loss is 0.
The reconstruction target is the masked input, or its length-masked
time-mean for frame-level modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import ProxyCrossModalAttention
from .base import MultimodalModel
from .decoders import ModalityDecoder
from .encoders import (
    LSTMEncoder,
    MLPEncoder,
    VariationalLSTMEncoder,
    VariationalMLPEncoder,
    masked_time_mean,
)
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
        if self.use_vae:
            make = lambda frames: VariationalLSTMEncoder if frames else VariationalMLPEncoder  # noqa: E731
        else:
            make = lambda frames: LSTMEncoder if frames else MLPEncoder  # noqa: E731
        self.encoders = nn.ModuleList(
            make(frames)(dim, hidden_dim, dropout) for dim, frames in zip(self.input_dims, self.frame_level)
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
            nn.ModuleList(ModalityDecoder(hidden_dim, dim) for dim in self.input_dims)
            if self.use_vae and recon_weight > 0
            else None
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

        uncertainty = None
        mus = logvars = recons = targets = None
        if self.use_vae:
            encoded = [enc(x, n) for enc, x, n in zip(self.encoders, xs, lengths)]
            zs = [e[0] for e in encoded]
            mus = [e[1] for e in encoded]
            logvars = [e[2] for e in encoded]
            keys = torch.stack(mus, dim=1)  # [B, M, H]
            std = torch.stack([e[3] for e in encoded], dim=1)  # [B, M, H]
            proxy, weights, uncertainty = self.fusion(keys, std, present)
            if self.decoders is not None:
                recons = [dec(z) for dec, z in zip(self.decoders, zs)]
                targets = [
                    masked_time_mean(x, n) if frames else x
                    for x, n, frames in zip(xs, lengths, self.frame_level)
                ]
        else:
            # Absent h_m (encodings of zeroed inputs) are excluded by the fusion's mask.
            keys = torch.stack([enc(x, n) for enc, x, n in zip(self.encoders, xs, lengths)], dim=1)
            proxy, weights = self.fusion(keys, present)

        rep = proxy if self.proxy_attention is None else self.proxy_attention(proxy, keys, weights, present)
        logits, valence = self.heads(rep)
        return ModelOutput(
            logits=logits,
            valence=valence,
            present=present,
            fusion_weights=weights,
            uncertainty=uncertainty,
            mus=mus,
            logvars=logvars,
            recons=recons,
            targets=targets,
        )
