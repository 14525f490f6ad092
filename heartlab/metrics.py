"""Classification metrics over a whole split (never averaged over batches), named ``<split>/<metric>``.

Recall comes first: in a screen a missed sick beat is the costly error, so ``recall_macro`` (the mean of
per-class recalls, i.e. balanced accuracy) is the default selection metric.

``f2_macro`` is the macro average of the per-class F-beta with beta = 2: recall first, as the screen
wants, without ignoring false alarms (a class called on many beats of other classes gets a low F2 even at
full recall); a selection metric for when ``recall_macro`` rewards flagging too much. ``fbeta_macro`` is
the same with beta a binding (``selection.beta``, default 2).

``recall_macro_floor`` is macro recall under an accuracy floor (``selection.accuracy_floor``, default
0.98): ``recall_macro`` when ``accuracy`` reaches the floor, ``recall_macro - 1`` below it, so every
model that keeps the floor ranks above every model that floods the normal class with false alarms, and
models on either side still rank by recall (an early-stopping scheduler keeps a useful signal).

On multi-class datasets (normal class first) ``any_abnormal/recall`` and ``any_abnormal/precision`` take
every class but the first as one "abnormal" class: an S beat called V was still flagged for a look.

Per class, the cardiology literature's names map onto ours: sensitivity Se = ``recall/<class>``, positive
predictive value +P = ``precision/<class>``, false-positive rate FPR = ``fpr/<class>`` (beats of other
classes called ``<class>``, over all beats of other classes). On datasets with V and F classes, the
ANSI/AAMI EC57 convention for ventricular beats is reported beside the plain numbers: a fusion (F) beat
classified as V is not counted as a false V (``ec57/precision/V``, ``ec57/fpr/V``).
"""

from __future__ import annotations

from dataclasses import dataclass

import gin
import numpy as np
import torch

from heartlab import checks

# torchmetrics is imported where metrics are computed, not here: importing it takes ~2.5 s (it pulls in
# scipy.signal), and the metric names are all a study's driver needs before Ray starts.

# Metrics where a larger value is better; everything else named here (the losses) is minimised.
HIGHER_IS_BETTER = (
    "recall_macro", "precision_macro", "f1_macro", "f2_macro", "fbeta_macro", "accuracy", "auroc", "recall/",
    "precision/", "average_precision", "specificity", "op/", "at05/", "any_abnormal/",
)
F2_BETA = 2.0  # f2_macro: recall weighs beta^2 = 4 times as much as precision
BOOTSTRAP_RESAMPLES = 1000  # resamples of the records behind a confidence interval
# what a binary validation epoch adds (heartlab.thresholds.threshold_metrics, at the threshold that
# reaches the target recall on that epoch's validation beats)
THRESHOLD_METRICS = (
    "threshold", "op/recall", "op/precision", "op/accuracy", "op/specificity", "at05/recall", "at05/precision",
    "average_precision",
)


@dataclass(frozen=True)
class Selection:
    """The settings of the selection metrics; see :func:`selection`."""

    beta: float = F2_BETA
    accuracy_floor: float = 0.98


@gin.configurable
def selection(beta: float = F2_BETA, accuracy_floor: float = 0.98) -> Selection:
    """Settings of the "recall first" selection metrics (range-checked).

    Bindings (``selection.<name>``):

    Args:
        beta: the beta (> 0) of ``fbeta_macro``: recall weighs beta^2 times as much as precision.
        accuracy_floor: the accuracy (0..1) ``recall_macro_floor`` requires (see the module docstring).
    """
    checks.number("selection.beta", beta, 0.0, 100.0, low_open=True)
    checks.number("selection.accuracy_floor", accuracy_floor, 0.0, 1.0)
    return Selection(float(beta), float(accuracy_floor))


def metric_names(classes: tuple[str, ...], split: str = "val") -> list[str]:
    """The names :func:`compute_metrics` returns for ``split`` on a dataset with these classes; for the
    ``val`` split, also the per-epoch operating point's values: binary, :data:`THRESHOLD_METRICS`; more
    classes, every value again under ``val/op/`` at the epoch's logit adjustment (with the strength,
    ``val/op/logit_adjustment``), reported when ``operating_point.logit_adjustment`` is on."""
    names = [f"{split}/loss", f"{split}/recall_macro"]
    names += [f"{split}/recall/{c}" for c in classes]
    names += [f"{split}/precision_macro", f"{split}/f1_macro", f"{split}/f2_macro", f"{split}/fbeta_macro"]
    names += [f"{split}/recall_macro_floor", f"{split}/accuracy"]
    names += [f"{split}/precision/{c}" for c in classes]
    names += [f"{split}/fpr/{c}" for c in classes]
    if has_ec57(classes):
        names += [f"{split}/ec57/precision/V", f"{split}/ec57/fpr/V"]
    if len(classes) == 2:
        names.append(f"{split}/auroc")
        if split == "val":
            names += [f"{split}/{name}" for name in THRESHOLD_METRICS]
    else:
        names += [f"{split}/any_abnormal/recall", f"{split}/any_abnormal/precision"]
        if split == "val":  # the epoch's own logit adjustment (operating_point.logit_adjustment = True)
            names += [f"{split}/op/{name.removeprefix(split + '/')}" for name in names if name != f"{split}/loss"]
            names.append(f"{split}/op/logit_adjustment")
    return names


