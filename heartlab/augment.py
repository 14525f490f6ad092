"""Training-time beat augmentation and class-balanced batch order.

Beats are float32 ``(B, 187)`` rows sampled at 125 Hz, normalised to [0, 1] and zero-padded at the end (the
beat spans 1.2 x the median R-R interval, then zeros). Every augmentation here works on the *non-padded*
part of a beat: its effective length is the index after its last non-zero sample, and every position from
there on stays zero.

:class:`Augment` is a gin configurable built once per run and applied to training batches only (never to
validation or test beats). Everything is vectorised over the batch, draws its random numbers from the
``torch.Generator`` it is given (so a run is reproducible from its seed), and never reads a tensor value
back to Python (no host synchronisation). The pure functions (:func:`scale_amplitude`,
:func:`time_stretch`, :func:`add_noise`, :func:`add_wander`) take one parameter per beat, for tests and
notebooks.

:func:`balanced_order` is one epoch's index order that draws every class equally often (with replacement):
the sampling counterpart of a class-weighted loss.
"""

from __future__ import annotations

import math

import gin
import torch

from heartlab import checks
from heartlab.errors import HeartlabError

SAMPLING_RATE_HZ = 125.0  # samples per second of every beat
SAMPLINGS = ("shuffle", "balanced")  # the epoch orders of :func:`epoch_order`


def effective_lengths(x: torch.Tensor) -> torch.Tensor:
    """The effective length of each beat of ``x`` ``(B, T)``: the index after its last non-zero sample
    (0 for an all-zero row), as whole numbers in the dtype of ``x``, ``(B,)``. Zeros inside the beat (its
    normalised minimum) do not count as padding."""
    positions = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    return x.sign().abs_().mul_(positions).amax(dim=-1)  # float arithmetic: ~3x faster than a where on int64


def beat_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, length)`` mask of the samples before each beat's effective length ``lengths`` ``(B,)`` (whole
    numbers in a floating dtype, as :func:`effective_lengths` gives them): 1 inside the beat, 0 in its
    padding, in the dtype of ``lengths``."""
    steps = torch.arange(length, device=lengths.device, dtype=lengths.dtype)
    return (lengths.unsqueeze(-1) - steps).clamp_(0.0, 1.0)  # whole-number lengths: exactly 1 or 0


def scale_amplitude(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Each beat of ``x`` ``(B, T)`` multiplied by its factor ``factors`` ``(B,)`` (dimensionless), clipped
    to [0, 1]. Zero padding stays zero."""
    return (x * factors.unsqueeze(-1)).clamp_(0.0, 1.0)


def time_stretch(x: torch.Tensor, factors: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample the non-padded part of each beat of ``x`` ``(B, T)`` by its factor ``factors`` ``(B,)``
    (> 0; > 1 lengthens, < 1 shortens), by linear interpolation.

    A beat of effective length ``L`` covers ``L`` sample periods; stretched by ``r`` it covers ``r * L`` of
    them: output sample ``j`` reads the input at position ``j / r`` for ``j / r < L``, so the new effective
    length is ``ceil(r * L)`` samples (between the last input sample and ``L`` the last sample is held).
    Everything after it is zero, and a beat that becomes longer than ``T`` samples is cut at ``T``. The
    factor 1 gives back ``x`` exactly. Values stay in the range of the input (interpolation only).

    Args:
        x: beats ``(B, T)``, zero-padded at the end.
        factors: stretch factor of each beat ``(B,)``.
        lengths: effective length of each beat ``(B,)`` when already known (see :func:`effective_lengths`).

    Returns:
        The stretched beats ``(B, T)`` and their :func:`beat_mask` ``(B, T)`` (1 inside the stretched beat,
        0 in its padding), both in the dtype of ``x``.
    """
    lengths = (effective_lengths(x) if lengths is None else lengths.to(x.dtype)).unsqueeze(-1)
    size = x.shape[-1]
    steps = torch.arange(size, device=x.device, dtype=x.dtype)
    # the beat with its last sample held over the padding, and the sample after each one: reading between
    # them at any position needs one index, and positions past the beat's end read the held sample
    last_value = x.gather(-1, (lengths - 1).clamp_(min=0).long())
    held = torch.addcmul(x, (steps + 1 - lengths).clamp_(0.0, 1.0), last_value)  # padding: 1
    following = torch.cat([held[:, 1:], last_value], dim=-1)
    position = steps / factors.to(x.dtype).unsqueeze(-1)  # where each output sample reads the input
    mask = (lengths - position).ceil_().clamp_(0.0, 1.0)  # 1 where position < L (float arithmetic: fast)
    below = position.floor().clamp_(max=size - 1)
    index = below.long()
    out = torch.lerp(held.gather(-1, index), following.gather(-1, index), position.sub_(below))
    return out.mul_(mask), mask


def add_noise(x: torch.Tensor, sigmas: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise ``N(0, sigma)`` added to the samples of ``x`` ``(B, T)`` inside the beat (``mask``:
    1 inside, 0 in the padding), with one ``sigma`` per beat ``sigmas`` ``(B,)`` in units of the [0, 1]
    normalised amplitude; clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.addcmul(x, noise, mask * sigmas.unsqueeze(-1)).clamp_(0.0, 1.0)


def add_wander(
    x: torch.Tensor, amplitudes: torch.Tensor, frequencies_hz: torch.Tensor, phases: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Baseline wander: ``a * sin(2 pi f t + phase)`` added to the samples of ``x`` ``(B, T)`` inside the
    beat (``mask``: 1 inside, 0 in the padding), with ``t`` the time since the beat's first sample (s, at
    :data:`SAMPLING_RATE_HZ`); clipped to [0, 1].

    Args:
        amplitudes: ``a`` per beat ``(B,)``, in units of the [0, 1] normalised amplitude.
        frequencies_hz: ``f`` per beat ``(B,)``, Hz.
        phases: per beat ``(B,)``, radians.
    """
    t = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype) / SAMPLING_RATE_HZ
    wave = torch.addcmul(phases.unsqueeze(-1), (2 * math.pi) * frequencies_hz.unsqueeze(-1), t).sin_()
    return torch.addcmul(x, wave, mask * amplitudes.unsqueeze(-1)).clamp_(0.0, 1.0)


