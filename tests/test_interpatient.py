"""The inter-patient protocol: the DS1/DS2 build from the real MIT-BIH records (read from ../shared, never
copied), the provenance columns of every MIT-BIH file, the validation split by whole records, and the
checks of the optional record and R-R columns (:func:`heartlab.beat_context.read_context`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb

from heartlab.beat_context import RR_COLUMNS, read_context
from heartlab.builders.mitbih import (
    AAMI_LABELS,
    DS1,
    DS2,
    INTERPATIENT_COUNTS,
    PACED_RECORDS,
    Q_LABEL,
)
from heartlab.builders.physionet import MITDB_RECORDS
from heartlab.data import (
    BEAT_LENGTH,
    DATASETS,
    load_splits,
    read_beats,
    write_beats,
)
from heartlab.errors import BeatFileError, HeartlabError
from heartlab.splitting import record_split
from helpers import MITDB, expect_data_error, needs_mitdb, run_data

CLASSES = DATASETS["arrhythmia_interpatient"].classes  # N, S, V, F
PROVENANCE = ("record", "r_peak", *RR_COLUMNS)


def annotated_beats(rid: str) -> tuple[np.ndarray, np.ndarray]:
    """(annotation sample, AAMI class) of every AAMI beat of a record, straight from its .atr file."""
    annotation = wfdb.rdann(str(MITDB / rid), "atr")
    keep = [i for i, s in enumerate(annotation.symbol) if s in AAMI_LABELS]
    samples = np.asarray(annotation.sample)[keep]
    labels = np.array([AAMI_LABELS[annotation.symbol[i]] for i in keep])
    order = np.argsort(samples, kind="stable")
    return samples[order], labels[order]


# ------------------------------------------------------------------------------ the record sets


def test_record_sets_of_the_protocol():
    assert len(DS1) == len(DS2) == 22
    assert not set(DS1) & set(DS2)
    assert not (set(DS1) | set(DS2)) & set(PACED_RECORDS)
    assert sorted([*DS1, *DS2, *PACED_RECORDS]) == sorted(MITDB_RECORDS)  # the 48 records, each once
    assert CLASSES == ("N", "S", "V", "F")
    assert DATASETS["arrhythmia_interpatient"].train_name == "mitbih_ds1.parq"
    assert DATASETS["arrhythmia_interpatient"].test_name == "mitbih_ds2.parq"


@pytest.mark.parametrize("option", [("--records", "100,101"), ("--test-size", "0.3")], ids=lambda o: o[0])
def test_inter_patient_rejects_records_and_test_size(tmp_path, capsys, option):
    out = tmp_path / "data"
    line = expect_data_error(
        capsys, "mitbih", "--source", str(tmp_path), "--out", str(out), "--protocol", "inter-patient", *option,
        words=(option[0], "inter-patient"), out=out,
    )
    assert "DS1" in line


# ------------------------------------------------------------------------------- real records


@needs_mitdb
def test_random_protocol_files_carry_the_provenance_columns(tmp_path, capsys):
    out = tmp_path / "data"
    code, _, err = run_data(capsys, "mitbih", "--source", str(MITDB), "--out", str(out), "--records", "100,101")
    assert code == 0, err
    tables = [pl.read_parquet(out / name) for name in ("heart_big_train.parq", "heart_big_test.parq")]
    for table in tables:
        for name in PROVENANCE:
            assert name in table.columns, (name, table.columns)
        assert table.schema["record"] == pl.String
        assert table.schema["r_peak"].is_integer()
        assert all(table.schema[name].is_float() for name in RR_COLUMNS)
        assert set(table.get_column("record").to_list()) == {"100", "101"}  # a random split mixes patients
    both = pl.concat(tables, how="vertical_relaxed")
    for rid in ("100", "101"):
        samples, labels = annotated_beats(rid)
        rows = both.filter(pl.col("record") == rid).sort("r_peak")
        # every beat but the record's last, each labelled as its annotation
        np.testing.assert_array_equal(rows.get_column("r_peak").to_numpy(), samples[:-1])
        np.testing.assert_array_equal(rows.get_column("target").to_numpy(), labels[:-1])
    # record 100 starts with N beats at samples 77, 370, 662 (hand-checked in its .atr file)
    first = both.filter((pl.col("record") == "100") & (pl.col("r_peak") == 77)).row(0, named=True)
    assert first["rr_post"] == pytest.approx((370 - 77) / 360, abs=1e-6)
    assert first["rr_pre"] == pytest.approx((370 - 77) / 360, abs=1e-6)
    # rr_average: the mean rr_pre of beats 0..185 (77 .. 53923, within 150 s; beat 186 is at 54219), written
    # to the file beside rr_local (beats 0..6, within 5 s)
    assert first["rr_average"] == pytest.approx((293 + 53923 - 77) / 186 / 360, abs=1e-6)
    assert first["rr_local"] == pytest.approx((293 + 1809 - 77) / 7 / 360, abs=1e-6)


@needs_mitdb
@pytest.mark.slow
def test_inter_patient_build_reproduces_the_reference_counts(tmp_path, capsys):
    out = tmp_path / "data"
    code, printed, err = run_data(
        capsys, "mitbih", "--source", str(MITDB), "--out", str(out), "--protocol", "inter-patient"
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["mitbih_ds1.parq", "mitbih_ds2.parq"]
    assert "annotated" in printed
    for name, ids, path in (("DS1", DS1, out / "mitbih_ds1.parq"), ("DS2", DS2, out / "mitbih_ds2.parq")):
        x, y = read_beats(path)
        assert x.shape == (y.size, BEAT_LENGTH) and x.min() >= 0.0 and x.max() <= 1.0
        context = read_context(path, y.size)  # checks the R-R columns: present, finite, positive
        assert context.record is not None and context.rr is not None
        counts = np.bincount(y, minlength=len(CLASSES))
        assert counts.size == len(CLASSES), f"{name} holds labels beyond F (Q = {Q_LABEL}): {counts}"
        reference = np.array(INTERPATIENT_COUNTS[name])
        assert (np.abs(counts - reference) <= 0.005 * reference).all(), (name, counts, reference)
        assert set(context.record.tolist()) == set(ids), name  # exactly its records: none paced, none of the other set
        assert not set(context.record.tolist()) & set(PACED_RECORDS)

        # the reference counts against the annotations themselves, and the beats actually dropped
        annotated = np.zeros(len(CLASSES), dtype=np.int64)
        expected = np.zeros(len(CLASSES), dtype=np.int64)
        table = pl.read_parquet(path, columns=["record", "r_peak", "target", *RR_COLUMNS])
        for rid in ids:
            samples, labels = annotated_beats(rid)
            annotated += np.bincount(labels[labels != Q_LABEL], minlength=5)[: len(CLASSES)]
            kept = labels[:-1] != Q_LABEL  # the last beat has no R-R interval; Q beats are left out
            expected += np.bincount(labels[:-1][kept], minlength=5)[: len(CLASSES)]
            rows = table.filter(pl.col("record") == rid).sort("r_peak")
            peaks = rows.get_column("r_peak").to_numpy()
            np.testing.assert_array_equal(peaks, samples[:-1][kept])
            position = np.searchsorted(samples, peaks)
            np.testing.assert_array_equal(rows.get_column("target").to_numpy(), labels[position])
            # R-R intervals in seconds between the annotations (Q beats included), at 360 Hz
            gaps = np.diff(samples) / 360
            rr = rows.select(RR_COLUMNS).to_numpy()
            np.testing.assert_allclose(rr[:, 1], gaps[position], atol=1e-5)
            np.testing.assert_allclose(rr[:, 0], np.where(position > 0, gaps[position - 1], gaps[0]), atol=1e-5)
            # rr_local and rr_average: the mean rr_pre of the beats (Q and the record's last included) within
            # 5 s and 150 s, in whole samples; beats with another exactly on the edge are left to
            # test_rr_features.test_record_100_windows_edge_is_inclusive
            pre = np.concatenate([gaps[:1], gaps])
            distance = np.abs(peaks[:, None] - samples[None, :])
            for column, reach in ((2, 5 * 360), (3, 150 * 360)):
                inside = distance <= reach
                means = (inside * pre).sum(axis=1) / inside.sum(axis=1)
                clear = ~(distance == reach).any(axis=1)
                assert clear.mean() > 0.95, (rid, column)
                np.testing.assert_allclose(rr[clear, column], means[clear], atol=1e-5, err_msg=f"{rid} {RR_COLUMNS[column]}")
        np.testing.assert_array_equal(annotated, reference)  # INTERPATIENT_COUNTS is what the .atr files hold
        np.testing.assert_array_equal(counts, expected)


# ---------------------------------------------------------------------------- split by record


def record_file(
    path: Path, records: list[str], per_record: dict[str, dict[int, int]] | None = None, seed: int = 0
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A beat file with a ``record`` column and R-R columns, whose ``rr_pre`` numbers the rows (row i holds
    i + 1 s) so that a split's rows can be traced back to the file. ``per_record`` gives the beats per class
    of a record (default: every record holds every class, with counts that vary between records)."""
    rng = np.random.default_rng(seed)
    labels, owners = [], []
    for k, rid in enumerate(records):
        counts = (per_record or {}).get(rid) or {0: 20 + 3 * k, 1: 2 + k % 4, 2: 3 + k % 3, 3: 1 + k % 2}
        for label, n in counts.items():
            labels += [label] * n
            owners += [rid] * n
    order = rng.permutation(len(labels))  # records interleaved, as in no file in particular
    labels, owners = np.array(labels)[order], np.array(owners)[order]
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    rr = np.stack(
        [np.arange(1, labels.size + 1), np.full(labels.size, 0.8), np.full(labels.size, 0.9), np.full(labels.size, 0.85)],
        axis=1,
    )
    columns = {"record": owners, **{name: rr[:, i] for i, name in enumerate(RR_COLUMNS)}}
    write_beats(path, signals, labels, columns)
    return path, owners, labels


