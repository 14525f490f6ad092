"""Multi-head self-attention over ``(B, T, d)`` inputs in one packed projection and one attention call.

``nn.MultiheadAttention(x, x, x, need_weights=False)`` computes the same numbers, but in training it works
in a ``(T, B, d)`` layout: its packed q/k/v projection reads the transposed input, the projection is
rearranged into a contiguous copy and split by indexing (whose backward fills a zero tensor of the whole
projection for each of q, k and v), and the attention output is permuted back in another copy. Here the
projection runs on the contiguous ``(B, T, d)`` tensor and is split by a view, and the attention is one
``F.scaled_dot_product_attention`` call on ``(B, heads, T, d / heads)`` views, as inside
``nn.MultiheadAttention``: the same kernels, and in training the same dropout draws from torch's generator.

That call runs torch's fused (flash) CPU kernel whenever the attention dropout is inactive (evaluation, or
a dropout of 0). torch's fused CPU kernels do not implement dropout: with attention dropout in training
the call falls back to the unfused math, which materialises the ``(B, heads, T, T)`` attention weights and
draws a dropout mask of their size for each block and step (on an AMD EPYC, torch draws it element by
element on one thread: 15-20% of a Transformer1D training step in a 1-thread profile).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def self_attention(
    x: torch.Tensor,
    in_weight: torch.Tensor,
    in_bias: torch.Tensor | None,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    num_heads: int,
    dropout: float,
) -> torch.Tensor:
    """Multi-head self-attention of ``x`` ``(B, T, d)`` with packed q/k/v weights ``in_weight`` ``(3d, d)``
    (rows: q, k, v; each split into ``num_heads`` heads of ``d / num_heads``), the output projection
    ``out_weight`` ``(d, d)``, and dropout probability ``dropout`` on the attention weights (pass 0 outside
    training). The layout of ``nn.MultiheadAttention``'s ``in_proj_weight`` / ``out_proj``."""
    batch, steps, width = x.shape
    qkv = F.linear(x, in_weight, in_bias).view(batch, steps, 3, num_heads, width // num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, T, d / heads) each
    attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    return F.linear(attended.transpose(1, 2).reshape(batch, steps, width), out_weight, out_bias)


def mha_self_attention(attention: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """``attention(x, x, x, need_weights=False)[0]`` of a batch-first ``nn.MultiheadAttention`` without bias
    on k/v or zero attention, computed by :func:`self_attention` (same weights, same numbers)."""
    return self_attention(
        x,
        attention.in_proj_weight,
        attention.in_proj_bias,
        attention.out_proj.weight,
        attention.out_proj.bias,
        attention.num_heads,
        attention.dropout if attention.training else 0.0,
    )
