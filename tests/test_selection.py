"""Model selection in ``train.fit``: which epoch is best, which weights reach the test split, when training
stops early, and which run directories survive a failure.

Every run here trains a tiny CNN2D on synthetic beats from ``make_beats`` (30 per class, 1 thread, constant
learning rate), so the whole file takes a few seconds. With ``lr = 0.01`` the trajectory is known to be
non-monotonic (validation loss falls to epoch 5 and rises at epoch 6; validation recall peaks at epoch 2
and drops at epoch 3), which each test asserts as a precondition instead of hoping for it. Exact ties come
from a frozen model (lr = 0; CNN2D has no BatchNorm or dropout, so every epoch gives the same metrics).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import gin
import pytest
import torch
from torch import nn

from heartlab import train
from heartlab.config import load_config
from heartlab.data import load_splits
from heartlab.errors import NonFiniteLossError
from heartlab.evaluation import evaluate_test_split
from heartlab.models import CNN2D
from helpers import tiny_cnn2d_config

# File names of a run directory (README: "Each run writes runs/<experiment>/<...>/").
CHECKPOINT = "best.pt"
TEST_METRICS = "test_metrics.json"
CONFIG = "config.gin"

LEARNING = ("fit.epochs = 6", "torch.optim.AdamW.lr = 0.01")  # best val/loss: epoch 5; best recall: epoch 2
FROZEN = ("torch.optim.AdamW.lr = 0.0",)  # CNN2D has no BatchNorm and no dropout: every epoch is the same


@gin.configurable
def recorded_cnn2d(num_classes: int) -> nn.Module:
    """``CNN2D`` (with its gin bindings) that remembers the instance, so a callback can read live weights."""
    net = CNN2D(num_classes=num_classes)
    LIVE.append(net)
    return net


LIVE: list[nn.Module] = []


def evaluate_run(run_dir: Path, data) -> dict:
    """``heartlab.runs.evaluate_run`` on a copy of the run that holds ``best.pt`` only: a finished run
    is re-evaluable from its checkpoint alone (it embeds the operative config)."""
    from heartlab import runs

    alone = run_dir.parent / f"{run_dir.name}-best-pt-only"
    alone.mkdir()
    shutil.copy2(run_dir / CHECKPOINT, alone / CHECKPOINT)
    return runs.evaluate_run(alone, data)


@pytest.fixture
def configure(tmp_path, make_beats):
    """``configure(*bindings)``: parse a small .gin (base.gin plus a tiny CNN2D on synthetic beats, runs under
    ``tmp_path / 'runs'``, experiment ``sel``) with ``bindings`` and return the loaded splits."""
    config = tiny_cnn2d_config(tmp_path, make_beats, "sel", "fit.model = @recorded_cnn2d")

    def apply(*bindings: str):
        load_config(config, list(bindings))
        return load_splits()

    return apply


def expected_best(history: list[dict[str, float]], monitor: str, mode: str) -> int:
    """1-based epoch of the first best value of ``monitor``, computed here independently of heartlab."""
    values = [row[monitor] for row in history]
    target = max(values) if mode == "max" else min(values)
    return values.index(target) + 1


def improvements(values: list[float], mode: str) -> list[bool]:
    """For each epoch, whether its value is strictly better than every earlier one."""
    out = []
    for i, value in enumerate(values):
        earlier = values[:i]
        out.append(not earlier or (value > max(earlier) if mode == "max" else value < min(earlier)))
    return out


def validation(row: dict[str, float]) -> dict[str, float]:
    """The validation metrics of a history row (train/loss of a frozen model still varies with batch order)."""
    return {k: v for k, v in row.items() if k.startswith("val/")}


def run_dirs(runs_root: Path, experiment: str = "sel") -> list[Path]:
    folder = runs_root / experiment
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("monitor, mode", [("val/recall_macro", "max"), ("val/loss", "min")])
def test_best_epoch_is_first_best_of_monitor_not_last(configure, tmp_path, monitor, mode):
    data = configure(*LEARNING, f"fit.monitor = '{monitor}'")
    result = train.fit(data=data)

    history = result.history
    assert result.epochs_run == len(history) == 6
    best = expected_best(history, monitor, mode)
    assert best != len(history), f"precondition: the best {monitor} epoch must not be the last: {history}"
    assert result.best_epoch == best
    assert result.best_metrics == history[best - 1]

    state = torch.load(result.run_dir / CHECKPOINT, weights_only=True)
    assert state["epoch"] == best
    assert state["metrics"] == history[best - 1]


def test_equal_values_keep_the_first_epoch(configure):
    """lr = 0 and no BatchNorm: every epoch has exactly the same metrics, so epoch 1 stays the best (a ``>=``
    comparison would move it to the last epoch) in both modes."""
    for monitor in ("val/recall_macro", "val/loss"):
        data = configure("fit.epochs = 3", *FROZEN, f"fit.monitor = '{monitor}'")
        result = train.fit(data=data)
        assert len(result.history) == 3
        assert all(validation(row) == validation(result.history[0]) for row in result.history), "precondition"
        assert result.best_epoch == 1, monitor
        assert torch.load(result.run_dir / CHECKPOINT, weights_only=True)["epoch"] == 1


def test_test_metrics_come_from_the_best_epoch_weights(configure):
    LIVE.clear()
    data = configure(*LEARNING, "fit.monitor = 'val/loss'")
    weights: dict[int, dict[str, torch.Tensor]] = {}

    def keep_weights(report: train.EpochReport) -> None:
        weights[report.epoch] = copy.deepcopy(LIVE[-1].state_dict())

    result = train.fit(data=data, on_epoch_end=keep_weights)
    best, last = result.best_epoch, len(result.history)
    assert best == expected_best(result.history, "val/loss", "min")
    assert best != last, f"precondition: the best epoch must not be the last: {result.history}"
    assert sorted(weights) == list(range(1, last + 1))

    state = torch.load(result.run_dir / CHECKPOINT, weights_only=True)
    assert state["epoch"] == best != last
    assert state["metrics"] == result.history[best - 1]
    for name, tensor in state["model_state"].items():  # best.pt holds the best epoch's weights
        assert torch.equal(tensor, weights[best][name]), name
    assert any(not torch.equal(weights[best][n], weights[last][n]) for n in weights[best])

    written = json.loads((result.run_dir / TEST_METRICS).read_text())
    assert written["best_epoch"] == best
    assert written == json.loads(json.dumps(result.test_metrics))

    # The best checkpoint re-evaluated on the test split gives exactly what the run wrote ...
    again = evaluate_run(result.run_dir, data)
    assert again["best_epoch"] == best
    assert again.keys() == written.keys()
    for name, value in written.items():
        if isinstance(value, float):
            assert again[name] == pytest.approx(value, abs=1e-6), name
        else:
            assert again[name] == value, name

    # ... and the last epoch's weights would have given something else.
    gin.parse_config_file(str(result.run_dir / CONFIG))
    net, loss_fn, _ = train.build_configured(data.train.class_counts(len(data.classes)).tolist())
    net.load_state_dict(weights[last])
    at_last = evaluate_test_split(net, loss_fn, data, 4096, False)
    assert at_last["test/loss"] != pytest.approx(written["test/loss"], abs=1e-6)


@pytest.mark.parametrize(
    "monitor, patience, best, stop",
    [
        # recall: 0.58, 0.67 (best), 0.50, then 0.67 (1 ulp below epoch 2: no improvement), 0.67, 0.58
        ("val/recall_macro", 1, 2, 3),
        ("val/recall_macro", 2, 2, 4),
        # loss: falls to epoch 5, rises at 6, falls below epoch 5 at 7 (patience counting restarts), then rises
        ("val/loss", 2, 7, 9),
    ],
)
def test_patience_stops_after_best_plus_patience_epochs(configure, monitor, patience, best, stop):
    mode = "min" if monitor == "val/loss" else "max"
    data = configure(*LEARNING, "fit.epochs = 10", f"fit.monitor = '{monitor}'", f"fit.patience = {patience}")
    result = train.fit(data=data)
    values = [row[monitor] for row in result.history]
    improved = improvements(values, mode)
    assert expected_best(result.history, monitor, mode) == best, f"precondition: best epoch {best}: {values}"
    assert not any(improved[best:]), f"precondition: no improvement after epoch {best}: {values}"
    if monitor == "val/loss":  # an epoch without improvement before the best one: the count must restart
        assert not all(improved[:best]), f"precondition: a non-improving epoch before {best}: {values}"
    assert result.best_epoch == best
    assert result.epochs_run == len(result.history) == best + patience == stop


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_on_a_plateau(configure, patience):
    data = configure("fit.epochs = 6", *FROZEN, f"fit.patience = {patience}")
    result = train.fit(data=data)
    assert result.best_epoch == 1
    assert result.epochs_run == len(result.history) == 1 + patience
    assert all(validation(row) == validation(result.history[0]) for row in result.history)


def test_patience_longer_than_the_run_runs_every_epoch(configure):
    data = configure("fit.epochs = 4", *FROZEN, "fit.patience = 10")
    result = train.fit(data=data)
    assert result.best_epoch == 1
    assert result.epochs_run == len(result.history) == 4


def test_failure_before_any_checkpoint_leaves_no_run_directory(configure, tmp_path):
    """lr = 1e30 makes the loss infinite in epoch 1, after the run directory was created: fit must remove
    that directory. Asserted: nothing at all is left under ``<runs_root>/sel/`` (the folder itself may stay)."""
    data = configure("fit.epochs = 3", "torch.optim.AdamW.lr = 1e30")
    seen: list[list[Path]] = []
    original = train.train_epoch

    def spy(*args, **kwargs):  # records the run directories that exist while epoch 1 trains
        seen.append(run_dirs(tmp_path / "runs"))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "train_epoch", spy)
        with pytest.raises(NonFiniteLossError, match="epoch 1"):
            train.fit(data=data)
    assert len(seen) == 1 and len(seen[0]) == 1, f"precondition: one run directory during epoch 1: {seen}"
    assert not seen[0][0].exists()
    assert run_dirs(tmp_path / "runs") == []


class StopInEpoch2(Exception):
    pass


def test_failure_after_a_checkpoint_keeps_the_run_directory(configure, tmp_path):
    data = configure(*LEARNING)
    reports: list[train.EpochReport] = []

    def fail_in_epoch_2(report: train.EpochReport) -> None:
        reports.append(report)
        if report.epoch == 2:
            raise StopInEpoch2

    with pytest.raises(StopInEpoch2):
        train.fit(data=data, on_epoch_end=fail_in_epoch_2)
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert run_dir == reports[-1].run_dir
    assert (run_dir / CONFIG).is_file()
    best_so_far = max(r.epoch for r in reports if r.is_best)
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert state["epoch"] == best_so_far
    assert state["metrics"] == reports[best_so_far - 1].metrics
    assert not (run_dir / TEST_METRICS).exists()


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
def test_a_run_directory_passed_by_the_caller_is_never_removed(configure, tmp_path, exists):
    data = configure("fit.epochs = 3", "torch.optim.AdamW.lr = 1e30")
    run_dir = tmp_path / "trial_0001"
    if exists:
        run_dir.mkdir()
        (run_dir / "params.json").write_text("{}")  # what Ray put there before the trial ran
    with pytest.raises(NonFiniteLossError):
        train.fit(data=data, run_dir=run_dir)
    assert run_dir.is_dir()
    assert not (run_dir / CHECKPOINT).exists()
    if exists:
        assert (run_dir / "params.json").read_text() == "{}"
    assert run_dirs(tmp_path / "runs") == []  # and no fresh run directory was made instead
