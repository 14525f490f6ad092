"""The operating point: how a trained model's scores become decisions, chosen on the validation split.

A model ends in logits; ``argmax`` is one way to decide, not the only one. In a screen a missed sick beat
costs more than a false alarm, so the decision rule is chosen on validation for the recall it gives:

- **binary** datasets (classes ``('normal', 'abnormal')``, class 1 = abnormal): a ``threshold`` on
  P(abnormal) (the softmax probability of class 1); a beat is called abnormal iff ``p >= threshold``.
  :func:`heartlab.thresholds.choose_threshold` picks the highest threshold that still reaches a target
  recall of the abnormal class (``operating_point.target_recall``, 0.99 by default), so that no more false
  alarms are raised than that recall needs.
- **multi-class** datasets (normal class ``N`` first): ``logit_adjustment`` subtracts
  ``strength x log(prior)`` from the logits (Menon et al., "Long-tail learning via logit adjustment",
  ICLR 2021), which moves decisions toward the rare classes; :func:`choose_logit_adjustment` picks the
  strength on validation. Off unless ``operating_point.logit_adjustment = True``: models trained with a
  class-weighted loss are already pushed toward rare classes, and adjusting again can over-flag.
- ``argmax``: the plain decision, the default when nothing was chosen.

An :class:`OperatingPoint` is a small frozen value: ``to_dict()`` gives plain Python types (str, float,
list of int, None), which ``best.pt`` (``torch.load(..., weights_only=True)``) and ``test_metrics.json``
can both hold; ``from_dict()`` reads it back and ``apply(logits)`` decides.

Metric names follow ``<split>/<metric>`` (:mod:`heartlab.metrics`); a threshold adds those of
:func:`heartlab.thresholds.threshold_metrics` (``<split>/threshold``, ``<split>/op/...``, ``<split>/at05/...``,
PR-AUC and ROC-AUC). Multi-class selection adds ``<split>/any_abnormal/recall``,
``<split>/any_abnormal/precision`` (:func:`any_abnormal_recall`) and ``<split>/logit_adjustment`` (the
strength). Undefined ratios are 0, torchmetrics' convention, as in :mod:`heartlab.metrics`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gin
import torch

from heartlab import checks, metrics
from heartlab.errors import HeartlabError
from heartlab.thresholds import abnormal_probability, choose_threshold, threshold_metrics

KINDS = ("argmax", "threshold", "logit_adjustment")
DEFAULT_TARGET_RECALL = 0.99  # operating_point.target_recall's default
# logit-adjustment strengths tried on validation: > 0 moves decisions toward the rare classes; < 0 toward
# the frequent ones, which undoes the push of class-balanced sampling or inverse class weights (-1 puts the
# full training prior back)
STRENGTHS = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
SELECTION_METRIC = "f2_macro"  # what picks the logit-adjustment strength (see choose_logit_adjustment)


# ---- multi-class: any abnormal beat, logit adjustment -----------------------------------------------


def any_abnormal_recall(preds: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Recall and precision of "abnormal" taken as one class: every class but the first (N).

    A beat of any abnormal class counts as found when it is called any abnormal class (an S beat called V
    was still flagged for a look), which is what a screen needs first.

    Returns:
        ``(recall, precision)``: (true != N and predicted != N) over (true != N), and over (predicted != N);
        0 where the denominator is 0 (:func:`heartlab.metrics.any_abnormal_rates`).
    """
    preds, target = torch.as_tensor(preds).reshape(-1).long(), torch.as_tensor(target).reshape(-1).long()
    num_classes = max(int(preds.max()) + 1 if preds.numel() else 0, int(target.max()) + 1 if target.numel() else 0, 2)
    values = metrics.any_abnormal_rates(metrics.counts_matrix(preds, target, num_classes), "")
    return values["/any_abnormal/recall"], values["/any_abnormal/precision"]


def _log_prior(class_counts: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64).reshape(-1)
    if counts.numel() != num_classes:
        raise HeartlabError(f"{counts.numel()} class counts for logits of {num_classes} classes")
    if not (torch.isfinite(counts) & (counts > 0)).all():
        raise HeartlabError(f"class counts must all be positive (the training split holds every class), got {counts.tolist()}")
    return torch.log(counts / counts.sum())


def logit_adjustment(logits: torch.Tensor, class_counts: Sequence[int] | torch.Tensor, strength: float) -> torch.Tensor:
    """``logits - strength * log(prior)``, the prior being the training split's class frequencies
    (``class_counts / sum``): post-hoc logit adjustment (Menon et al. 2021). Strength 0 returns the
    logits unchanged; larger strengths raise the rare classes' logits more than the frequent ones'.

    Returns float32 logits of the same shape.
    """
    logits = logits.float()
    if strength == 0:
        return logits.clone()
    shift = (strength * _log_prior(class_counts, logits.shape[-1])).float()
    return logits - shift


