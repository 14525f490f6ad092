"""A 1D residual CNN over the raw beat, after Kachuee et al. (ICHI 2018): a stem convolution, residual
blocks of two same-width convolutions each followed by max-pooling, then a small dense head."""

from __future__ import annotations

import gin
import torch
from torch import nn


class ResidualBlock1D(nn.Module):
    """x -> Conv-BN-ReLU-Conv-BN, + x, ReLU, MaxPool1d(kernel 5, stride 2)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm1d(channels),
        )
        self.pool = nn.MaxPool1d(kernel_size=5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(x + self.body(x)))


@gin.configurable
class ResNet1D(nn.Module):
    """1D ResNet: Conv1d(1, channels) stem, ``blocks`` residual blocks (each halves the length), global
    average pooling, dropout, Linear(channels, channels) -> ReLU -> Linear(channels, num_classes).

    Args:
        channels: convolution channels throughout the network.
        blocks: residual blocks (two convolutions each).
        kernel_size: convolution kernel length in samples (odd; 5 samples = 40 ms at 125 Hz).
        dropout: dropout probability before the dense head.
        num_classes: output classes (set by the trainer from the dataset).
    """

    input_view = "1d"

    def __init__(
        self, channels: int = 32, blocks: int = 4, kernel_size: int = 5, dropout: float = 0.1, num_classes: int = 2
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ResNet1D.kernel_size must be odd to keep the length, got {kernel_size}")
        self.stem = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[ResidualBlock1D(channels, kernel_size) for _ in range(blocks)])
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels, channels),
            nn.ReLU(),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=-1))
