"""``heartlab.predict``: a finished run (trained here with `heartlab train`, 1 epoch of a tiny model on
synthetic beats) predicts a beat file from its ``best.pt`` alone. On the run's own test file the metrics
equal its ``test_metrics.json``; a file without ``target`` gets predictions only; decisions follow a stored
operating point; bad input gives one ``HeartlabError`` and writes nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from conftest import synthetic_beats

from heartlab import cli
from heartlab.data import BEAT_LENGTH, write_beats
from heartlab.errors import BeatFileError, HeartlabError
from heartlab.operating_point import OperatingPoint
from heartlab.predict import add_predict_parser, predict_beats, predict_file, read_beats_for_prediction
from helpers import ROOT, tiny_cnn2d_config

BINARY = ("normal", "abnormal")
CLASSES4 = ("N", "S", "V", "F")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def cnn_run(folder) -> tuple[Path, Path]:
    """(run directory, its test file): a tiny CNN2D, one epoch, on the synthetic two-class beats that the
    ``make_beats`` fixture writes (30 per class to train, 20 per class to test)."""

    def make_beats(n_per_class: int, num_classes: int, seed: int = 0, name: str | None = None) -> Path:
        signals, labels = synthetic_beats(n_per_class, num_classes, seed)
        return write_beats(folder / name, signals, labels)

    config = tiny_cnn2d_config(folder, make_beats, "tiny", "fit.epochs = 1")
    assert cli.main(["train", str(config)]) == 0
    (run,) = (folder / "runs" / "tiny").iterdir()
    return run, folder / "test.parq"


def rr_beat_file(path: Path, n_per_class: int, records: list[str], rr: bool = True, seed: int = 0) -> Path:
    """A tiny 4-class file (N, S, V, F interleaved) with record, r_peak and (optionally) R-R columns."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(4), n_per_class)
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    signals[:, :20] += labels[:, None] * 0.1
    columns = {
        "record": np.array(records)[(np.arange(labels.size) // 4) % len(records)],
        "r_peak": np.arange(labels.size, dtype=np.int64) * 300 + 17,
    }
    if rr:
        local = rng.uniform(0.7, 1.0, labels.size)
        columns.update(rr_pre=np.where(labels == 1, 0.6 * local, local), rr_post=local * 1.05, rr_local=local, rr_average=local)
    return write_beats(path, np.clip(signals, 0, 1), labels, columns)


@pytest.fixture(scope="module")
def rr_run(folder) -> tuple[Path, Path]:
    """(run directory, its test file): a tiny ResNet1D that feeds R-R intervals to its head, 4 classes,
    one epoch, validation by record."""
    train_file = rr_beat_file(folder / "ds1.parq", 40, [f"r{i}" for i in range(8)])
    test_file = rr_beat_file(folder / "ds2.parq", 15, [f"t{i}" for i in range(4)], seed=1)
    config = folder / "rr.gin"
    config.write_text(
        "\n".join([
            f"include '{ROOT / 'configs' / 'base.gin'}'",
            "load_splits.dataset = 'arrhythmia_interpatient'",
            f"load_splits.train_file = '{train_file}'",
            f"load_splits.test_file = '{test_file}'",
            "load_splits.valid_split = 'records'",
            "fit.experiment = 'rr'",
            f"fit.runs_root = '{folder / 'runs'}'",
            "fit.model = @ResNet1D",
            "ResNet1D.channels = 4",
            "ResNet1D.blocks = 1",
            "ResNet1D.rr_features = True",
            "fit.epochs = 1",
            "fit.batch_size = 32",
            "fit.schedule = 'none'",
            "fit.num_threads = 1",
            "fit.patience = None",
        ]) + "\n"
    )
    assert cli.main(["train", str(config)]) == 0
    (run,) = (folder / "runs" / "rr").iterdir()
    return run, test_file


def assert_matches_test_metrics(run: Path, values: dict) -> None:
    """Every ``test/<metric>`` number of ``test_metrics.json`` (but the loss, which needs the training
    split) equals ``predict/<metric>`` to 1e-6."""
    written = json.loads((run / "test_metrics.json").read_text())
    names = [k for k, v in written.items() if k.startswith("test/") and k != "test/loss" and isinstance(v, float)]
    assert len(names) > 10, names
    for name in names:
        assert values["predict/" + name.removeprefix("test/")] == pytest.approx(written[name], abs=1e-6), name


def read_predictions(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def check_prediction_frame(frame: pl.DataFrame, classes: tuple[str, ...], n: int) -> np.ndarray:
    """The columns and their consistency; returns the probabilities ``(n, C)``."""
    probabilities = frame.select([f"prob/{c}" for c in classes]).to_numpy()
    assert frame.height == n
    assert frame["predicted"].dtype == pl.Int64 and frame["predicted_class"].dtype == pl.Utf8
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert [classes[i] for i in frame["predicted"].to_list()] == frame["predicted_class"].to_list()
    return probabilities


def leftovers(folder: Path) -> list[str]:
    """Hidden partial files ``write_atomic`` would leave behind if it failed badly."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


# ---- the run's own test file ------------------------------------------------------------------------


def test_metrics_on_the_test_file_equal_test_metrics_json(cnn_run, tmp_path):
    run, test_file = cnn_run
    out = tmp_path / "pred.parquet"
    values = predict_file(run, test_file, out)
    assert_matches_test_metrics(run, values)
    assert "predict/loss" not in values

    frame = read_predictions(out)
    probabilities = check_prediction_frame(frame, BINARY, 40)
    assert frame.columns == ["predicted", "predicted_class", "prob/normal", "prob/abnormal"]  # no record, no r_peak
    # the run chose a threshold on validation (operating_point.target_recall = 0.99 by default), stored in
    # best.pt and in test_metrics.json; it decides
    stored = torch.load(run / "best.pt", weights_only=True)
    point = OperatingPoint.from_dict(stored["operating_point"])
    assert point.kind == "threshold" and stored["classes"] == list(BINARY)
    assert json.loads((run / "test_metrics.json").read_text())["operating_point"] == point.to_dict()
    np.testing.assert_array_equal(frame["predicted"].to_numpy(), (probabilities[:, 1] >= point.value).astype(np.int64))
    assert values["predict/threshold"] == point.value
    metadata = pq.read_schema(out).metadata
    assert json.loads(metadata[b"heartlab.operating_point"]) == point.to_dict()
    assert json.loads(metadata[b"heartlab.classes"]) == list(BINARY)
    assert metadata[b"heartlab.run"].decode() == str(run)


def test_a_file_without_target_gets_predictions_and_no_metrics(cnn_run, tmp_path):
    run, test_file = cnn_run
    unlabelled = tmp_path / "unlabelled.parq"
    pl.read_parquet(test_file).drop("target").write_parquet(unlabelled)
    assert predict_file(run, unlabelled, tmp_path / "a.parquet") is None
    assert predict_file(run, test_file, tmp_path / "b.parquet") is not None
    a, b = read_predictions(tmp_path / "a.parquet"), read_predictions(tmp_path / "b.parquet")
    check_prediction_frame(a, BINARY, 40)
    assert a.equals(b)

    signals, labels = read_beats_for_prediction(unlabelled, 2)
    assert labels is None and signals.shape == (40, BEAT_LENGTH) and signals.dtype == np.float32


def test_rr_model_on_its_test_file_equals_test_metrics_json_and_keeps_provenance(rr_run, tmp_path):
    run, test_file = rr_run
    out = tmp_path / "sub" / "dir" / "pred.parquet"  # missing folders are created
    values = predict_file(run, test_file, out)
    assert_matches_test_metrics(run, values)
    assert {"predict/ec57/precision/V", "predict/any_abnormal/recall", "predict/any_abnormal/precision"} <= set(values)

    frame = read_predictions(out)
    check_prediction_frame(frame, CLASSES4, 60)
    source = pl.read_parquet(test_file)
    assert frame.columns[:2] == ["record", "r_peak"]
    assert frame["record"].to_list() == source["record"].to_list()
    assert frame["r_peak"].to_list() == source["r_peak"].to_list()


def test_rr_model_needs_the_rr_columns(rr_run, tmp_path):
    run, _ = rr_run
    no_rr = rr_beat_file(tmp_path / "no_rr.parq", 5, ["a"], rr=False)
    out = tmp_path / "pred.parquet"
    with pytest.raises(HeartlabError, match="R-R"):
        predict_file(run, no_rr, out)
    assert not out.exists() and not leftovers(tmp_path)


# ---- the operating point and the classes stored in best.pt -------------------------------------------


def copy_run(run: Path, to: Path, **changes) -> Path:
    """A run directory holding only ``best.pt``, with ``changes`` made to the checkpoint."""
    to.mkdir()
    state = torch.load(run / "best.pt", weights_only=True)
    state.update(changes)
    torch.save(state, to / "best.pt")
    return to


def test_a_stored_threshold_decides(cnn_run, tmp_path):
    run, test_file = cnn_run
    plain = predict_beats(run, test_file)
    abnormal = plain.probabilities[:, 1]
    threshold = float(np.sort(abnormal)[len(abnormal) // 3])  # a beat's own score: it is called abnormal
    point = OperatingPoint("threshold", threshold)
    with_point = copy_run(run, tmp_path / "run", operating_point=point.to_dict())
    out = tmp_path / "pred.parquet"
    values = predict_file(with_point, test_file, out)

    frame = read_predictions(out)
    np.testing.assert_array_equal(frame["predicted"].to_numpy(), (abnormal >= threshold).astype(np.int64))
    assert (frame["predicted"].to_numpy() != plain.probabilities.argmax(axis=1)).any()  # precondition: not argmax's
    assert values["predict/threshold"] == threshold
    called, target = frame["predicted"].to_numpy() == 1, pl.read_parquet(test_file)["target"].to_numpy() == 1
    assert values["predict/op/recall"] == pytest.approx((called & target).sum() / target.sum())
    assert values["predict/op/precision"] == pytest.approx((called & target).sum() / called.sum())
    written = json.loads((run / "test_metrics.json").read_text())
    assert values["predict/auroc"] == pytest.approx(written["test/auroc"], abs=1e-6)  # threshold-free: unchanged
    assert json.loads(pq.read_schema(out).metadata[b"heartlab.operating_point"]) == point.to_dict()


def test_a_stored_logit_adjustment_decides(rr_run, tmp_path):
    run, test_file = rr_run
    plain = predict_beats(run, test_file)
    point = OperatingPoint("logit_adjustment", 1.0, (1000, 10, 100, 5))
    predicted = predict_beats(copy_run(run, tmp_path / "run", operating_point=point.to_dict()), test_file).predicted
    np.testing.assert_array_equal(predicted, point.apply(torch.log(torch.from_numpy(plain.probabilities))).numpy())


def test_classes_come_from_the_metrics_when_the_config_names_no_dataset(cnn_run, tmp_path):
    """A Ray trial receives its data: its operative config has no load_splits bindings."""
    run, test_file = cnn_run
    config = torch.load(run / "best.pt", weights_only=True)["config"]
    stripped = "\n".join(line for line in config.splitlines() if not line.startswith("load_splits."))
    assert "load_splits.dataset" in config and "load_splits.dataset" not in stripped
    trial = copy_run(run, tmp_path / "trial", config=stripped)
    assert predict_file(trial, test_file, tmp_path / "a.parquet") == predict_file(run, test_file, tmp_path / "b.parquet")

    wrong = copy_run(run, tmp_path / "wrong", classes=["N", "S"])
    with pytest.raises(HeartlabError, match="classes disagree"):
        predict_file(wrong, test_file, tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


# ---- bad input: one error, nothing written ----------------------------------------------------------


def bad_beat_file(kind: str, folder: Path, make_beats) -> Path:
    path = folder / f"{kind}.parq"
    if kind == "not parquet":
        path.write_text("0,1,2\n")
    elif kind == "missing column":
        pl.read_parquet(make_beats(3, 2)).drop("17").write_parquet(path)
    elif kind == "text column":
        pl.read_parquet(make_beats(3, 2)).drop("target").with_columns(pl.col("5").cast(pl.Utf8)).write_parquet(path)
    elif kind == "nan":
        frame = pl.read_parquet(make_beats(3, 2)).drop("target")
        frame.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("9")).alias("9")).write_parquet(path)
    elif kind == "no rows":
        pl.read_parquet(make_beats(3, 2)).drop("target").head(0).write_parquet(path)
    elif kind == "other dataset":
        return make_beats(3, 5)  # labels 2..4 are not classes of a two-class run
    elif kind == "fractional target":
        pl.read_parquet(make_beats(3, 2)).with_columns(pl.col("target") + 0.5).write_parquet(path)
    elif kind == "missing":
        pass
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("not parquet", "not a readable parquet file"),
        ("missing column", "missing 1 of the 187 signal columns"),
        ("text column", "column '5' has type"),
        ("nan", "1 row(s) hold NaN"),
        ("no rows", "no rows"),
        ("other dataset", "outside 0..1"),
        ("fractional target", "not whole numbers"),
        ("missing", "no such file"),
    ],
)
def test_bad_beat_file_gives_one_error_and_writes_nothing(kind, words, cnn_run, make_beats, tmp_path):
    run, _ = cnn_run
    beats = bad_beat_file(kind, tmp_path, make_beats)
    out = tmp_path / "out" / "pred.parquet"
    with pytest.raises(BeatFileError) as caught:
        predict_file(run, beats, out)
    message = str(caught.value)
    assert "\n" not in message and words in message and str(beats) in message, message
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_bad_run_directory_gives_one_error(cnn_run, tmp_path):
    run, test_file = cnn_run
    out = tmp_path / "pred.parquet"
    with pytest.raises(HeartlabError, match="no such run directory"):
        predict_file(tmp_path / "nowhere", test_file, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeartlabError, match="no best.pt"):
        predict_file(tmp_path / "empty", test_file, out)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HeartlabError, match="not a readable checkpoint"):
        predict_file(tmp_path / "broken", test_file, out)
    state = torch.load(run / "best.pt", weights_only=True)
    head = [k for k in state["model_state"] if k.endswith("weight")][-1]
    state["model_state"][head] = torch.zeros(5, *state["model_state"][head].shape[1:])  # a 5-class head
    (tmp_path / "mismatch").mkdir()
    torch.save(state, tmp_path / "mismatch" / "best.pt")
    with pytest.raises(HeartlabError, match="do not fit the 2-class CNN2D"):
        predict_file(tmp_path / "mismatch", test_file, out)
    bad_point = copy_run(run, tmp_path / "bad_point", operating_point={"kind": "threshold", "value": 2.0})
    with pytest.raises(HeartlabError, match="threshold"):
        predict_file(bad_point, test_file, out)
    wrong_size = copy_run(run, tmp_path / "wrong_size", operating_point=OperatingPoint("logit_adjustment", 1.0, (5, 4, 3)).to_dict())
    with pytest.raises(HeartlabError, match="for 3 classes, the run has 2"):
        predict_file(wrong_size, test_file, out)
    assert not out.exists() and not leftovers(tmp_path)


def test_output_file_checks(cnn_run, tmp_path):
    run, test_file = cnn_run
    out = tmp_path / "pred.parquet"
    out.write_text("keep me")
    with pytest.raises(HeartlabError, match="already exists; pass --force"):
        predict_file(run, test_file, out)
    assert out.read_text() == "keep me"
    predict_file(run, test_file, out, force=True)
    assert read_predictions(out).height == 40
    with pytest.raises(HeartlabError, match="is a folder"):
        predict_file(run, test_file, tmp_path)
    with pytest.raises(HeartlabError, match="is a file and not a folder"):
        predict_file(run, test_file, out / "pred.parquet")
    with pytest.raises(HeartlabError, match="is the beat file itself"):
        predict_file(run, test_file, test_file, force=True)


def test_a_failed_write_leaves_nothing(cnn_run, tmp_path, monkeypatch):
    run, test_file = cnn_run

    def failing_write(table, where, *args, **kwargs):
        Path(where).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", failing_write)
    out = tmp_path / "new" / "deeper" / "pred.parquet"
    with pytest.raises(OSError, match="disk full"):
        predict_file(run, test_file, out)
    assert list(tmp_path.iterdir()) == []  # no file, no partial file, no folder made for it


# ---- the command ------------------------------------------------------------------------------------


def test_predict_command(cnn_run, tmp_path, capsys):
    run, test_file = cnn_run
    parser = argparse.ArgumentParser(prog="heartlab")
    add_predict_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "pred.parquet"
    args = parser.parse_args(["predict", str(run), str(test_file), "--out", str(out)])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote 40 predictions to {out}" in printed and "decision: abnormal iff P(abnormal) >= " in printed
    assert "Se %" in printed and "at the operating point (threshold" in printed
    assert read_predictions(out).height == 40
    with pytest.raises(HeartlabError, match="already exists"):
        args.handler(args)
    args = parser.parse_args(["predict", str(run), str(test_file), "--out", str(out), "--force"])
    assert args.handler(args) == 0
