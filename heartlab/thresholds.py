"""The binary threshold: P(abnormal), the threshold that reaches a target recall, the metrics at it.

On a binary dataset (classes ``('normal', 'abnormal')``, class 1 = abnormal) the operating point
(:mod:`heartlab.operating_point`) is a ``threshold`` on P(abnormal), the softmax probability of class 1
(:func:`abnormal_probability`); a beat is called abnormal iff ``p >= threshold``. :func:`choose_threshold`
picks the highest threshold that still reaches a target recall of the abnormal class, so that no more false
alarms are raised than that recall needs.

Metric names follow ``<split>/<metric>`` (:mod:`heartlab.metrics`). :func:`threshold_metrics` adds:
``<split>/threshold``; ``<split>/op/recall``, ``<split>/op/precision``, ``<split>/op/accuracy``,
``<split>/op/specificity`` (the abnormal class at the threshold); ``<split>/at05/recall``,
``<split>/at05/precision`` (at 0.5); ``<split>/average_precision`` (PR-AUC) and ``<split>/auroc`` (ROC-AUC)
of P(abnormal). Undefined ratios are 0, torchmetrics' convention, as in :mod:`heartlab.metrics`.
"""

from __future__ import annotations

import math
import warnings

import torch

from heartlab import checks
from heartlab.errors import HeartlabError

ABNORMAL = 1  # binary datasets: class 1 is the abnormal class (PTB: ('normal', 'abnormal'))


