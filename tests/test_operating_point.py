"""The operating point: the threshold on P(abnormal) chosen for a target recall (exact, the highest that
reaches it), its metrics against hand-computed values, logit adjustment and the choice of its strength,
and the stored form of an :class:`OperatingPoint`."""

from __future__ import annotations

import io
import json

import gin
import pytest
import torch

from heartlab.errors import HeartlabError
from heartlab.metrics import compute_metrics
from heartlab.operating_point import (
    OperatingPoint,
    OperatingPointSettings,
    any_abnormal_recall,
    choose_logit_adjustment,
    choose_operating_point,
    decision_metrics,
    logit_adjustment,
    operating_point,
)
from heartlab.thresholds import abnormal_probability, beats_needed, choose_threshold, threshold_metrics

BINARY = ("normal", "abnormal")
FIVE = ("N", "S", "V", "F", "Q")


def recall_at(probabilities: torch.Tensor, target: torch.Tensor, threshold: float) -> float:
    """Recall of the abnormal class with abnormal iff p >= threshold, computed here independently."""
    positive = target == 1
    return int(((probabilities >= threshold) & positive).sum()) / int(positive.sum())


# ---- choose_threshold ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target_recall", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_threshold_reaches_the_target_and_is_the_highest_that_does(seed, target_recall):
    generator = torch.Generator().manual_seed(seed)
    n = 40 + 37 * seed
    target = (torch.rand(n, generator=generator) < 0.6).long()
    probabilities = torch.rand(n, generator=generator) * 0.6 + 0.4 * target
    if seed % 2:  # coarse scores: many ties, across and within classes
        probabilities = torch.round(probabilities * 10) / 10
    threshold = choose_threshold(probabilities, target, target_recall)

    assert threshold in probabilities.tolist()
    assert recall_at(probabilities, target, threshold) >= target_recall
    higher = probabilities[probabilities > threshold]
    if higher.numel():  # the next score up: one beat fewer (or more, tied) is let through
        assert recall_at(probabilities, target, float(higher.min())) < target_recall


def test_threshold_small_case_by_hand():
    probabilities = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    target = torch.tensor([1, 0, 1, 1, 0, 1])  # abnormal scores, sorted: 0.9, 0.7, 0.6, 0.2
    assert choose_threshold(probabilities, target, 0.25) == pytest.approx(0.9)  # 1 of 4
    assert choose_threshold(probabilities, target, 0.5) == pytest.approx(0.7)  # 2 of 4
    assert choose_threshold(probabilities, target, 0.75) == pytest.approx(0.6)  # 3 of 4
    assert choose_threshold(probabilities, target, 0.76) == pytest.approx(0.2)  # needs all 4
    assert choose_threshold(probabilities, target, 1.0) == pytest.approx(0.2)
    # the normal beats do not move it: only the abnormal scores decide
    assert choose_threshold(torch.tensor([0.9, 0.1, 0.7, 0.6, 0.95, 0.2]), target, 0.75) == pytest.approx(0.6)


def test_threshold_ties_are_all_called_abnormal():
    probabilities = torch.tensor([0.5, 0.5, 0.5, 0.9])
    target = torch.tensor([1, 1, 0, 1])  # abnormal: 0.9, 0.5, 0.5
    threshold = choose_threshold(probabilities, target, 0.5)  # 2 of 3 needed: the 2nd score, 0.5
    assert threshold == 0.5
    assert recall_at(probabilities, target, threshold) == 1.0  # the tie lets the third through: above target
    values = threshold_metrics(probabilities, target, threshold, "val")
    assert values["val/op/precision"] == pytest.approx(3 / 4)  # the tied normal beat is a false alarm


