"""Step 3 of the method: proxy-guided cross-modal attention.

The proxy modality queries every modality's representation with its own
``nn.MultiheadAttention`` block; the per-modality outputs are combined with the
fusion weights and refined by a post-norm Transformer-style residual block.

Note: each modality contributes a single key/value token, so the attention
softmax is over one element and equals 1 exactly; the per-modality output is
therefore ``out_proj(v_proj(mu_m))`` whatever the query. The proxy shapes the
result through the fusion weights and the residual connection.
:func:`single_key_attention` computes that value directly from the
``nn.MultiheadAttention`` parameters (two projections instead of the module's
full attention; the query/key rows of ``in_proj_weight`` receive an exactly
zero gradient either way); the ``M`` blocks' projections run as batched GEMMs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .dropout import FastDropout


def single_key_attention(blocks: Sequence[nn.MultiheadAttention], kv: Tensor) -> Tensor:
    """Outputs of ``blocks[m](query, kv[m][:, None], kv[m][:, None])`` for one key/value token each.

    With a single key the attention weights are ``softmax([s]) = 1`` for every
    head and query, so block ``m``'s output is ``out_proj_m(W_v,m kv_m + b_v,m)``.
    The value and output projections of all blocks are stacked and applied
    with two batched GEMMs. Requires the blocks' attention dropout to be 0 (as
    in :class:`ProxyCrossModalAttention`).

    ``kv`` ``[M, B, H]`` (one ``[B, H]`` per block) -> ``[M, B, H]``.
    """
    h = blocks[0].embed_dim
    w_v = torch.stack([blk.in_proj_weight[2 * h :] for blk in blocks])  # [M, H_out, H_in]
    b_v = torch.stack([blk.in_proj_bias[2 * h :] for blk in blocks]).unsqueeze(1)  # [M, 1, H]
    w_o = torch.stack([blk.out_proj.weight for blk in blocks])
    b_o = torch.stack([blk.out_proj.bias for blk in blocks]).unsqueeze(1)
    v = torch.baddbmm(b_v, kv, w_v.transpose(1, 2))
    return torch.baddbmm(b_o, v, w_o.transpose(1, 2))


class ProxyCrossModalAttention(nn.Module):
    """Cross-modal attention with the proxy as query.

    ::

        a_m  = MHA_m(q=proxy[:, None], k=v=mu_m[:, None])    [B, 1, H] -> [B, H]
             (computed by single_key_attention)
        a_m  = 0 where modality m is absent (no such zeroing when present is None)
        attn = sum_m w_m * a_m                                [B, H]
        x    = LayerNorm(proxy + Dropout(attn))
        out  = LayerNorm(x + FFN(x)),  FFN = Linear(H,2H)-GELU-Dropout-Linear(2H,H)-Dropout

    ``num_heads`` must divide ``hidden_dim``. ``dropout`` is the FFN / residual
    dropout (the attention-probability dropout of the MHA blocks is 0: with one
    key it would drop the whole modality output).
    """

    def __init__(self, num_modalities: int, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"num_attention_heads ({num_heads}) must divide hidden_dim ({hidden_dim})"
            )
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
            for _ in range(num_modalities)
        )
        self.attn_dropout = FastDropout(dropout)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim),
            nn.GELU(),
            FastDropout(dropout),
            nn.Linear(2 * hidden_dim, hidden_dim),
            FastDropout(dropout),
        )
        self.norm2 = nn.LayerNorm(hidden_dim)

    def forward(self, proxy: Tensor, mu: Tensor, weights: Tensor, present: Tensor | None) -> Tensor:
        """Refine the proxy with attention over the modalities.

        Args:
            proxy: ``[B, H]`` fused proxy representation (query).
            mu: ``[B, M, H]`` per-modality representations (keys / values).
            weights: ``[B, M]`` fusion weights (0 for absent modalities).
            present: ``[B, M]`` bool modality mask, or ``None`` (the author's
                ``std_1e6`` rule): every modality is attended to, with the
                weight ``weights`` gives it.

        Returns:
            ``[B, H]`` refined representation.
        """
        per_modality = single_key_attention(self.attn, mu.transpose(0, 1)).transpose(0, 1)  # [B, M, H]
        if present is not None:
            per_modality = per_modality.masked_fill(~present.unsqueeze(-1), 0.0)
        attn = (weights.unsqueeze(-1) * per_modality).sum(dim=1)  # [B, H]
        x = self.norm1(proxy + self.attn_dropout(attn))
        return self.norm2(x + self.ffn(x))