def has_ec57(classes: tuple[str, ...]) -> bool:
    """Whether the EC57 ventricular numbers apply: the dataset has a V and an F class."""
    return "V" in classes and "F" in classes


def default_mode(metric: str) -> str:
    """``'max'`` for metrics where larger is better, ``'min'`` for losses."""
    return "max" if any(key in metric for key in HIGHER_IS_BETTER) else "min"


@torch.no_grad()
def compute_metrics(
    logits: torch.Tensor,
    target: torch.Tensor,
    classes: tuple[str, ...],
    split: str,
    loss: float | None = None,
    settings: Selection | None = None,
) -> dict[str, float]:
    """Dataset-level metrics from the logits ``(n, C)`` of every beat of a split and their labels ``(n,)``.

    Macro averages weigh every class equally; a class that is neither in ``target`` nor predicted is left
    out of them (a class absent from ``target`` but predicted counts with recall 0). ``auroc`` is reported
    for binary datasets, from the softmax probability of class 1. ``settings`` ``None`` reads the gin-bound
    :func:`selection`.
    """
    from torchmetrics.functional.classification import (
        binary_auroc,
        multiclass_accuracy,
        multiclass_f1_score,
        multiclass_fbeta_score,
        multiclass_precision,
        multiclass_recall,
    )

    num_classes = len(classes)
    logits = logits.float()
    preds = logits.argmax(dim=-1)
    args = dict(num_classes=num_classes, validate_args=False)
    per_class_recall = multiclass_recall(preds, target, average="none", **args)
    out: dict[str, float] = {}
    if loss is not None:
        out[f"{split}/loss"] = float(loss)
    out[f"{split}/recall_macro"] = float(multiclass_recall(preds, target, average="macro", **args))
    for name, value in zip(classes, per_class_recall.tolist()):
        out[f"{split}/recall/{name}"] = value
    out[f"{split}/precision_macro"] = float(multiclass_precision(preds, target, average="macro", **args))
    out[f"{split}/f1_macro"] = float(multiclass_f1_score(preds, target, average="macro", **args))
    out[f"{split}/f2_macro"] = float(multiclass_fbeta_score(preds, target, beta=F2_BETA, average="macro", **args))
    settings = settings or selection()
    out[f"{split}/fbeta_macro"] = float(multiclass_fbeta_score(preds, target, beta=settings.beta, average="macro", **args))
    accuracy = float(multiclass_accuracy(preds, target, average="micro", **args))
    recall_macro = out[f"{split}/recall_macro"]
    out[f"{split}/recall_macro_floor"] = recall_macro if accuracy >= settings.accuracy_floor else recall_macro - 1.0
    out[f"{split}/accuracy"] = accuracy
    matrix = counts_matrix(preds, target, num_classes)
    out.update(per_class_rates(matrix, classes, split))
    if num_classes > 2:
        out.update(any_abnormal_rates(matrix, split))
    if num_classes == 2:
        probability = torch.softmax(logits, dim=-1)[:, 1]
        out[f"{split}/auroc"] = float(binary_auroc(probability, target, validate_args=False))
    return out


