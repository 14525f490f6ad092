"""Generic fixtures: tiny synthetic beat files and a clean gin config around every test; under CI, a test
skipped because ../shared is absent fails instead."""

from __future__ import annotations

import os
from pathlib import Path

import gin
import numpy as np
import pytest

from heartlab.data import BEAT_LENGTH, read_beats, write_beats
from heartlab.splitting import stratified_split
from helpers import PTB_SAMPLE


def synthetic_beats(n_per_class: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(signals, labels)``: ``n_per_class`` beats of every class, values in [0, 1], classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(num_classes), n_per_class).astype(np.int64)
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    signals[:, :20] += labels[:, None] * 0.1  # a little class signal, still finite
    return signals, labels


@pytest.fixture
def make_beats(tmp_path):
    """``make_beats(n_per_class, num_classes, seed=0, name=None)`` writes a beat file into ``tmp_path``
    with :func:`heartlab.data.write_beats` and returns its path."""
    counter = iter(range(10_000))

    def make(n_per_class: int, num_classes: int, seed: int = 0, name: str | None = None) -> Path:
        signals, labels = synthetic_beats(n_per_class, num_classes, seed)
        return write_beats(tmp_path / (name or f"beats{next(counter)}.parq"), signals, labels)

    return make


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="session")
def ptb_files(tmp_path_factory) -> tuple[Path, Path]:
    """The real PTB sample from ../shared split 80/20 (stratified, seed 0) into train and test files."""
    if not PTB_SAMPLE.is_file():
        pytest.skip(f"real PTB sample not found at {PTB_SAMPLE} (../shared is absent)")
    folder = tmp_path_factory.mktemp("ptb")
    x, y = read_beats(PTB_SAMPLE, num_classes=2)
    keep, held = stratified_split(y, 0.2, seed=0)
    return write_beats(folder / "train.parq", x[keep], y[keep]), write_beats(folder / "test.parq", x[held], y[held])


SHARED_ABSENT = "../shared is absent"  # what every skip for missing real data says (helpers.py, ptb_files)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (``CI=true``) a test skipped for lack of ../shared fails: CI must run it on the real data."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI", "").lower() == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if SHARED_ABSENT in reason:
            report.outcome = "failed"
            report.longrepr = f"CI=true but the test was skipped: {reason}"
    return report
