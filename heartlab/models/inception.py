"""InceptionTime over the raw beat, after Ismail Fawaz et al. (Data Mining and Knowledge Discovery 2020),
sized for a CPU: a stack of Inception modules at the full length of the beat, with a residual shortcut
around every three modules, global average pooling and a small dense head.

An Inception module looks at the beat at several time scales at once: a 1x1 bottleneck convolution cuts
the channels, parallel convolutions with short, medium and long kernels read its output, a max-pool
branch (followed by a 1x1 convolution) reads the module's input, and the branches are concatenated,
batch-normalised and rectified.

The 1D layers run as their 2D twins over a height-1, channels-last tensor, as ``ResNet1D``'s default
``backend='conv2d'`` does: on CPUs oneDNN's channels-last 2D kernels train these small, long-kernel
convolutions several times faster than ``conv1d`` (3x or more for 8 channels and 19- or 39-sample
kernels, measured on a 2-core AVX2 EPYC).
"""

from __future__ import annotations

import gin
import torch
from torch import nn

from heartlab.models.head import ClassifierHead
from heartlab.models.resnet1d import Layers

RESIDUAL_EVERY = 3  # Inception modules per residual shortcut
LAYERS = Layers("conv2d")  # height-1 channels-last 2D convolutions and warm-start BatchNorm


class InceptionModule(nn.Module):
    """(B, in_channels, 1, L) -> (B, filters * (len(kernel_sizes) + 1), 1, L): bottleneck, parallel
    convolutions and a max-pool branch, concatenated, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, filters: int, kernel_sizes: tuple[int, ...], bottleneck: int):
        super().__init__()
        # as in the original, a single input channel (the beat itself) needs no bottleneck
        use_bottleneck = bottleneck > 0 and in_channels > 1
        width = bottleneck if use_bottleneck else in_channels
        self.bottleneck = LAYERS.conv(in_channels, width, 1) if use_bottleneck else nn.Identity()
        self.branches = nn.ModuleList(LAYERS.conv(width, filters, k) for k in kernel_sizes)
        self.pool_branch = nn.Sequential(nn.MaxPool2d(kernel_size=(1, 3), stride=1, padding=(0, 1)), LAYERS.conv(in_channels, filters, 1))
        self.out_channels = filters * (len(kernel_sizes) + 1)
        self.norm = LAYERS.norm(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        branches = [branch(z) for branch in self.branches] + [self.pool_branch(x)]
        return torch.relu(self.norm(torch.cat(branches, dim=1)))


class ResidualGroup(nn.Module):
    """Up to three Inception modules in a row; with ``residual``, the group's input, through a 1x1
    convolution and BatchNorm, is added to their output, then ReLU."""

    def __init__(self, in_channels: int, count: int, filters: int, kernel_sizes: tuple[int, ...], bottleneck: int, residual: bool):
        super().__init__()
        modules, channels = [], in_channels
        for _ in range(count):
            modules.append(InceptionModule(channels, filters, kernel_sizes, bottleneck))
            channels = modules[-1].out_channels
        self.body = nn.Sequential(*modules)
        self.out_channels = channels
        self.shortcut = nn.Sequential(LAYERS.conv(in_channels, channels, 1), LAYERS.norm(channels)) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if self.shortcut is None else torch.relu(y + self.shortcut(x))


@gin.configurable
class InceptionTime(nn.Module):
    """InceptionTime: ``depth`` Inception modules over the full 187 samples, a residual shortcut around
    every three of them, global average pooling, dropout, Linear(width, width) -> ReLU ->
    Linear(width, num_classes), where width = ``filters * (len(kernel_sizes) + 1)`` (the paper has a
    single softmax layer; the head of ``ResNet1D``, :class:`~heartlab.models.head.ClassifierHead`, lets R-R
    features combine with the beat's non-linearly).

    Args:
        filters: output channels of each branch (each kernel size and the max-pool branch): a module
            outputs ``filters * (len(kernel_sizes) + 1)`` channels.
        depth: Inception modules; a residual shortcut closes every group of three (a last group of
            fewer has none, as in the original).
        kernel_sizes: kernel lengths of the parallel convolutions, in samples (odd; at 125 Hz 9, 19 and 39
            samples are 72, 152 and 312 ms: a normal QRS complex, a wide ventricular one, the QRS with
            its S-T segment).
        bottleneck: channels of the 1x1 convolution that narrows each module's input before the long
            kernels; 0 turns it off. The first module reads the single-channel beat directly.
        dropout: dropout probability before the dense head.
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
        filters: int = 8,
        depth: int = 3,
        kernel_sizes: tuple[int, ...] = (9, 19, 39),
        bottleneck: int = 8,
        dropout: float = 0.1,
        num_classes: int = 2,
        rr_features: bool = False,
        beat_dropout: float = 0.0,
    ):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"InceptionTime.kernel_sizes must be odd lengths >= 1 to keep the length, got {kernel_sizes}")
        if filters < 1 or depth < 1 or bottleneck < 0:
            raise ValueError(f"InceptionTime needs filters >= 1, depth >= 1 and bottleneck >= 0, got {filters}, {depth}, {bottleneck}")
        groups, channels = [], 1
        for start in range(0, depth, RESIDUAL_EVERY):
            count = min(RESIDUAL_EVERY, depth - start)
            groups.append(ResidualGroup(channels, count, filters, kernel_sizes, bottleneck, count == RESIDUAL_EVERY))
            channels = groups[-1].out_channels
        self.groups = nn.Sequential(*groups)
        self.head = ClassifierHead(
            channels, channels, num_classes, dropout, rr_features=rr_features, beat_dropout=beat_dropout, model="InceptionTime"
        )
        self.uses_rr = self.head.uses_rr
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of beats ``x`` ``(B, 1, 187)`` (and their R-R intervals ``rr``
        ``(B, 4)`` in seconds, when built with ``rr_features``)."""
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, 1, L) -> (B, 1, 1, L)
        features = self.groups(x).flatten(2).mean(dim=-1)
        return self.head(features, rr)