def counts_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """Confusion counts ``(C, C)`` as int64 numpy (row = true class, column = predicted class)."""
    flat = target.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def any_abnormal_rates(matrix: np.ndarray, split: str) -> dict[str, float]:
    """Recall and precision of every class but the first (normal) taken as one, from confusion counts:
    (true != N and predicted != N) over (true != N), and over (predicted != N); 0 where undefined."""
    flagged = float(matrix[1:, 1:].sum())
    return {
        f"{split}/any_abnormal/recall": float(_ratio(flagged, matrix[1:, :].sum())),
        f"{split}/any_abnormal/precision": float(_ratio(flagged, matrix[:, 1:].sum())),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (torchmetrics' convention)."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def rates(matrix: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-class recall (Se), precision (+P) and FPR from confusion counts ``(..., C, C)``, plus the EC57
    ventricular precision and FPR where the classes have V and F. Leading axes (e.g. bootstrap resamples)
    are kept: each value has shape ``(..., C)`` (EC57: ``(...)``)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(matrix, axis1=-2, axis2=-1)
    true_count, predicted = matrix.sum(axis=-1), matrix.sum(axis=-2)
    total = true_count.sum(axis=-1, keepdims=True)
    false_pos = predicted - tp
    out = {"recall": _ratio(tp, true_count), "precision": _ratio(tp, predicted), "fpr": _ratio(false_pos, total - true_count)}
    if has_ec57(classes):
        v, f = classes.index("V"), classes.index("F")
        f_as_v = matrix[..., f, v]
        out["ec57/precision"] = _ratio(tp[..., v], predicted[..., v] - f_as_v)
        out["ec57/fpr"] = _ratio(false_pos[..., v] - f_as_v, total[..., 0] - true_count[..., v] - f_as_v)
    return out


def per_class_rates(matrix: np.ndarray, classes: tuple[str, ...], split: str) -> dict[str, float]:
    """``<split>/precision/<class>``, ``<split>/fpr/<class>`` and the EC57 V numbers from confusion counts."""
    values = rates(matrix, classes)
    out = {f"{split}/{kind}/{c}": float(values[kind][i]) for kind in ("precision", "fpr") for i, c in enumerate(classes)}
    if has_ec57(classes):
        out[f"{split}/ec57/precision/V"] = float(values["ec57/precision"])
        out[f"{split}/ec57/fpr/V"] = float(values["ec57/fpr"])
    return out


def record_bootstrap(
    preds: torch.Tensor,
    target: torch.Tensor,
    records: np.ndarray,
    classes: tuple[str, ...],
    split: str,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95% intervals of every per-class recall (Se) and precision (+P), and of the EC57 V precision, from a
    bootstrap over records: each resample draws as many records as there are, with replacement, and pools
    their beats (patients, not beats, are the independent units). Percentile intervals (2.5 %, 97.5 %);
    resamples where a value is undefined (no beat of the class drawn, or none predicted) are left out of it,
    and a value no resample defines has no interval.

    Returns:
        ``{'<split>/recall/<class>': [low, high], '<split>/precision/<class>': [low, high], ...}``.
    """
    num_classes = len(classes)
    names, per_beat = np.unique(records, return_inverse=True)
    flat = (per_beat * num_classes + target.numpy()) * num_classes + preds.numpy()
    per_record = np.bincount(flat, minlength=names.size * num_classes**2).reshape(names.size, num_classes**2)
    draws = np.random.default_rng(seed).integers(0, names.size, size=(resamples, names.size))
    offsets = np.arange(resamples)[:, None] * names.size  # one bincount for all resamples
    weights = np.bincount((draws + offsets).ravel(), minlength=resamples * names.size).reshape(resamples, names.size)
    pooled = (weights @ per_record).reshape(resamples, num_classes, num_classes).astype(np.float64)
    true_count, predicted = pooled.sum(axis=2), pooled.sum(axis=1)
    values = rates(pooled, classes)
    defined = {"recall": true_count > 0, "precision": predicted > 0}
    out: dict[str, list[float]] = {}
    for kind in ("recall", "precision"):
        for i, c in enumerate(classes):
            _add_interval(out, f"{split}/{kind}/{c}", values[kind][:, i][defined[kind][:, i]])
    if has_ec57(classes):
        v = classes.index("V")
        ec57_defined = predicted[:, v] - pooled[:, classes.index("F"), v] > 0
        _add_interval(out, f"{split}/ec57/precision/V", values["ec57/precision"][ec57_defined])
    return out


def _add_interval(out: dict[str, list[float]], name: str, values: np.ndarray) -> None:
    """The 2.5 % and 97.5 % percentiles of ``values`` under ``name``; nothing when no resample defines it
    (e.g. precision of a class the model never predicts)."""
    if values.size:
        low, high = np.percentile(values, [2.5, 97.5])
        out[name] = [float(low), float(high)]


AAMI_ROWS = ("recall", "precision", "fpr")  # Se, +P, FPR


def aami_table(values: dict, classes: tuple[str, ...], split: str = "test", ci: dict | None = None) -> str:
    """The per-class table of the cardiology literature (Se, +P, FPR in %, one row per class, EC57 V row
    where it applies), from a metrics dict such as ``test_metrics.json``; ``ci`` adds 95% intervals."""
    def cell(name: str) -> str:
        text = f"{100 * values[name]:5.1f}" if name in values else "    -"
        if ci and name in ci:
            low, high = ci[name]
            text += f" [{100 * low:5.1f}, {100 * high:5.1f}]"
        elif ci:
            text += " " * 15
        return text

    width = 20 if ci else 5
    lines = [f"{'class':<20}" + "  ".join(f"{h:>{width}}" for h in ("Se %", "+P %", "FPR %"))]
    for c in classes:
        lines.append(f"{c:<20}" + "  ".join(cell(f"{split}/{kind}/{c}") for kind in AAMI_ROWS))
    if has_ec57(classes):
        lines.append(
            f"{'V (EC57: F as V ok)':<20}"
            + "  ".join(cell(f"{split}/{kind}/V") for kind in ("recall", "ec57/precision", "ec57/fpr"))
        )
    if f"{split}/accuracy" in values:
        lines.append(f"accuracy {100 * values[f'{split}/accuracy']:.2f} %")
    return "\n".join(lines)


def confusion_matrix(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)`` of the argmax predictions: row = true class, column = predicted class."""
    return torch.from_numpy(counts_matrix(logits.argmax(dim=-1), target, num_classes))
