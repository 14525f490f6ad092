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

from heartlab.models.head import ClassifierHead
from heartlab.models.norm import BatchNorm1d, BatchNorm2d

BACKENDS = ("conv2d", "conv1d")


class Layers:
    """Builds 1D layers, or their height-1 2D equivalents, for one backend."""

    def __init__(self, backend: str):
        if backend not in BACKENDS:
            raise ValueError(f"ResNet1D.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.two_d = backend == "conv2d"

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Module:
        """A same-length convolution without bias (odd ``kernel_size``; ``dilation`` samples between taps)."""
        padding = dilation * (kernel_size // 2)
        if self.two_d:
            return nn.Conv2d(
                in_channels, out_channels, (1, kernel_size), padding=(0, padding), dilation=(1, dilation), bias=False
            )
        return nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)

    def norm(self, channels: int) -> nn.Module:
        return BatchNorm2d(channels) if self.two_d else BatchNorm1d(channels)

    def pool(self) -> nn.Module:
        if self.two_d:
            return nn.MaxPool2d(kernel_size=(1, 5), stride=(1, 2), padding=(0, 2))
        return nn.MaxPool1d(kernel_size=5, stride=2, padding=2)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018): each channel scaled by a gate in (0, 1) computed from
    the channels' means over time: Linear(C, C / reduction) -> ReLU -> Linear -> sigmoid."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, L)`` or ``(B, C, 1, L)``, same shape out."""
        weights = self.gate(x.flatten(2).mean(dim=-1))
        return x * weights.reshape(*weights.shape, *([1] * (x.ndim - 2)))


class ResidualBlock1D(nn.Module):
    """x -> Conv-BN-ReLU-Conv-BN [-SE], + x, ReLU, max-pool (kernel 5, stride 2: halves the length).
    The second convolution is dilated by ``dilation``; ``se_reduction`` > 0 adds squeeze-and-excitation."""

    def __init__(self, channels: int, kernel_size: int, layers: Layers, dilation: int = 1, se_reduction: int = 0):
        super().__init__()
        self.body = nn.Sequential(
            layers.conv(channels, channels, kernel_size),
            layers.norm(channels),
            nn.ReLU(),
            layers.conv(channels, channels, kernel_size, dilation),
            layers.norm(channels),
            *([SqueezeExcitation(channels, se_reduction)] if se_reduction > 0 else []),
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
        rr_features: also feed the beat's R-R intervals (``rr_pre``, ``rr_post``, ``rr_local``,
            ``rr_average``, seconds) to the dense head, beside the pooled features
            (:class:`heartlab.models.rr.RRFeatures`); needs beat files with those columns (``heartlab data
            mitbih`` writes them).
        beat_dropout: with ``rr_features``, the probability (0..1) that a training beat's pooled beat
            features are zeroed so that the head classifies it from its R-R intervals alone
            (:class:`heartlab.models.rr.BeatDropout`); 0 turns it off.
        dilation: dilation (>= 1, samples between kernel taps) of the second convolution of every block:
            the block sees ``kernel_size + (kernel_size - 1) * (dilation - 1)`` samples at no extra
            parameters; 1 (default) is a plain convolution.
        se_reduction: squeeze-and-excitation in every block (:class:`SqueezeExcitation`) with a hidden
            width of ``channels // se_reduction``; 0 (default) leaves it out.

    The dense head is :class:`heartlab.models.head.ClassifierHead`, shared with the other families.
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
        rr_features: bool = False,
        beat_dropout: float = 0.0,
        dilation: int = 1,
        se_reduction: int = 0,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ResNet1D.kernel_size must be odd to keep the length, got {kernel_size}")
        if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
            raise ValueError(f"ResNet1D.dilation must be a whole number >= 1, got {dilation!r}")
        if not isinstance(se_reduction, int) or isinstance(se_reduction, bool) or se_reduction < 0:
            raise ValueError(f"ResNet1D.se_reduction must be a whole number >= 0 (0: no squeeze-and-excitation), got {se_reduction!r}")
        layers = Layers(backend)
        self.two_d = layers.two_d
        self.stem = nn.Sequential(layers.conv(1, channels, kernel_size), layers.norm(channels), nn.ReLU())
        self.blocks = nn.Sequential(
            *[ResidualBlock1D(channels, kernel_size, layers, dilation, se_reduction) for _ in range(blocks)]
        )
        self.head = ClassifierHead(
            channels, channels, num_classes, dropout, rr_features=rr_features, beat_dropout=beat_dropout, model="ResNet1D"
        )
        self.uses_rr = self.head.uses_rr
        if self.two_d:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of beats ``x`` ``(B, 1, 187)`` (and their R-R intervals ``rr``
        ``(B, 4)`` in seconds, when built with ``rr_features``)."""
        if self.two_d:  # (B, 1, L) -> (B, 1, 1, L), channels-last
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return self.head(self.blocks(self.stem(x)).flatten(2).mean(dim=-1), rr)
