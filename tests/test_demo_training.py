"""Synthetic demo data is learnable: a small ResNet1D beats chance on both datasets after three epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartlab import train
from heartlab.builders.demo import build_demo
from heartlab.config import load_config

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # trains real models


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build_demo(out, n_train=2000, n_test=400, seed=3)
    return out


@pytest.mark.parametrize(
    "config, train_file, test_file, chance",
    [
        ("arrhythmia_resnet1d.gin", "heart_big_train.parq", "heart_big_test.parq", 0.2),
        ("ptb_resnet1d.gin", "heart_train.parq", "heart_test.parq", 0.5),
    ],
)
def test_resnet1d_learns_demo_data_above_chance(demo_dir, tmp_path, config, train_file, test_file, chance):
    load_config(
        ROOT / "configs" / config,
        [
            f"load_splits.train_file = '{demo_dir / train_file}'",
            f"load_splits.test_file = '{demo_dir / test_file}'",
            f"fit.runs_root = '{tmp_path}'",
            "fit.epochs = 3",
            "torch.optim.AdamW.lr = 3e-3",
            "fit.batch_size = 64",
            "ResNet1D.channels = 16",
            "ResNet1D.blocks = 2",
        ],
    )
    result = train.fit()
    assert result.best_metrics["val/recall_macro"] > chance + 0.25
    assert result.test_metrics["test/recall_macro"] > chance + 0.25