def selection_name(metric: str, classes: tuple[str, ...], split: str = "val") -> str:
    """``<split>/<metric>`` when it is a value :func:`choose_logit_adjustment` can select by on a dataset
    with these classes (any :func:`heartlab.metrics.compute_metrics` value but the loss, or
    ``any_abnormal/recall`` / ``any_abnormal/precision``); a ``HeartlabError`` naming the binding otherwise."""
    name = metric if isinstance(metric, str) and metric.startswith(f"{split}/") else f"{split}/{metric}"
    known = [n for n in metrics.metric_names(classes, split) if n != f"{split}/loss" and not n.startswith(f"{split}/op/")]
    if name not in known:
        raise HeartlabError(
            f"operating_point.selection_metric {metric!r} is not a metric of these classes; choose one of: "
            + ", ".join(n.removeprefix(f"{split}/") for n in known)
        )
    return name


def choose_logit_adjustment(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_counts: Sequence[int] | torch.Tensor,
    strengths: Sequence[float] = STRENGTHS,
    metric: str | Callable[[torch.Tensor, torch.Tensor], float] = SELECTION_METRIC,
    *,
    classes: tuple[str, ...] | None = None,
    split: str = "val",
) -> tuple[float, dict[str, float]]:
    """The logit-adjustment strength that does best on these (validation) beats, and its metrics.

    Args:
        logits: ``(n, C)`` of the validation beats.
        target: their labels ``(n,)``.
        class_counts: beats per class in the training split (the prior; never validation counts).
        strengths: the strengths tried (finite numbers; negative ones move decisions toward the frequent
            classes).
        metric: what picks the strength: the name of a :func:`heartlab.metrics.compute_metrics` value
            without the split (``'f2_macro'``, the default; ``'recall_macro'``; ``'recall/S'``; or
            ``'any_abnormal/recall'``), maximised (but an ``fpr/<class>``, minimised); or a callable
            ``metric(preds, target) -> float``, maximised.
            Why macro F2 by default: macro recall (balanced accuracy) is what the adjustment targets in
            theory, but it can keep rising while a rare class is called on ever more normal beats; F2
            still weighs recall four times as much as precision, and stops rewarding that flood.
        classes: class names for the metric names (default ``'0'``, ``'1'``, ...).
        split: the split name of the returned metrics.

    Returns:
        ``(strength, metrics)``: on a tie the strength nearest 0 (the smallest change); ``metrics`` are
        :func:`heartlab.metrics.compute_metrics` of the adjusted logits, ``<split>/any_abnormal/recall``
        and ``/precision``, and ``<split>/logit_adjustment`` (the strength).
    """
    logits = logits.float()
    target = torch.as_tensor(target).long()
    classes = classes or tuple(str(i) for i in range(logits.shape[-1]))
    if len(classes) != logits.shape[-1]:
        raise HeartlabError(f"{len(classes)} class names for logits of {logits.shape[-1]} classes")
    tried = sorted({float(s) for s in strengths}, key=lambda s: (abs(s), s))  # the smallest change first
    if not tried or not all(math.isfinite(s) for s in tried):
        raise HeartlabError(f"operating_point.strengths must be finite numbers (at least one), got {list(strengths)}")
    _log_prior(class_counts, logits.shape[-1])  # checked once, before the loop
    if not callable(metric):
        name = selection_name(metric, classes, split)
        sign = -1.0 if "/fpr/" in name else 1.0  # every other value here is better larger
    best: tuple[float, float, dict[str, float]] | None = None
    for strength in tried:
        adjusted = logit_adjustment(logits, class_counts, strength)
        preds = adjusted.argmax(dim=-1)
        values = metrics.compute_metrics(adjusted, target, classes, split)
        values[f"{split}/logit_adjustment"] = strength
        score = float(metric(preds, target)) if callable(metric) else sign * values[name]
        if best is None or score > best[0]:
            best = (score, strength, values)
    assert best is not None
    return best[1], best[2]


