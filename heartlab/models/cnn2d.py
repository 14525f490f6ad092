"""``CNN2DPlus``: the baseline 2D CNN (:class:`heartlab.models.baselines.CNN2D`) expanded, on the same
16 x 12 image of the beat: batch-normalised residual blocks of configurable depth, width and kernel,
pooling between the first blocks, global average pooling instead of a flattened dense layer, and the R-R
interval head of :class:`heartlab.models.resnet1d.ResNet1D`.

The image is 16 rows of 12 consecutive samples (96 ms at 125 Hz): a kernel sees neighbouring samples
along a row and the samples 12 and 24 later down a column.
"""

from __future__ import annotations

import gin
import torch
from torch import nn

from heartlab.data import GRID_SHAPE
from heartlab.models.head import ClassifierHead
from heartlab.models.norm import BatchNorm2d

POOLINGS = ("max", "avg", "none")
MAX_POOLS = 2  # 16 x 12 -> 8 x 6 -> 4 x 3; a third would leave 2 x 1


class ResidualBlock2D(nn.Module):
    """x -> Conv-BN-ReLU-Conv-BN, + x, ReLU; keeps the channels and the map size."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=False),
            BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=False),
            BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


@gin.configurable
class CNN2DPlus(nn.Module):
    """Residual 2D CNN over the 16 x 12 image of a beat.

    Stem Conv2d(1, width, kernel_size) -> BatchNorm -> ReLU, then ``depth`` residual blocks
    (:class:`ResidualBlock2D`) with a 2 x 2 pooling after each of the first two (16 x 12 -> 8 x 6 -> 4 x 3;
    later blocks run at 4 x 3), global average pooling, then the dense head Dropout -> Linear(width, width)
    -> ReLU -> Linear(width, num_classes). The layers run channels-last.

    Args:
        width: convolution channels throughout the network and width of the dense layer.
        depth: residual blocks (two convolutions each, >= 1).
        kernel_size: square convolution kernel, in pixels (odd; 3 = 3 samples along a row x 3 rows, 24 ms by
            192 ms of the beat at 125 Hz).
        pooling: the 2 x 2 pooling after each of the first two blocks: ``'max'``, ``'avg'``, or ``'none'``
            (every block runs at 16 x 12, 4x the positions of the second block and 16x those of the third).
        dropout: dropout probability (0..1) before the dense head.
        num_classes: output classes (set by the trainer from the dataset).
        rr_features: also feed the beat's R-R intervals (``rr_pre``, ``rr_post``, ``rr_local``,
            ``rr_average``, seconds) to the dense head, beside the pooled features
            (:class:`heartlab.models.rr.RRFeatures`); needs beat files with those columns (``heartlab data
            mitbih`` writes them).
        beat_dropout: with ``rr_features``, the probability (0..1) that a training beat's pooled features
            are zeroed so that the head classifies it from its R-R intervals alone
            (:class:`heartlab.models.rr.BeatDropout`); 0 turns it off.
    """

    input_view = "2d"

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        kernel_size: int = 3,
        pooling: str = "max",
        dropout: float = 0.1,
        num_classes: int = 2,
        rr_features: bool = False,
        beat_dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"CNN2DPlus.depth must be >= 1, got {depth}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"CNN2DPlus.kernel_size must be odd to keep the map size, got {kernel_size}")
        if pooling not in POOLINGS:
            raise ValueError(f"CNN2DPlus.pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, kernel_size, padding=kernel_size // 2, bias=False), BatchNorm2d(width), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for block in range(depth):
            layers.append(ResidualBlock2D(width, kernel_size))
            if pooling != "none" and block < MAX_POOLS:
                layers.append(nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2))
        self.blocks = nn.Sequential(*layers)
        self.head = ClassifierHead(
            width, width, num_classes, dropout, rr_features=rr_features, beat_dropout=beat_dropout, model="CNN2DPlus"
        )
        self.uses_rr = self.head.uses_rr
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of beat images ``x`` ``(B, 1, 16, 12)`` (and their R-R intervals
        ``rr`` ``(B, 4)`` in seconds, when built with ``rr_features``)."""
        x = x.contiguous(memory_format=torch.channels_last)
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(features, rr)


assert GRID_SHAPE[0] % 2**MAX_POOLS == 0 and GRID_SHAPE[1] % 2**MAX_POOLS == 0
