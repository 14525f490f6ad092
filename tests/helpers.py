"""What several test files share: where ../shared lives, and running `heartlab data` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from heartlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PTB_SAMPLE = SHARED / "data" / "ptb" / "ptb_beats_sample.parq"
MITDB = SHARED / "data" / "mitdb"

needs_ptb_sample = pytest.mark.skipif(
    not PTB_SAMPLE.is_file(), reason=f"real PTB sample not found at {PTB_SAMPLE} (../shared is absent)"
)
needs_mitdb = pytest.mark.skipif(
    not (MITDB / "100.atr").is_file(), reason=f"MIT-BIH records not found in {MITDB} (../shared is absent)"
)


def run_data(capsys, *argv: str) -> tuple[int, str, str]:
    """`heartlab data ARGV...` in process: (exit code, stdout, stderr)."""
    code = main(["data", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expect_data_error(capsys, *argv: str, words: tuple[str, ...] = (), out: Path | None = None) -> str:
    """Run `heartlab data ARGV...` expecting exit code 2 and exactly one `error:` line holding ``words``
    (case-insensitive); with ``out``, that folder must hold nothing afterwards. Returns the error line."""
    code, _, err = run_data(capsys, *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return lines[0]


def tiny_cnn2d_config(tmp_path: Path, make_beats, experiment: str, *lines: str) -> Path:
    """A config over the real base.gin: a tiny CNN2D (8 channels, no extra block, batches of 8, constant
    lr, 1 thread) on synthetic two-class beat files, runs under ``tmp_path / 'runs'``, plus ``lines``."""
    train_file = make_beats(30, 2, seed=0, name="train.parq")
    test_file = make_beats(20, 2, seed=1, name="test.parq")
    config = tmp_path / f"{experiment}.gin"
    config.write_text(
        "\n".join([
            f"include '{ROOT / 'configs' / 'base.gin'}'",
            "load_splits.dataset = 'ptb'",
            f"load_splits.train_file = '{train_file}'",
            f"load_splits.test_file = '{test_file}'",
            f"fit.experiment = '{experiment}'",
            f"fit.runs_root = '{tmp_path / 'runs'}'",
            "fit.model = @CNN2D",
            "CNN2D.hidden = 8",
            "CNN2D.num_layers = 0",
            "fit.batch_size = 8",
            "fit.schedule = 'none'",  # the trajectory does not depend on fit.epochs, fit.patience or fit.monitor
            "fit.num_threads = 1",
            "fit.patience = None",
            *lines,
        ]) + "\n"
    )
    return config


class HostSyncCounter(TorchDispatchMode):
    """Counts aten._local_scalar_dense: what .item(), float(t), bool(t) and `if t:` on a tensor run."""

    def __init__(self):
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))
