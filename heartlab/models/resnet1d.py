"""A 1D residual CNN over the raw beat, after Kachuee et al. (ICHI 2018): a stem convolution, residual
blocks of two same-width convolutions each followed by max-pooling, then a small dense head.

The 1D layers can run as their 2D twins over a height-1, channels-last tensor (``backend='conv2d'``):
the numbers are the same, but on CPUs oneDNN's channels-last 2D kernels train about twice as fast as
``conv1d`` (see ``scripts/bench_train.py``).
"""

from __future__ import annotations

import gin
import torch
from torch import nn

BACKENDS = ("conv2d", "conv1d")


class WarmStartBatchNorm:
    """BatchNorm whose running statistics start as the plain average of the batches seen (momentum 1/t for
    the t-th batch) and turn into the usual exponential average once 1/t falls below ``momentum``.

    Plain BatchNorm starts its running variance at 1 and forgets that start only as 0.9^t: after the few
    dozen steps of a short run on a small dataset the eval-mode outputs are still scaled by it, and a
    well-trained network predicts a single class in validation. The step count is a Python attribute, so
    training never reads a tensor back to the host.
    """

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps = getattr(self, "steps", 0) + 1
            self.momentum = max(self.final_momentum, 1.0 / self.steps)
        return super().forward(x)


class BatchNorm1d(WarmStartBatchNorm, nn.BatchNorm1d):
    final_momentum = 0.1


class BatchNorm2d(WarmStartBatchNorm, nn.BatchNorm2d):
    final_momentum = 0.1


class Layers:
    """Builds 1D layers, or their height-1 2D equivalents, for one backend."""

    def __init__(self, backend: str):
        if backend not in BACKENDS:
            raise ValueError(f"ResNet1D.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.two_d = backend == "conv2d"

    def conv(self, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
        if self.two_d:
            return nn.Conv2d(in_channels, out_channels, (1, kernel_size), padding=(0, kernel_size // 2), bias=False)
        return nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def norm(self, channels: int) -> nn.Module:
        return BatchNorm2d(channels) if self.two_d else BatchNorm1d(channels)

    def pool(self) -> nn.Module:
        if self.two_d:
            return nn.MaxPool2d(kernel_size=(1, 5), stride=(1, 2), padding=(0, 2))
        return nn.MaxPool1d(kernel_size=5, stride=2, padding=2)


class ResidualBlock1D(nn.Module):
    """x -> Conv-BN-ReLU-Conv-BN, + x, ReLU, max-pool (kernel 5, stride 2: halves the length)."""

    def __init__(self, channels: int, kernel_size: int, layers: Layers):
        super().__init__()
        self.body = nn.Sequential(
            layers.conv(channels, channels, kernel_size),
            layers.norm(channels),
            nn.ReLU(),
            layers.conv(channels, channels, kernel_size),
            layers.norm(channels),
        )
        self.pool = layers.pool()

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
        backend: ``'conv2d'`` runs the 1D layers as 2D layers over a height-1 channels-last tensor (same
            results, faster on CPU); ``'conv1d'`` uses plain 1D layers. Weights of the two differ in shape.
    """

    input_view = "1d"

    def __init__(
        self,
        channels: int = 32,
        blocks: int = 4,
        kernel_size: int = 5,
        dropout: float = 0.1,
        num_classes: int = 2,
        backend: str = "conv2d",
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ResNet1D.kernel_size must be odd to keep the length, got {kernel_size}")
        layers = Layers(backend)
        self.two_d = layers.two_d
        self.stem = nn.Sequential(layers.conv(1, channels, kernel_size), layers.norm(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock1D(channels, kernel_size, layers) for _ in range(blocks)])
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels, channels),
            nn.ReLU(),
            nn.Linear(channels, num_classes),
        )
        if self.two_d:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:  # (B, 1, L) -> (B, 1, 1, L), channels-last
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        features = self.blocks(self.stem(x))
        return self.head(features.flatten(2).mean(dim=-1))
