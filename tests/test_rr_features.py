"""R-R intervals: their values in seconds (synthetic annotations, and record 100 of MIT-BIH checked by hand),
the ResNet1D that feeds them to its head (``rr_features``), and `heartlab train` with and without them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from heartlab import cli
from heartlab.builders.mitbih import AAMI_LABELS, build_record, rr_intervals
from heartlab.data import BEAT_LENGTH, RR_COLUMNS, as_view, load_splits, write_beats
from heartlab.errors import HeartlabError
from heartlab.models.resnet1d import ResNet1D
from heartlab.models.rr import RRFeatures
from heartlab.train import check_inputs, model_inputs
from helpers import MITDB, ROOT, needs_mitdb

CLASSES = ("N", "S", "V", "F")

# ---------------------------------------------------------------------------- rr_intervals


def test_rr_intervals_small_case_by_hand():
    # beats at 0, 1, 3, 4 and 7 s (100 Hz); windows of 1.5 s either side
    rr = rr_intervals(np.array([0, 100, 300, 400, 700]), 100.0, local_seconds=1.5)
    assert rr.dtype == np.float32 and rr.shape == (5, 3)
    np.testing.assert_allclose(rr[:, 0], [1, 1, 2, 1, 3])  # rr_pre: the first beat takes its rr_post
    np.testing.assert_allclose(rr[:, 1], [1, 2, 1, 3, 3])  # rr_post: the last beat takes its rr_pre
    # rr_local: the mean rr_pre of the beats within 1.5 s, the beat included
    #   0 s: {0, 1} -> 1; 1 s: {0, 1} -> 1; 3 s: {3, 4} -> 1.5; 4 s: {3, 4} -> 1.5; 7 s: {7} -> 3
    np.testing.assert_allclose(rr[:, 2], [1, 1, 1.5, 1.5, 3])


def test_rr_intervals_local_mean_over_a_10_s_window():
    fs = 360.0
    rng = np.random.default_rng(0)
    gaps = rng.integers(200, 400, size=80)  # 0.56..1.1 s
    gaps[30:40] = 150  # a run of fast beats changes the local rhythm
    samples = np.concatenate([[50], 50 + np.cumsum(gaps)])
    rr = rr_intervals(samples, fs)
    times = samples / fs
    pre = np.concatenate([[times[1] - times[0]], np.diff(times)])
    sizes = []
    for i, t in enumerate(times):
        near = np.abs(times - t) <= 5.0  # a 10 s window centred on the beat
        sizes.append(int(near.sum()))
        assert rr[i, 2] == pytest.approx(pre[near].mean(), rel=1e-5), i
    assert min(sizes) >= 5 and max(sizes) > min(sizes) + 5  # windows cut at the ends, wide in the fast run
    np.testing.assert_allclose(rr[:, 0], pre, rtol=1e-5)
    np.testing.assert_allclose(rr[:-1, 1], np.diff(times), rtol=1e-5)
    assert rr[35, 2] < rr[5, 2]  # the fast run lowers the local mean


def test_rr_intervals_of_too_few_beats():
    assert rr_intervals(np.array([], dtype=np.int64), 360.0).shape == (0, 3)
    assert rr_intervals(np.array([10]), 360.0).shape == (1, 3)


@needs_mitdb
def test_record_100_rr_in_seconds_checked_by_hand():
    # 100.atr: '+' at 18 (rhythm, not a beat), N at 77, 370, 662, 946, 1231, 1515, 1809, A at 2044, N at 2402
    result = build_record(MITDB, "100")
    np.testing.assert_array_equal(result.r_peaks[:9], [77, 370, 662, 946, 1231, 1515, 1809, 2044, 2402])
    np.testing.assert_array_equal(result.labels[:9], [0, 0, 0, 0, 0, 0, 0, 1, 0])
    rr = result.rr
    assert rr.dtype == np.float32 and rr.shape == (result.labels.size, 3)
    assert rr[0, 1] == pytest.approx((370 - 77) / 360, abs=1e-6)  # rr_post of the first beat
    assert rr[0, 0] == pytest.approx(rr[0, 1], abs=1e-7)  # the first beat has no previous one
    assert rr[1, 0] == pytest.approx((370 - 77) / 360, abs=1e-6)
    assert rr[1, 1] == pytest.approx((662 - 370) / 360, abs=1e-6)
    assert rr[2, 0] == pytest.approx((662 - 370) / 360, abs=1e-6)
    # rr_local of the first beat: beats at 77 .. 1809 are within 5 s (1800 samples), 2044 is not
    assert rr[0, 2] == pytest.approx((293 + 293 + 292 + 284 + 285 + 284 + 294) / 7 / 360, abs=1e-6)
    # the premature (A) beat at 2044: a short rr_pre, a long rr_post, both against its local rhythm
    assert rr[7, 0] == pytest.approx((2044 - 1809) / 360, abs=1e-6)
    assert rr[7, 1] == pytest.approx((2402 - 2044) / 360, abs=1e-6)
    assert rr[7, 0] < 0.85 * rr[7, 2] < rr[7, 1]
    # the whole record, against its annotations (the last beat is dropped: no following beat)
    annotation = wfdb.rdann(str(MITDB / "100"), "atr")
    samples = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in AAMI_LABELS])
    np.testing.assert_array_equal(result.r_peaks, samples[:-1])
    np.testing.assert_allclose(rr[:, 1], np.diff(samples) / 360, atol=1e-6)
    assert 0.5 < float(np.median(rr[:, 2])) < 1.2  # ~75 bpm


# ----------------------------------------------------------------------------------- models

SMALL = dict(channels=4, blocks=1, kernel_size=3, num_classes=4)


def test_rr_features_values():
    rr = torch.tensor([[0.5, 1.0, 0.8], [0.8, 0.8, 0.8], [0.0, 1.0, 1.0]])
    out = RRFeatures()(rr)
    assert out.shape == (3, RRFeatures.out_features)
    np.testing.assert_allclose(out[0].numpy(), np.log([0.5, 1.0, 0.8, 0.5 / 0.8, 1.0 / 0.8]), rtol=1e-6)
    np.testing.assert_allclose(out[1, 3:].numpy(), [0.0, 0.0], atol=1e-7)  # the usual rhythm: log ratios 0
    assert torch.isfinite(out).all()  # a zero interval is clamped before the logarithm


def test_resnet1d_with_rr_features():
    torch.manual_seed(0)
    model = ResNet1D(rr_features=True, **SMALL).eval()
    assert model.uses_rr and not ResNet1D(**SMALL).uses_rr
    x = as_view(torch.rand(5, BEAT_LENGTH), model.input_view)
    rr = torch.full((5, 3), 0.8)
    with torch.no_grad():
        out = model(x, rr)
        assert out.shape == (5, 4) and torch.isfinite(out).all()
        premature = rr.clone()
        premature[:, 0] = 0.4
        assert not torch.allclose(model(x, premature), out)  # the intervals reach the logits
        assert torch.equal(model(x, rr), out)
        with pytest.raises(ValueError, match="rr_features"):
            model(x)
    model.train()
    torch.nn.functional.cross_entropy(model(x, rr), torch.tensor([0, 1, 2, 3, 0])).backward()
    assert model.head[1].weight.shape == (4, 4 + RRFeatures.out_features)
    assert model.head[1].weight.grad[:, -RRFeatures.out_features :].abs().sum() > 0


def test_model_inputs_and_check_inputs(make_beats):
    path = make_beats(10, 4)
    data = load_splits(dataset="arrhythmia_interpatient", train_file=str(path), test_file=str(path))
    assert data.train.rr is None and data.test.rr is None
    plain, with_rr = ResNet1D(**SMALL).eval(), ResNet1D(rr_features=True, **SMALL).eval()
    inputs = model_inputs(plain, data.train, slice(0, 3))
    assert len(inputs) == 1 and inputs[0].shape == (3, 1, BEAT_LENGTH)
    with torch.no_grad():
        assert plain(*inputs).shape == (3, 4)  # the default ResNet1D needs no R-R columns
    check_inputs(plain, data)
    with pytest.raises(HeartlabError, match="rr_features"):
        check_inputs(with_rr, data)


# ----------------------------------------------------------------------------------- training


def beat_file(
    path: Path, n_per_class: int, records: list[str] | None, rr: bool = True, seed: int = 0
) -> Path:
    """A tiny 4-class file (N, S, V, F interleaved), optionally with a record column (beats dealt to the
    records in turn, so every record holds every class) and R-R columns (S beats premature)."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(4), n_per_class)
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    signals[:, :20] += labels[:, None] * 0.1
    columns = {}
    if records:
        columns["record"] = np.array(records)[(np.arange(labels.size) // 4) % len(records)]
    if rr:
        local = rng.uniform(0.7, 1.0, labels.size)
        pre = np.where(labels == 1, 0.6 * local, local)
        columns.update(dict(zip(RR_COLUMNS, (pre, local * 1.05, local))))
    return write_beats(path, np.clip(signals, 0, 1), labels, columns)


def train_config(tmp_path: Path, train_file: Path, test_file: Path, *lines: str) -> Path:
    config = tmp_path / "interpatient_rr.gin"
    config.write_text(
        "\n".join([
            f"include '{ROOT / 'configs' / 'base.gin'}'",
            "load_splits.dataset = 'arrhythmia_interpatient'",
            f"load_splits.train_file = '{train_file}'",
            f"load_splits.test_file = '{test_file}'",
            "fit.experiment = 'rr'",
            f"fit.runs_root = '{tmp_path / 'runs'}'",
            "fit.model = @ResNet1D",
            "ResNet1D.channels = 4",
            "ResNet1D.blocks = 1",
            "ResNet1D.rr_features = True",
            "fit.epochs = 1",
            "fit.batch_size = 32",
            "fit.schedule = 'none'",
            "fit.num_threads = 1",
            "fit.patience = None",
            *lines,
        ]) + "\n"
    )
    return config


def only_run(runs: Path) -> Path:
    found = [p for p in (runs / "rr").iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def test_train_with_rr_features_writes_record_intervals(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 60, [f"r{i}" for i in range(10)])
    test_file = beat_file(tmp_path / "ds2.parq", 30, [f"t{i}" for i in range(6)], seed=1)
    config = train_config(tmp_path, train_file, test_file, "load_splits.valid_split = 'records'")
    assert cli.main(["train", str(config)]) == 0, capsys.readouterr().err
    run = only_run(tmp_path / "runs")
    assert "ResNet1D.rr_features = True" in (run / "config.gin").read_text()
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["classes"] == list(CLASSES)
    assert "test/ec57/precision/V" in result and "test/fpr/S" in result
    ci = result["ci95"]
    expected = {f"test/{kind}/{c}" for kind in ("recall", "precision") for c in CLASSES} | {"test/ec57/precision/V"}
    # every class is in every test record: its recall interval always exists (a precision interval may be
    # undefined when the class is never predicted, as after one epoch)
    assert {f"test/recall/{c}" for c in CLASSES} <= set(ci) <= expected
    for name, (low, high) in ci.items():
        if None not in (low, high) and not (np.isnan(low) or np.isnan(high)):
            assert 0.0 <= low <= high <= 1.0, (name, low, high)
    for c in CLASSES:  # every class is in the test file: its recall interval is defined and holds the point
        low, high = ci[f"test/recall/{c}"]
        assert low - 1e-9 <= result[f"test/recall/{c}"] <= high + 1e-9, (c, low, high)
    assert "6 test records" in result["ci95_method"]


def test_train_without_a_record_column_has_no_intervals(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 40, None)
    test_file = beat_file(tmp_path / "ds2.parq", 20, None, seed=1)
    assert cli.main(["train", str(train_config(tmp_path, train_file, test_file))]) == 0, capsys.readouterr().err
    result = json.loads((only_run(tmp_path / "runs") / "test_metrics.json").read_text())
    assert "test/recall/S" in result and "ci95" not in result


@pytest.mark.parametrize("rr_in", ["neither", "train only"])
def test_rr_features_without_rr_columns_exit_2_and_no_run(tmp_path, capsys, rr_in):
    train_file = beat_file(tmp_path / "ds1.parq", 20, ["a", "b"], rr=rr_in == "train only")
    test_file = beat_file(tmp_path / "ds2.parq", 10, ["c"], rr=False, seed=1)
    code = cli.main(["train", str(train_config(tmp_path, train_file, test_file))])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "rr_features" in lines[0] and "rr_pre" in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_default_resnet1d_trains_on_files_without_rr(tmp_path, capsys):
    train_file = beat_file(tmp_path / "ds1.parq", 40, None, rr=False)
    test_file = beat_file(tmp_path / "ds2.parq", 20, None, rr=False, seed=1)
    config = train_config(tmp_path, train_file, test_file, "ResNet1D.rr_features = False")
    assert cli.main(["train", str(config)]) == 0, capsys.readouterr().err
    result = json.loads((only_run(tmp_path / "runs") / "test_metrics.json").read_text())
    assert 0.0 <= result["test/recall_macro"] <= 1.0 and len(result["confusion_matrix"]) == 4
