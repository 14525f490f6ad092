"""SYNTHETIC demo beats: the four beat files generated from a simple morphological model, for trying the
tools without the real data. They are not ECG recordings and say nothing about real performance.

Each beat is a sum of Gaussian waves (P, Q, R, S, T) with per-class timing, width and amplitude, placed in
a short rhythm (previous beat, the beat, next beat) with white noise and baseline wander, then treated like
the real beats: min-max normalised over its context, cut from the R peak for 1.2 x the nominal R-R
interval, zero-padded to 187 samples at 125 Hz.

Classes:

* arrhythmia N: normal sinus beat, regular rhythm;
* arrhythmia S: premature supraventricular beat: early, inverted P, narrow QRS, incomplete pause after it;
* arrhythmia V: premature ventricular beat: no P, wide bizarre QRS, discordant T, full compensatory pause;
* arrhythmia F: fusion of ventricular and normal: intermediate QRS width, flattened T;
* arrhythmia Q: paced beat: pacemaker spike before a wide QRS, fixed rate;
* PTB normal: normal beat; PTB abnormal: ST elevation or depression, flattened or inverted T, at times a
  wider QRS.

Every file carries the parquet key-value metadata ``heartlab.synthetic=true`` and the output folder gets a
``SYNTHETIC_README.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loguru import logger

from heartlab.builders.outputs import StagedOutputs, count_table, write_beat_file
from heartlab.data import BEAT_LENGTH, DATASETS, dataset_files
from heartlab.errors import HeartlabError

RATE = 125  # Hz
SPAN_FACTOR = 1.2
CONTEXT = (-1.5, 1.6)  # seconds around the R peak over which a beat is min-max normalised
README_NAME = "SYNTHETIC_README.txt"
OUTPUT_FILES = dataset_files("ptb", "arrhythmia")  # the file names the configs read (heartlab.data.DATASETS)
# class shares, imbalanced like the real sets but with enough minority beats to learn from
ARRHYTHMIA_SHARES = (0.60, 0.10, 0.14, 0.06, 0.10)  # N S V F Q
PTB_SHARES = (0.30, 0.70)  # normal abnormal
DEFAULT_N_TRAIN = 4000
DEFAULT_SEED = 0

# Morphologies: waves as (centre in s relative to the beat's R peak, width sigma in s, amplitude).
NORMAL = ((-0.17, 0.022, 0.12), (-0.028, 0.009, -0.10), (0.0, 0.011, 1.0), (0.028, 0.010, -0.22), (0.25, 0.045, 0.30))
SUPRAVENTRICULAR = (
    (-0.10, 0.016, -0.14),  # early, abnormal (inverted) P
    (-0.026, 0.009, -0.06),
    (0.0, 0.011, 0.85),
    (0.026, 0.010, -0.30),
    (0.21, 0.040, 0.18),
)
VENTRICULAR = ((0.0, 0.035, 1.25), (0.085, 0.040, -0.60), (0.33, 0.070, -0.45))  # no P, wide, discordant T
FUSION = ((-0.17, 0.022, 0.07), (0.0, 0.020, 1.05), (0.045, 0.022, -0.38), (0.27, 0.060, 0.06))
PACED = ((-0.05, 0.004, 1.1), (0.0, 0.030, 0.80), (0.065, 0.030, -0.30), (0.30, 0.060, -0.28))  # spike first
PTB_ABNORMAL = NORMAL[:4] + ((0.13, 0.060, 0.0), (0.26, 0.050, 0.0))  # ST and T amplitudes drawn per beat


def _waves(template: tuple[tuple[float, float, float], ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, k, 3)`` jittered copies of a morphology."""
    base = np.broadcast_to(np.asarray(template, dtype=np.float64), (n, len(template), 3)).copy()
    base[..., 0] += rng.normal(0.0, 0.006, base.shape[:2])
    base[..., 1] *= rng.uniform(0.85, 1.15, base.shape[:2])
    base[..., 2] *= rng.uniform(0.85, 1.15, base.shape[:2])
    return base


