"""What a run's TensorBoard event file holds, value by value: per-epoch scalars equal ``FitResult.history``,
``best/...`` scalars follow the running best of the monitored metric, test scalars equal test_metrics.json.

Event files store scalars as float32, so every expected value is rounded to float32 and compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from heartlab import train
from heartlab.config import load_config
from heartlab.data import load_splits
from helpers import tiny_cnn2d_config

MONITOR = "val/recall_macro"


def f32(value: float) -> float:
    return float(np.float32(value))


@pytest.fixture
def fitted(tmp_path, make_beats) -> train.FitResult:
    """Three epochs of a tiny CNN2D on synthetic beats; validation recall peaks at epoch 2 and drops at 3."""
    config = tiny_cnn2d_config(
        tmp_path, make_beats, "tb", "fit.epochs = 3", f"fit.monitor = '{MONITOR}'", "torch.optim.AdamW.lr = 0.01"
    )
    load_config(config)
    return train.fit(data=load_splits())


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def running_best(history: list[dict[str, float]], monitor: str) -> list[int]:
    """For each epoch, the 1-based epoch of the first maximum of ``monitor`` so far."""
    best, out = 0, []
    for epoch, row in enumerate(history, start=1):
        if best == 0 or row[monitor] > history[best - 1][monitor]:
            best = epoch
        out.append(best)
    return out


def test_event_file_values_match_the_run(fitted):
    result = fitted
    history = result.history
    assert len(history) == 3
    best_so_far = running_best(history, MONITOR)
    assert best_so_far[-1] == result.best_epoch
    assert best_so_far[-1] != len(history), f"precondition: the last epoch is not the best: {best_so_far}"

    logged = scalars(result.run_dir)
    steps = list(range(1, len(history) + 1))

    for name in ("train/loss", "val/loss", MONITOR, "val/accuracy", "val/auroc", "lr"):
        assert [step for step, _ in logged[name]] == steps, name
        assert [value for _, value in logged[name]] == [f32(row[name]) for row in history], name
    for name in history[0]:  # every per-epoch value, whatever else the history holds
        assert [value for _, value in logged[name]] == [f32(row[name]) for row in history], name

    for name in (f"best/{MONITOR}", "best/val/loss", "best/val/accuracy"):
        assert [step for step, _ in logged[name]] == steps, name
        expected = [f32(history[best - 1][name.removeprefix("best/")]) for best in best_so_far]
        assert [value for _, value in logged[name]] == expected, name
    # the best value can stay while the current one drops (epoch 3): logged best != logged current there
    assert logged[f"best/{MONITOR}"][-1][1] != logged[MONITOR][-1][1]

    written = json.loads((result.run_dir / "test_metrics.json").read_text())
    test_names = [name for name in written if name.startswith("test/")]
    assert set(test_names) == {name for name in logged if name.startswith("test/")}
    assert {"test/loss", "test/recall_macro", "test/auroc"} <= set(test_names)
    for name in test_names:
        assert logged[name] == [(result.best_epoch, f32(written[name]))], name
