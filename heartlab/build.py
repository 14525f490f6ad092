"""A run's parts built from their classes and settings: model, loss and optimizer (:func:`build`), the
learning-rate schedule over that optimizer (:func:`make_schedule`), and whether its forward passes run in
bf16 (:func:`resolve_bf16`).

These take the classes and settings as arguments; :func:`heartlab.train.fit` and
:func:`heartlab.train.build_configured` pass the ones the gin config binds to ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from loguru import logger
from torch import nn

from heartlab.errors import HeartlabError

SCHEDULES = ("cosine", "onecycle", "plateau", "none")


def build(
    model: Callable, loss: Callable, optimizer: Callable, class_counts: list[int]
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """Model, loss and optimizer from their classes, as every run builds them: the model sized for the
    number of classes, the loss weighted by ``class_counts`` (beats per class in the training split).

    Raises:
        HeartlabError: a configurable rejected its arguments (e.g. an even ``ResNet1D.kernel_size``).
    """
    try:
        net = model(num_classes=len(class_counts))
        loss_fn = loss(class_counts=class_counts)
        return net, loss_fn, optimizer(net.parameters())
    except (ValueError, TypeError) as exc:  # the configurables' own argument checks
        raise HeartlabError(f"cannot build the model, loss or optimizer: {str(exc).splitlines()[0]}") from None


def make_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, mode: str
) -> tuple[torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None, bool]:
    """The LR schedule called ``name`` and whether it steps per batch (True) or per epoch (False)."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1)), True
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1)), True
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=2), False
    if name == "none":
        return None, False
    raise HeartlabError(f"unknown fit.schedule {name!r}: use one of {', '.join(SCHEDULES)}")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), as torch reports it."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def resolve_bf16(value: bool | str) -> bool:
    """``fit.bf16`` as a bool: ``'auto'`` follows :func:`native_bf16`; ``True`` without it logs a warning."""
    if value == "auto":
        return native_bf16()
    if value and not native_bf16():
        logger.warning(
            "fit.bf16 = True on a CPU without native bf16 (no AVX512-BF16 or AMX): autocast emulates it and "
            "runs several times slower than fp32 here; use fit.bf16 = 'auto' or False"
        )
    return bool(value)