def abnormal_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(abnormal) ``(n,)``: the softmax probability of class 1 of binary logits ``(n, 2)``, in float32.

    Every threshold is chosen on, and applied to, this exact computation, so that a stored threshold
    reproduces the decisions it was chosen for.
    """
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise HeartlabError(f"a threshold needs the logits of a binary model, shape (n, 2); got {tuple(logits.shape)}")
    return torch.softmax(logits.float(), dim=-1)[:, ABNORMAL]


def _binary_inputs(probabilities: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = torch.as_tensor(probabilities).float().reshape(-1)
    target = torch.as_tensor(target).long().reshape(-1)
    if probabilities.shape != target.shape:
        raise ValueError(f"probabilities {tuple(probabilities.shape)} and target {tuple(target.shape)} differ in length")
    if probabilities.numel() == 0:
        raise HeartlabError("no beats to choose a threshold on")
    if not torch.isfinite(probabilities).all():
        raise HeartlabError("the probabilities hold NaN or infinite values")
    if not ((target == 0) | (target == 1)).all():
        raise HeartlabError("a binary target holds labels other than 0 (normal) and 1 (abnormal)")
    return probabilities, target


def beats_needed(positives: int, target_recall: float) -> int:
    """The fewest abnormal beats ``k`` out of ``positives`` with ``k / positives >= target_recall``.

    Computed with the same float division a recall is measured with, so that ``ceil`` rounding (0.99 x 100
    is 99.00000000000001 in floating point) never asks for one beat too many.
    """
    k = min(max(math.ceil(target_recall * positives), 1), positives)
    while k > 1 and (k - 1) / positives >= target_recall:
        k -= 1
    while k < positives and k / positives < target_recall:
        k += 1
    return k


def choose_threshold(probabilities: torch.Tensor, target: torch.Tensor, target_recall: float = 0.99) -> float:
    """The highest threshold on P(abnormal) whose recall of the abnormal class on these beats is at least
    ``target_recall`` (decision: abnormal iff ``p >= threshold``).

    Exact, from the sorted scores (no grid): with ``P`` abnormal beats and ``k`` the fewest of them that
    reach the target (:func:`beats_needed`), the threshold is the ``k``-th highest P(abnormal) among the
    abnormal beats. Any higher threshold lets fewer than ``k`` abnormal beats through; this one keeps as
    few false alarms as that recall allows. Only the abnormal beats' scores decide it.

    Ties: every beat whose score equals the threshold is called abnormal, so when abnormal beats tie at
    the ``k``-th score the recall can exceed the target (no threshold separates tied scores), and normal
    beats tied with it are false alarms.

    Args:
        probabilities: P(abnormal) of each beat, ``(n,)`` (:func:`abnormal_probability`).
        target: labels ``(n,)``: 0 normal, 1 abnormal.
        target_recall: recall of the abnormal class to reach, in (0, 1].

    Returns:
        The threshold, a float equal to one of ``probabilities``.

    Raises:
        HeartlabError: ``target_recall`` out of range, no beat, no abnormal beat (recall is undefined),
            labels other than 0 and 1, or non-finite probabilities.
    """
    checks.number("operating_point.target_recall", target_recall, 0.0, 1.0, low_open=True)
    probabilities, target = _binary_inputs(probabilities, target)
    scores = probabilities[target == ABNORMAL]
    if scores.numel() == 0:
        raise HeartlabError(
            f"no abnormal beat among the {target.numel()} beats: the recall of the abnormal class is undefined, "
            "so no threshold can be chosen"
        )
    k = beats_needed(scores.numel(), target_recall)
    return float(torch.sort(scores, descending=True).values[k - 1])


def _binary_counts(decision: torch.Tensor, target: torch.Tensor) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` of the abnormal class."""
    positive = target == ABNORMAL
    tp = int((decision & positive).sum())
    fp = int((decision & ~positive).sum())
    fn = int((~decision & positive).sum())
    return tp, fp, int(target.numel()) - tp - fp - fn, fn


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def threshold_metrics(probabilities: torch.Tensor, target: torch.Tensor, threshold: float, split: str) -> dict[str, float]:
    """The abnormal class at ``threshold`` and at 0.5, and the threshold-free PR-AUC and ROC-AUC.

    Returns:
        ``<split>/threshold``; ``<split>/op/recall``, ``<split>/op/precision``, ``<split>/op/accuracy``,
        ``<split>/op/specificity`` (recall of the normal class) with abnormal iff ``p >= threshold``;
        ``<split>/at05/recall``, ``<split>/at05/precision`` with abnormal iff ``p >= 0.5`` (argmax of the
        two logits, but for a beat whose two logits are equal); ``<split>/average_precision`` and
        ``<split>/auroc`` of P(abnormal) (torchmetrics; 0 when the beats hold only one class).
    """
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    probabilities, target = _binary_inputs(probabilities, target)
    out = {f"{split}/threshold": float(threshold)}
    tp, fp, tn, fn = _binary_counts(probabilities >= threshold, target)
    out[f"{split}/op/recall"] = _ratio(tp, tp + fn)
    out[f"{split}/op/precision"] = _ratio(tp, tp + fp)
    out[f"{split}/op/accuracy"] = _ratio(tp + tn, target.numel())
    out[f"{split}/op/specificity"] = _ratio(tn, tn + fp)
    tp, fp, _, fn = _binary_counts(probabilities >= 0.5, target)
    out[f"{split}/at05/recall"] = _ratio(tp, tp + fn)
    out[f"{split}/at05/precision"] = _ratio(tp, tp + fp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchmetrics warns when only one class is present
        out[f"{split}/average_precision"] = float(binary_average_precision(probabilities, target, validate_args=False))
        out[f"{split}/auroc"] = float(binary_auroc(probabilities, target, validate_args=False))
    return out


def pr_curve(probabilities: torch.Tensor, target: torch.Tensor, points: int = 200) -> dict[str, list[float]]:
    """The precision-recall curve of P(abnormal) as plain lists (``precision``, ``recall``, ``threshold``),
    thinned to at most ``points`` thresholds evenly spread over the curve's length, ends kept: small enough
    for a results file, enough to draw it."""
    from torchmetrics.functional.classification import binary_precision_recall_curve

    probabilities, target = _binary_inputs(probabilities, target)
    precision, recall, thresholds = binary_precision_recall_curve(probabilities, target, validate_args=False)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0, precision 1) has no threshold
    keep = torch.linspace(0, thresholds.numel() - 1, min(points, thresholds.numel())).round().long().unique()
    return {"precision": precision[keep].tolist(), "recall": recall[keep].tolist(), "threshold": thresholds[keep].tolist()}
