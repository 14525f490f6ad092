"""BatchNorm with a warm start, shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


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
