"""The per-class numbers of the cardiology literature (Se, +P, FPR), the ANSI/AAMI EC57 ventricular
convention, the bootstrap over records and the per-class table, on hand-built confusion counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from heartlab import metrics
from heartlab.beat_context import RR_COLUMNS
from heartlab.data import BEAT_LENGTH, DATASETS, Split, Splits
from heartlab.evaluation import evaluate_test_split
from heartlab.losses import WeightedCrossEntropy

AAMI = ("N", "S", "V", "F")

# Confusion counts (rows true, columns predicted), 80 beats:
#          N   S   V   F
#   N    [50,  2,  3,  0]   55
#   S    [ 4,  6,  0,  0]   10
#   V    [ 1,  0,  8,  1]   10
#   F    [ 0,  0,  4,  1]    5
# column sums 55, 8, 15, 2
MATRIX = np.array([[50, 2, 3, 0], [4, 6, 0, 0], [1, 0, 8, 1], [0, 0, 4, 1]])


def beats_of(matrix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, preds) holding exactly the counts of ``matrix``."""
    target, preds = [], []
    for true, row in enumerate(matrix):
        for predicted, n in enumerate(row):
            target += [true] * int(n)
            preds += [predicted] * int(n)
    return torch.tensor(target), torch.tensor(preds)


def one_hot_logits(preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    return 5.0 * nn.functional.one_hot(preds, num_classes).float()


def test_counts_matrix_orientation():
    target, preds = beats_of(MATRIX)
    np.testing.assert_array_equal(metrics.counts_matrix(preds, target, 4), MATRIX)


def test_per_class_precision_and_fpr_by_hand():
    target, preds = beats_of(MATRIX)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "test")
    # +P = TP / predicted as the class
    assert out["test/precision/N"] == pytest.approx(50 / 55)
    assert out["test/precision/S"] == pytest.approx(6 / 8)
    assert out["test/precision/V"] == pytest.approx(8 / 15)
    assert out["test/precision/F"] == pytest.approx(1 / 2)
    # FPR = beats of other classes called the class / beats of other classes
    assert out["test/fpr/N"] == pytest.approx(5 / 25)
    assert out["test/fpr/S"] == pytest.approx(2 / 70)
    assert out["test/fpr/V"] == pytest.approx(7 / 70)
    assert out["test/fpr/F"] == pytest.approx(1 / 75)
    # Se = recall, unchanged
    assert out["test/recall/V"] == pytest.approx(8 / 10)
    assert out["test/recall/F"] == pytest.approx(1 / 5)


def test_ec57_does_not_count_fusion_called_v_as_false_v():
    target, preds = beats_of(MATRIX)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "test")
    # 4 of the 7 false V are F beats: EC57 leaves them out (of the false V and of the negatives)
    assert out["test/ec57/precision/V"] == pytest.approx(8 / 11)
    assert out["test/ec57/fpr/V"] == pytest.approx(3 / 66)
    assert out["test/ec57/precision/V"] > out["test/precision/V"]
    # without F beats called V the EC57 numbers are the plain ones
    clean = MATRIX.copy()
    clean[3] = [0, 0, 0, 5]
    target, preds = beats_of(clean)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "test")
    assert out["test/ec57/precision/V"] == pytest.approx(out["test/precision/V"]) == pytest.approx(8 / 11)
    assert out["test/ec57/fpr/V"] == pytest.approx(out["test/fpr/V"]) == pytest.approx(3 / 70)
    # but N called V still is a false V
    worse = MATRIX.copy()
    worse[0] = [40, 2, 13, 0]
    target, preds = beats_of(worse)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "test")
    assert out["test/ec57/precision/V"] == pytest.approx(8 / 21)


def test_class_never_predicted_has_precision_and_fpr_zero():
    matrix = np.array([[10, 0, 0, 0], [3, 0, 0, 0], [1, 0, 2, 0], [1, 0, 0, 1]])  # S never predicted
    target, preds = beats_of(matrix)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "val")
    assert out["val/precision/S"] == 0.0 and out["val/fpr/S"] == 0.0
    assert all(math.isfinite(v) for v in out.values())


def test_metric_names_match_compute_metrics():
    target, preds = beats_of(MATRIX)
    out = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "val", loss=0.5)
    names = set(metrics.metric_names(AAMI, "val"))
    assert set(out) == {n for n in names if not n.startswith("val/op/")}
    # the rest: what each epoch's logit adjustment reports (train.validate with operating_point.logit_adjustment)
    from heartlab.operating_point import choose_logit_adjustment

    _, adjusted = choose_logit_adjustment(one_hot_logits(preds, 4), target, [50, 5, 10, 2], classes=AAMI, split="val/op")
    assert set(adjusted) == {n for n in names if n.startswith("val/op/")}
    ptb = DATASETS["ptb"].classes
    out = metrics.compute_metrics(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 1, 0]), ptb, "test", loss=0.5)
    assert set(out) == set(metrics.metric_names(ptb, "test"))
    assert not any("ec57" in name for name in out)  # no V and F classes
    assert metrics.has_ec57(DATASETS["arrhythmia"].classes) and not metrics.has_ec57(ptb)


