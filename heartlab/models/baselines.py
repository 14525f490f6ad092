"""The two starting models, kept faithful to the original notebook code.

``CNN2D`` reads the beat as a 16 x 12 image (the 187 samples zero-padded to 192, reshaped row by row);
``Transformer1D`` embeds the 192-padded beat with a strided convolution and runs post-LayerNorm
transformer blocks over the 96 resulting time steps.
"""

from __future__ import annotations

import math

import gin
import torch
from torch import nn

from heartlab.data import GRID_SHAPE, PADDED_LENGTH
from heartlab.models.attention import mha_self_attention


class ConvBlock(nn.Module):
    """Conv2d(k3, s1, p1) -> ReLU -> Conv2d(k3, s1, p1) -> ReLU; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@gin.configurable
class CNN2D(nn.Module):
    """2D CNN over the 16 x 12 image of a beat.

    ConvBlock(1, hidden), then ``num_layers`` x ConvBlock(hidden, hidden), one MaxPool2d(2) to
    (hidden, 8, 6), then Flatten -> Linear(48 * hidden, hidden) -> ReLU -> Linear(hidden, num_classes).

    Args:
        hidden: convolution channels and width of the dense layer.
        num_layers: ConvBlocks after the first one.
        num_classes: output classes (set by the trainer from the dataset).
    """

    input_view = "2d"

    def __init__(self, hidden: int = 16, num_layers: int = 1, num_classes: int = 2):
        super().__init__()
        rows, cols = GRID_SHAPE[0] // 2, GRID_SHAPE[1] // 2
        self.features = nn.Sequential(
            ConvBlock(1, hidden),
            *[ConvBlock(hidden, hidden) for _ in range(num_layers)],
            nn.MaxPool2d(kernel_size=2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(rows * cols * hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding (Vaswani et al. 2017) added to ``(B, T, d)`` inputs, then dropout."""

    def __init__(self, d_model: int, dropout: float, max_len: int = PADDED_LENGTH):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10_000.0) / d_model))
        encoding = torch.zeros(max_len, d_model)
        encoding[:, 0::2] = torch.sin(position * div_term)
        encoding[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
        self.register_buffer("encoding", encoding, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.encoding[: x.shape[1]])


class TransformerBlock(nn.Module):
    """Post-LayerNorm block: x = LN(x + MHA(x)); x = LN(x + FFN(x)), FFN = Linear-ReLU-Linear.

    The attention's weights live in an ``nn.MultiheadAttention``; with ``fused_attention`` (the default) its
    forward is computed by :func:`heartlab.models.attention.mha_self_attention`: the same numbers (and, in
    training, the same dropout draws) without the module's layout copies, and the fused attention kernel
    where dropout is inactive. ``fused_attention = False`` calls the module itself
    (``scripts/bench_attention.py`` times the two).
    """

    fused_attention = True

    def __init__(self, hidden: int, num_heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_attention:
            attended = mha_self_attention(self.attention, x)
        else:
            attended, _ = self.attention(x, x, x, need_weights=False)
        x = self.norm1(x + attended)
        return self.norm2(x + self.ff(x))


@gin.configurable
class Transformer1D(nn.Module):
    """1D transformer over the beat.

    Conv1d(1, hidden, k3, stride 2, pad 1) over the 192-padded beat (96 steps), sinusoidal positional
    encoding with dropout, ``num_blocks`` post-LayerNorm transformer blocks, mean over time, then
    Linear(hidden, num_classes).

    Args:
        hidden: model width (embedding channels); must be divisible by ``num_heads``.
        dropout: dropout probability after the positional encoding and inside attention.
        num_heads: attention heads per block.
        num_blocks: transformer blocks.
        num_classes: output classes (set by the trainer from the dataset).
    """

    input_view = "1d"

    def __init__(
        self, hidden: int = 128, dropout: float = 0.1, num_heads: int = 4, num_blocks: int = 3, num_classes: int = 2
    ):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"Transformer1D.hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        self.embed = nn.Conv1d(1, hidden, kernel_size=3, stride=2, padding=1)
        self.position = PositionalEncoding(hidden, dropout)
        self.blocks = nn.Sequential(*[TransformerBlock(hidden, num_heads, dropout) for _ in range(num_blocks)])
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, PADDED_LENGTH - x.shape[-1]))
        x = self.embed(x).transpose(1, 2)  # (B, 96, hidden)
        x = self.blocks(self.position(x))
        return self.out(x.mean(dim=1))
