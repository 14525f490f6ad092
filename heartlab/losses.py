"""Losses for imbalanced beat classes: class-weighted cross-entropy and focal loss.

Both are gin configurables bound as classes (``fit.loss = @FocalLoss``); the trainer builds them with
the class counts of the training split, so weights never depend on validation or test data.
"""

from __future__ import annotations

from collections.abc import Sequence

import gin
import torch
from torch import nn
from torch.nn import functional as F

WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "log")


def class_weights(class_counts: torch.Tensor | Sequence[int], scheme: str = "none") -> torch.Tensor:
    """Per-class loss weights from training-split class counts.

    Schemes:
        ``none``: all 1.
        ``inverse``: ``n_total / (num_classes * n_c)`` (balanced: a class's total weight is the same for all).
        ``sqrt_inverse``: ``sqrt(n_max / n_c)``.
        ``log``: ``max(1, ln(n_max / n_c))``.

    A class absent from the training split gets weight 0 (it contributes nothing to the loss).
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown class-weight scheme {scheme!r}: use one of {', '.join(WEIGHT_SCHEMES)}")
    present = counts > 0
    safe = counts.clamp(min=1)
    if scheme == "none":
        weights = torch.ones_like(counts)
    elif scheme == "inverse":
        weights = counts.sum() / (present.sum() * safe)
    elif scheme == "sqrt_inverse":
        weights = torch.sqrt(counts.max() / safe)
    else:
        weights = torch.log(counts.max() / safe).clamp(min=1.0)
    return torch.where(present, weights, torch.zeros_like(weights)).float()


@gin.configurable
class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights computed from the training split.

    Args:
        class_counts: beats per class in the training split (set by the trainer).
        weighting: ``none``, ``inverse``, ``sqrt_inverse`` or ``log`` (see :func:`class_weights`).
        label_smoothing: probability mass (0..1) spread uniformly over the classes.
    """

    def __init__(self, class_counts: Sequence[int], weighting: str = "none", label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", class_weights(class_counts, weighting))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight, label_smoothing=self.label_smoothing)


@gin.configurable
class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-alpha_c * (1 - p_t)^gamma * log(p_t)``, averaged over the batch.

    Args:
        class_counts: beats per class in the training split (set by the trainer).
        gamma: focusing exponent (>= 0); 0 gives (alpha-weighted) cross-entropy.
        alpha: per-class weights: ``None`` (all 1), a list of one weight per class, or the name of a
            class-weight scheme (``inverse``, ``sqrt_inverse``, ``log``) computed from ``class_counts``.
    """

    def __init__(
        self, class_counts: Sequence[int], gamma: float = 2.0, alpha: str | Sequence[float] | None = None
    ):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss.gamma must be >= 0, got {gamma}")
        num_classes = len(class_counts)
        if alpha is None:
            weights = torch.ones(num_classes)
        elif isinstance(alpha, str):
            weights = class_weights(class_counts, alpha)
        else:
            weights = torch.as_tensor(list(alpha), dtype=torch.float32)
            if weights.shape != (num_classes,):
                raise ValueError(f"FocalLoss.alpha needs {num_classes} weights, got {len(weights)}")
        self.register_buffer("alpha", weights)
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
        p = log_p.exp()
        return (-self.alpha[target] * (1.0 - p).pow(self.gamma) * log_p).mean()
