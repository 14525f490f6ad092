"""heartlab.losses: class-weight schemes, weighted cross-entropy and focal loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from heartlab.losses import FocalLoss, WeightedCrossEntropy, class_weights

COUNTS = [100, 10, 1]


@pytest.mark.parametrize(
    "scheme, expected",
    [
        ("none", [1.0, 1.0, 1.0]),
        ("inverse", [111 / (3 * 100), 111 / (3 * 10), 111 / (3 * 1)]),
        ("sqrt_inverse", [1.0, math.sqrt(10), 10.0]),
        ("log", [1.0, math.log(10), math.log(100)]),
    ],
)
def test_class_weights_hand_computed(scheme, expected):
    weights = class_weights(COUNTS, scheme)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))


def test_log_weights_are_at_least_one():
    # ln(100 / 60) < 1, so the middle class is clamped to 1
    torch.testing.assert_close(class_weights([100, 60, 5], "log"), torch.tensor([1.0, 1.0, math.log(20)]))


def test_class_weights_accept_a_tensor():
    torch.testing.assert_close(class_weights(torch.tensor(COUNTS), "sqrt_inverse"), class_weights(COUNTS, "sqrt_inverse"))


@pytest.mark.parametrize("scheme", ["none", "inverse", "sqrt_inverse", "log"])
def test_absent_class_gets_weight_zero(scheme):
    weights = class_weights([100, 0, 25], scheme)
    assert weights[1] == 0.0
    assert (weights[[0, 2]] > 0).all()
    assert torch.isfinite(weights).all()


def test_absent_class_other_weights():
    torch.testing.assert_close(class_weights([100, 0, 25], "sqrt_inverse"), torch.tensor([1.0, 0.0, 2.0]))
    torch.testing.assert_close(class_weights([100, 0, 25], "log"), torch.tensor([1.0, 0.0, max(1.0, math.log(4))]))
    inverse = class_weights([100, 0, 25], "inverse").double()
    counts = torch.tensor([100.0, 0.0, 25.0], dtype=torch.float64)
    # balanced over the classes present: every present class has the same total weight
    totals = inverse * counts
    torch.testing.assert_close(totals[0], totals[2])
    torch.testing.assert_close(totals.sum(), counts.sum())


def test_unknown_scheme_raises():
    with pytest.raises(ValueError, match="unknown class-weight scheme 'balanced'"):
        class_weights(COUNTS, "balanced")


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.randn(12, 3), torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 0, 0])


@pytest.mark.parametrize("scheme", ["none", "inverse", "sqrt_inverse", "log"])
def test_weighted_cross_entropy_matches_torch(batch, scheme):
    logits, target = batch
    loss = WeightedCrossEntropy(COUNTS, weighting=scheme)
    expected = F.cross_entropy(logits, target, weight=class_weights(COUNTS, scheme))
    torch.testing.assert_close(loss(logits, target), expected)


def test_weighted_cross_entropy_weights_matter(batch):
    logits, target = batch
    assert not torch.isclose(
        WeightedCrossEntropy(COUNTS, weighting="inverse")(logits, target), WeightedCrossEntropy(COUNTS)(logits, target)
    )


def test_weighted_cross_entropy_label_smoothing(batch):
    logits, target = batch
    loss = WeightedCrossEntropy(COUNTS, weighting="log", label_smoothing=0.1)
    expected = F.cross_entropy(logits, target, weight=class_weights(COUNTS, "log"), label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, target), expected)


def test_weighted_cross_entropy_weight_is_a_buffer():
    loss = WeightedCrossEntropy(COUNTS, weighting="inverse")
    assert "weight" in dict(loss.named_buffers())


def test_focal_gamma_zero_is_cross_entropy(batch):
    logits, target = batch
    torch.testing.assert_close(FocalLoss(COUNTS, gamma=0.0, alpha=None)(logits, target), F.cross_entropy(logits, target))


def test_focal_gamma_two_hand_computed():
    # sample 1: p = (1/4, 3/4), target 1 -> p_t = 3/4; sample 2: p = (1/2, 1/2), target 0 -> p_t = 1/2
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    target = torch.tensor([1, 0])
    term1 = -((1 - 0.75) ** 2) * math.log(0.75)
    term2 = -((1 - 0.5) ** 2) * math.log(0.5)
    loss = FocalLoss([5, 5], gamma=2.0)(logits, target)
    assert loss.item() == pytest.approx((term1 + term2) / 2, rel=1e-5)
    assert loss.item() == pytest.approx(0.0956335, rel=1e-4)
    weighted = FocalLoss([5, 5], gamma=2.0, alpha=[2.0, 1.0])(logits, target)
    assert weighted.item() == pytest.approx((1.0 * term1 + 2.0 * term2) / 2, rel=1e-5)


def test_focal_down_weights_easy_examples():
    logits = torch.tensor([[0.0, 4.0], [0.0, 0.5]])
    target = torch.tensor([1, 1])
    per_example_ce = F.cross_entropy(logits, target, reduction="none")
    focal = [FocalLoss([1, 1], gamma=2.0)(logits[i : i + 1], target[i : i + 1]) for i in range(2)]
    # the easy example keeps a far smaller share of its cross-entropy than the hard one
    assert focal[0] / per_example_ce[0] < focal[1] / per_example_ce[1]


def test_focal_alpha_scheme_name(batch):
    focal = FocalLoss(COUNTS, gamma=1.0, alpha="inverse")
    torch.testing.assert_close(focal.alpha, class_weights(COUNTS, "inverse"))


def test_focal_alpha_wrong_length_raises():
    with pytest.raises(ValueError, match="needs 3 weights, got 2"):
        FocalLoss(COUNTS, alpha=[1.0, 2.0])


def test_focal_negative_gamma_raises():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(COUNTS, gamma=-1.0)


def test_focal_gradients_flow(batch):
    logits, target = batch
    logits = logits.clone().requires_grad_()
    FocalLoss(COUNTS, gamma=2.0, alpha="log")(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