def test_beats_needed_does_not_round_up_a_float_error():
    assert 0.07 * 100 > 7  # 7.000000000000001: a plain ceil would ask for 8 beats
    assert beats_needed(100, 0.07) == 7
    assert beats_needed(100, 0.99) == 99
    assert beats_needed(3, 2 / 3) == 2
    assert beats_needed(7, 1.0) == 7
    assert beats_needed(7, 1e-9) == 1
    for positives in range(1, 60):
        for target_recall in (0.07, 0.1, 0.17, 0.5, 0.9, 0.95, 0.99, 1.0):
            k = beats_needed(positives, target_recall)
            assert k / positives >= target_recall and (k == 1 or (k - 1) / positives < target_recall)


def test_threshold_with_exactly_the_target_count():
    target = torch.ones(100, dtype=torch.long)
    probabilities = torch.linspace(0.01, 1.0, 100)
    threshold = choose_threshold(probabilities, target, 0.99)
    assert recall_at(probabilities, target, threshold) == 0.99  # 99 of 100, not 100 of 100
    assert threshold == float(probabilities[1])


@pytest.mark.parametrize(
    "probabilities, target, target_recall, words",
    [
        ([0.2, 0.7], [0, 0], 0.9, "no abnormal beat"),
        ([0.2, 0.7], [0, 1], 0.0, "operating_point.target_recall"),
        ([0.2, 0.7], [0, 1], 1.5, "operating_point.target_recall"),
        ([0.2, float("nan")], [0, 1], 0.9, "nan"),
        ([0.2, 0.7], [0, 2], 0.9, "labels other than 0"),
        ([], [], 0.9, "no beats"),
    ],
)
def test_threshold_errors(probabilities, target, target_recall, words):
    with pytest.raises(HeartlabError, match=f"(?i){words}"):
        choose_threshold(torch.tensor(probabilities), torch.tensor(target, dtype=torch.long), target_recall)


# ---- threshold_metrics -----------------------------------------------------------------------------


def test_threshold_metrics_small_case_by_hand():
    probabilities = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.45, 0.3, 0.2])
    target = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    values = threshold_metrics(probabilities, target, 0.4, "val")
    # at 0.4: called abnormal 0.9 0.8 0.7 0.6 0.45 -> TP 3, FP 2; FN 1 (0.2), TN 1 (0.3)
    assert values["val/threshold"] == pytest.approx(0.4)
    assert values["val/op/recall"] == pytest.approx(3 / 4)
    assert values["val/op/precision"] == pytest.approx(3 / 5)
    assert values["val/op/accuracy"] == pytest.approx(4 / 7)
    assert values["val/op/specificity"] == pytest.approx(1 / 3)
    # at 0.5: called abnormal 0.9 0.8 0.7 0.6 -> TP 3, FP 1
    assert values["val/at05/recall"] == pytest.approx(3 / 4)
    assert values["val/at05/precision"] == pytest.approx(3 / 4)
    # ranked: 1 0 1 1 0 0 1 -> precision at each abnormal beat 1/1, 2/3, 3/4, 4/7
    assert values["val/average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4, abs=1e-6)
    # pairs (abnormal, normal) ranked right: 0.9 > all 3, 0.7 > 2, 0.6 > 2, 0.2 > none -> 7 of 12
    assert values["val/auroc"] == pytest.approx(7 / 12, abs=1e-6)


def test_at_05_is_argmax_of_binary_softmax():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 2, generator=generator) * 3
    target = (torch.rand(500, generator=generator) < 0.4).long()
    assert torch.equal(OperatingPoint("threshold", 0.5).apply(logits), logits.argmax(dim=-1))
    values = threshold_metrics(abnormal_probability(logits), target, 0.5, "val")
    plain = compute_metrics(logits, target, BINARY, "val")
    assert values["val/at05/recall"] == pytest.approx(plain["val/recall/abnormal"], abs=1e-7)
    assert values["val/at05/precision"] == pytest.approx(plain["val/precision/abnormal"], abs=1e-7)
    assert values["val/op/recall"] == values["val/at05/recall"]
    assert values["val/op/specificity"] == pytest.approx(plain["val/recall/normal"], abs=1e-7)
    assert values["val/op/accuracy"] == pytest.approx(plain["val/accuracy"], abs=1e-7)
    assert values["val/auroc"] == pytest.approx(plain["val/auroc"], abs=1e-7)