@gin.configurable
class Augment:
    """Random beat augmentations, applied to the beats of the **training split only** (never validation or
    test), batch by batch.

    Each augmentation is applied to each beat independently with its probability (0..1; 0 turns it off),
    in this order: time stretch, amplitude scaling, baseline wander, Gaussian noise. All keep the zero
    padding after each beat's end (the stretch moves that end with the beat) and clip values to [0, 1].
    Built once per run (``Augment()``: the gin bindings apply); calling it on ``(B, 187)`` beats with the
    run's generator draws every random number from that generator, vectorised over the batch, with no host
    synchronisation. With every probability 0 it is inactive (:attr:`active` False) and returns its input.

    Args:
        stretch_probability: chance (0..1) that a beat is time-stretched.
        stretch_strength: ``s`` in [0, 1): the stretch factor is uniform in ``[1 - s, 1 + s]``; the beat's
            effective length (samples) is multiplied by it (see :func:`time_stretch`).
        amplitude_probability: chance (0..1) that a beat's amplitude is scaled.
        amplitude_strength: ``s`` >= 0: the factor is log-uniform in ``[1 / (1 + s), 1 + s]`` (dimensionless;
            as likely to shrink as to grow the beat by a given ratio).
        wander_probability: chance (0..1) that a beat gets baseline wander.
        wander_strength: amplitude (>= 0) of the wander sinusoid, in units of the [0, 1] normalised
            amplitude; its phase is uniform in [0, 2 pi).
        wander_min_hz: lowest frequency (Hz, >= 0) of the wander; the frequency is uniform in
            ``[wander_min_hz, wander_max_hz]``. At 0.1..0.5 Hz a 1.5 s beat sees a slow offset and slope.
        wander_max_hz: highest frequency (Hz, >= wander_min_hz, <= 62.5, the Nyquist frequency).
        noise_probability: chance (0..1) that a beat gets Gaussian noise.
        noise_strength: standard deviation (>= 0) of the noise, in units of the [0, 1] normalised amplitude.
    """

    def __init__(
        self,
        stretch_probability: float = 0.0,
        stretch_strength: float = 0.1,
        amplitude_probability: float = 0.0,
        amplitude_strength: float = 0.2,
        wander_probability: float = 0.0,
        wander_strength: float = 0.05,
        wander_min_hz: float = 0.1,
        wander_max_hz: float = 0.5,
        noise_probability: float = 0.0,
        noise_strength: float = 0.01,
    ):
        for name in ("stretch", "amplitude", "wander", "noise"):
            checks.number(f"Augment.{name}_probability", locals()[f"{name}_probability"], 0.0, 1.0)
        checks.number("Augment.stretch_strength", stretch_strength, 0.0, 1.0, high_open=True)
        for name in ("amplitude", "wander", "noise"):
            checks.number(f"Augment.{name}_strength", locals()[f"{name}_strength"], 0.0, math.inf, high_open=True)
        nyquist = SAMPLING_RATE_HZ / 2
        checks.number("Augment.wander_min_hz", wander_min_hz, 0.0, nyquist)
        checks.number("Augment.wander_max_hz", wander_max_hz, 0.0, nyquist)
        if wander_max_hz < wander_min_hz:
            raise HeartlabError(f"Augment.wander_max_hz ({wander_max_hz}) must be >= Augment.wander_min_hz ({wander_min_hz})")
        self.stretch_probability = float(stretch_probability)
        self.stretch_strength = float(stretch_strength)
        self.amplitude_probability = float(amplitude_probability)
        self.amplitude_strength = float(amplitude_strength)
        self.wander_probability = float(wander_probability)
        self.wander_strength = float(wander_strength)
        self.wander_min_hz = float(wander_min_hz)
        self.wander_max_hz = float(wander_max_hz)
        self.noise_probability = float(noise_probability)
        self.noise_strength = float(noise_strength)

    @property
    def active(self) -> bool:
        """Whether any augmentation can change a beat (some probability > 0); when False, calling it
        returns its input and draws nothing."""
        return any(p > 0 for p in (self.stretch_probability, self.amplitude_probability, self.wander_probability, self.noise_probability))

    def __repr__(self) -> str:
        return f"Augment({', '.join(f'{name}={value!r}' for name, value in vars(self).items())})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented copy of the training beats ``x`` ``(B, 187)`` (same shape and dtype); ``x`` itself when
        :attr:`active` is False. ``x`` is not modified."""
        if not self.active:
            return x
        batch = x.shape[0]

        def draw() -> torch.Tensor:  # B uniform numbers in [0, 1)
            return torch.rand(batch, generator=generator, dtype=x.dtype, device=x.device)

        def chosen(probability: float) -> torch.Tensor:  # which beats get an augmentation
            return draw() < probability

        mask = None  # 1 inside each beat, 0 in its padding; amplitude scaling alone does not need it
        if self.stretch_probability > 0:
            apply = chosen(self.stretch_probability)
            factors = 1.0 + self.stretch_strength * (2.0 * draw() - 1.0)
            x, mask = time_stretch(x, torch.where(apply, factors, 1.0))
        if mask is None and (self.wander_probability > 0 or self.noise_probability > 0):
            mask = beat_mask(effective_lengths(x), x.shape[-1])
        if self.amplitude_probability > 0:
            apply = chosen(self.amplitude_probability)
            factors = torch.exp(math.log1p(self.amplitude_strength) * (2.0 * draw() - 1.0))
            x = scale_amplitude(x, torch.where(apply, factors, 1.0))
        if self.wander_probability > 0:
            apply = chosen(self.wander_probability)
            frequencies = self.wander_min_hz + (self.wander_max_hz - self.wander_min_hz) * draw()
            phases = (2 * math.pi) * draw()
            amplitudes = torch.where(apply, self.wander_strength, 0.0).to(x.dtype)
            x = add_wander(x, amplitudes, frequencies, phases, mask)
        if self.noise_probability > 0:
            apply = chosen(self.noise_probability)
            sigmas = torch.where(apply, self.noise_strength, 0.0).to(x.dtype)
            x = add_noise(x, sigmas, mask, generator)
        return x


def balanced_order(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One epoch's order of beat indices that draws every class present equally often.

    The epoch has as many slots as there are beats (``n``); the slots are dealt to the classes present in
    ``labels`` in turn, so each class gets ``n // K`` or ``n // K + 1`` of them (``K`` classes present; which
    classes get the extra ones is random), in a random order. Each slot then draws a beat of its class
    uniformly, with replacement: a rare class's beats recur within an epoch, a frequent class's beats are
    partly left out. In expectation every class weighs the same in the training loss, as with an
    ``inverse`` class-weighted loss: compare the two rather than combine them (together they over-correct).
    No host synchronisation.

    Args:
        labels: class index of every beat ``(n,)``, int64, >= 0 (absent classes are skipped).
        generator: the run's generator (all random numbers are drawn from it).

    Returns:
        int64 ``(n,)`` indices into ``labels``.
    """
    n = labels.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=labels.device)
    counts = torch.bincount(labels)
    present = counts > 0
    # the classes present first, in a random order (absent ones sort last and are never dealt a slot)
    keys = torch.rand(counts.shape, generator=generator, dtype=torch.float64, device=labels.device).masked_fill_(~present, 2.0)
    classes = keys.argsort()
    slot_class = classes[torch.arange(n, device=labels.device) % present.sum()]
    slot_class = slot_class[torch.randperm(n, generator=generator, device=labels.device)]
    # a uniform beat of each slot's class: an offset into that class's run of the label-sorted indices
    by_class = labels.argsort(stable=True)
    starts = counts.cumsum(0) - counts
    size = counts[slot_class]
    offset = (torch.rand(n, generator=generator, dtype=torch.float64, device=labels.device) * size).long()
    offset = torch.minimum(offset, size - 1)
    return by_class[starts[slot_class] + offset]


def epoch_order(sampling: str, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One epoch's order of training-beat indices ``(n,)``.

    Args:
        sampling: ``'shuffle'``: every beat once, in a random order (``torch.randperm``, the same draws as a
            plain shuffle); ``'balanced'``: :func:`balanced_order` (every class equally often, with
            replacement).
        labels: class index of every beat ``(n,)``, int64.
        generator: the run's generator.

    Raises:
        HeartlabError: an unknown ``sampling``.
    """
    if sampling == "shuffle":
        return torch.randperm(labels.shape[0], generator=generator, device=labels.device)
    if sampling == "balanced":
        return balanced_order(labels, generator)
    raise HeartlabError(f"unknown sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
