"""R-R interval features beside the beat: what a model with ``rr_features = True`` adds to its pooled
features.

A beat file built from the MIT-BIH records carries, per beat, the R-R intervals ``rr_pre``, ``rr_post`` and
``rr_local`` in seconds (:data:`heartlab.data.RR_COLUMNS`). Morphology alone transfers badly across
patients for supraventricular (S) beats: they are premature, not misshapen, and the beat window starts at
the R peak, after the early P wave. Their timing is the cue: a short ``rr_pre`` and a long ``rr_post``
against the patient's own rhythm ``rr_local``.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_SECONDS = 1e-3  # intervals are clamped to this before the logarithm


class RRFeatures(nn.Module):
    """``(B, 3)`` R-R intervals in seconds -> ``(B, 5)`` features: their logarithms and the log ratios
    ``rr_pre / rr_local`` and ``rr_post / rr_local`` (0 for a beat in the patient's usual rhythm, negative
    for a premature one). No parameters: logarithms put seconds and ratios on a scale near 0."""

    out_features = 5

    def forward(self, rr: torch.Tensor) -> torch.Tensor:
        logs = rr.float().clamp_min(MIN_SECONDS).log()
        return torch.cat([logs, logs[:, :2] - logs[:, 2:3]], dim=1)


class BeatDropout(nn.Module):
    """In training, zero the whole pooled beat-feature vector of a beat with probability ``p`` (scaling the
    kept ones by ``1 / (1 - p)``, like dropout), so that the head must classify those beats from their R-R
    intervals alone. Without it, a network that can tell its training patients' S beats apart by their
    shape never learns the timing cue, and that shape does not transfer to new patients."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"beat_dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return features
        keep = torch.rand(features.shape[0], 1, device=features.device) >= self.p
        return features * keep.to(features.dtype) / (1.0 - self.p)