# ---- multi-class -----------------------------------------------------------------------------------


def test_any_abnormal_recall_by_hand():
    target = torch.tensor([0, 1, 2, 3, 0, 2])
    preds = torch.tensor([0, 2, 2, 0, 0, 1])  # abnormal beats 1, 2, 3, 5; called abnormal 1, 2, 5
    assert any_abnormal_recall(preds, target) == (pytest.approx(3 / 4), pytest.approx(1.0))
    preds = torch.tensor([1, 2, 2, 0, 4, 1])  # called abnormal: 0, 1, 2, 4, 5 (two normal beats among them)
    assert any_abnormal_recall(preds, target) == (pytest.approx(3 / 4), pytest.approx(3 / 5))
    assert any_abnormal_recall(torch.zeros(3), torch.zeros(3)) == (0.0, 0.0)  # undefined: 0


def test_logit_adjustment_strength_zero_is_identity():
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(logit_adjustment(logits, [1000, 50, 80, 9, 100], 0.0), logits)


def test_logit_adjustment_values_by_hand():
    counts = [100, 10, 1]  # prior 100/111, 10/111, 1/111
    adjusted = logit_adjustment(torch.zeros(1, 3), counts, 1.0)
    expected = -torch.log(torch.tensor(counts, dtype=torch.float64) / 111).float()
    torch.testing.assert_close(adjusted[0], expected)
    assert adjusted.argmax().item() == 2  # equal logits: the rarest class wins
    half = logit_adjustment(torch.tensor([[2.0, 0.0, 0.0]]), counts, 0.5)
    # 2 - 0.5 ln(100/111) = 2.05218; 0 - 0.5 ln(10/111) = 1.20347; 0 - 0.5 ln(1/111) = 2.35477
    torch.testing.assert_close(half[0], torch.tensor([2.05218, 1.20347, 2.35477]), atol=1e-5, rtol=0)


def test_logit_adjustment_moves_predictions_toward_rare_classes():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2000, 5, generator=generator)
    counts = [5000, 150, 400, 40, 300]
    frequent, rarest = 0, 3
    previous = None
    for strength in (0.0, 0.25, 0.5, 1.0, 2.0):
        preds = logit_adjustment(logits, counts, strength).argmax(dim=-1)
        if previous is not None:  # the frequent class only loses beats, the rarest only gains them
            assert set((preds == frequent).nonzero().flatten().tolist()) <= set((previous == frequent).nonzero().flatten().tolist())
            assert set((previous == rarest).nonzero().flatten().tolist()) <= set((preds == rarest).nonzero().flatten().tolist())
        previous = preds
    base = logits.argmax(dim=-1)
    assert (previous == frequent).sum() < (base == frequent).sum()
    assert (previous == rarest).sum() > (base == rarest).sum()


def test_logit_adjustment_rejects_bad_counts():
    with pytest.raises(HeartlabError, match="positive"):
        logit_adjustment(torch.zeros(2, 3), [10, 0, 1], 1.0)
    with pytest.raises(HeartlabError, match="3 class counts for logits of 2"):
        logit_adjustment(torch.zeros(2, 2), [10, 5, 1], 1.0)


