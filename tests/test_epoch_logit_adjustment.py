"""Multi-class runs with ``operating_point.logit_adjustment``: every epoch reports its own adjustment's
metrics (``val/op/...``) so that the decision the run ends with selects epochs and trials; the run's final
operating point is the best epoch's; a ``val/op/...`` monitor without the adjustment is one error line."""

from __future__ import annotations

import gin
import numpy as np
import pytest

from heartlab import cli, config, operating_point, train
from heartlab.data import BEAT_LENGTH, write_beats
from heartlab.errors import HeartlabError
from helpers import ROOT

MONITOR = "val/op/recall_macro_floor"


COUNTS = (150, 25, 40, 15, 25)  # N, S, V, F, Q: imbalanced, as MIT-BIH is, so the adjustment has a prior to move


def imbalanced_beats(path, seed: int):
    """Five classes in COUNTS proportions; each class a bump at its own place, plus noise: learnable in a
    few epochs, not perfectly."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), COUNTS)
    rng.shuffle(labels)
    signals = rng.normal(0.3, 0.15, (labels.size, BEAT_LENGTH))
    for c in range(5):
        signals[labels == c, 20 + 30 * c: 40 + 30 * c] += 0.4
    return write_beats(path, np.clip(signals, 0, 1).astype(np.float32), labels.astype(np.int64))


def five_class_config(tmp_path, make_beats, *lines: str):
    train_file = imbalanced_beats(tmp_path / "train.parq", 0)
    test_file = imbalanced_beats(tmp_path / "test.parq", 1)
    path = tmp_path / "five.gin"
    path.write_text("\n".join([
        f"include '{ROOT / 'configs' / 'base.gin'}'",
        "load_splits.dataset = 'arrhythmia'",
        f"load_splits.train_file = '{train_file}'",
        f"load_splits.test_file = '{test_file}'",
        "fit.experiment = 'five'",
        f"fit.runs_root = '{tmp_path / 'runs'}'",
        "fit.model = @CNN2D",
        "CNN2D.hidden = 8",
        "CNN2D.num_layers = 0",
        "fit.epochs = 4",
        "torch.optim.AdamW.lr = 1e-2",
        "fit.batch_size = 16",
        "fit.schedule = 'none'",
        "fit.num_threads = 1",
        "fit.patience = None",
        "WeightedCrossEntropy.weighting = 'inverse'",
        "selection.accuracy_floor = 0.5",
        *lines,
    ]) + "\n")
    return path


def test_each_epoch_reports_its_adjustment_and_the_best_epoch_keeps_it(tmp_path, make_beats):
    path = five_class_config(
        tmp_path, make_beats, "operating_point.logit_adjustment = True",
        "operating_point.selection_metric = 'recall_macro_floor'", f"fit.monitor = '{MONITOR}'",
    )
    config.load_config(path)
    result = train.fit()
    gin.clear_config()
    for row in result.history:
        assert row["val/op/logit_adjustment"] in operating_point.STRENGTHS
        # strength 0 is among those tried, so the chosen adjustment is at least as good as argmax
        assert row[MONITOR] >= row["val/recall_macro_floor"] - 1e-12
    scores = [row[MONITOR] for row in result.history]
    assert result.best_epoch == scores.index(max(scores)) + 1
    # the run's decision rule is the best epoch's adjustment, chosen again on the same weights
    assert result.operating_point.kind == "logit_adjustment"
    assert result.operating_point.value == result.history[result.best_epoch - 1]["val/op/logit_adjustment"]
    assert result.operating_metrics["val/recall_macro_floor"] == pytest.approx(max(scores))
    assert any(row["val/op/logit_adjustment"] != 0 for row in result.history)  # the prior did move decisions


def test_an_op_monitor_without_the_adjustment_is_one_error_line(tmp_path, make_beats, capsys):
    path = five_class_config(tmp_path, make_beats, f"fit.monitor = '{MONITOR}'")
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "operating_point.logit_adjustment = True" in err, err
    assert not (tmp_path / "runs").exists()
    gin.clear_config()
    config.load_config(path)
    with pytest.raises(HeartlabError, match="val/recall_macro_floor"):
        train.check_configured(("N", "S", "V", "F", "Q"))
    gin.clear_config()
