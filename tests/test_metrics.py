"""heartlab.metrics: hand-computed values, names, confusion-matrix orientation, dataset-level evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from heartlab import metrics
from heartlab.data import BEAT_LENGTH, Split
from heartlab.evaluation import evaluate
from heartlab.losses import WeightedCrossEntropy

CLASSES3 = ("a", "b", "c")


def one_hot_logits(preds: list[int], num_classes: int) -> torch.Tensor:
    return 5.0 * nn.functional.one_hot(torch.tensor(preds), num_classes).float()


# Confusion matrix (rows true, columns predicted):
#   true a: [3, 1, 0]    4 beats
#   true b: [0, 2, 1]    3 beats
#   true c: [2, 0, 1]    3 beats
TARGET = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 0, 1, 1, 1, 2, 0, 0, 2]


def test_compute_metrics_hand_computed():
    out = metrics.compute_metrics(one_hot_logits(PREDS, 3), torch.tensor(TARGET), CLASSES3, "val")
    recall = [3 / 4, 2 / 3, 1 / 3]
    precision = [3 / 5, 2 / 3, 1 / 2]  # column sums 5, 3, 2
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert out["val/recall/a"] == pytest.approx(recall[0])
    assert out["val/recall/b"] == pytest.approx(recall[1])
    assert out["val/recall/c"] == pytest.approx(recall[2])
    assert out["val/recall_macro"] == pytest.approx(sum(recall) / 3)  # 0.5833
    assert out["val/precision_macro"] == pytest.approx(sum(precision) / 3)  # 0.5889
    assert out["val/f1_macro"] == pytest.approx(sum(f1) / 3)  # (2/3 + 2/3 + 0.4) / 3
    f2 = [5 * p * r / (4 * p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    assert out["val/f2_macro"] == pytest.approx(sum(f2) / 3)
    assert out["val/accuracy"] == pytest.approx(0.6)
    assert "val/auroc" not in out
    assert "val/loss" not in out  # no loss given
    assert all(isinstance(v, float) for v in out.values())


def test_confusion_matrix_rows_are_true_classes():
    matrix = metrics.confusion_matrix(one_hot_logits(PREDS, 3), torch.tensor(TARGET), 3)
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 1], [2, 0, 1]]
    assert matrix.sum(dim=1).tolist() == [4, 3, 3]  # row sums = beats per true class


def test_binary_auroc_hand_computed():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 (pos, neg) pairs are ordered -> 0.75
    probability = torch.tensor([0.1, 0.4, 0.35, 0.8])
    logits = torch.stack([torch.zeros(4), torch.log(probability / (1 - probability))], dim=1)
    target = torch.tensor([0, 0, 1, 1])
    out = metrics.compute_metrics(logits, target, ("normal", "abnormal"), "test", loss=0.5)
    assert out["test/auroc"] == pytest.approx(0.75)
    assert out["test/loss"] == 0.5
    # predictions (p > 0.5): [0, 0, 0, 1]
    assert out["test/recall/normal"] == pytest.approx(1.0)
    assert out["test/recall/abnormal"] == pytest.approx(0.5)
    assert out["test/accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("classes", [("normal", "abnormal"), ("N", "S", "V", "F", "Q")])
@pytest.mark.parametrize("split", ["val", "test"])
def test_metric_names_match_compute_metrics(classes, split):
    torch.manual_seed(0)
    logits = torch.randn(20, len(classes))
    target = torch.arange(20) % len(classes)
    out = metrics.compute_metrics(logits, target, classes, split, loss=1.25)
    names = metrics.metric_names(classes, split)
    # a validation epoch adds its operating point's values (heartlab.train.validate): binary, the threshold's;
    # more classes, every value again at the epoch's logit adjustment, and the strength
    if split == "test":
        epoch_only = set()
    elif len(classes) == 2:
        epoch_only = {f"{split}/{name}" for name in metrics.THRESHOLD_METRICS}
    else:
        epoch_only = {f"val/op/{n.removeprefix('val/')}" for n in out if n != "val/loss"} | {"val/op/logit_adjustment"}
    assert epoch_only <= set(names) and len(epoch_only) in (0, 8, len(out))
    names = [name for name in names if name not in epoch_only]
    assert list(out) == names
    assert (f"{split}/auroc" in names) == (len(classes) == 2)
    assert set(metrics.compute_metrics(logits, target, classes, split)) == set(names) - {f"{split}/loss"}


@pytest.mark.parametrize(
    "metric, mode",
    [
        ("val/recall_macro", "max"),
        ("val/recall/N", "max"),
        ("val/f1_macro", "max"),
        ("val/f2_macro", "max"),
        ("val/auroc", "max"),
        ("val/accuracy", "max"),
        ("val/precision_macro", "max"),
        ("val/loss", "min"),
        ("train/loss", "min"),
    ],
)
def test_default_mode(metric, mode):
    assert metrics.default_mode(metric) == mode


def test_absent_class_counts_in_macro_recall_only_if_predicted():
    """The documented rule: a class absent from ``target`` counts (as recall 0) only if it is predicted,
    as in precision_macro and f1_macro."""
    target = torch.tensor([0, 0, 1, 1])
    perfect = metrics.compute_metrics(one_hot_logits([0, 0, 1, 1], 3), target, CLASSES3, "val")
    assert perfect["val/precision_macro"] == pytest.approx(1.0)
    assert perfect["val/f1_macro"] == pytest.approx(1.0)
    assert perfect["val/recall_macro"] == pytest.approx(1.0)  # class c: absent and never predicted
    predicted = metrics.compute_metrics(one_hot_logits([0, 0, 1, 2], 3), target, CLASSES3, "val")
    assert predicted["val/recall_macro"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


# ---------------------------------------------------------------- dataset-level, not batch means

WHOLE_TARGET = [0, 0, 0, 1, 0, 1]
WHOLE_PREDS = [0, 0, 0, 0, 1, 1]


def test_dataset_level_recall_differs_from_batch_mean():
    logits = one_hot_logits(WHOLE_PREDS, 2)
    target = torch.tensor(WHOLE_TARGET)
    classes = ("normal", "abnormal")
    batches = [(slice(0, 4)), (slice(4, 6))]
    per_batch = [metrics.compute_metrics(logits[s], target[s], classes, "val")["val/recall_macro"] for s in batches]
    batch_mean = sum(per_batch) / len(per_batch)  # (0.5 + 0.5) / 2
    whole = (3 / 4 + 1 / 2) / 2  # 0.625 over the whole split
    assert batch_mean == pytest.approx(0.5)
    assert not math.isclose(batch_mean, whole)
    assert metrics.compute_metrics(logits, target, classes, "val")["val/recall_macro"] == pytest.approx(whole)


class Replay(nn.Module):
    """A 'model' whose logits are the first two samples of each beat."""

    input_view = "1d"

    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :2]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_evaluate_is_dataset_level_for_any_batch_size(batch_size):
    x = torch.zeros(6, BEAT_LENGTH)
    x[:, :2] = one_hot_logits(WHOLE_PREDS, 2)
    split = Split(x, torch.tensor(WHOLE_TARGET))
    loss_fn = WeightedCrossEntropy([4, 2])
    out, logits = evaluate(Replay(), loss_fn, split, ("normal", "abnormal"), "val", batch_size, bf16=False)
    assert torch.equal(logits, x[:, :2])
    assert out["val/recall_macro"] == pytest.approx(0.625)
    assert out["val/accuracy"] == pytest.approx(4 / 6)
    expected_loss = nn.functional.cross_entropy(x[:, :2], split.y)
    assert out["val/loss"] == pytest.approx(float(expected_loss), rel=1e-6)
