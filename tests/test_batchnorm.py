"""ResNet1D's BatchNorm: running statistics that do not carry their initial values into short runs."""

from __future__ import annotations

import torch
from torch import nn

from heartlab.models.norm import BatchNorm1d, BatchNorm2d


def test_running_stats_average_the_first_batches_then_move_exponentially():
    torch.manual_seed(0)
    norm, plain = BatchNorm2d(3), nn.BatchNorm2d(3)
    batches = [0.1 * torch.randn(16, 3, 1, 40) + 2.0 for _ in range(5)]
    for batch in batches:
        norm(batch)
        plain(batch)
    everything = torch.cat(batches)
    mean = everything.mean(dim=(0, 2, 3))
    assert torch.allclose(norm.running_mean, mean, atol=0.01)
    assert torch.allclose(norm.running_var, torch.full((3,), 0.01), rtol=0.3)
    # plain BatchNorm still remembers its start (mean 0, variance 1) after five steps
    assert (plain.running_var > 0.5).all() and (plain.running_mean < 1.0).all()
    for _ in range(30):  # past 1/momentum batches the step is the configured momentum
        norm(0.1 * torch.randn(16, 3, 1, 40))
    assert norm.momentum == 0.1


def test_eval_mode_uses_the_running_stats_and_reset_restarts_the_average():
    norm = BatchNorm1d(2)
    norm(torch.randn(8, 2, 10) * 0.01 + 5.0)
    norm.eval()
    out = norm(torch.full((1, 2, 10), 5.0))
    assert out.abs().max() < 3.0  # normalised with the batch's own statistics, not with (0, 1)
    norm.reset_running_stats()
    assert norm.steps == 0 and torch.equal(norm.running_var, torch.ones(2))