@pytest.mark.parametrize(
    "name, mode",
    [
        ("val/precision/S", "max"), ("val/ec57/precision/V", "max"), ("val/fpr/S", "min"), ("val/ec57/fpr/V", "min"),
        ("val/op/precision", "max"), ("val/average_precision", "max"), ("val/any_abnormal/recall", "max"),
        ("val/fbeta_macro", "max"), ("val/recall_macro_floor", "max"), ("val/op/specificity", "max"),
    ],
)
def test_monitor_mode_of_the_new_metrics(name, mode):
    assert metrics.default_mode(name) == mode


def test_rates_keep_leading_axes():
    stacked = np.stack([MATRIX, 2 * MATRIX, np.eye(4, dtype=np.int64)])
    values = metrics.rates(stacked, AAMI)
    assert values["precision"].shape == (3, 4) and values["ec57/precision"].shape == (3,)
    np.testing.assert_allclose(values["precision"][0], values["precision"][1])  # rates do not scale with counts
    np.testing.assert_allclose(values["precision"][0], [50 / 55, 6 / 8, 8 / 15, 1 / 2])
    np.testing.assert_allclose(values["fpr"][2], 0.0)
    np.testing.assert_allclose(values["recall"][2], 1.0)


# ------------------------------------------------------------------------------- record bootstrap