@pytest.fixture
def grouped_files(tmp_path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    train, owners, labels = record_file(tmp_path / "ds1.parq", [f"r{i:02d}" for i in range(24)])
    test, _, _ = record_file(tmp_path / "ds2.parq", [f"t{i}" for i in range(5)], seed=1)
    return train, test, owners, labels


def split_by(train: Path, test: Path, seed: int = 0, valid_split: str = "records", fraction: float = 0.25):
    return load_splits(
        dataset="arrhythmia_interpatient", train_file=str(train), test_file=str(test), valid_fraction=fraction,
        seed=seed, valid_split=valid_split,
    )


def test_records_split_keeps_every_record_in_one_part(grouped_files):
    train_file, test_file, owners, labels = grouped_files
    splits = split_by(train_file, test_file)
    train, valid, test = (set(s.record.tolist()) for s in (splits.train, splits.valid, splits.test))
    assert not train & valid and not train & test and not valid & test
    assert train | valid == set(owners.tolist())
    assert len(valid) == 6  # 0.25 of the 24 records
    assert splits.valid.records == sorted(valid)
    for part in (splits.train, splits.valid):
        assert (part.class_counts(len(CLASSES)) > 0).all(), part.class_counts(len(CLASSES))
        # the rows of a part are the file's rows of its records, with their labels and R-R intervals
        assert part.rr.shape == (len(part), len(RR_COLUMNS)) == (len(part), 4)
        rows = part.rr[:, 0].numpy().astype(np.int64) - 1
        np.testing.assert_array_equal(part.record, owners[rows])
        np.testing.assert_array_equal(part.y.numpy(), labels[rows])
        assert set(rows.tolist()) == set(np.flatnonzero(np.isin(owners, part.records)).tolist())
    assert len(splits.train) + len(splits.valid) == owners.size
    # the held-out share of every class is close to the fraction asked for
    share = splits.valid.class_counts(len(CLASSES)).numpy() / np.bincount(labels, minlength=len(CLASSES))
    assert np.abs(share - 0.25).max() < 0.15, share
    assert "from 6 records" in splits.describe()


def test_stratified_split_mixes_records(grouped_files):
    """The check above is not vacuous: the stratified split puts beats of a record on both sides."""
    train_file, test_file, _, _ = grouped_files
    splits = split_by(train_file, test_file, valid_split="stratified")
    assert set(splits.train.record.tolist()) & set(splits.valid.record.tolist())


def test_records_split_depends_on_the_seed_only(grouped_files):
    train_file, test_file, _, _ = grouped_files
    first = split_by(train_file, test_file, seed=0).valid.records
    assert split_by(train_file, test_file, seed=0).valid.records == first
    others = {tuple(split_by(train_file, test_file, seed=seed).valid.records) for seed in (1, 2, 3)}
    assert others - {tuple(first)}, "three other seeds all chose the records of seed 0"


def test_record_split_direct_call_sorted_and_complete():
    records = np.repeat([f"p{i}" for i in range(10)], 6)
    labels = np.tile([0, 0, 0, 1, 2, 3], 10)
    keep, held = record_split(records, labels, 0.3, 0, CLASSES, "file.parq")
    assert (np.diff(keep) > 0).all() and (np.diff(held) > 0).all()
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])), np.arange(records.size))
    assert len(set(records[held].tolist())) == 3
    assert not set(records[held].tolist()) & set(records[keep].tolist())


