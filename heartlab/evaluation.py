"""A model run over a split: its inputs, its logits and metrics, and a run's evaluation of the test split.

:func:`model_inputs` gives the arguments of a model for some beats (the beats in the model's view, and their
R-R intervals when it uses them), for training batches and evaluation alike; :func:`predict` the logits of
a whole split under ``torch.inference_mode``, in large batches; :func:`evaluate` its metrics and loss; and
:func:`evaluate_test_split` what a run writes to ``test_metrics.json``. Used by :func:`heartlab.train.fit`,
by re-evaluation from ``best.pt`` (:mod:`heartlab.runs`), by ``heartlab predict`` and by the benchmarks.
"""

from __future__ import annotations

import torch
from torch import nn

from heartlab import metrics
from heartlab.augment import Augment
from heartlab.data import Split, Splits, as_view
from heartlab.errors import HeartlabError
from heartlab.operating_point import OperatingPoint, decision_metrics
from heartlab.thresholds import abnormal_probability, pr_curve


def model_inputs(
    model: nn.Module, split: Split, rows: torch.Tensor | slice,
    augment: Augment | None = None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """The arguments of ``model`` for the beats ``rows`` of ``split``: the beats in the model's view
    (augmented by ``augment`` with ``generator`` when given: training batches only), and their R-R
    intervals when the model uses them (``model.uses_rr``)."""
    x = split.x[rows]
    if augment is not None and augment.active:
        x = augment(x, generator)
    x = as_view(x, model.input_view)
    return (x, split.rr[rows]) if getattr(model, "uses_rr", False) else (x,)


def check_inputs(model: nn.Module, data: Splits) -> None:
    """A model built to use R-R intervals needs them in every split (before anything is written)."""
    if getattr(model, "uses_rr", False) and any(s.rr is None for s in (data.train, data.valid, data.test)):
        raise HeartlabError(
            f"{type(model).__name__}.rr_features = True needs the R-R interval columns (rr_pre, rr_post, rr_local, rr_average) "
            "in the training and test files; rebuild them with `heartlab data mitbih`, or set rr_features = False"
        )


def predict(model: nn.Module, split: Split, batch_size: int, bf16: bool) -> torch.Tensor:
    """Logits ``(n, C)`` of the model on every beat of ``split``, in eval mode, batch by batch."""
    model.eval()
    chunks = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(split), batch_size):
            chunks.append(model(*model_inputs(model, split, slice(start, start + batch_size))).float())
    return torch.cat(chunks)


def evaluate(
    model: nn.Module, loss_fn: nn.Module, split: Split, classes: tuple[str, ...], name: str, batch_size: int, bf16: bool
) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of ``model`` over the whole ``split`` (loss included), and its logits."""
    logits = predict(model, split, batch_size, bf16)
    with torch.inference_mode():
        loss = float(loss_fn(logits, split.y))
    return metrics.compute_metrics(logits, split.y, classes, name, loss=loss), logits


def evaluate_test_split(
    net: nn.Module, loss_fn: nn.Module, data: Splits, batch_size: int, bf16: bool, point: OperatingPoint | None = None
) -> dict:
    """Test metrics plus the confusion matrix (rows: true class, columns: predicted); when the test file
    names each beat's record, 95% intervals of every per-class Se and +P from a bootstrap over its records
    (``ci95``, see :func:`heartlab.metrics.record_bootstrap`).

    ``test/...`` are :func:`heartlab.operating_point.decision_metrics`: argmax's values, and those of the
    operating point ``point`` (stored as ``operating_point``) when it is not argmax, whose confusion counts
    are ``confusion_matrix_op``; a binary dataset adds its precision-recall curve (``pr_curve``)."""
    logits = predict(net, data.test, batch_size, bf16)
    point = point or OperatingPoint()
    with torch.inference_mode():
        loss = float(loss_fn(logits, data.test.y))
    result = {"test/loss": loss, **decision_metrics(logits, data.test.y, data.classes, "test", point)}
    matrix = metrics.confusion_matrix(logits, data.test.y, len(data.classes))
    result.update({"classes": list(data.classes), "confusion_matrix": matrix.tolist(), "operating_point": point.to_dict()})
    if point.kind != "argmax":
        result["confusion_matrix_op"] = metrics.counts_matrix(point.apply(logits), data.test.y, len(data.classes)).tolist()
    if len(data.classes) == 2:
        result["pr_curve"] = pr_curve(abnormal_probability(logits), data.test.y)
    if data.test.record is not None and len(data.test.records) > 1:
        preds = logits.argmax(dim=-1)
        result["ci95"] = metrics.record_bootstrap(preds, data.test.y, data.test.record, data.classes, "test")
        result["ci95_method"] = (
            f"percentile bootstrap over the {len(data.test.records)} test records, "
            f"{metrics.BOOTSTRAP_RESAMPLES} resamples, seed 0"
        )
    return result


def format_metrics(values: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