def skewed_validation(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Logits of a model biased toward N: rare-class beats score a little higher on their class, but not
    enough to beat N's bias at argmax."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.tensor([0] * 300 + [1] * 20 + [2] * 30 + [3] * 10 + [4] * 25)
    logits = torch.randn(target.numel(), 5, generator=generator) * 0.5
    logits[torch.arange(target.numel()), target] += 1.0
    logits[:, 0] += 1.5
    return logits, target, [3000, 200, 300, 100, 250]


def test_choose_logit_adjustment_picks_the_best_strength_and_reports_its_metrics():
    logits, target, counts = skewed_validation()
    strengths = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    for metric in ("recall_macro", "f2_macro"):
        strength, values = choose_logit_adjustment(logits, target, counts, strengths, metric, classes=FIVE)
        scores = {s: compute_metrics(logit_adjustment(logits, counts, s), target, FIVE, "val")[f"val/{metric}"] for s in strengths}
        assert scores[strength] == max(scores.values())
        assert strength == min(s for s in strengths if scores[s] == max(scores.values()))  # ties: the smaller
        assert strength > 0, scores  # the N bias is worth undoing here
        expected = compute_metrics(logit_adjustment(logits, counts, strength), target, FIVE, "val")
        assert {k: values[k] for k in expected} == expected
        assert values["val/logit_adjustment"] == strength
        preds = logit_adjustment(logits, counts, strength).argmax(dim=-1)
        assert (values["val/any_abnormal/recall"], values["val/any_abnormal/precision"]) == any_abnormal_recall(preds, target)


@pytest.mark.parametrize("metric, best", [("any_abnormal/recall", max), ("fpr/N", min), ("precision/N", max)])
def test_choose_logit_adjustment_direction(metric, best):
    logits, target, counts = skewed_validation()
    strengths = (0.0, 0.5, 1.0, 2.0)
    strength, values = choose_logit_adjustment(logits, target, counts, strengths, metric, classes=FIVE)
    scores = {}
    for s in strengths:
        preds = logit_adjustment(logits, counts, s).argmax(dim=-1)
        scores[s] = {
            "any_abnormal/recall": any_abnormal_recall(preds, target)[0],
            "fpr/N": compute_metrics(logit_adjustment(logits, counts, s), target, FIVE, "val")["val/fpr/N"],
            "precision/N": compute_metrics(logit_adjustment(logits, counts, s), target, FIVE, "val")["val/precision/N"],
        }[metric]
    assert scores[strength] == best(scores.values()) and values[f"val/{metric}"] == scores[strength]
    assert len(set(scores.values())) > 1, scores  # precondition: the strength matters


def test_choose_logit_adjustment_with_a_callable_and_ties():
    logits, target, counts = skewed_validation()
    # fewest beats called abnormal: no adjustment among non-negative strengths, the most negative otherwise
    strength, _ = choose_logit_adjustment(logits, target, counts, (0.0, 0.5, 1.0), metric=lambda p, t: -float((p != 0).sum()))
    assert strength == 0.0
    strength, _ = choose_logit_adjustment(logits, target, counts, metric=lambda p, t: -float((p != 0).sum()))
    assert strength < 0
    strength, _ = choose_logit_adjustment(logits, target, counts, (2.0, 1.0, 0.5, -0.25), metric=lambda p, t: 1.0)
    assert strength == -0.25  # every strength ties: the smallest change
    with pytest.raises(HeartlabError, match="selection_metric 'recall/X'"):
        choose_logit_adjustment(logits, target, counts, metric="recall/X", classes=FIVE)
    with pytest.raises(HeartlabError, match="strengths"):
        choose_logit_adjustment(logits, target, counts, strengths=(), classes=FIVE)


# ---- OperatingPoint --------------------------------------------------------------------------------


POINTS = [
    OperatingPoint(),
    OperatingPoint("threshold", 0.123456789),
    OperatingPoint("logit_adjustment", 0.75, (3000, 200, 300, 100, 250)),
]


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.kind)
def test_operating_point_round_trips_through_dict_json_and_checkpoint(point):
    assert OperatingPoint.from_dict(point.to_dict()) == point
    assert OperatingPoint.from_dict(json.loads(json.dumps(point.to_dict()))) == point
    buffer = io.BytesIO()
    torch.save({"operating_point": point.to_dict()}, buffer)
    buffer.seek(0)
    assert OperatingPoint.from_dict(torch.load(buffer, weights_only=True)["operating_point"]) == point


