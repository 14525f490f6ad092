"""Classification metrics over a whole split (never averaged over batches), named ``<split>/<metric>``.

Recall comes first: in a screen a missed sick beat is the costly error, so ``recall_macro`` (the mean of
per-class recalls, i.e. balanced accuracy) is the default selection metric.
"""

from __future__ import annotations

import torch

# torchmetrics is imported where metrics are computed, not here: importing it takes ~2.5 s (it pulls in
# scipy.signal), and the metric names are all a study's driver needs before Ray starts.

# Metrics where a larger value is better; everything else named here (the losses) is minimised.
HIGHER_IS_BETTER = ("recall_macro", "precision_macro", "f1_macro", "accuracy", "auroc", "recall/")


def metric_names(classes: tuple[str, ...], split: str = "val") -> list[str]:
    """The names :func:`compute_metrics` returns for ``split`` on a dataset with these classes."""
    names = [f"{split}/loss", f"{split}/recall_macro"]
    names += [f"{split}/recall/{c}" for c in classes]
    names += [f"{split}/precision_macro", f"{split}/f1_macro", f"{split}/accuracy"]
    if len(classes) == 2:
        names.append(f"{split}/auroc")
    return names


def default_mode(metric: str) -> str:
    """``'max'`` for metrics where larger is better, ``'min'`` for losses."""
    return "max" if any(key in metric for key in HIGHER_IS_BETTER) else "min"


@torch.no_grad()
def compute_metrics(
    logits: torch.Tensor, target: torch.Tensor, classes: tuple[str, ...], split: str, loss: float | None = None
) -> dict[str, float]:
    """Dataset-level metrics from the logits ``(n, C)`` of every beat of a split and their labels ``(n,)``.

    Macro averages weigh every class equally; a class that is neither in ``target`` nor predicted is left
    out of them (a class absent from ``target`` but predicted counts with recall 0). ``auroc`` is reported
    for binary datasets, from the softmax probability of class 1.
    """
    from torchmetrics.functional.classification import (
        binary_auroc,
        multiclass_accuracy,
        multiclass_f1_score,
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
    out[f"{split}/accuracy"] = float(multiclass_accuracy(preds, target, average="micro", **args))
    if num_classes == 2:
        probability = torch.softmax(logits, dim=-1)[:, 1]
        out[f"{split}/auroc"] = float(binary_auroc(probability, target, validate_args=False))
    return out


def confusion_matrix(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(logits.argmax(dim=-1), target, num_classes=num_classes, validate_args=False)
