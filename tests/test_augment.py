"""heartlab.augment: beat augmentations (identity when off, zero padding kept, values in [0, 1], reproducible,
no host synchronisation), class-balanced epoch order, gin bindings."""

from __future__ import annotations

import math

import gin
import pytest
import torch

from heartlab.augment import (
    Augment,
    add_wander,
    balanced_order,
    beat_mask,
    effective_lengths,
    epoch_order,
    scale_amplitude,
    time_stretch,
)
from heartlab.data import BEAT_LENGTH
from heartlab.errors import HeartlabError
from helpers import HostSyncCounter

KINDS = ("stretch", "amplitude", "wander", "noise")
STRONG = {"stretch": 0.3, "amplitude": 1.0, "wander": 0.3, "noise": 0.2}  # strengths that change beats a lot


def make_beats(n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(beats, lengths)``: beats in [0.05, 0.95] over a random effective length, then zero padding; beat 0
    has no padding and beat 1 holds a zero inside (a normalised minimum, not padding)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(40, BEAT_LENGTH + 1, (n,), generator=generator)
    lengths[0] = BEAT_LENGTH
    x = 0.05 + 0.9 * torch.rand(n, BEAT_LENGTH, generator=generator, dtype=dtype)
    x[1, 10] = 0.0
    return x.masked_fill(torch.arange(BEAT_LENGTH) >= lengths.unsqueeze(-1), 0.0), lengths


def only(kind: str, probability: float = 1.0, **settings) -> Augment:
    return Augment(**{f"{kind}_probability": probability}, **settings)


def rows_changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a != b).any(dim=-1)


def test_effective_lengths_and_mask():
    x, lengths = make_beats()
    found = effective_lengths(x)
    assert found.dtype == x.dtype
    torch.testing.assert_close(found, lengths.to(x.dtype), rtol=0, atol=0)
    assert effective_lengths(torch.zeros(2, BEAT_LENGTH)).tolist() == [0.0, 0.0]
    mask = beat_mask(found, BEAT_LENGTH)
    assert torch.equal(mask.bool(), torch.arange(BEAT_LENGTH) < lengths.unsqueeze(-1))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


# --- every augmentation -------------------------------------------------------------------------------


def test_default_is_inactive_and_returns_its_input():
    x, _ = make_beats()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    augment = Augment()
    assert not augment.active
    assert augment(x, generator) is x
    assert torch.equal(generator.get_state(), state)  # nothing drawn


@pytest.mark.parametrize("kind", KINDS)
def test_probability_zero_is_the_identity(kind):
    x, _ = make_beats()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    augment = only(kind, 0.0, **{f"{kind}_strength": STRONG[kind]})
    assert not augment.active
    assert torch.equal(augment(x, generator), x)
    assert torch.equal(generator.get_state(), state)


@pytest.mark.parametrize("kind", KINDS)
def test_probability_one_changes_every_beat_with_the_default_strength(kind):
    x, _ = make_beats()
    original = x.clone()
    augment = only(kind)
    assert augment.active
    out = augment(x, torch.Generator().manual_seed(0))
    assert rows_changed(out, x).all()
    assert torch.equal(x, original)  # the input is not modified


@pytest.mark.parametrize("kind", KINDS)
def test_some_beats_with_probability_one_half(kind):
    x, _ = make_beats(n=200)
    out = only(kind, 0.5, **{f"{kind}_strength": STRONG[kind]})(x, torch.Generator().manual_seed(1))
    changed = rows_changed(out, x)
    assert 60 <= int(changed.sum()) <= 140  # Binomial(200, 0.5): 100 +- 5 sd
    assert torch.equal(out[~changed], x[~changed])  # the others are untouched, bit for bit


