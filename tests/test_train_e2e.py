"""End to end: `heartlab train` on real PTB beats from ../shared, one short run, everything it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import gin
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from heartlab import cli, train
from heartlab.config import load_config
from helpers import ROOT

pytestmark = pytest.mark.slow  # trains real models


def bindings(ptb_files, runs_root: Path, *extra: str) -> list[str]:
    train_file, test_file = ptb_files
    return [
        f"load_splits.train_file = '{train_file}'",
        f"load_splits.test_file = '{test_file}'",
        f"fit.runs_root = '{runs_root}'",
        "fit.epochs = 1",
        "ResNet1D.channels = 8",
        "ResNet1D.blocks = 2",
        *extra,
    ]


def read_scalars(run_dir: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_train_cli_leaves_a_complete_run(ptb_files, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", str(ROOT / "configs" / "ptb_resnet1d.gin")]
    for binding in bindings(ptb_files, runs):
        args += ["--bind", binding]
    assert cli.main(args) == 0

    (run_dir,) = (runs / "ptb_resnet1d").iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.gin", "best.pt", "test_metrics.json"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)

    test_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert 0.0 <= test_metrics["test/recall_macro"] <= 1.0
    assert set(test_metrics) >= {"test/recall/normal", "test/recall/abnormal", "test/auroc", "confusion_matrix"}
    assert sum(map(sum, test_metrics["confusion_matrix"])) == 465  # the whole test file, once

    tags = read_scalars(run_dir).Tags()
    expected = {
        "train/loss", "val/loss", "val/recall_macro", "val/recall/normal", "val/recall/abnormal",
        "val/precision_macro", "val/f1_macro", "val/accuracy", "val/auroc", "lr",
    }
    assert expected <= set(tags["scalars"])
    assert "val/confusion_matrix" in tags["images"]
    assert read_scalars(run_dir).Scalars("val/recall_macro")[0].step == 1

    # config.gin re-parses on its own and rebuilds the same model: the checkpoint loads into it.
    gin.clear_config()
    gin.parse_config_file(str(run_dir / "config.gin"))
    assert gin.query_parameter("ResNet1D.channels") == 8
    model = gin.query_parameter("fit.model").scoped_configurable_fn(num_classes=2)
    state = torch.load(run_dir / "best.pt", weights_only=True)["model_state"]
    model.load_state_dict(state)  # strict: same architecture, same parameter shapes
    assert type(model).__name__ == "ResNet1D"


def test_same_seed_gives_identical_validation_metrics(ptb_files, tmp_path):
    config = ROOT / "configs" / "ptb_cnn2d.gin"
    results = []
    for attempt in range(2):
        load_config(config, bindings(ptb_files, tmp_path / f"runs{attempt}", "fit.epochs = 2", "fit.num_threads = 1"))
        results.append(train.fit().history)
    assert results[0] == results[1]
    load_config(config, bindings(ptb_files, tmp_path / "runs2", "fit.epochs = 2", "fit.num_threads = 1", "SEED = 1"))
    assert train.fit().history != results[0]


def test_hparams_session_lists_gin_bindings(ptb_files, tmp_path):
    load_config(ROOT / "configs" / "ptb_resnet1d.gin", bindings(ptb_files, tmp_path / "runs"))
    result = train.fit()
    accumulator = read_scalars(result.run_dir)
    plugin_tags = accumulator.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(plugin_tags)
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(plugin_tags["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["ResNet1D.channels"].number_value == 8
    assert start.hparams["fit.model"].string_value == "@ResNet1D"
    assert "best/val/recall_macro" in accumulator.Tags()["scalars"]
