"""heartlab.data: reading and checking beat files, the stratified split, load_splits and the model views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from heartlab.data import (
    BEAT_LENGTH,
    SIGNAL_COLUMNS,
    as_view,
    load_splits,
    read_beats,
    write_beats,
)
from heartlab.errors import BeatFileError, HeartlabError
from heartlab.splitting import stratified_split


def beats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, BEAT_LENGTH)).astype(np.float32)


def frame(signals: np.ndarray, target) -> pl.DataFrame:
    columns = {name: signals[:, i] for i, name in enumerate(SIGNAL_COLUMNS)}
    columns["target"] = target
    return pl.DataFrame(columns)


def expect_error(path: Path, *words: str, num_classes: int | None = None) -> str:
    with pytest.raises(BeatFileError) as info:
        read_beats(path, num_classes)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- read_beats: good files


def test_read_beats_round_trip(tmp_path):
    signals = beats(7)
    labels = np.array([0, 1, 2, 3, 4, 0, 1])
    path = write_beats(tmp_path / "good.parq", signals, labels)
    x, y = read_beats(path, num_classes=5)
    assert x.shape == (7, BEAT_LENGTH) and x.dtype == np.float32
    assert y.shape == (7,) and y.dtype == np.int64
    np.testing.assert_array_equal(x, signals)
    np.testing.assert_array_equal(y, labels)


def test_read_beats_accepts_int_target(tmp_path):
    path = tmp_path / "int.parq"
    frame(beats(4), pl.Series([1, 0, 1, 1], dtype=pl.Int64)).write_parquet(path)
    x, y = read_beats(path, num_classes=2)
    assert y.dtype == np.int64
    assert y.tolist() == [1, 0, 1, 1]
    assert x.shape == (4, BEAT_LENGTH)


def test_read_beats_accepts_float_target(tmp_path):
    path = tmp_path / "float.parq"
    frame(beats(3), pl.Series([2.0, 0.0, 1.0], dtype=pl.Float32)).write_parquet(path)
    _, y = read_beats(path, num_classes=3)
    assert y.dtype == np.int64 and y.tolist() == [2, 0, 1]


def test_read_beats_ignores_pandas_index_column(tmp_path):
    path = tmp_path / "indexed.parq"
    signals = beats(3)
    frame(signals, [0.0, 1.0, 0.0]).with_columns(pl.Series("__index_level_0__", [10, 11, 12])).write_parquet(path)
    x, y = read_beats(path, num_classes=2)
    assert x.shape == (3, BEAT_LENGTH)  # the index column is not read as a sample
    np.testing.assert_array_equal(x, signals)
    assert y.tolist() == [0, 1, 0]


def test_read_beats_without_num_classes_accepts_any_whole_label(tmp_path):
    path = write_beats(tmp_path / "b.parq", beats(2), np.array([7, 9]))
    assert read_beats(path)[1].tolist() == [7, 9]


# ---------------------------------------------------------------- read_beats: bad files


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.parq", "no such file")


def test_not_parquet(tmp_path):
    path = tmp_path / "text.parq"
    path.write_text("0,1,2\n3,4,5\n")
    expect_error(path, "parquet")


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir.parq").mkdir()
    expect_error(tmp_path / "dir.parq", "no such file")


def test_missing_signal_columns(tmp_path):
    path = tmp_path / "short.parq"
    frame(beats(3), [0.0, 1.0, 0.0]).drop(["5", "186"]).write_parquet(path)
    message = expect_error(path, "missing 2", "signal column")
    assert "'5'" in message and "'186'" in message


def test_many_missing_signal_columns_are_abbreviated(tmp_path):
    path = tmp_path / "few.parq"
    pl.DataFrame({"0": [0.1], "1": [0.2], "target": [0.0]}).write_parquet(path)
    message = expect_error(path, f"missing {BEAT_LENGTH - 2}", "...")
    assert len(message) < 400


def test_no_target_column(tmp_path):
    path = tmp_path / "notarget.parq"
    frame(beats(3), [0.0, 1.0, 0.0]).drop("target").write_parquet(path)
    expect_error(path, "'target'")


def test_non_numeric_signal_column(tmp_path):
    path = tmp_path / "text_col.parq"
    frame(beats(2), [0.0, 1.0]).with_columns(pl.Series("17", ["a", "b"])).write_parquet(path)
    expect_error(path, "'17'", "expected a number")


def test_non_numeric_target(tmp_path):
    path = tmp_path / "text_target.parq"
    frame(beats(2), ["normal", "abnormal"]).write_parquet(path)
    expect_error(path, "'target'", "expected a number")


def test_zero_rows(tmp_path):
    path = write_beats(tmp_path / "empty.parq", np.zeros((0, BEAT_LENGTH)), np.zeros(0))
    expect_error(path, "no rows")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_signal(tmp_path, bad):
    signals = beats(5)
    signals[3, 40] = bad
    path = write_beats(tmp_path / "nonfinite.parq", signals, np.zeros(5))
    expect_error(path, "NaN", "row 3")


def test_null_signal(tmp_path):
    path = tmp_path / "null.parq"
    frame(beats(3), [0.0, 1.0, 0.0]).with_columns(pl.Series("9", [0.1, None, 0.3])).write_parquet(path)
    expect_error(path, "missing", "row 1")


def test_nan_target(tmp_path):
    path = write_beats(tmp_path / "nan_target.parq", beats(3), np.array([0.0, np.nan, 1.0]))
    expect_error(path, "'target'", num_classes=2)


def test_null_target(tmp_path):
    path = tmp_path / "null_target.parq"
    frame(beats(3), pl.Series([0.0, None, 1.0])).write_parquet(path)
    expect_error(path, "1 missing target")


def test_non_integer_target(tmp_path):
    path = write_beats(tmp_path / "half.parq", beats(3), np.array([0.0, 0.5, 1.0]))
    expect_error(path, "'target'", "whole numbers", num_classes=2)


@pytest.mark.parametrize("label", [2, 5, -1])
def test_label_out_of_range(tmp_path, label):
    path = write_beats(tmp_path / "range.parq", beats(3), np.array([0, label, 1]))
    message = expect_error(path, "outside 0..1", num_classes=2)
    assert str(label) in message


def test_bad_file_error_is_a_heartlab_error():
    assert issubclass(BeatFileError, HeartlabError)


# ---------------------------------------------------------------- stratified_split


def test_stratified_split_per_class_counts():
    counts = {0: 50, 1: 30, 2: 11, 3: 7}
    labels = np.random.default_rng(3).permutation(np.repeat(list(counts), list(counts.values())))
    keep, held = stratified_split(labels, 0.3, seed=0)
    for cls, n in counts.items():
        assert (labels[held] == cls).sum() == round(0.3 * n)
        assert (labels[keep] == cls).sum() == n - round(0.3 * n)


def test_stratified_split_is_a_partition():
    labels = np.repeat([0, 1, 2], [40, 25, 9])
    keep, held = stratified_split(labels, 0.2, seed=5)
    assert np.intersect1d(keep, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])), np.arange(labels.size))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(held) > 0)  # sorted


def test_stratified_split_is_deterministic_per_seed():
    labels = np.repeat([0, 1], [60, 40])
    first = stratified_split(labels, 0.25, seed=11)
    again = stratified_split(labels, 0.25, seed=11)
    other = stratified_split(labels, 0.25, seed=12)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[1], other[1])
    assert other[1].size == first[1].size


def test_stratified_split_small_classes_and_zero_fraction():
    labels = np.array([0, 0, 0, 1, 1, 2])
    _, held = stratified_split(labels, 0.1, seed=0)
    # at least one held out of every class with two rows or more, none of a single-row class
    assert sorted(labels[held].tolist()) == [0, 1]
    keep, held = stratified_split(labels, 0.0, seed=0)
    assert held.size == 0 and keep.tolist() == list(range(6))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError):
        stratified_split(np.array([0, 1, 0, 1]), fraction, seed=0)


# ---------------------------------------------------------------- load_splits


def test_load_splits_from_files(make_beats):
    train_file = make_beats(20, 5, seed=1)  # 100 rows, 20 per class
    test_file = make_beats(3, 5, seed=2)
    splits = load_splits(
        dataset="arrhythmia", train_file=str(train_file), test_file=str(test_file), valid_fraction=0.25, seed=4
    )
    assert splits.classes == ("N", "S", "V", "F", "Q")
    assert len(splits.train) == 75 and len(splits.valid) == 25 and len(splits.test) == 15
    assert splits.valid.class_counts(5).tolist() == [5] * 5
    assert splits.train.class_counts(5).tolist() == [15] * 5
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64
    assert splits.train.x.shape == (75, BEAT_LENGTH)
    # train and valid together are exactly the training file's rows
    x, _ = read_beats(train_file)
    together = torch.cat([splits.train.x, splits.valid.x])
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, torch.from_numpy(x).tolist()))
    assert "arrhythmia" in splits.describe() and "valid 25" in splits.describe()


def test_load_splits_seed_changes_validation_rows(make_beats):
    train_file, test_file = str(make_beats(10, 2)), str(make_beats(2, 2))
    a = load_splits(dataset="ptb", train_file=train_file, test_file=test_file, seed=0)
    b = load_splits(dataset="ptb", train_file=train_file, test_file=test_file, seed=0)
    c = load_splits(dataset="ptb", train_file=train_file, test_file=test_file, seed=1)
    assert torch.equal(a.valid.x, b.valid.x)
    assert not torch.equal(a.valid.x, c.valid.x)


def test_load_splits_unknown_dataset(make_beats):
    path = str(make_beats(5, 2))
    with pytest.raises(BeatFileError, match="unknown dataset 'mitbih'.*arrhythmia, arrhythmia_interpatient, ptb"):
        load_splits(dataset="mitbih", train_file=path, test_file=path)


def test_load_splits_rejects_labels_of_another_dataset(make_beats):
    five_class = str(make_beats(4, 5))
    two_class = str(make_beats(4, 2))
    with pytest.raises(BeatFileError, match="outside 0..1"):
        load_splits(dataset="ptb", train_file=five_class, test_file=two_class)
    with pytest.raises(BeatFileError, match="outside 0..1"):
        load_splits(dataset="ptb", train_file=two_class, test_file=five_class)


def test_load_splits_too_few_rows_for_validation(make_beats):
    one_each = str(make_beats(1, 2))
    with pytest.raises(BeatFileError, match="validation split holds no beat of class normal"):
        load_splits(dataset="ptb", train_file=one_each, test_file=one_each)


# ---------------------------------------------------------------- as_view


def test_as_view_1d():
    x = torch.rand(3, BEAT_LENGTH)
    view = as_view(x, "1d")
    assert view.shape == (3, 1, BEAT_LENGTH)
    assert torch.equal(view[:, 0], x)


def test_as_view_2d_is_row_major_zero_padded():
    x = torch.rand(4, BEAT_LENGTH) + 1.0  # never zero, so padding is recognisable
    view = as_view(x, "2d")
    assert view.shape == (4, 1, 16, 12)
    padded = torch.cat([x, torch.zeros(4, 192 - BEAT_LENGTH)], dim=1)
    assert torch.equal(view, padded.reshape(4, 1, 16, 12))
    for b in range(4):
        assert torch.equal(view[b, 0, 0, :12], x[b, :12])
        assert torch.equal(view[b, 0, 1, :], x[b, 12:24])
        assert torch.equal(view[b, 0, 15, :7], x[b, 180:187])
        assert torch.equal(view[b, 0, 15, 7:], torch.zeros(5))
    assert (view[:, :, :15] != 0).all()


def test_as_view_unknown():
    with pytest.raises(ValueError, match="unknown view"):
        as_view(torch.rand(2, BEAT_LENGTH), "3d")