def test_records_split_without_a_record_column(make_beats):
    path = make_beats(10, 4)
    with pytest.raises(BeatFileError, match="record") as info:
        split_by(path, path)
    assert "valid_split" in str(info.value)


def test_records_split_with_a_class_in_a_single_record(tmp_path):
    usual = {0: 20, 1: 3, 2: 3}
    per_record = {f"r{i}": usual for i in range(9)}
    per_record["r9"] = {0: 20, 1: 3, 2: 3, 3: 5}  # every F beat in one record: it cannot sit on both sides
    train, _, _ = record_file(tmp_path / "ds1.parq", list(per_record), per_record)
    test, _, _ = record_file(tmp_path / "ds2.parq", ["t0", "t1"])
    with pytest.raises(BeatFileError) as info:
        split_by(train, test, fraction=0.2)
    message = str(info.value).splitlines()[0]  # gin adds a line naming the configurable
    assert str(train) in message and "F in 1" in message, message
    assert "valid_split = 'stratified'" in message


def test_records_split_needs_two_records(tmp_path):
    train, _, _ = record_file(tmp_path / "ds1.parq", ["only"])
    with pytest.raises(BeatFileError, match="two records"):
        split_by(train, train)


def test_unknown_valid_split(grouped_files):
    train_file, test_file, _, _ = grouped_files
    with pytest.raises(HeartlabError, match="valid_split must be one of 'stratified', 'records'"):
        split_by(train_file, test_file, valid_split="patients")


