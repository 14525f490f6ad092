"""Guards on the training step's speed properties: no host synchronisation per batch."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch

from heartlab import train
from heartlab.build import resolve_bf16
from heartlab.config import load_config
from heartlab.data import Split
from heartlab.losses import FocalLoss, WeightedCrossEntropy
from heartlab.models import CNN2D, ResNet1D, Transformer1D
from helpers import HostSyncCounter


def test_counter_sees_item_calls():
    with HostSyncCounter() as counter:
        torch.ones(3).sum().item()
        float(torch.ones(()))
    assert counter.syncs == 2


def configured_optimizer(parameters, name: str):
    """The optimizer as configs/base.gin builds it (so the guard covers the shipped settings)."""
    load_config(Path(__file__).resolve().parents[1] / "configs" / "ptb_resnet1d.gin", [f"fit.optimizer = @{name}"])
    return gin.query_parameter("fit.optimizer").scoped_configurable_fn(parameters)


@pytest.mark.parametrize("optimizer_name", ["torch.optim.AdamW", "torch.optim.Adam", "torch.optim.SGD"])
def test_train_epoch_never_syncs_with_the_host(optimizer_name):
    generator = torch.Generator().manual_seed(0)
    split = Split(torch.rand(6 * 32 + 5, 187, generator=generator), torch.randint(0, 3, (6 * 32 + 5,), generator=generator))
    for model, loss in ((ResNet1D(channels=4, blocks=1, num_classes=3), WeightedCrossEntropy([5, 3, 2], "inverse")),
                        (CNN2D(hidden=4, num_classes=3), FocalLoss([5, 3, 2], gamma=2.0, alpha="log")),
                        (Transformer1D(hidden=8, num_heads=2, num_blocks=1, num_classes=3), WeightedCrossEntropy([1, 1, 1]))):
        optimizer = configured_optimizer(model.parameters(), optimizer_name)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
        with HostSyncCounter() as counter:
            mean_loss = train.train_epoch(model, loss, optimizer, scheduler, split, 32, generator, bf16=False)
        assert counter.syncs == 0, f"{type(model).__name__}: {counter.syncs} host syncs in one epoch of 7 batches"
        assert torch.isfinite(mean_loss)


@pytest.mark.parametrize(
    "capabilities, setting, expected",
    [
        ({"avx512_bf16": True}, "auto", True),
        ({"amx_bf16": True, "avx512_bf16": False}, "auto", True),
        ({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, "auto", False),
        ({"avx2": True}, False, False),
        ({"avx2": True}, True, True),  # honoured, with a warning
    ],
)
def test_bf16_auto_follows_native_support(monkeypatch, capabilities, setting, expected):
    """fit.bf16 = 'auto' turns autocast on only where the CPU has native bf16 (emulated bf16 is ~9x slower)."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert resolve_bf16(setting) is expected