# ---- the stored operating point ---------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """How logits become classes.

    Attributes:
        kind: ``'argmax'``, ``'threshold'`` (binary: abnormal iff P(abnormal) >= ``value``) or
            ``'logit_adjustment'`` (argmax of ``logits - value * log(prior)``, the prior from
            ``class_counts``).
        value: the threshold (in [0, 1]) or the strength (any finite number); ``None`` for argmax.
        class_counts: the training split's beats per class, for logit adjustment only.
    """

    kind: str = "argmax"
    value: float | None = None
    class_counts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HeartlabError(f"operating point kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.class_counts is not None:
            counts = tuple(int(c) for c in self.class_counts)
            if any(c != v for c, v in zip(counts, self.class_counts)):
                raise HeartlabError(f"operating point class_counts must be whole numbers, got {list(self.class_counts)}")
            object.__setattr__(self, "class_counts", counts)
        if self.value is not None:
            number = isinstance(self.value, numbers.Real) and not isinstance(self.value, bool)
            if not number or not math.isfinite(float(self.value)):
                raise HeartlabError(f"operating point value must be a finite number, got {self.value!r}")
            object.__setattr__(self, "value", float(self.value))
        if self.kind == "argmax":
            if self.value is not None or self.class_counts is not None:
                raise HeartlabError("an argmax operating point takes no value and no class_counts")
        elif self.kind == "threshold":
            if self.value is None or not 0.0 <= self.value <= 1.0:
                raise HeartlabError(f"a threshold operating point needs a value in [0, 1], got {self.value!r}")
            if self.class_counts is not None:
                raise HeartlabError("a threshold operating point takes no class_counts")
        else:
            if self.value is None:
                raise HeartlabError("a logit_adjustment operating point needs a strength")
            if self.class_counts is None or len(self.class_counts) < 2 or min(self.class_counts) <= 0:
                raise HeartlabError(
                    "a logit_adjustment operating point needs the training split's class_counts (all positive), "
                    f"got {self.class_counts!r}"
                )

    @property
    def num_classes(self) -> int | None:
        """The number of classes this operating point is for (``None``: any)."""
        if self.kind == "threshold":
            return 2
        return None if self.class_counts is None else len(self.class_counts)

    def describe(self) -> str:
        if self.kind == "threshold":
            return f"abnormal iff P(abnormal) >= {self.value:.6g}"
        if self.kind == "logit_adjustment":
            return f"argmax of logits - {self.value:g} x log(prior of {list(self.class_counts)})"
        return "argmax"

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only: ``{'kind': str, 'value': float | None, 'class_counts': list[int] | None}``."""
        counts = None if self.class_counts is None else list(self.class_counts)
        return {"kind": self.kind, "value": self.value, "class_counts": counts}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OperatingPoint:
        """The operating point :meth:`to_dict` gave (a ``HeartlabError`` for anything else)."""
        if not isinstance(values, Mapping) or "kind" not in values or set(values) - {"kind", "value", "class_counts"}:
            raise HeartlabError(f"not an operating point: {values!r} (expected keys kind, value, class_counts)")
        return cls(values["kind"], values.get("value"), values.get("class_counts"))

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted class of each beat, int64 ``(n,)``, from the logits ``(n, C)``."""
        logits = logits.float()
        if self.num_classes is not None and logits.shape[-1] != self.num_classes:
            raise HeartlabError(
                f"the operating point ({self.describe()}) is for {self.num_classes} classes, the logits have {logits.shape[-1]}"
            )
        if self.kind == "threshold":
            return (abnormal_probability(logits) >= self.value).long()
        if self.kind == "logit_adjustment":
            return logit_adjustment(logits, self.class_counts, self.value).argmax(dim=-1)
        return logits.argmax(dim=-1)


def decision_metrics(
    logits: torch.Tensor, target: torch.Tensor, classes: tuple[str, ...], split: str, point: OperatingPoint | None = None
) -> dict[str, float]:
    """The metrics of a run's decisions, as ``test_metrics.json`` and ``heartlab predict`` report them.

    Always :func:`heartlab.metrics.compute_metrics` of argmax (``<split>/<metric>``). A threshold adds
    :func:`heartlab.thresholds.threshold_metrics` (``<split>/threshold``, ``<split>/op/recall``,
    ``<split>/op/precision``, ..., ``<split>/at05/...``, ``<split>/average_precision``); a logit adjustment
    adds every ``compute_metrics`` value of its decisions under ``<split>/op/`` (``<split>/op/recall/S``,
    ``<split>/op/any_abnormal/recall``, ...). No loss is computed.
    """
    target = torch.as_tensor(target).long()
    point = point or OperatingPoint()
    out = metrics.compute_metrics(logits, target, classes, split)
    if point.kind == "threshold":
        out.update(threshold_metrics(abnormal_probability(logits), target, point.value, split))
    elif point.kind == "logit_adjustment":
        # one-hot "logits" whose argmax is exactly the decision, so that every count-based value is of it
        decided = torch.nn.functional.one_hot(point.apply(logits), len(classes)).float()
        out.update(metrics.compute_metrics(decided, target, classes, f"{split}/op"))
    return out


# ---- the settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPointSettings:
    """What :func:`choose_operating_point` does; see :func:`operating_point` for each field."""

    target_recall: float | None = DEFAULT_TARGET_RECALL
    logit_adjustment: bool = False
    strengths: tuple[float, ...] = STRENGTHS
    selection_metric: str = SELECTION_METRIC

    def check(self, classes: tuple[str, ...]) -> OperatingPointSettings:
        """Check what only the dataset's classes can tell (the selection metric of a multi-class logit
        adjustment), before anything is trained or written; returns ``self``."""
        if len(classes) > 2 and self.logit_adjustment:
            selection_name(self.selection_metric, classes)
        return self


@gin.configurable
def operating_point(
    target_recall: float | None = DEFAULT_TARGET_RECALL,
    logit_adjustment: bool = False,
    strengths: Sequence[float] = STRENGTHS,
    selection_metric: str = SELECTION_METRIC,
) -> OperatingPointSettings:
    """How the operating point is chosen on the validation split, after training (range-checked).

    Bindings (``operating_point.<name>``):

    Args:
        target_recall: binary datasets: the recall of the abnormal class, in (0, 1], that the threshold on
            P(abnormal) must reach on validation; the highest such threshold is chosen
            (:func:`heartlab.thresholds.choose_threshold`). ``None`` keeps argmax.
        logit_adjustment: multi-class datasets: choose a logit-adjustment strength on validation
            (:func:`choose_logit_adjustment`); ``False`` (default) keeps argmax.
        strengths: the strengths tried when ``logit_adjustment`` is on; 0 (no change) should be one.
            Positive ones favour the rare classes (for a model trained without class balancing); negative
            ones favour the frequent ones (for a model trained with balanced sampling or inverse weights,
            whose decisions flag too many beats: -1 restores the training prior).
        selection_metric: the validation metric, without ``val/``, that picks the strength: ``'f2_macro'``
            (default: recall first without rewarding false alarms without end), ``'recall_macro'``,
            ``'recall/<class>'``, ``'any_abnormal/recall'``, ...

    Raises:
        HeartlabError: a value out of range, naming the binding.
    """
    if target_recall is not None:
        checks.number("operating_point.target_recall", target_recall, 0.0, 1.0, low_open=True)
        target_recall = float(target_recall)
    checks.boolean("operating_point.logit_adjustment", logit_adjustment)
    values = tuple(strengths) if isinstance(strengths, (list, tuple)) else ()
    if not values or not all(checks.is_number(s) and math.isfinite(s) for s in values):
        raise HeartlabError(f"operating_point.strengths must be a list of finite numbers (at least one), got {strengths!r}")
    if not isinstance(selection_metric, str) or not selection_metric:
        raise HeartlabError(f"operating_point.selection_metric must be a metric name such as 'f2_macro', got {selection_metric!r}")
    return OperatingPointSettings(target_recall, logit_adjustment, tuple(float(s) for s in values), selection_metric)


def choose_operating_point(
    logits: torch.Tensor,
    target: torch.Tensor,
    classes: tuple[str, ...],
    class_counts: Sequence[int] | torch.Tensor,
    settings: OperatingPointSettings | None = None,
    split: str = "val",
) -> tuple[OperatingPoint, dict[str, float]]:
    """The operating point for a run, chosen on its validation beats (``logits``, ``target``).

    Binary datasets get a threshold when ``settings.target_recall`` is set, multi-class datasets a logit
    adjustment when ``settings.logit_adjustment`` is on, anything else argmax.

    Args:
        class_counts: the training split's beats per class (the prior of a logit adjustment).
        settings: ``None`` reads the gin-bound :func:`operating_point`.

    Returns:
        ``(point, metrics)``: the metrics of the choice on this split
        (:func:`heartlab.thresholds.threshold_metrics`, or :func:`choose_logit_adjustment`'s), ``{}`` for argmax.
    """
    settings = settings or operating_point()
    target = torch.as_tensor(target).long()
    if len(classes) == 2 and settings.target_recall is not None:
        probabilities = abnormal_probability(logits)
        threshold = choose_threshold(probabilities, target, settings.target_recall)
        return OperatingPoint("threshold", threshold), threshold_metrics(probabilities, target, threshold, split)
    if len(classes) > 2 and settings.logit_adjustment:
        strength, values = choose_logit_adjustment(
            logits, target, class_counts, settings.strengths, settings.selection_metric, classes=classes, split=split
        )
        counts = [int(c) for c in torch.as_tensor(class_counts).tolist()]
        return OperatingPoint("logit_adjustment", strength, tuple(counts)), values
    return OperatingPoint(), {}
