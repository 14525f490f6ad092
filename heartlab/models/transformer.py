"""``Transformer1DPlus``: the baseline 1D transformer (:class:`heartlab.models.baselines.Transformer1D`)
expanded: a convolutional stem that turns the beat into fewer, richer tokens, pre- or post-LayerNorm
blocks with a separate feed-forward width, a choice of pooling (class token, attention, mean), and the
R-R interval head of :class:`heartlab.models.resnet1d.ResNet1D`.

Attention runs through :func:`heartlab.models.attention.self_attention`, so that with
``attention_dropout = 0`` (the default) training uses torch's fused attention kernel; dropout elsewhere
(embeddings, residual branches, feed-forward, head) does not prevent it.
"""

from __future__ import annotations

import gin
import torch
from torch import nn

from heartlab.data import BEAT_LENGTH
from heartlab.models.attention import self_attention
from heartlab.models.head import ClassifierHead
from heartlab.models.norm import BatchNorm1d

POOLINGS = ("cls", "attention", "mean")


class SelfAttention(nn.Module):
    """Multi-head self-attention with packed q/k/v weights (:func:`heartlab.models.attention.self_attention`)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.heads = heads
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        return self_attention(x, self.qkv.weight, self.qkv.bias, self.out.weight, self.out.bias, self.heads, dropout)


class EncoderBlock(nn.Module):
    """Self-attention and a Linear-GELU-Dropout-Linear feed-forward, each a residual branch with dropout;
    LayerNorm before each branch (``norm_first``, pre-LN) or after each residual sum (post-LN)."""

    def __init__(self, width: int, heads: int, ff_width: int, dropout: float, attention_dropout: float, norm_first: bool):
        super().__init__()
        self.norm_first = norm_first
        self.attention = SelfAttention(width, heads, attention_dropout)
        self.norm1 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff_width), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_width, width))
        self.norm2 = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attention(self.norm1(x)))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attention(x)))
        return self.norm2(x + self.drop(self.ff(x)))


class AttentionPool(nn.Module):
    """``(B, T, d)`` -> ``(B, d)``: the tokens weighted by a softmax over time of a learned linear score
    (without bias: the softmax ignores a shift common to every token)."""

    def __init__(self, width: int):
        super().__init__()
        self.score = nn.Linear(width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(self.score(x), dim=1) * x).sum(dim=1)


@gin.configurable
class Transformer1DPlus(nn.Module):
    """1D transformer over the beat with a convolutional stem.

    Stem: Conv1d(1, stem_width, stem_kernel) -> BatchNorm -> ReLU -> Conv1d(stem_width, width, stem_kernel,
    stride stem_stride): ``ceil(187 / stem_stride)`` tokens (47 for a stride of 4). Learned positional
    embeddings (and a learned class token with ``pooling = 'cls'``), dropout, ``depth`` encoder blocks
    (:class:`EncoderBlock`; pre-LN blocks end with a final LayerNorm), pooling over the tokens, then the
    dense head Dropout -> Linear(width, width) -> ReLU -> Linear(width, num_classes).

    Args:
        width: model width (token channels); must be divisible by ``heads``.
        depth: encoder blocks (>= 1).
        heads: attention heads per block; each attends with ``width / heads`` channels.
        ff_width: hidden units of each block's feed-forward layer (the usual choice is 2-4 x ``width``).
        dropout: dropout probability (0..1) of the token embeddings, of each block's residual branches and
            feed-forward hidden layer, and before the dense head.
        attention_dropout: dropout probability (0..1) on the attention weights. torch's fused CPU attention
            kernel does not implement it: any value above 0 makes training materialise the attention
            matrices and draw a dropout mask of their size, which is slower (``scripts/bench_attention.py``
            measures it for ``Transformer1D``).
        norm_first: LayerNorm before each residual branch (pre-LN; stable without learning-rate warm-up)
            instead of after each residual sum (post-LN, as in the baseline).
        stem_width: channels of the first stem convolution.
        stem_kernel: kernel length of both stem convolutions, in samples (odd; 7 samples = 56 ms at 125 Hz).
        stem_stride: stride of the second stem convolution, in samples per token (4 = 32 ms per token);
            attention cost grows with the square of the token count.
        pooling: how the tokens become one vector: ``'cls'`` (a learned class token's output),
            ``'attention'`` (a softmax-weighted sum with learned scores) or ``'mean'`` (their average).
        num_classes: output classes (set by the trainer from the dataset).
        rr_features: also feed the beat's R-R intervals (``rr_pre``, ``rr_post``, ``rr_local``,
            ``rr_average``, seconds) to the dense head, beside the pooled features
            (:class:`heartlab.models.rr.RRFeatures`); needs beat files with those columns (``heartlab data
            mitbih`` writes them).
        beat_dropout: with ``rr_features``, the probability (0..1) that a training beat's pooled features
            are zeroed so that the head classifies it from its R-R intervals alone
            (:class:`heartlab.models.rr.BeatDropout`); 0 turns it off.
    """

    input_view = "1d"

    def __init__(
        self,
        width: int = 64,
        depth: int = 4,
        heads: int = 4,
        ff_width: int = 128,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        norm_first: bool = True,
        stem_width: int = 32,
        stem_kernel: int = 7,
        stem_stride: int = 4,
        pooling: str = "cls",
        num_classes: int = 2,
        rr_features: bool = False,
        beat_dropout: float = 0.0,
    ):
        super().__init__()
        if width < 1 or heads < 1 or width % heads:
            raise ValueError(f"Transformer1DPlus.width ({width}) must be divisible by heads ({heads})")
        if depth < 1:
            raise ValueError(f"Transformer1DPlus.depth must be >= 1, got {depth}")
        if stem_kernel < 1 or stem_kernel % 2 == 0:
            raise ValueError(f"Transformer1DPlus.stem_kernel must be odd, got {stem_kernel}")
        if stem_stride < 1:
            raise ValueError(f"Transformer1DPlus.stem_stride must be >= 1, got {stem_stride}")
        if pooling not in POOLINGS:
            raise ValueError(f"Transformer1DPlus.pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        for name, p in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"Transformer1DPlus.{name} must be in [0, 1), got {p}")
        padding = stem_kernel // 2
        self.stem = nn.Sequential(
            nn.Conv1d(1, stem_width, stem_kernel, padding=padding, bias=False),
            BatchNorm1d(stem_width),
            nn.ReLU(),
            nn.Conv1d(stem_width, width, stem_kernel, stride=stem_stride, padding=padding, bias=False),
        )  # no bias: the positional embeddings add one per token
        self.pooling = pooling
        self.steps = (BEAT_LENGTH - 1) // stem_stride + 1
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02) if pooling == "cls" else None
        self.position = nn.Parameter(torch.randn(1, self.steps + (pooling == "cls"), width) * 0.02)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *[EncoderBlock(width, heads, ff_width, dropout, attention_dropout, norm_first) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(width) if norm_first else nn.Identity()
        self.pool = AttentionPool(width) if pooling == "attention" else None
        self.head = ClassifierHead(
            width, width, num_classes, dropout, rr_features=rr_features, beat_dropout=beat_dropout, model="Transformer1DPlus"
        )
        self.uses_rr = self.head.uses_rr

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of beats ``x`` ``(B, 1, 187)`` (and their R-R intervals ``rr``
        ``(B, 4)`` in seconds, when built with ``rr_features``)."""
        tokens = self.stem(x).transpose(1, 2)  # (B, steps, width)
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(self.embed_dropout(tokens + self.position)))
        if self.pooling == "cls":
            features = tokens[:, 0]
        elif self.pooling == "attention":
            features = self.pool(tokens)
        else:
            features = tokens.mean(dim=1)
        return self.head(features, rr)
