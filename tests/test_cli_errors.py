"""`heartlab train` error handling (one `error:` line, exit code 2, no run directory left behind), one tiny
successful run, and the small helpers of heartlab.train."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from heartlab import cli, train
from heartlab import runs as run_files
from heartlab.data import BEAT_LENGTH, Split, write_beats

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "base.gin"


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A config that includes the real base.gin by absolute path and trains a tiny ResNet1D for one epoch."""
    path = tmp_path / "tiny.gin"
    path.write_text(
        f"include '{BASE}'\n"
        "load_splits.dataset = 'ptb'\n"
        "fit.experiment = 'tiny'\n"
        "fit.model = @ResNet1D\n"
        "ResNet1D.channels = 4\n"
        "ResNet1D.blocks = 1\n"
        "fit.epochs = 1\n"
    )
    return path


@pytest.fixture
def good_files(make_beats) -> tuple[Path, Path]:
    return make_beats(12, 2, seed=1, name="train.parq"), make_beats(4, 2, seed=2, name="test.parq")


def train_args(config: Path, runs: Path, train_file: Path, test_file: Path, *extra: str) -> list[str]:
    bindings = [
        f"fit.runs_root = '{runs}'",
        f"load_splits.train_file = '{train_file}'",
        f"load_splits.test_file = '{test_file}'",
        *extra,
    ]
    args = ["train", str(config)]
    for binding in bindings:
        args += ["--bind", binding]
    return args


def run_dirs(runs: Path) -> list[Path]:
    return [p for p in runs.glob("*/*") if p.is_dir()] if runs.exists() else []


def assert_one_error_line(err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], err
    return lines[0]


# ---------------------------------------------------------------- bad data files