def _ptb_abnormal(n: int, rng: np.random.Generator) -> np.ndarray:
    waves = _waves(PTB_ABNORMAL, n, rng)
    st_shift = rng.choice([-1.0, 1.0], n) * rng.uniform(0.10, 0.25, n)
    waves[:, 4, 2] = st_shift  # ST elevation or depression
    waves[:, 5, 2] = rng.uniform(-0.35, 0.05, n)  # flattened or inverted T
    wide = rng.random(n) < 0.3  # some with a widened QRS
    waves[wide, 2:4, 1] *= 2.0
    return waves


def _rhythm(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Waves of the previous, current and next beat, ``(n, k, 3)`` with centres relative to the current
    R peak, and the nominal R-R interval ``(n,)`` (s)."""
    nominal = rng.uniform(0.65, 1.15, n)
    jitter = lambda lo, hi: nominal * rng.uniform(lo, hi, n)  # noqa: E731
    normal = lambda: _waves(NORMAL, n, rng)  # noqa: E731
    if kind == "N":
        prev, cur, nxt, rr_prev, rr_next = normal(), normal(), normal(), jitter(0.95, 1.05), jitter(0.95, 1.05)
    elif kind == "S":
        rr_prev = jitter(0.60, 0.75)
        prev, cur, nxt, rr_next = normal(), _waves(SUPRAVENTRICULAR, n, rng), normal(), jitter(1.10, 1.30)
    elif kind == "V":
        rr_prev = jitter(0.60, 0.75)
        cur = _waves(VENTRICULAR, n, rng)
        cur[rng.random(n) < 0.25, :, 2] *= -1.0  # in some leads the complex points down
        prev, nxt, rr_next = normal(), normal(), 2 * nominal - rr_prev
    elif kind == "F":
        prev, cur, nxt = normal(), _waves(FUSION, n, rng), normal()
        rr_prev, rr_next = jitter(0.90, 1.00), jitter(0.95, 1.10)
    elif kind == "Q":
        nominal = rng.uniform(0.80, 0.90, n)  # fixed pacing rate
        prev, cur, nxt = (_waves(PACED, n, rng) for _ in range(3))
        rr_prev, rr_next = nominal * rng.uniform(0.99, 1.01, n), nominal * rng.uniform(0.99, 1.01, n)
    elif kind == "normal":
        prev, cur, nxt, rr_prev, rr_next = normal(), normal(), normal(), jitter(0.95, 1.05), jitter(0.95, 1.05)
    elif kind == "abnormal":
        prev, cur, nxt = _ptb_abnormal(n, rng), _ptb_abnormal(n, rng), _ptb_abnormal(n, rng)
        rr_prev, rr_next = jitter(0.93, 1.07), jitter(0.93, 1.07)
    else:
        raise ValueError(f"unknown beat kind {kind!r}")
    prev[..., 0] -= rr_prev[:, None]
    nxt[..., 0] += rr_next[:, None]
    return np.concatenate([prev, cur, nxt], axis=1), nominal


def synthesize(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` synthetic beats of one kind: float32 ``(n, 187)`` in [0, 1], starting at the R peak."""
    if n == 0:
        return np.zeros((0, BEAT_LENGTH), dtype=np.float32)
    waves, nominal = _rhythm(kind, n, rng)
    t = np.arange(round(CONTEXT[0] * RATE), round(CONTEXT[1] * RATE)) / RATE  # (L,)
    centre, width, amp = (waves[..., i][:, :, None] for i in range(3))
    signal = (amp * np.exp(-0.5 * ((t[None, None, :] - centre) / width) ** 2)).sum(axis=1)  # (n, L)
    wander_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wander = rng.uniform(0.0, 0.15, (n, 1)) * np.sin(2 * np.pi * rng.uniform(0.15, 0.5, (n, 1)) * t + wander_phase)
    signal += wander + rng.normal(0.0, 1.0, signal.shape) * rng.uniform(0.01, 0.035, (n, 1))
    low, high = signal.min(axis=1, keepdims=True), signal.max(axis=1, keepdims=True)
    signal = (signal - low) / np.where(high > low, high - low, 1.0)

    r_index = -round(CONTEXT[0] * RATE)
    starts = r_index + rng.integers(-1, 2, n)  # the annotation sits within a sample of the peak
    spans = np.minimum(np.round(SPAN_FACTOR * nominal * RATE).astype(int), BEAT_LENGTH)
    beats = np.zeros((n, BEAT_LENGTH), dtype=np.float32)
    for i in range(n):
        beats[i, : spans[i]] = signal[i, starts[i] : starts[i] + spans[i]]
    return beats


def _class_counts(n: int, shares: tuple[float, ...]) -> list[int]:
    counts = [int(round(share * n)) for share in shares]
    counts[0] += n - sum(counts)
    return counts


def make_dataset(
    kinds: tuple[str, ...], shares: tuple[float, ...], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` beats, classes in proportion ``shares`` (label = index in ``kinds``), rows shuffled."""
    counts = _class_counts(n, shares)
    signals = np.concatenate([synthesize(kind, c, rng) for kind, c in zip(kinds, counts)])
    labels = np.concatenate([np.full(c, label, dtype=np.int64) for label, c in enumerate(counts)])
    order = rng.permutation(n)
    return signals[order], labels[order]


def _readme(n_train: int, n_test: int, seed: int) -> str:
    return (
        "SYNTHETIC DATA - NOT ECG RECORDINGS\n"
        "===================================\n\n"
        "The beat files in this folder were generated by `heartlab data demo` "
        f"(seed {seed}, {n_train} training and {n_test} test beats per dataset) from a simple morphological\n"
        "model: P, QRS and T waves as sums of Gaussians with per-class timing, width and amplitude, plus noise\n"
        "and baseline wander, normalised and zero-padded like the real beats (187 samples at 125 Hz).\n\n"
        + "\n".join(f"  {name}" for name in OUTPUT_FILES.values())
        + "\n\nThey exist to try the tools end to end without the real data. Results obtained on them say\n"
        "nothing about performance on real ECGs. Every file carries the parquet metadata\n"
        "`heartlab.synthetic=true`; `heartlab data info FILE` shows it.\n"
        "Real data: `heartlab data mitbih --source DIR --out DIR`, `heartlab data kaggle DIR --out DIR`.\n"
    )


def build_demo(
    out: str | Path,
    *,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
) -> dict[str, Path]:
    """Write the four synthetic beat files and ``SYNTHETIC_README.txt`` into ``out``."""
    n_test = n_train // 4 if n_test is None else n_test
    if n_train < 10 or n_test < 10:
        raise HeartlabError(f"--n-train and --n-test must be at least 10, got {n_train} and {n_test}")
    if n_train > 1_000_000 or n_test > 1_000_000:
        raise HeartlabError("--n-train and --n-test are limited to 1,000,000 beats")
    out = Path(out)
    destinations = {key: out / name for key, name in OUTPUT_FILES.items()}
    readme = out / README_NAME
    outputs = StagedOutputs([*destinations.values(), readme], force=force)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    arrhythmia, ptb = DATASETS["arrhythmia"], DATASETS["ptb"]
    data = {
        "arrhythmia_train": make_dataset(arrhythmia.classes, ARRHYTHMIA_SHARES, n_train, streams[0]),
        "arrhythmia_test": make_dataset(arrhythmia.classes, ARRHYTHMIA_SHARES, n_test, streams[1]),
        "ptb_train": make_dataset(ptb.classes, PTB_SHARES, n_train, streams[2]),
        "ptb_test": make_dataset(ptb.classes, PTB_SHARES, n_test, streams[3]),
    }
    meta = {
        "synthetic": "true",
        "generator": "heartlab data demo (Gaussian-wave morphological model)",
        "seed": str(seed),
    }
    with outputs:
        for key, (x, y) in data.items():
            write_beat_file(outputs, destinations[key], x, y, {**meta, "split": key.rsplit("_", 1)[1]})
        outputs.staged(readme).write_text(_readme(n_train, n_test, seed))
    for name, spec in (("arrhythmia", arrhythmia), ("ptb", ptb)):
        print(f"SYNTHETIC {name} beats (seed {seed}):")
        print(count_table(spec.classes, {"train": data[f"{name}_train"][1], "test": data[f"{name}_test"][1]}))
    logger.warning(f"demo: wrote SYNTHETIC beat files (not real ECG data) to {out}; see {readme}")
    return destinations
