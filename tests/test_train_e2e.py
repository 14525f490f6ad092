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


def test_operating_point_is_chosen_on_validation_stored_and_applied_on_test(ptb_files, tmp_path):
    """The threshold chosen on validation reaches operating_point.target_recall there; best.pt and
    test_metrics.json hold it; test reports recall/precision at it and at 0.5, PR-AUC and ROC-AUC;
    the run's TensorBoard has a PR curve; `heartlab predict` on the test file reproduces test_metrics.json."""
    from heartlab import metrics
    from heartlab.operating_point import OperatingPoint
    from heartlab.predict import predict_file

    load_config(ROOT / "configs" / "ptb_resnet1d.gin", bindings(ptb_files, tmp_path / "runs", "fit.epochs = 2"))
    result = train.fit()
    point = result.operating_point
    assert point.kind == "threshold" and result.operating_metrics["val/threshold"] == point.value
    assert result.operating_metrics["val/op/recall"] >= 0.99
    assert set(result.history[0]) == {"train/loss", "lr", *metrics.metric_names(("normal", "abnormal"))}
    assert result.history[-1]["val/op/recall"] >= 0.99  # every validation epoch reports its own operating point

    state = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert OperatingPoint.from_dict(state["operating_point"]) == point and state["classes"] == ["normal", "abnormal"]
    written = json.loads((result.run_dir / "test_metrics.json").read_text())
    assert written["operating_point"] == point.to_dict() and written["test/threshold"] == point.value
    for name in ("op/recall", "op/precision", "op/specificity", "at05/recall", "at05/precision", "average_precision", "auroc"):
        assert 0.0 <= written[f"test/{name}"] <= 1.0, name
    assert sum(map(sum, written["confusion_matrix_op"])) == 465
    tp = written["confusion_matrix_op"][1][1]
    assert written["test/op/recall"] == pytest.approx(tp / sum(written["confusion_matrix_op"][1]))

    assert "val/pr_curve" in read_scalars(result.run_dir).Tags()["tensors"]

    values = predict_file(result.run_dir, ptb_files[1], tmp_path / "pred.parquet")
    compared = [k for k, v in written.items() if k.startswith("test/") and k != "test/loss" and isinstance(v, float)]
    assert len(compared) > 20
    for name in compared:
        assert values["predict/" + name.removeprefix("test/")] == pytest.approx(written[name], abs=1e-6), name


def test_augmentation_and_balanced_sampling_reach_training_only_and_the_operative_config(ptb_files, tmp_path):
    config = ROOT / "configs" / "ptb_cnn2d.gin"
    runs = tmp_path / "runs"

    def history(*extra: str) -> tuple[list[dict], str]:
        load_config(config, bindings(ptb_files, runs, "fit.epochs = 1", "fit.num_threads = 1", *extra))
        result = train.fit(evaluate_test=False)
        return result.history, (result.run_dir / "config.gin").read_text()

    plain, operative = history()
    assert "Augment.noise_probability = 0.0" in operative and "fit.sampling = 'shuffle'" in operative
    assert history("Augment.noise_probability = 0.0")[0] == plain  # an inactive Augment draws nothing
    augmented, operative = history("Augment.noise_probability = 1.0", "Augment.stretch_probability = 0.5")
    assert "Augment.noise_probability = 1.0" in operative
    assert augmented[0]["train/loss"] != plain[0]["train/loss"]
    balanced, operative = history("fit.sampling = 'balanced'")
    assert "fit.sampling = 'balanced'" in operative and balanced[0]["train/loss"] != plain[0]["train/loss"]
