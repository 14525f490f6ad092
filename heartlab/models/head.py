"""The dense head shared by the expanded models: pooled beat features, and optionally the beat's R-R
intervals beside them, to class logits (the head of :class:`heartlab.models.resnet1d.ResNet1D`)."""

from __future__ import annotations

import torch
from torch import nn

from heartlab.models.rr import BeatDropout, RRFeatures


class ClassifierHead(nn.Module):
    """``(B, in_features)`` pooled beat features -> ``(B, num_classes)`` logits: Dropout -> Linear(in_features,
    hidden) -> ReLU -> Linear(hidden, num_classes).

    With ``rr_features``, :class:`~heartlab.models.rr.RRFeatures` of the beat's R-R intervals ``(B, 4)`` join
    the beat features before the first linear layer, and :class:`~heartlab.models.rr.BeatDropout` (``p =
    beat_dropout``) zeroes the beat features of some training beats. ``model`` names the owning model in
    the error raised when the intervals are missing.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        dropout: float,
        *,
        rr_features: bool,
        beat_dropout: float,
        model: str,
    ):
        super().__init__()
        self.model = model
        self.uses_rr = bool(rr_features)
        self.rr = RRFeatures() if self.uses_rr else None
        self.beat_dropout = BeatDropout(beat_dropout) if self.uses_rr else None
        self.layers = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features + (RRFeatures.out_features if self.uses_rr else 0), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        if self.rr is not None:
            if rr is None:
                raise ValueError(f"{self.model} was built with rr_features = True: pass the R-R intervals")
            features = torch.cat([self.beat_dropout(features), self.rr(rr).to(features.dtype)], dim=1)
        return self.layers(features)
