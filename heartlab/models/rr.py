"""R-R interval features beside the beat: what a model with ``rr_features = True`` adds to its pooled
features.

A beat file built from the MIT-BIH records carries, per beat, the R-R intervals ``rr_pre``, ``rr_post``,
``rr_local`` and ``rr_average`` in seconds (:data:`heartlab.beat_context.RR_COLUMNS`). Morphology alone transfers badly across
patients for supraventricular (S) beats: they are premature, not misshapen, and the beat window starts at
the R peak, after the early P wave. Their timing is the cue: a short ``rr_pre`` and a long ``rr_post``
against the patient's own rhythm, ``rr_local`` (10 s) and ``rr_average`` (5 minutes: a run of premature
beats shortens the local mean too, not the 5-minute one).
"""

from __future__ import annotations

import torch
from torch import nn

from heartlab.models.norm import BatchNorm1d

MIN_SECONDS = 1e-3  # intervals are clamped to this before the logarithm


class RRFeatures(nn.Module):
    """``(B, 4)`` R-R intervals in seconds (``rr_pre``, ``rr_post``, ``rr_local``, ``rr_average``) ->
    ``(B, 9)`` features: their logarithms and the log ratios of ``rr_pre``, ``rr_post`` and ``rr_local`` to
    ``rr_average`` and of ``rr_pre``, ``rr_post`` to ``rr_local`` (0 for a beat in the patient's usual
    rhythm, negative for a premature one), standardised by a batch norm: a premature beat's ratio of 0.8 is
    a log of -0.2, small beside the pooled beat features unless rescaled."""

    out_features = 9

    def __init__(self):
        super().__init__()
        self.norm = BatchNorm1d(self.out_features)

    def forward(self, rr: torch.Tensor) -> torch.Tensor:
        logs = rr.float().clamp_min(MIN_SECONDS).log()
        ratios = [logs[:, :3] - logs[:, 3:4], logs[:, :2] - logs[:, 2:3]]
        return self.norm(torch.cat([logs, *ratios], dim=1))


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