def test_operating_point_apply():
    logits = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.3, 0.0]])
    probabilities = abnormal_probability(logits)
    threshold = float(probabilities[3])  # exactly a beat's score: that beat is called abnormal
    preds = OperatingPoint("threshold", threshold).apply(logits)
    assert preds.tolist() == [1, 0, 1, 1] and preds.dtype == torch.int64
    assert OperatingPoint().apply(logits).tolist() == [0, 0, 1, 0]
    adjusted = OperatingPoint("logit_adjustment", 1.0, (100, 10, 1)).apply(torch.zeros(2, 3))
    assert adjusted.tolist() == [2, 2]
    with pytest.raises(HeartlabError, match="for 2 classes"):
        OperatingPoint("threshold", 0.5).apply(torch.zeros(2, 3))
    with pytest.raises(HeartlabError, match="for 3 classes"):
        OperatingPoint("logit_adjustment", 1.0, (100, 10, 1)).apply(torch.zeros(2, 5))


@pytest.mark.parametrize(
    "values",
    [
        {"kind": "median"},
        {"kind": "threshold"},
        {"kind": "threshold", "value": 1.5},
        {"kind": "threshold", "value": 0.5, "class_counts": [1, 2]},
        {"kind": "logit_adjustment", "value": 1.0},
        {"kind": "logit_adjustment", "value": None, "class_counts": [1, 2]},
        {"kind": "logit_adjustment", "value": 1.0, "class_counts": [1, 0]},
        {"kind": "argmax", "value": 0.5},
        {"kind": "argmax", "extra": 1},
        {"value": 0.5},
        [0.5],
    ],
)
def test_operating_point_rejects_bad_dicts(values):
    with pytest.raises(HeartlabError):
        OperatingPoint.from_dict(values)


def test_decision_metrics_are_argmax_metrics_plus_the_operating_points():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(300, 2, generator=generator)
    target = (torch.rand(300, generator=generator) < 0.5).long()
    argmax = compute_metrics(logits, target, BINARY, "test")
    assert decision_metrics(logits, target, BINARY, "test") == argmax
    threshold = choose_threshold(abnormal_probability(logits), target, 0.9)
    values = decision_metrics(logits, target, BINARY, "test", OperatingPoint("threshold", threshold))
    assert {k: values[k] for k in argmax} == argmax  # the plain values stay those of argmax
    assert values["test/op/recall"] == pytest.approx(recall_at(abnormal_probability(logits), target, threshold))
    assert values["test/op/recall"] >= 0.9
    assert values["test/threshold"] == threshold
    multi_logits, multi_target = torch.randn(40, 5, generator=generator), torch.arange(40) % 5
    multi = decision_metrics(multi_logits, multi_target, FIVE, "test")
    assert {"test/any_abnormal/recall", "test/any_abnormal/precision"} <= set(multi)
    point = OperatingPoint("logit_adjustment", 2.0, (100, 10, 10, 1, 10))
    adjusted = decision_metrics(multi_logits, multi_target, FIVE, "test", point)
    decided = torch.nn.functional.one_hot(point.apply(multi_logits), 5).float()
    assert adjusted["test/op/recall/F"] == compute_metrics(decided, multi_target, FIVE, "x")["x/recall/F"]
    assert adjusted["test/recall_macro"] == multi["test/recall_macro"]


# ---- settings --------------------------------------------------------------------------------------


def test_operating_point_settings_from_gin():
    assert operating_point() == OperatingPointSettings()
    gin.parse_config(
        "operating_point.target_recall = 0.95\n"
        "operating_point.logit_adjustment = True\n"
        "operating_point.strengths = (0, 1)\n"
        "operating_point.selection_metric = 'recall_macro'\n"
    )
    assert operating_point() == OperatingPointSettings(0.95, True, (0.0, 1.0), "recall_macro")