# ------------------------------------------------------------------------------- read_context


def signals_and_labels(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return np.random.default_rng(0).random((n, BEAT_LENGTH)).astype(np.float32), np.arange(n) % 4


def test_read_context_reads_records_and_rr_in_column_order(tmp_path):
    x, y = signals_and_labels()
    rr = np.arange(1, 25, dtype=np.float64).reshape(6, 4) / 10
    # written in another order, and the record ids as numbers: read back as text, RR in RR_COLUMNS order
    columns = {"rr_local": rr[:, 2], "rr_average": rr[:, 3], "record": np.array([101, 101, 102, 102, 103, 103]),
               "rr_post": rr[:, 1], "rr_pre": rr[:, 0]}
    path = write_beats(tmp_path / "ctx.parq", x, y, columns)
    context = read_context(path, y.size)
    assert context.record.tolist() == ["101", "101", "102", "102", "103", "103"]
    assert context.rr.dtype == np.float32 and context.rr.shape == (6, 4)
    np.testing.assert_allclose(context.rr, rr, rtol=1e-6)
    plain = read_context(write_beats(tmp_path / "plain.parq", x, y), y.size)
    assert plain.record is None and plain.rr is None


def test_read_context_only_some_rr_columns(tmp_path):
    x, y = signals_and_labels()
    path = write_beats(tmp_path / "pre_only.parq", x, y, {"rr_pre": np.full(6, 0.8)})
    with pytest.raises(BeatFileError) as info:
        read_context(path, y.size)
    message = str(info.value)
    assert str(path) in message and "rr_pre" in message and "rr_post" in message and "rr_local" in message
    assert "rr_average" in message


def test_read_context_rejects_a_file_with_the_three_former_rr_columns(tmp_path):
    """A file built before rr_average existed (rr_pre, rr_post, rr_local only) is refused, naming the
    missing column and how to rebuild, not read as three columns that a model would misread."""
    x, y = signals_and_labels()
    former = {"record": np.array(["100"] * 6), "rr_pre": np.full(6, 0.8), "rr_post": np.full(6, 0.8),
              "rr_local": np.full(6, 0.8)}
    path = write_beats(tmp_path / "three_rr.parq", x, y, former)
    with pytest.raises(BeatFileError) as info:
        read_context(path, y.size)
    message = str(info.value)
    assert str(path) in message and "rr_average" in message and "heartlab data mitbih" in message
    with pytest.raises(BeatFileError, match="rr_average"):
        load_splits(dataset="arrhythmia_interpatient", train_file=str(path), test_file=str(path))


@pytest.mark.parametrize("column", [1, 3], ids=["rr_post", "rr_average"])
@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")], ids=["zero", "negative", "nan", "inf"])
def test_read_context_rejects_rr_that_is_not_a_positive_duration(tmp_path, bad, column):
    x, y = signals_and_labels()
    rr = np.full((6, 4), 0.8)
    rr[4, column] = bad
    path = write_beats(tmp_path / "bad_rr.parq", x, y, {name: rr[:, i] for i, name in enumerate(RR_COLUMNS)})
    with pytest.raises(BeatFileError, match="row 4") as info:
        read_context(path, y.size)
    assert "not positive" in str(info.value) and str(path) in str(info.value)
    # load_splits reads the context of both files: the same error, whatever the split
    with pytest.raises(BeatFileError, match="row 4"):
        load_splits(dataset="arrhythmia_interpatient", train_file=str(path), test_file=str(path))


def test_read_context_rejects_text_rr_and_missing_records(tmp_path):
    x, y = signals_and_labels()
    text_rr = {name: np.array(["0.8"] * 6) for name in RR_COLUMNS}
    with pytest.raises(BeatFileError, match="rr_pre"):
        read_context(write_beats(tmp_path / "text.parq", x, y, text_rr), y.size)
    missing = {"record": np.array(["100", None, "100", "101", "101", "101"], dtype=object)}
    with pytest.raises(BeatFileError, match="missing value"):
        read_context(write_beats(tmp_path / "missing.parq", x, y, missing), y.size)


def test_write_beats_columns_are_checked(tmp_path):
    x, y = signals_and_labels()
    with pytest.raises(ValueError, match="target"):
        write_beats(tmp_path / "a.parq", x, y, {"target": np.zeros(6)})
    with pytest.raises(ValueError, match="5 values for 6 beats"):
        write_beats(tmp_path / "b.parq", x, y, {"record": np.array(["1"] * 5)})
    assert not list(tmp_path.iterdir())


def test_counter_sanity_of_the_synthetic_record_file(tmp_path):
    """The fixture's file is what the split tests assume: 24 records, each holding all four classes."""
    _, owners, labels = record_file(tmp_path / "x.parq", [f"r{i:02d}" for i in range(24)])
    per_record = Counter(zip(owners.tolist(), labels.tolist()))
    assert len({rid for rid, _ in per_record}) == 24
    assert all(per_record[(f"r{i:02d}", c)] > 0 for i in range(24) for c in range(4))