@pytest.mark.parametrize("kind", ["amplitude", "wander", "noise"])
def test_zero_padding_stays_zero(kind):
    x, lengths = make_beats()
    out = only(kind, **{f"{kind}_strength": STRONG[kind]})(x, torch.Generator().manual_seed(0))
    padding = torch.arange(BEAT_LENGTH) >= lengths.unsqueeze(-1)
    assert (out[padding] == 0).all()
    assert (effective_lengths(out) <= lengths.to(out.dtype)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_values_stay_in_unit_interval(kind):
    x, _ = make_beats()
    strength = {"stretch": 0.5, "amplitude": 4.0, "wander": 1.0, "noise": 1.0}[kind]
    out = only(kind, **{f"{kind}_strength": strength})(x, torch.Generator().manual_seed(0))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out == 1.0).any() or kind == "stretch"  # the clip was needed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_kept(dtype):
    x, _ = make_beats(n=5, dtype=dtype)
    everything = Augment(**{f"{kind}_probability": 1.0 for kind in KINDS})
    out = everything(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype


def test_deterministic_for_a_seed():
    x, _ = make_beats()
    everything = Augment(**{f"{kind}_probability": 0.7 for kind in KINDS})
    first = everything(x, torch.Generator().manual_seed(3))
    again = everything(x, torch.Generator().manual_seed(3))
    other = everything(x, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_all_four_keep_the_padding_after_the_stretched_end():
    x, _ = make_beats()
    strengths = {f"{kind}_strength": STRONG[kind] for kind in KINDS}
    out = Augment(**{f"{kind}_probability": 1.0 for kind in KINDS}, **strengths)(x, torch.Generator().manual_seed(0))
    # the stretch draws first, so the stretch alone with the same seed stretches every beat alike
    stretched = only("stretch", **strengths)(x, torch.Generator().manual_seed(0))
    padding = torch.arange(BEAT_LENGTH) >= effective_lengths(stretched).unsqueeze(-1)
    assert padding.any(dim=1).sum() > len(x) // 2
    assert (out[padding] == 0).all()
    assert (out[~padding] != stretched[~padding]).float().mean() > 0.9
    assert out.min() >= 0 and out.max() <= 1


def test_no_host_synchronisation():
    x, _ = make_beats()
    labels = torch.randint(0, 5, (1000,), generator=torch.Generator().manual_seed(0))
    everything = Augment(**{f"{kind}_probability": 0.5 for kind in KINDS})
    generator = torch.Generator().manual_seed(0)
    with HostSyncCounter() as counter:
        everything(x, generator)
        balanced_order(labels, generator)
        epoch_order("balanced", labels, generator)
        epoch_order("shuffle", labels, generator)
    assert counter.syncs == 0


# --- time stretch -------------------------------------------------------------------------------------


def test_stretch_factor_one_is_the_identity():
    x, lengths = make_beats()
    out, mask = time_stretch(x, torch.ones(len(x)))
    assert torch.equal(out, x)
    assert torch.equal(mask.bool(), torch.arange(BEAT_LENGTH) < lengths.unsqueeze(-1))
    assert torch.equal(only("stretch", stretch_strength=0.0)(x, torch.Generator().manual_seed(0)), x)


def test_stretch_moves_the_end_by_the_factor():
    x, lengths = make_beats(n=64)
    factors = torch.linspace(0.7, 1.3, len(x))
    out, mask = time_stretch(x, factors)
    ends = effective_lengths(out)
    expected = lengths * factors
    inside = expected <= BEAT_LENGTH
    assert ((ends - expected)[inside].abs() <= 1).all()
    assert (ends[~inside] == BEAT_LENGTH).all()  # longer than the beat window: cut at 187
    assert torch.equal(ends, torch.clamp(torch.ceil(expected), max=BEAT_LENGTH).to(ends.dtype))
    assert torch.equal(mask, beat_mask(ends, BEAT_LENGTH))
    assert out.min() >= 0 and out.max() <= x.max()


def test_stretch_interpolates_linearly_and_holds_the_last_sample():
    length = 100
    ramp = torch.zeros(2, BEAT_LENGTH, dtype=torch.float64)
    ramp[:, :length] = 0.1 + 0.005 * torch.arange(length)
    factors = torch.tensor([0.8, 1.5], dtype=torch.float64)
    out, _ = time_stretch(ramp, factors)
    for row, factor in enumerate(factors.tolist()):
        end = math.ceil(length * factor)
        where = torch.arange(end, dtype=torch.float64) / factor
        expected = 0.1 + 0.005 * where.clamp(max=length - 1)
        torch.testing.assert_close(out[row, :end], expected)
        assert (out[row, end:] == 0).all()


def test_stretch_through_augment_stays_within_its_strength():
    x, lengths = make_beats()
    out = only("stretch", stretch_strength=0.2)(x, torch.Generator().manual_seed(0))
    ends = effective_lengths(out)
    assert (ends >= lengths * 0.8 - 1).all()
    assert (ends <= torch.clamp(lengths * 1.2 + 1, max=BEAT_LENGTH)).all()
    assert (ends != lengths).sum() > len(x) // 2


# --- amplitude, wander, noise -------------------------------------------------------------------------


def test_amplitude_factors_are_log_uniform_within_the_strength():
    x, _ = make_beats(n=400)
    x = x * 0.4  # at most 0.38: a factor <= 2 never clips
    out = only("amplitude", amplitude_strength=1.0)(x, torch.Generator().manual_seed(0))
    ratio = out[:, 11:40] / x[:, 11:40]  # samples every beat has, all positive (beat 1's zero is at 10)
    per_beat = ratio.mean(dim=1)
    torch.testing.assert_close(ratio, per_beat.unsqueeze(-1).expand_as(ratio))  # one factor per beat
    assert per_beat.min() >= 0.5 - 1e-6 and per_beat.max() <= 2.0 + 1e-6
    logs = per_beat.log()
    assert abs(float(logs.mean())) < 0.1  # log-uniform on [-ln 2, ln 2]: mean 0, sd 0.4 / sqrt(400) = 0.02
    assert float((logs < 0).float().mean()) == pytest.approx(0.5, abs=0.1)


def test_scale_amplitude_clips():
    x = torch.tensor([[0.2, 0.6, 0.0]])
    torch.testing.assert_close(scale_amplitude(x, torch.tensor([2.0])), torch.tensor([[0.4, 1.0, 0.0]]))


def test_noise_has_the_strength_as_standard_deviation():
    x = torch.full((256, BEAT_LENGTH), 0.5)
    x[:, 150:] = 0.0
    out = only("noise", noise_strength=0.02)(x, torch.Generator().manual_seed(0))
    noise = (out - x)[:, :150]
    assert float(noise.std()) == pytest.approx(0.02, rel=0.02)
    assert abs(float(noise.mean())) < 0.001
    assert (out[:, 150:] == 0).all()


def test_wander_formula():
    x = torch.full((2, BEAT_LENGTH), 0.5, dtype=torch.float64)
    mask = beat_mask(torch.tensor([BEAT_LENGTH, 120.0], dtype=torch.float64), BEAT_LENGTH)
    out = add_wander(x, torch.tensor([0.1, 0.2]), torch.tensor([0.25, 0.5]), torch.tensor([0.0, math.pi / 2]), mask)
    t = torch.arange(BEAT_LENGTH, dtype=torch.float64) / 125.0
    torch.testing.assert_close(out[0], 0.5 + 0.1 * torch.sin(2 * math.pi * 0.25 * t))
    torch.testing.assert_close(out[1, :120], 0.5 + 0.2 * torch.cos(2 * math.pi * 0.5 * t[:120]))
    assert (out[1, 120:] == 0.5).all()  # outside the mask nothing is added


def test_wander_stays_within_its_amplitude():
    x = torch.full((128, BEAT_LENGTH), 0.5)
    out = only("wander", wander_strength=0.1)(x, torch.Generator().manual_seed(0))
    shift = out - x
    assert float(shift.abs().max()) <= 0.1 + 1e-6
    assert float(shift.abs().amax(dim=1).min()) > 0.0


# --- settings and gin ---------------------------------------------------------------------------------


def test_gin_bindings_take_effect():
    gin.parse_config(
        """
        Augment.noise_probability = 1.0
        Augment.noise_strength = 0.05
        Augment.stretch_probability = 0.5
        Augment.wander_max_hz = 0.3
        """
    )
    augment = Augment()
    assert augment.active
    assert augment.noise_probability == 1.0 and augment.noise_strength == 0.05
    assert augment.stretch_probability == 0.5 and augment.wander_max_hz == 0.3
    assert augment.amplitude_probability == 0.0  # unbound: the default
    x, _ = make_beats()
    assert rows_changed(augment(x, torch.Generator().manual_seed(0)), x).all()
    assert "Augment.noise_strength = 0.05" in gin.config_str()


@pytest.mark.parametrize(
    "settings, setting",
    [
        ({"noise_probability": 1.5}, "Augment.noise_probability"),
        ({"amplitude_probability": -0.1}, "Augment.amplitude_probability"),
        ({"stretch_strength": 1.0}, "Augment.stretch_strength"),
        ({"wander_strength": -0.01}, "Augment.wander_strength"),
        ({"noise_strength": float("nan")}, "Augment.noise_strength"),
        ({"wander_min_hz": 0.6, "wander_max_hz": 0.5}, "Augment.wander_max_hz"),
        ({"wander_max_hz": 100.0}, "Augment.wander_max_hz"),
    ],
)
def test_bad_settings_name_the_setting(settings, setting):
    with pytest.raises(HeartlabError, match=setting):
        Augment(**settings)


def test_bad_gin_binding_names_the_setting():
    gin.parse_config("Augment.noise_probability = 2.0")
    with pytest.raises(HeartlabError, match="Augment.noise_probability"):
        Augment()


# --- class-balanced order -----------------------------------------------------------------------------


def skewed_labels() -> torch.Tensor:
    """5000, 500, 50, 5 beats of classes 0..3, none of class 4, one of class 5; shuffled."""
    counts = [5000, 500, 50, 5, 0, 1]
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def test_balanced_order_draws_every_class_equally_often():
    labels = skewed_labels()
    order = balanced_order(labels, torch.Generator().manual_seed(0))
    assert order.shape == labels.shape and order.dtype == torch.int64
    assert order.min() >= 0 and order.max() < len(labels)
    drawn = torch.bincount(labels[order], minlength=6)
    n, present = len(labels), 5
    assert drawn[4] == 0  # an absent class is never drawn
    assert drawn.sum() == n
    assert ((drawn[[0, 1, 2, 3, 5]] - n / present).abs() <= 1).all()
    # with replacement: the rare classes recur, every one of their beats is drawn; the large class is subsampled
    assert set(order[labels[order] == 3].tolist()) == set(torch.nonzero(labels == 3).flatten().tolist())
    distinct_large = len(set(order[labels[order] == 0].tolist()))
    assert 0.15 * 5000 < distinct_large < 0.25 * 5000  # 1111 draws of 5000: 1 - exp(-0.222) = 20% distinct


def test_balanced_order_draws_beats_of_a_class_uniformly():
    labels = torch.tensor([0] * 10 + [1] * 990)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(10)
    for _ in range(20):
        order = balanced_order(labels, generator)
        counts += torch.bincount(order[order < 10], minlength=10)[:10]
    assert counts.sum() == 20 * 500
    assert (counts - 1000).abs().max() < 150  # Binomial(10000, 0.1): sd 30


def test_balanced_order_is_deterministic_and_shuffled():
    labels = skewed_labels()
    first = balanced_order(labels, torch.Generator().manual_seed(7))
    assert torch.equal(first, balanced_order(labels, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, balanced_order(labels, torch.Generator().manual_seed(8)))
    classes = labels[first]
    assert (classes[1:] != classes[:-1]).float().mean() > 0.7  # interleaved, not class after class


def test_balanced_order_with_one_class_or_none():
    order = balanced_order(torch.full((7,), 2))
    assert order.shape == (7,) and order.min() >= 0 and order.max() < 7
    assert balanced_order(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_epoch_order():
    labels = skewed_labels()
    shuffle = epoch_order("shuffle", labels, torch.Generator().manual_seed(0))
    assert torch.equal(shuffle, torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)))
    balanced = epoch_order("balanced", labels, torch.Generator().manual_seed(0))
    assert torch.equal(balanced, balanced_order(labels, torch.Generator().manual_seed(0)))
    with pytest.raises(HeartlabError, match="unknown sampling 'weighted'"):
        epoch_order("weighted", labels)