def bad_file(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"bad_{kind}.parq"
    rng = np.random.default_rng(0)
    signals = rng.random((10, BEAT_LENGTH)).astype(np.float32)
    labels = np.arange(10) % 2
    if kind == "missing":
        return path
    if kind == "not_parquet":
        path.write_text("label,0,1\n0,0.1,0.2\n")
    elif kind == "nan":
        signals[4, 100] = np.nan
        write_beats(path, signals, labels)
    elif kind == "other_dataset":
        write_beats(path, signals, np.arange(10) % 5)
    elif kind == "half_label":
        write_beats(path, signals, labels + 0.5)
    return path


@pytest.mark.parametrize("kind", ["missing", "not_parquet", "nan", "other_dataset", "half_label"])
@pytest.mark.parametrize("which", ["train", "test"])
def test_bad_data_file_gives_one_error_line_and_no_run(kind, which, experiment, good_files, tmp_path, capsys):
    bad = bad_file(kind, tmp_path)
    train_file, test_file = (bad, good_files[1]) if which == "train" else (good_files[0], bad)
    runs = tmp_path / "runs"
    assert cli.main(train_args(experiment, runs, train_file, test_file)) == 2
    assert_one_error_line(capsys.readouterr().err, str(bad))
    assert run_dirs(runs) == []


def test_unknown_schedule_gives_error_and_no_run(experiment, good_files, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli.main(train_args(experiment, runs, *good_files, "fit.schedule = 'linear'")) == 2
    assert_one_error_line(capsys.readouterr().err, "fit.schedule", "'linear'")
    assert run_dirs(runs) == []


def test_unknown_monitor_gives_error_and_no_run(experiment, good_files, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli.main(train_args(experiment, runs, *good_files, "fit.monitor = 'val/recall/N'")) == 2
    assert_one_error_line(capsys.readouterr().err, "fit.monitor", "val/recall/normal")
    assert run_dirs(runs) == []


def test_unknown_binding_gives_error(experiment, good_files, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli.main(train_args(experiment, runs, *good_files, "ResNet1D.chanels = 8")) == 2
    assert_one_error_line(capsys.readouterr().err, "--bind 'ResNet1D.chanels = 8'", "chanels")
    assert run_dirs(runs) == []


def test_missing_config_gives_error(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.gin")]) == 2
    assert_one_error_line(capsys.readouterr().err, "nope.gin", "no such config file")


def test_config_with_unclosed_bracket_gives_error(tmp_path, capsys):
    config = tmp_path / "unclosed.gin"
    config.write_text(f"include '{BASE}'\nfit.epochs = (3\n")
    assert cli.main(["train", str(config)]) == 2
    assert_one_error_line(capsys.readouterr().err, str(config))


def heartlab_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`heartlab ARGS...` as a real process (python -m heartlab.cli)."""
    return subprocess.run(
        [sys.executable, "-m", "heartlab.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_subprocess_bad_input_exit_code_and_single_stderr_line(experiment, good_files, tmp_path):
    bad = bad_file("not_parquet", tmp_path)
    runs = tmp_path / "runs"
    completed = heartlab_process(train_args(experiment, runs, bad, good_files[1]), cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert_one_error_line(completed.stderr, str(bad), "parquet")
    assert completed.stdout == ""
    assert run_dirs(runs) == []


def test_subprocess_real_config_from_another_directory_single_stderr_line(good_files, tmp_path):
    """`heartlab train /path/to/configs/ptb_cnn2d.gin` run outside the project root: its relative
    `include 'configs/base.gin'` resolves (documented), and a bad data file still gives exactly one line."""
    bad = bad_file("nan", tmp_path)
    runs = tmp_path / "runs"
    completed = heartlab_process(train_args(ROOT / "configs" / "ptb_cnn2d.gin", runs, bad, good_files[1]), cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert_one_error_line(completed.stderr, str(bad), "NaN")
    assert run_dirs(runs) == []


# ---------------------------------------------------------------- a good run


def test_good_run_returns_zero_and_leaves_one_complete_run(experiment, good_files, tmp_path):
    runs = tmp_path / "runs"
    assert cli.main(train_args(experiment, runs, *good_files)) == 0
    dirs = run_dirs(runs)
    assert len(dirs) == 1
    run_dir = dirs[0]
    assert run_dir.parent.name == "tiny"
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.gin", "best.pt", "test_metrics.json"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    assert not any(name.endswith(".partial") for name in names)
    test_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert test_metrics["best_epoch"] == 1
    assert test_metrics["classes"] == ["normal", "abnormal"]
    assert sum(map(sum, test_metrics["confusion_matrix"])) == 8  # every test beat, once
    assert 0.0 <= test_metrics["test/recall_macro"] <= 1.0
    config = (run_dir / "config.gin").read_text()
    assert "ResNet1D.channels = 4" in config
    checkpoint = torch.load(run_dir / "best.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and "val/recall_macro" in checkpoint["metrics"]


# ---------------------------------------------------------------- train helpers


@pytest.mark.parametrize(
    "n, batch_size, expected",
    [(10, 4, 3), (9, 4, 2), (8, 4, 2), (1, 4, 0), (4, 4, 1), (5, 4, 1), (256, 256, 1), (257, 256, 1), (258, 256, 2)],
)
def test_steps_per_epoch(n, batch_size, expected):
    assert train.steps_per_epoch(n, batch_size) == expected


class TinyNet(nn.Module):
    input_view = "1d"

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(BEAT_LENGTH, 2)

    def forward(self, x):
        return self.linear(x[:, 0])


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_steps_per_epoch_matches_the_steps_train_epoch_takes(batch_size):
    """The schedules are sized with steps_per_epoch, so it must equal the optimizer steps of an epoch."""
    for n in range(1, 8):
        torch.manual_seed(0)
        net = TinyNet()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        steps = []
        optimizer.register_step_post_hook(lambda *_, steps=steps: steps.append(1))
        split = Split(torch.rand(n, BEAT_LENGTH), torch.arange(n) % 2)
        generator = torch.Generator().manual_seed(0)
        train.train_epoch(net, nn.CrossEntropyLoss(), optimizer, None, split, batch_size, generator, bf16=False)
        assert len(steps) == train.steps_per_epoch(n, batch_size), f"n={n}, batch_size={batch_size}"


@pytest.mark.parametrize(
    "value, best, mode, expected",
    [
        (0.1, None, "max", True),
        (9.0, None, "min", True),
        (0.6, 0.5, "max", True),
        (0.5, 0.5, "max", False),
        (0.4, 0.5, "max", False),
        (0.4, 0.5, "min", True),
        (0.5, 0.5, "min", False),
        (0.6, 0.5, "min", False),
        (float("nan"), None, "max", False),  # a NaN monitor must not become the best and block every later epoch
        (float("nan"), 0.5, "min", False),
        (float("inf"), None, "min", False),
    ],
)
def test_is_improvement(value, best, mode, expected):
    assert train.is_improvement(value, best, mode) is expected


class FrozenClock:
    @staticmethod
    def now():
        return datetime(2024, 1, 2, 3, 4, 5)


def test_new_run_dir_same_second_gives_different_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(run_files, "datetime", FrozenClock)
    first = run_files.new_run_dir(tmp_path, "exp")
    second = run_files.new_run_dir(tmp_path, "exp")
    assert first != second
    assert first.is_dir() and second.is_dir()
    assert first.parent == second.parent == tmp_path / "exp"
    assert first.name.startswith("20240102-030405-") and second.name.startswith("20240102-030405-")


def test_new_run_dir_never_reuses_an_existing_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(run_files, "datetime", FrozenClock)
    fixed = uuid.UUID("12345678123456781234567812345678")
    monkeypatch.setattr(run_files.uuid, "uuid4", lambda: fixed)
    first = run_files.new_run_dir(tmp_path, "exp")
    (first / "marker").write_text("x")
    with pytest.raises(FileExistsError):
        run_files.new_run_dir(tmp_path, "exp")
    assert [p.name for p in first.iterdir()] == ["marker"]
