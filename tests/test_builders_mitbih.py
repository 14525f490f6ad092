"""`heartlab data mitbih`: the Arrhythmia beat files rebuilt from the raw MIT-BIH records.

The real records are read from ../shared/data/mitdb (never copied into the repository); the tests that need
them skip when that folder is absent. Nothing is downloaded: the PhysioNet path runs with
``wfdb.dl_database`` replaced by a function linking the local records.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import wfdb

from heartlab.builders.mitbih import (
    AAMI_LABELS,
    PUBLISHED_COUNTS,
    build_record,
    extract_beats,
    resample_to_target,
)
from heartlab.data import BEAT_LENGTH, read_beats
from helpers import MITDB, needs_mitdb
from helpers import expect_data_error as expect_failure
from helpers import run_data as run


def link_records(target: Path, ids, extensions=("hea", "dat", "atr")) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for rid in ids:
        for ext in extensions:
            (target / f"{rid}.{ext}").symlink_to(MITDB / f"{rid}.{ext}")
    return target


def expected_spans(rid: str) -> tuple[np.ndarray, np.ndarray]:
    """(position at 125 Hz, span) of every kept beat of a record, straight from its annotations."""
    annotation = wfdb.rdann(str(MITDB / rid), "atr")
    samples = np.array([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in AAMI_LABELS])
    positions = np.rint(samples * 125 / 360).astype(int)
    rr, positions = np.diff(positions), positions[:-1]
    window = positions // 1250
    spans = np.empty_like(positions)
    for w in np.unique(window):
        spans[window == w] = min(round(1.2 * np.median(rr[window == w])), BEAT_LENGTH)
    return positions, spans


# ------------------------------------------------------------------------------------ beat extraction


def test_extract_beats_windows_spans_and_padding():
    rate, signal = 125, np.zeros(3000)
    positions = np.concatenate([np.arange(50, 1250, 100), np.arange(1300, 2500, 80), [2600, 2700]])
    for p in positions:
        signal[p] = 1.0 if p < 1250 else 3.0  # the second window is louder: each window is normalised alone
        signal[p + 1 : p + 30] = 0.2 if p < 1250 else 0.9
    signal -= 0.5
    labels = np.arange(positions.size) % 5
    beats, kept_labels, kept = extract_beats(signal, positions, labels, rate)
    assert beats.shape == (positions.size - 1, BEAT_LENGTH)  # the last beat has no R-R interval
    np.testing.assert_array_equal(kept_labels, labels[:-1])
    np.testing.assert_array_equal(kept, np.arange(positions.size - 1))  # index into positions of each beat
    assert beats.min() >= 0.0 and beats.max() <= 1.0
    assert (beats[:, 0] == 1.0).all()  # starts at the (normalised) R peak
    first = beats[: np.sum(positions < 1250)]
    second = beats[np.sum(positions < 1250) : np.sum(positions < 2500)]
    assert (first[:, 120:] == 0).all() and (first[:, 1:30] > 0).all()  # 1.2 x 100 samples
    assert (second[:, 96:] == 0).all()  # 1.2 x 80 samples
    np.testing.assert_allclose(first[0, 1:30], 0.2, rtol=1e-6)  # window [-0.5, 0.5] -> [0, 1]
    np.testing.assert_allclose(second[0, 1:30], 0.3, rtol=1e-6)  # window [-0.5, 2.5] -> [0, 1]


def test_resampling_360_to_125():
    t = np.arange(3600) / 360
    resampled = resample_to_target(np.sin(2 * np.pi * 1.0 * t), 360)
    assert resampled.size == 1250
    np.testing.assert_allclose(resampled[100:-100], np.sin(2 * np.pi * np.arange(1250) / 125)[100:-100], atol=1e-3)


# ---------------------------------------------------------------------------------------- real records


@needs_mitdb
def test_record_100_beats_start_at_the_r_peak_and_are_padded_after_1_2_rr():
    result = build_record(MITDB, "100")
    assert result.lead == "MLII"
    positions, spans = expected_spans("100")
    assert result.signals.shape == (positions.size, BEAT_LENGTH)
    x = result.signals
    assert x.min() >= 0.0 and x.max() <= 1.0
    record_end = round(650000 * 125 / 360)
    for beat, position, span in zip(x, positions, spans):
        assert (beat[span:] == 0).all()
        if position + span <= record_end:  # the record's last kept beat runs past its end: zeros there
            assert beat[span - 10 : span].any()
    # the first samples hold the R peak: the maximum of the beat before the next R wave comes
    peak_at = np.array([beat[: int(0.6 * span)].argmax() for beat, span in zip(x, spans)])
    assert (peak_at <= 3).mean() > 0.95
    assert np.median(x[:, 0]) > 0.7


@needs_mitdb
def test_lead_choice_by_name():
    assert build_record(MITDB, "102").lead == "V5"  # no MLII in 102 and 104
    assert build_record(MITDB, "104").lead == "V5"
    result = build_record(MITDB, "114")
    header = wfdb.rdheader(str(MITDB / "114"))
    assert result.lead == "MLII" and header.sig_name.index("MLII") == 1
    second = wfdb.rdrecord(str(MITDB / "114"), channels=[1]).p_signal[:, 0]
    annotation = wfdb.rdann(str(MITDB / "114"), "atr")
    keep = [i for i, s in enumerate(annotation.symbol) if s in AAMI_LABELS]
    positions = np.rint(annotation.sample[keep] * 125 / 360).astype(int)
    labels = np.array([AAMI_LABELS[annotation.symbol[i]] for i in keep])
    expected, _, _ = extract_beats(resample_to_target(second, 360), positions, labels)
    np.testing.assert_array_equal(result.signals, expected)


@needs_mitdb
def test_cli_build_of_two_records(tmp_path, capsys):
    out = tmp_path / "data"
    code, printed, err = run(capsys, "mitbih", "--source", str(MITDB), "--out", str(out), "--records", "100,102")
    assert code == 0, err
    x_train, y_train = read_beats(out / "heart_big_train.parq", 5)
    x_test, y_test = read_beats(out / "heart_big_test.parq", 5)
    n100, n102 = expected_spans("100")[0].size, expected_spans("102")[0].size
    assert y_train.size + y_test.size == n100 + n102
    assert set(np.unique(y_test)) <= {0, 1, 2, 4} and 4 in y_test  # 102 is paced
    assert "class" in printed and "all" in printed
    assert sorted(p.name for p in out.iterdir()) == ["heart_big_test.parq", "heart_big_train.parq"]


# ------------------------------------------------------------------------------------------ bad inputs


def test_missing_source_folder(tmp_path, capsys):
    out = tmp_path / "data"
    expect_failure(
        capsys, "mitbih", "--source", str(tmp_path / "nowhere"), "--out", str(out), words=("no such folder",)
    )
    (tmp_path / "empty").mkdir()
    expect_failure(capsys, "mitbih", "--source", str(tmp_path / "empty"), "--out", str(out), words=("no wfdb records",))
    assert not out.exists()


@needs_mitdb
def test_record_without_annotations(tmp_path, capsys):
    source = link_records(tmp_path / "mitdb", ["100"])
    link_records(source, ["101"], extensions=("hea", "dat"))
    out = tmp_path / "data"
    message = expect_failure(capsys, "mitbih", "--source", str(source), "--out", str(out), words=("101.atr",))
    assert "--records" in message
    expect_failure(
        capsys, "mitbih", "--source", str(source), "--out", str(out), "--records", "100,999", words=("record 999",)
    )
    assert not out.exists()


@needs_mitdb
def test_record_without_mlii_or_v5(tmp_path, capsys):
    source = link_records(tmp_path / "mitdb", ["100"], extensions=("dat", "atr"))
    header = (MITDB / "100.hea").read_text().replace(" MLII", " I").replace(" V5", " II")
    (source / "100.hea").write_text(header)
    out = tmp_path / "data"
    expect_failure(capsys, "mitbih", "--source", str(source), "--out", str(out), words=("no MLII or V5 lead", "I, II"))
    assert not out.exists()


@needs_mitdb
def test_unreadable_record(tmp_path, capsys):
    source = link_records(tmp_path / "mitdb", ["100"], extensions=("hea", "atr"))
    (source / "100.dat").write_bytes(b"\x00" * 10)
    out = tmp_path / "data"
    expect_failure(capsys, "mitbih", "--source", str(source), "--out", str(out), words=("cannot read the record",))
    assert not out.exists()


# --------------------------------------------------------------------------------------------- download


@needs_mitdb
def test_physionet_source_downloads_once(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_dl_database(db_dir, dl_dir, records="all", **kwargs):
        calls.append((db_dir, records))
        link_records(Path(dl_dir), records)

    monkeypatch.setattr(wfdb, "dl_database", fake_dl_database)
    download = tmp_path / "cache"
    argv = ["mitbih", "--source", "physionet", "--download-dir", str(download), "--records", "100"]
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert calls == [("mitdb", ["100"])]
    assert run(capsys, *argv, "--out", str(tmp_path / "b"))[0] == 0
    assert len(calls) == 1  # the second build reuses the download
    assert (tmp_path / "a" / "heart_big_train.parq").read_bytes() == (
        tmp_path / "b" / "heart_big_train.parq"
    ).read_bytes()


def test_physionet_download_failure_is_one_clear_error(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    out = tmp_path / "data"
    expect_failure(
        capsys,
        "mitbih",
        "--source",
        "physionet",
        "--download-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        words=("could not download", "internet", "--source DIR"),
    )
    assert not out.exists()


# ------------------------------------------------------------------------------------------ full build


@needs_mitdb
@pytest.mark.slow
def test_full_build_matches_the_published_counts(tmp_path, capsys):
    out = tmp_path / "data"
    start = time.perf_counter()
    code, printed, err = run(capsys, "mitbih", "--source", str(MITDB), "--out", str(out))
    elapsed = time.perf_counter() - start
    assert code == 0, err
    assert elapsed < 60, f"the build took {elapsed:.0f} s"
    x_train, y_train = read_beats(out / "heart_big_train.parq", 5)
    x_test, y_test = read_beats(out / "heart_big_test.parq", 5)
    train, test = np.bincount(y_train, minlength=5), np.bincount(y_test, minlength=5)
    for have, published in [(train, "train"), (test, "test"), (train + test, "total")]:
        reference = np.array(PUBLISHED_COUNTS[published])
        # within 0.5% of the published set (or one beat: 0.5% of F test's 162 beats is less than one)
        assert (np.abs(have - reference) <= np.maximum(0.005 * reference, 1)).all(), (published, have, reference)
    np.testing.assert_array_equal(train + test, PUBLISHED_COUNTS["total"])
    assert "published" in printed

    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    assert x.min() >= 0.0 and x.max() <= 1.0
    length = BEAT_LENGTH - np.argmax(x[:, ::-1] != 0, axis=1)  # samples before the zero padding
    assert (length < BEAT_LENGTH).mean() > 0.95  # almost every beat is zero-padded after its 1.2 x R-R
    assert 100 < np.median(length) < 140  # ~1.2 x 0.8 s at 125 Hz
    normal = x[y == 0][::50]
    peak_at = np.array([beat[: int(0.6 * n)].argmax() for beat, n in zip(normal, length[y == 0][::50])])
    assert (peak_at <= 3).mean() > 0.9  # normal beats start at their R peak
