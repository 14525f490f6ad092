"""`heartlab data split` and `heartlab data info`, and the all-or-nothing output writing they share."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from heartlab.builders.outputs import StagedOutputs
from heartlab.cli import main
from heartlab.data import read_beats, read_metadata, write_beats
from heartlab.errors import HeartlabError
from heartlab.splitting import stratified_split
from helpers import PTB_SAMPLE, needs_ptb_sample
from helpers import expect_data_error as expect_failure
from helpers import run_data as run


def test_data_without_a_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------------- split


def test_split_round_trip(make_beats, tmp_path, capsys):
    source = make_beats(20, 5)
    x, y = read_beats(source)
    train, test = tmp_path / "out" / "train.parq", tmp_path / "out" / "test.parq"
    code, out, _ = run(capsys, "split", str(source), "--out-train", str(train), "--out-test", str(test), "--seed", "3")
    assert code == 0
    assert "train" in out and "test" in out
    x_train, y_train = read_beats(train, 5)
    x_test, y_test = read_beats(test, 5)
    assert np.bincount(y_test).tolist() == [4] * 5  # round(0.2 * 20) of every class
    assert np.bincount(y_train).tolist() == [16] * 5
    keep, held = stratified_split(y, 0.2, 3)  # the same split as heartlab.data's, rows in order
    np.testing.assert_array_equal(x_train, x[keep])
    np.testing.assert_array_equal(x_test, x[held])
    np.testing.assert_array_equal(y_test, y[held])
    assert read_metadata(test)["split_seed"] == "3"
    assert sorted(p.name for p in train.parent.iterdir()) == ["test.parq", "train.parq"]  # nothing staged left


def test_split_seed_and_test_size(make_beats, tmp_path, capsys):
    source = make_beats(50, 2)
    outs = []
    for seed in ("1", "1", "2"):
        train, test = tmp_path / f"{len(outs)}a.parq", tmp_path / f"{len(outs)}b.parq"
        argv = ["split", str(source), "--out-train", str(train), "--out-test", str(test), "--seed", seed]
        assert run(capsys, *argv, "--test-size", "0.3")[0] == 0
        outs.append(read_beats(test)[0])
    assert outs[0].shape == (30, 187)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


@needs_ptb_sample
def test_split_of_the_real_ptb_sample(tmp_path, capsys):
    train, test = tmp_path / "data" / "heart_train.parq", tmp_path / "data" / "heart_test.parq"
    code, _, err = run(
        capsys, "split", str(PTB_SAMPLE), "--out-train", str(train), "--out-test", str(test), "--dataset", "ptb"
    )
    assert code == 0, err
    _, y_train = read_beats(train, 2)
    _, y_test = read_beats(test, 2)
    assert np.bincount(y_test).tolist() == [129, 336]  # 20% of 644 / 1678
    assert np.bincount(y_train).tolist() == [515, 1342]
    assert "__index_level_0__" not in pl.read_parquet_schema(train)  # the stray index column is not copied


def test_split_refuses_to_overwrite_without_force(make_beats, tmp_path, capsys):
    source = make_beats(10, 2)
    train, test = tmp_path / "train.parq", tmp_path / "test.parq"
    train.write_text("precious")
    argv = ["split", str(source), "--out-train", str(train), "--out-test", str(test)]
    expect_failure(capsys, *argv, words=("already exists", "--force"))
    assert train.read_text() == "precious" and not test.exists()
    assert run(capsys, *argv, "--force")[0] == 0
    assert read_beats(train)[1].size == 16


def test_split_bad_inputs_leave_nothing(tmp_path, make_beats, capsys):
    out = tmp_path / "new" / "folder"
    argv = ["--out-train", str(out / "a.parq"), "--out-test", str(out / "b.parq")]
    expect_failure(capsys, "split", str(tmp_path / "missing.parq"), *argv, words=("missing.parq", "no such file"))
    bad = tmp_path / "bad.parq"
    pl.DataFrame({"0": [0.1], "target": [0.0]}).write_parquet(bad)
    expect_failure(capsys, "split", str(bad), *argv, words=("bad.parq", "missing 186"))
    arrhythmia = make_beats(5, 5)
    expect_failure(capsys, "split", str(arrhythmia), *argv, "--dataset", "ptb", words=("outside 0..1",))
    expect_failure(capsys, "split", str(arrhythmia), *argv, "--dataset", "nope", words=("unknown dataset", "ptb"))
    assert not (tmp_path / "new").exists()


def test_staged_outputs_discard_everything_on_failure(tmp_path):
    a, b = tmp_path / "x" / "a.parq", tmp_path / "x" / "b.parq"
    outputs = StagedOutputs([a, b])
    with pytest.raises(RuntimeError, match="boom"), outputs:
        write_beats(outputs.staged(a), np.zeros((2, 187)), np.zeros(2))
        raise RuntimeError("boom")
    assert not (tmp_path / "x").exists()
    outputs = StagedOutputs([a, b])
    with pytest.raises(RuntimeError, match="never written"), outputs:
        write_beats(outputs.staged(a), np.zeros((2, 187)), np.zeros(2))
    assert not (tmp_path / "x").exists()
    with pytest.raises(HeartlabError, match="distinct"):
        StagedOutputs([a, tmp_path / "x" / ".." / "x" / "a.parq"])


# ------------------------------------------------------------------------------------------------ info


def test_info_reports_rows_classes_and_range(make_beats, capsys):
    path = make_beats(7, 5)
    code, out, _ = run(capsys, "info", str(path), "--dataset", "arrhythmia")
    assert code == 0
    assert "rows        35" in out
    for name in ("N", "S", "V", "F", "Q"):
        assert f" {name} " in out
    assert "all in [0, 1]" not in out  # conftest beats go up to 1.4 in their first samples
    assert "outside [0, 1]" in out


def test_info_without_dataset_lists_the_datasets_the_labels_fit(make_beats, capsys):
    code, out, _ = run(capsys, "info", str(make_beats(3, 2)))
    assert code == 0
    assert "arrhythmia, arrhythmia_interpatient, ptb" in out


def test_info_schema_problems_are_one_error_line(tmp_path, make_beats, capsys):
    expect_failure(capsys, "info", str(tmp_path / "none.parq"), words=("none.parq", "no such file"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    expect_failure(capsys, "info", str(text), words=("not a readable parquet",))
    no_target = tmp_path / "no_target.parq"
    pl.DataFrame({str(i): [0.5] for i in range(187)}).write_parquet(no_target)
    expect_failure(capsys, "info", str(no_target), words=("no 'target' column",))
    expect_failure(capsys, "info", str(make_beats(3, 5)), "--dataset", "ptb", words=("outside 0..1",))
    expect_failure(capsys, "info", str(make_beats(3, 2)), "--dataset", "ecg", words=("unknown dataset",))


@needs_ptb_sample
def test_info_on_the_real_ptb_sample(capsys):
    code, out, _ = run(capsys, "info", str(PTB_SAMPLE), "--dataset", "ptb")
    assert code == 0
    assert "rows        2322" in out and "644" in out and "1678" in out and "all in [0, 1]" in out