def records_case(seed: int = 0, n_records: int = 20) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Beats of ``n_records`` records of different sizes and accuracies, every class in most records."""
    rng = np.random.default_rng(seed)
    target, preds, records = [], [], []
    for r in range(n_records):
        accuracy = rng.uniform(0.5, 0.95)
        for c, n in enumerate((rng.integers(40, 80), rng.integers(2, 10), rng.integers(3, 12), rng.integers(1, 4))):
            truth = np.full(n, c)
            wrong = rng.random(n) > accuracy
            guess = np.where(wrong, rng.integers(0, 4, n), truth)
            if c == 3:  # F beats are often called V
                guess = np.where(wrong, 2, truth)
            target += truth.tolist()
            preds += guess.tolist()
            records += [f"r{r:02d}"] * int(n)
    return torch.tensor(target), torch.tensor(preds), np.array(records)


def point_values(target: torch.Tensor, preds: torch.Tensor) -> dict[str, float]:
    values = metrics.rates(metrics.counts_matrix(preds, target, 4), AAMI)
    out = {f"test/{kind}/{c}": float(values[kind][i]) for kind in ("recall", "precision") for i, c in enumerate(AAMI)}
    out["test/ec57/precision/V"] = float(values["ec57/precision"])
    return out


def test_bootstrap_intervals_hold_the_point_estimate():
    target, preds, records = records_case()
    ci = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=500, seed=0)
    point = point_values(target, preds)
    assert set(ci) == set(point)
    for name, (low, high) in ci.items():
        assert low <= point[name] <= high, (name, low, point[name], high)
        assert 0.0 <= low < high <= 1.0, (name, low, high)  # records differ: a real interval


def test_bootstrap_of_identical_records_collapses_to_the_point():
    target, preds = beats_of(MATRIX)
    n = target.numel()
    target, preds = target.repeat(6), preds.repeat(6)
    records = np.repeat([f"p{i}" for i in range(6)], n)
    ci = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=200, seed=3)
    for name, value in point_values(target, preds).items():
        assert ci[name] == pytest.approx([value, value], abs=1e-12), name
    assert ci["test/ec57/precision/V"] == pytest.approx([8 / 11, 8 / 11])


def test_bootstrap_resamples_records_not_beats():
    """Two records: one with every V found, one with none. Drawing records, a quarter of the resamples
    hold the second twice (recall 0) and a quarter the first twice (recall 1); drawing beats would give a
    narrow interval around 0.5."""
    target = torch.tensor([2] * 50 + [0] * 50 + [2] * 50 + [0] * 50)
    preds = torch.tensor([2] * 50 + [0] * 50 + [0] * 50 + [0] * 50)
    records = np.array(["good"] * 100 + ["bad"] * 100)
    ci = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=1000, seed=0)
    assert ci["test/recall/V"] == [0.0, 1.0]
    assert ci["test/recall/N"] == [1.0, 1.0]


def test_bootstrap_is_deterministic_for_a_seed():
    target, preds, records = records_case(seed=1)
    first = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=300, seed=7)
    assert metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=300, seed=7) == first
    other = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=300, seed=8)
    assert other != first
    shuffled = torch.randperm(target.numel(), generator=torch.Generator().manual_seed(0))
    # the order of the beats does not matter, only which record each belongs to
    again = metrics.record_bootstrap(
        preds[shuffled], target[shuffled], records[shuffled.numpy()], AAMI, "test", resamples=300, seed=7
    )
    assert again == first


def test_bootstrap_leaves_out_resamples_where_a_value_is_undefined():
    # F beats only in record 'a': resamples without it have no F recall; they must not count as 0
    target = torch.tensor([0, 0, 3, 3] + [0, 0, 0, 0] * 9)
    preds = torch.tensor([0, 0, 3, 3] + [0, 0, 0, 0] * 9)
    records = np.repeat(list("abcdefghij"), 4)
    ci = metrics.record_bootstrap(preds, target, records, AAMI, "test", resamples=300, seed=0)
    assert ci["test/recall/F"] == [1.0, 1.0]
    assert ci["test/precision/F"] == [1.0, 1.0]


# --------------------------------------------------------------------------------------- table


def test_aami_table_rows_and_intervals():
    target, preds = beats_of(MATRIX)
    values = metrics.compute_metrics(one_hot_logits(preds, 4), target, AAMI, "test")
    table = metrics.aami_table(values, AAMI)
    lines = table.splitlines()
    assert lines[0].split()[:1] == ["class"] and "Se %" in lines[0] and "FPR %" in lines[0]
    row_n = next(line for line in lines if line.startswith("N "))
    assert row_n.split() == ["N", "90.9", "90.9", "20.0"]  # Se 50/55, +P 50/55, FPR 5/25
    row_ec57 = next(line for line in lines if line.startswith("V (EC57"))
    assert row_ec57.split()[-3:] == ["80.0", "72.7", "4.5"]  # Se 8/10, +P 8/11, FPR 3/66
    assert lines[-1] == "accuracy 81.25 %"  # 65 of 80
    ci = {"test/recall/N": [0.8, 0.95]}
    with_ci = metrics.aami_table(values, AAMI, ci=ci)
    assert "[ 80.0,  95.0]" in with_ci
    assert len({len(line) for line in with_ci.splitlines()[1:5]}) == 1  # rows aligned, with or without an interval


# ------------------------------------------------------------------------------ test_metrics.json


class ConstantModel(nn.Module):
    """Calls every beat N: S, V and F are never predicted."""

    input_view = "1d"

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([5.0, 0.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 4)


def test_test_metrics_with_intervals_are_strict_json():
    """test_metrics.json must stay standard JSON (RFC 8259 has no NaN; jq, JavaScript and most JSON
    readers outside Python reject it) when the model never predicts a class, as after a short run."""
    target, _, records = records_case(seed=2, n_records=6)
    split = Split(torch.rand(target.numel(), BEAT_LENGTH), target, records)
    spec = DATASETS["arrhythmia_interpatient"]
    data = Splits(dataset=spec, train=split, valid=split, test=split, synthetic=False)
    result = evaluate_test_split(ConstantModel(), WeightedCrossEntropy(class_counts=[1, 1, 1, 1]), data, 64, False)
    assert "ci95" in result and result["test/precision/S"] == 0.0
    json.dumps(result, allow_nan=False)  # raises ValueError on NaN or infinity
    table = metrics.aami_table(result, spec.classes, ci=result["ci95"])  # what fit logs and writes to TensorBoard
    assert "nan" not in table.lower()


class PrematureByAverageModel(nn.Module):
    """Calls a beat S when its rr_pre is under 0.85 x its rr_average (the 4th R-R column), else N: it reads
    the R-R intervals the evaluation passes beside the beats (``uses_rr``)."""

    input_view = "1d"
    uses_rr = True

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4))
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        self.widths.append(rr.shape[1])
        premature = rr[:, 0] < 0.85 * rr[:, 3]
        logits = torch.zeros(x.shape[0], 4) + self.bias
        logits[:, 0] += 1.0
        logits[premature, 1] += 2.0
        return logits


def test_test_metrics_of_a_model_reading_the_four_rr_columns():
    """The test evaluation passes every beat's four R-R columns, row for row across batches, to a model
    that uses them. The S beats sit in runs of premature beats: rr_local is as short as their rr_pre, only
    rr_average (the 5 minute rhythm) tells them apart, so reading the wrong column or rows misses them."""
    target, _, records = records_case(seed=3, n_records=6)
    n = target.numel()
    is_s = (target == 1).numpy()
    pre = np.where(is_s, 0.5, 0.8)
    rr = np.stack([pre, np.full(n, 0.8), pre, np.full(n, 0.8)], axis=1)  # rr_pre, rr_post, rr_local, rr_average
    assert rr.shape[1] == len(RR_COLUMNS)
    split = Split(torch.rand(n, BEAT_LENGTH), target, records, rr=torch.from_numpy(rr).float())
    spec = DATASETS["arrhythmia_interpatient"]
    data = Splits(dataset=spec, train=split, valid=split, test=split, synthetic=False)
    model = PrematureByAverageModel()
    result = evaluate_test_split(model, WeightedCrossEntropy(class_counts=[1, 1, 1, 1]), data, 7, False)
    assert set(model.widths) == {4} and len(model.widths) == -(-n // 7)  # batches of 7 beats, 4 columns each
    assert result["test/recall/S"] == 1.0 and result["test/precision/S"] == 1.0
    assert result["test/recall/N"] == 1.0 and result["test/recall/V"] == 0.0
    matrix = np.array(result["confusion_matrix"])
    assert matrix[:, 1].sum() == is_s.sum() == matrix[1, 1]
    assert result["ci95"]["test/recall/S"] == [1.0, 1.0]