@pytest.mark.parametrize(
    "binding, words",
    [
        ("operating_point.target_recall = 0.0", "operating_point.target_recall"),
        ("operating_point.target_recall = 1.01", "operating_point.target_recall"),
        ("operating_point.logit_adjustment = 1", "operating_point.logit_adjustment"),
        ("operating_point.strengths = (0, 'strong')", "operating_point.strengths"),
        ("operating_point.strengths = ()", "operating_point.strengths"),
    ],
)
def test_operating_point_settings_out_of_range(binding, words):
    gin.parse_config(binding)
    with pytest.raises(HeartlabError, match=words):
        operating_point()


def test_settings_check_the_selection_metric_against_the_classes():
    settings = OperatingPointSettings(logit_adjustment=True, selection_metric="recall/Q")
    assert settings.check(FIVE) is settings
    with pytest.raises(HeartlabError, match="operating_point.selection_metric 'recall/Q'"):
        settings.check(("N", "S", "V", "F"))
    OperatingPointSettings(logit_adjustment=False, selection_metric="recall/Q").check(("N", "S", "V", "F"))  # unused: fine


def test_choose_operating_point():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(200, 2, generator=generator)
    target = (torch.rand(200, generator=generator) < 0.5).long()
    point, values = choose_operating_point(logits, target, BINARY, [100, 100], OperatingPointSettings(target_recall=0.9))
    assert point.kind == "threshold" and values["val/threshold"] == point.value and values["val/op/recall"] >= 0.9
    point, values = choose_operating_point(logits, target, BINARY, [100, 100], OperatingPointSettings(target_recall=None))
    assert point == OperatingPoint() and values == {}

    logits, target, counts = skewed_validation()
    point, values = choose_operating_point(logits, target, FIVE, counts, OperatingPointSettings())
    assert point == OperatingPoint() and values == {}  # logit adjustment is off by default
    settings = OperatingPointSettings(logit_adjustment=True, selection_metric="recall_macro")
    point, values = choose_operating_point(logits, target, FIVE, torch.tensor(counts), settings)
    assert point.kind == "logit_adjustment" and point.class_counts == tuple(counts)
    assert point.value == values["val/logit_adjustment"] > 0
    assert decision_metrics(logits, target, FIVE, "val", point)["val/op/recall_macro"] == values["val/recall_macro"]


def test_pr_curve_is_thinned_and_matches_threshold_metrics():
    from heartlab.thresholds import pr_curve

    generator = torch.Generator().manual_seed(7)
    target = (torch.rand(1000, generator=generator) < 0.4).long()
    probabilities = (torch.rand(1000, generator=generator) * 0.7 + 0.3 * target).clamp(0, 1)
    curve = pr_curve(probabilities, target, points=50)
    assert len(curve["precision"]) == len(curve["recall"]) == len(curve["threshold"]) <= 50
    assert curve["threshold"] == sorted(curve["threshold"])
    for threshold, precision, recall in list(zip(curve["threshold"], curve["precision"], curve["recall"]))[::10]:
        values = threshold_metrics(probabilities, target, threshold, "x")
        assert values["x/op/recall"] == pytest.approx(recall, abs=1e-5)
        assert values["x/op/precision"] == pytest.approx(precision, abs=1e-5)


def test_a_negative_strength_restores_accuracy_of_an_over_flagging_model():
    """Logits of a model that learned a uniform prior (as class-balanced sampling teaches) call too many
    beats rare; strength -1 puts the training prior back and raises accuracy."""
    generator = torch.Generator().manual_seed(3)
    counts = torch.tensor([900, 50, 50])
    target = torch.multinomial(counts.float(), 3000, replacement=True, generator=generator)
    logits = torch.nn.functional.one_hot(target, 3).float() * 1.0 + torch.randn(3000, 3, generator=generator)
    accuracy = {s: float((logit_adjustment(logits, counts, s).argmax(-1) == target).float().mean()) for s in (-1.0, 0.0)}
    assert accuracy[-1.0] > accuracy[0.0] + 0.05
    strength, _ = choose_logit_adjustment(logits, target, counts, metric="accuracy", classes=("N", "S", "V"))
    assert strength < 0
