"""The single output record returned by every model's ``forward``.

Notation used throughout :mod:`prmf.models`: ``B`` batch size, ``M`` number of
modalities (order of ``input_dims``, MER2023: audio, text, video), ``H`` hidden
size, ``C`` number of emotion classes, ``D_m`` input dimension of modality
``m`` and ``T`` number of frames of a frame-level modality.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelOutput:
    """What a forward pass produces; consumed by :class:`prmf.losses.TrainingLoss`.

    Attributes:
        logits: ``[B, C]`` unnormalised emotion scores.
        valence: ``[B]`` valence prediction (same units as the valence labels).
        present: ``[B, M]`` bool, the modality mask actually used, i.e. the
            caller's mask after training-time modality dropout.
        fusion_weights: ``[B, M]`` per-sample modality weights, exactly 0 for
            absent modalities (the attention baseline reports its raw, unnormalised
            attention weights), except under the author's ``dropped_modality:
            std_1e6`` rule, where an absent modality of a VAE model keeps the
            small weight its ``std = 1e6`` gives it; ``None`` never happens for
            the models here but the field is optional for other model families.
        uncertainty: ``[B, M]`` per-modality uncertainty ``u_m`` used by the
            uncertainty-weighted fusion (0 for absent modalities, ``1e6`` under
            ``std_1e6``; read it together with ``present``); ``None`` for
            deterministic models.
        mu: ``[B, M, H]`` posterior means; ``None`` without a VAE.
        logvar: ``[B, M, H]`` posterior log-variances (clamped to
            ``[-10, 10]``); ``None`` without a VAE.
        recons: per modality ``[B, D_m]`` decoder reconstructions; ``None`` when
            the model has no decoders (``recon_weight == 0``).
        targets: per modality ``[B, D_m]`` reconstruction targets: the (masked;
            with ``standardize: zscore`` standardized) input vector, or its
            length-masked time-mean for frame-level
            modalities; ``None`` whenever ``recons`` is ``None``.
    """

    logits: Tensor
    valence: Tensor
    present: Tensor
    fusion_weights: Tensor | None = None
    uncertainty: Tensor | None = None
    mu: Tensor | None = None
    logvar: Tensor | None = None
    recons: list[Tensor] | None = None
    targets: list[Tensor] | None = None
