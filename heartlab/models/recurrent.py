"""A convolutional front end and a bidirectional recurrent network over the beat.

Convolution blocks (each Conv-BN-ReLU and a max-pool that halves the length) turn the 187 samples into a
short sequence of local features (47 steps after two blocks, 24 after three); a bidirectional GRU (or
LSTM) reads it in both directions, so that every step sees the whole beat; attention pooling weighs the
steps by a learned score instead of averaging them, so that a few telling steps (a wide QRS, a missing P
wave) can outweigh the flat rest of the window; a small dense head classifies.

The convolutions run as their 2D twins over a height-1, channels-last tensor, as ``ResNet1D``'s default
``backend='conv2d'`` does (faster on CPUs); the channels-last output is already the ``(B, T, channels)``
sequence the recurrent network reads.
"""

from __future__ import annotations

import math

import gin
import torch
from torch import nn

from heartlab.models.head import ClassifierHead
from heartlab.models.resnet1d import Layers

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
LAYERS = Layers("conv2d")  # height-1 channels-last 2D convolutions and warm-start BatchNorm


class AttentionPooling(nn.Module):
    """``(B, T, d)`` -> ``(B, d)``: each step is scored against a learned query, ``q . tanh(W h_t + b) /
    sqrt(d)``; the scores are turned into weights by a softmax over time, and the steps summed with them."""

    def __init__(self, dim: int):
        super().__init__()
        self.key = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.key(h)) @ self.query * self.scale  # (B, T)
        weights = torch.softmax(scores.float(), dim=1).to(h.dtype)
        return (weights.unsqueeze(-1) * h).sum(dim=1)


@gin.configurable
class CNNGRU(nn.Module):
    """``conv_blocks`` x [Conv1d(kernel_size) -> BatchNorm -> ReLU -> MaxPool(2)] (187 samples -> 94 -> 47
    -> 24 steps), a bidirectional ``cell`` of ``layers`` layers and ``hidden`` units per direction,
    attention pooling over the steps, dropout, Linear(2 * hidden, hidden) -> ReLU ->
    Linear(hidden, num_classes) (:class:`~heartlab.models.head.ClassifierHead`).

    Args:
        channels: convolution channels of the front end (the features of each step the recurrent
            network reads).
        conv_blocks: convolution blocks; each halves the length (rounding up): 2 blocks give the
            recurrent network 47 steps 4 samples (32 ms at 125 Hz) apart, 3 blocks 24 steps 64 ms apart.
        kernel_size: convolution kernel length in samples (odd; 7 samples = 56 ms at 125 Hz).
        hidden: recurrent units per direction; the pooled features are ``2 * hidden`` wide.
        layers: stacked recurrent layers.
        cell: ``'gru'`` or ``'lstm'``.
        dropout: dropout probability between stacked recurrent layers (with ``layers`` > 1) and before
            the dense head.
        num_classes: output classes (set by the trainer from the dataset).
        rr_features: also feed the beat's R-R intervals (``rr_pre``, ``rr_post``, ``rr_local``,
            ``rr_average``, seconds) to the dense head, beside the pooled features
            (:class:`heartlab.models.rr.RRFeatures`); needs beat files with those columns (``heartlab data
            mitbih`` writes them).
        beat_dropout: with ``rr_features``, the probability (0..1) that a training beat's pooled beat
            features are zeroed so that the head classifies it from its R-R intervals alone
            (:class:`heartlab.models.rr.BeatDropout`); 0 turns it off.
    """

    input_view = "1d"

    def __init__(
        self,
        channels: int = 32,
        conv_blocks: int = 2,
        kernel_size: int = 7,
        hidden: int = 32,
        layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.1,
        num_classes: int = 2,
        rr_features: bool = False,
        beat_dropout: float = 0.0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"CNNGRU.cell must be one of {', '.join(map(repr, CELLS))}, got {cell!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"CNNGRU.kernel_size must be odd to keep the length, got {kernel_size}")
        if min(channels, conv_blocks, hidden, layers) < 1:
            raise ValueError(
                f"CNNGRU needs channels, conv_blocks, hidden and layers >= 1, got {channels}, {conv_blocks}, {hidden}, {layers}"
            )
        blocks, width = [], 1
        for _ in range(conv_blocks):
            blocks += [
                LAYERS.conv(width, channels, kernel_size),
                LAYERS.norm(channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(1, 2), stride=(1, 2), ceil_mode=True),
            ]
            width = channels
        self.front = nn.Sequential(*blocks)
        self.rnn = CELLS[cell](
            channels,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.pool = AttentionPooling(2 * hidden)
        self.head = ClassifierHead(
            2 * hidden, hidden, num_classes, dropout, rr_features=rr_features, beat_dropout=beat_dropout, model="CNNGRU"
        )
        self.uses_rr = self.head.uses_rr
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of beats ``x`` ``(B, 1, 187)`` (and their R-R intervals ``rr``
        ``(B, 4)`` in seconds, when built with ``rr_features``)."""
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, 1, L) -> (B, 1, 1, L)
        steps = self.front(x).flatten(2).transpose(1, 2)  # (B, T, channels)
        states, _ = self.rnn(steps)  # (B, T, 2 * hidden)
        features = self.pool(states)
        return self.head(features, rr)
