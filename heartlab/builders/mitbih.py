"""Rebuild the Arrhythmia beat files (``heart_big_train.parq`` / ``heart_big_test.parq``) from the raw
MIT-BIH Arrhythmia Database records, with the preprocessing of Kachuee, Fazeli and Sarrafzadeh, "ECG
Heartbeat Classification: A Deep Transferable Representation", IEEE ICHI 2018.

Per record:

1. lead MLII, chosen by name (records 102 and 104 have none and use V5; in 114 MLII is the second
   channel);
2. resampled 360 -> 125 Hz with a polyphase filter (``scipy.signal.resample_poly``, ratio 25/72); the
   reference annotations are moved to the same time base;
3. cut into consecutive 10 s windows (the last, shorter one included), each min-max normalised to [0, 1];
4. every annotated beat of an AAMI class (N = N,L,R,e,j; S = A,a,J,S; V = V,E; F = F; Q = /,f,Q; other
   symbols are not beats and are dropped) has an R-R interval: the distance to the next such beat. The
   last beat of a record has none and is dropped, exactly like the published set (48 beats fewer than the
   database's 109,494);
5. the window's nominal beat period T is the median R-R interval of the beats annotated in it; each beat
   starts at its annotation sample and spans 1.2 T, cut to 187 samples (1.5 s) or zero-padded up to it. A
   beat running past its window's end keeps its samples, normalised with its own window's min and max
   and clipped to [0, 1].

Every beat keeps its provenance, ``record`` and ``r_peak`` (the sample index of its R-peak annotation in
the 360 Hz record), and its R-R intervals in seconds, measured between the annotations at 360 Hz among
the AAMI beats: ``rr_pre`` (to the previous beat; a record's first beat has none and takes its ``rr_post``),
``rr_post`` (to the next beat), ``rr_local`` (the mean ``rr_pre`` of the beats within 5 s either side) and
``rr_average`` (the same within 150 s either side: the patient's rhythm over 5 minutes).

Two protocols split the beats into the training and the test file:

- ``random`` (the default): a stratified 80/20 split of all beats with a fixed seed, into
  ``heart_big_train.parq`` / ``heart_big_test.parq``. The result matches the published class counts: the
  totals exactly (N 90,589, S 2,779, V 7,236, F 803, Q 8,039), the train/test counts to within one beat per
  class. A patient's beats sit in both files.
- ``inter-patient`` (de Chazal, O'Dwyer and Reilly, IEEE TBME 51(7), 2004): the 22 records of DS1 into
  ``mitbih_ds1.parq``, the 22 of DS2 into ``mitbih_ds2.parq``; the paced records 102, 104, 107 and 217 are
  left out, and so are the Q beats (8 in DS1, 7 in DS2), as in the AAMI reporting practice (classes
  N, S, V, F). Against the reference annotation counts (DS1 N 45,866 / S 944 / V 3,788 / F 415, DS2
  N 44,259 / S 1,837 / V 3,221 / F 388) the build holds 22 beats fewer per set: the last beat of each
  record (21 N and 1 S in each), which has no following beat to measure its R-R interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from loguru import logger

from heartlab.beat_context import R_PEAK_COLUMN, RECORD_COLUMN, RR_COLUMNS
from heartlab.builders.outputs import StagedOutputs, count_table, write_beat_file
from heartlab.builders.physionet import MITDB_RECORDS, PHYSIONET_DOC, default_download_dir, download_mitdb, list_records
from heartlab.data import BEAT_LENGTH, DATASETS
from heartlab.errors import HeartlabError
from heartlab.splitting import stratified_split

TARGET_RATE = 125  # Hz, the beat files' sampling rate
WINDOW_SECONDS = 10
SPAN_FACTOR = 1.2  # a beat spans 1.2 x the window's median R-R interval
LOCAL_RR_SECONDS = 5.0  # rr_local averages the R-R intervals of the beats within this many seconds either side
AVERAGE_RR_SECONDS = 150.0  # rr_average: the same over 5 minutes (de Chazal et al. 2004)
LEAD_PREFERENCE = ("MLII", "V5")
AAMI_LABELS: dict[str, int] = {
    **dict.fromkeys("NLRej", 0),  # N: normal, bundle branch block, escape beats
    **dict.fromkeys("AaJS", 1),  # S: supraventricular premature
    **dict.fromkeys("VE", 2),  # V: premature ventricular contraction, ventricular escape
    "F": 3,  # F: fusion of ventricular and normal
    **dict.fromkeys("/fQ", 4),  # Q: paced, fusion of paced and normal, unclassifiable
}
# Published class counts (Kachuee et al. 2018 / the Kaggle "heartbeat" dataset), N/S/V/F/Q.
PUBLISHED_COUNTS = {
    "train": (72471, 2223, 5788, 641, 6431),
    "test": (18118, 556, 1448, 162, 1608),
    "total": (90589, 2779, 7236, 803, 8039),
}
TRAIN_FILE = DATASETS["arrhythmia"].train_name
TEST_FILE = DATASETS["arrhythmia"].test_name
DEFAULT_SEED = 0
PROTOCOLS = ("random", "inter-patient")
# The inter-patient protocol of de Chazal et al. (2004).
DS1 = tuple(["101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230"])
DS2 = tuple(["100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234"])
PACED_RECORDS = ("102", "104", "107", "217")
Q_LABEL = 4  # the inter-patient dataset holds N, S, V, F only
# Annotated beats per AAMI class (N/S/V/F) of DS1 and DS2, as the literature counts them.
INTERPATIENT_COUNTS = {"DS1": (45866, 944, 3788, 415), "DS2": (44259, 1837, 3221, 388)}


@dataclass(frozen=True)
class RecordBeats:
    record: str
    lead: str
    signals: np.ndarray  # float32 (n, 187)
    labels: np.ndarray  # int64 (n,)
    r_peaks: np.ndarray  # int64 (n,): sample index of each beat's annotation in the record (its own rate)
    rr: np.ndarray  # float32 (n, 4): rr_pre, rr_post, rr_local, rr_average in seconds
    dropped_symbols: int  # annotations that are not AAMI beats


@dataclass(frozen=True)
class BeatTable:
    """Beats of several records: signals, labels and the per-beat columns written beside them."""

    signals: np.ndarray
    labels: np.ndarray
    columns: dict[str, np.ndarray]

    @classmethod
    def of(cls, results: Sequence[RecordBeats]) -> BeatTable:
        rr = np.concatenate([r.rr for r in results])
        columns = {
            RECORD_COLUMN: np.concatenate([np.full(r.labels.size, r.record, dtype=object) for r in results]),
            R_PEAK_COLUMN: np.concatenate([r.r_peaks for r in results]),
            **{name: rr[:, i] for i, name in enumerate(RR_COLUMNS)},
        }
        return cls(np.concatenate([r.signals for r in results]), np.concatenate([r.labels for r in results]), columns)

    def rows(self, index: np.ndarray) -> BeatTable:
        return BeatTable(self.signals[index], self.labels[index], {k: v[index] for k, v in self.columns.items()})


# ---------------------------------------------------------------------------------------------- records


def _read_record(source: Path, rid: str) -> tuple[np.ndarray, float, str, np.ndarray, list[str]]:
    """(lead signal in mV, sampling rate, lead name, annotation samples, annotation symbols)."""
    import wfdb

    path = str(source / rid)
    try:
        header = wfdb.rdheader(path)
        lead = next((name for name in LEAD_PREFERENCE if name in header.sig_name), None)
        if lead is None:
            raise HeartlabError(
                f"{source / rid}.hea: no {' or '.join(LEAD_PREFERENCE)} lead (leads: "
                f"{', '.join(header.sig_name)}); the beat files are built from lead MLII (V5 where MLII is missing)"
            )
        record = wfdb.rdrecord(path, channels=[header.sig_name.index(lead)])
        annotation = wfdb.rdann(path, "atr")
    except HeartlabError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise HeartlabError(
            f"{source / rid}: cannot read the record ({type(exc).__name__}: {first}); check that its "
            f".hea/.dat/.atr files are complete (PhysioNet publishes SHA256 checksums: {PHYSIONET_DOC})"
        ) from None
    signal = record.p_signal[:, 0].astype(np.float64)
    if not np.isfinite(signal).all():  # rare invalid samples: carry the last valid value forward
        valid = np.isfinite(signal)
        if not valid.any():
            raise HeartlabError(f"{source / rid}: lead {lead} holds no valid samples")
        idx = np.where(valid, np.arange(signal.size), 0)
        np.maximum.accumulate(idx, out=idx)
        signal = signal[idx]
        signal[: np.argmax(valid)] = signal[np.argmax(valid)]
    return signal, float(record.fs), lead, np.asarray(annotation.sample, dtype=np.int64), list(annotation.symbol)


# ---------------------------------------------------------------------------------------- preprocessing


def resample_to_target(signal: np.ndarray, fs: float) -> np.ndarray:
    """Polyphase resampling to 125 Hz (360 Hz: up 25, down 72)."""
    from scipy.signal import resample_poly

    ratio = Fraction(TARGET_RATE) / Fraction(fs).limit_denominator(1000)
    if ratio == 1:
        return signal
    return resample_poly(signal, ratio.numerator, ratio.denominator)


def extract_beats(
    signal: np.ndarray, positions: np.ndarray, labels: np.ndarray, rate: int = TARGET_RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut beats out of a signal sampled at ``rate``.

    Args:
        signal: one lead at ``rate`` Hz.
        positions: sample index of each annotated beat (sorted), at ``rate`` Hz.
        labels: class of each beat.

    Returns:
        ``(beats, labels, kept)``: float32 ``(m, 187)`` in [0, 1], int64 ``(m,)``, and the index into
        ``positions`` of each beat: every beat that has a following beat (``m = len(positions) - 1``).
    """
    window = WINDOW_SECONDS * rate
    n_windows = -(-signal.size // window)
    # min-max normalisation constants of each window
    lows = np.array([signal[w * window : (w + 1) * window].min() for w in range(n_windows)])
    highs = np.array([signal[w * window : (w + 1) * window].max() for w in range(n_windows)])
    scales = np.where(highs > lows, highs - lows, 1.0)

    rr = np.diff(positions)
    positions, labels = positions[:-1], labels[:-1]  # the last beat has no R-R interval
    keep = (positions >= 0) & (positions < signal.size)
    positions, labels, rr = positions[keep], labels[keep], rr[keep]
    kept = np.flatnonzero(keep)
    beat_window = positions // window

    beats = np.zeros((positions.size, BEAT_LENGTH), dtype=np.float32)
    for w in np.unique(beat_window):
        in_window = np.flatnonzero(beat_window == w)
        span = min(int(round(SPAN_FACTOR * float(np.median(rr[in_window])))), BEAT_LENGTH)
        for i in in_window:
            segment = signal[positions[i] : positions[i] + span]
            beats[i, : segment.size] = np.clip((segment - lows[w]) / scales[w], 0.0, 1.0)
    return beats, labels.astype(np.int64), kept


def rr_intervals(
    samples: np.ndarray, fs: float, local_seconds: float = LOCAL_RR_SECONDS, average_seconds: float = AVERAGE_RR_SECONDS
) -> np.ndarray:
    """R-R intervals in seconds of the beats annotated at ``samples`` (sorted, at ``fs`` Hz): float32
    ``(n, 4)``, the columns :data:`heartlab.beat_context.RR_COLUMNS`.

    ``rr_pre``: to the previous beat (the first beat takes its ``rr_post``); ``rr_post``: to the next beat
    (the last beat takes its ``rr_pre``; the builds drop that beat); ``rr_local`` and ``rr_average``: the
    mean ``rr_pre`` of the beats within ``local_seconds`` and ``average_seconds`` either side, the beat
    included.
    """
    positions = np.asarray(samples, dtype=np.float64)
    if positions.size < 2:
        return np.zeros((positions.size, 4), dtype=np.float32)
    gaps = np.diff(positions) / fs
    pre = np.concatenate([gaps[:1], gaps])
    post = np.concatenate([gaps, gaps[-1:]])
    cumulative = np.concatenate([[0.0], np.cumsum(pre)])

    def window_mean(half: float) -> np.ndarray:  # in samples, so that a beat exactly `half` away is inside
        low = np.searchsorted(positions, positions - half * fs, side="left")
        high = np.searchsorted(positions, positions + half * fs, side="right")
        return (cumulative[high] - cumulative[low]) / (high - low)

    return np.stack([pre, post, window_mean(local_seconds), window_mean(average_seconds)], axis=1).astype(np.float32)


def build_record(source: str | Path, rid: str) -> RecordBeats:
    """All beats of one record (a top-level function so that a process pool can run it)."""
    source = Path(source)
    signal, fs, lead, samples, symbols = _read_record(source, rid)
    is_beat = np.array([s in AAMI_LABELS for s in symbols], dtype=bool)
    labels = np.array([AAMI_LABELS[s] for s, b in zip(symbols, is_beat) if b], dtype=np.int64)
    beat_samples = samples[is_beat]
    positions = np.rint(beat_samples * (TARGET_RATE / fs)).astype(np.int64)
    order = np.argsort(positions, kind="stable")
    resampled = resample_to_target(signal, fs)
    beats, beat_labels, kept = extract_beats(resampled, positions[order], labels[order])
    r_peaks = beat_samples[order]
    rr = rr_intervals(r_peaks, fs)
    return RecordBeats(rid, lead, beats, beat_labels, r_peaks[kept], rr[kept], int((~is_beat).sum()))


def build_beats(
    source: Path, records: Sequence[str] | None = None, workers: int = 1
) -> tuple[BeatTable, list[RecordBeats]]:
    """The beats of every record of ``source``, concatenated in record order."""
    ids = list_records(source, records)
    workers = max(1, min(workers, len(ids), os.cpu_count() or 1))
    logger.info(f"MIT-BIH: building beats from {len(ids)} record(s) in {source} ({workers} process(es))")
    if workers == 1:
        results = [build_record(source, rid) for rid in ids]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(build_record, [source] * len(ids), ids, chunksize=4))
    for result in results:
        if result.lead != "MLII":
            logger.info(f"MIT-BIH: record {result.record} has no MLII lead, used {result.lead}")
    return BeatTable.of(results), results


# ---------------------------------------------------------------------------------------------- build


def build_mitbih(
    source: str | Path,
    out: str | Path,
    *,
    protocol: str = "random",
    records: Sequence[str] | None = None,
    test_size: float | None = None,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    force: bool = False,
    download_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Build the training and test beat files of a protocol in ``out``.

    Args:
        source: folder of the raw records, or ``"physionet"`` to download them (into ``download_dir``).
        out: output folder.
        protocol: ``'random'``: ``heart_big_train.parq`` / ``heart_big_test.parq``, a stratified split of
            all beats; ``'inter-patient'``: ``mitbih_ds1.parq`` (DS1, training) / ``mitbih_ds2.parq`` (DS2,
            test), N/S/V/F beats of the records of de Chazal et al. (2004).
        records: build from these record ids only (``random`` protocol; default: all records of the source).
        test_size: fraction of every class held out for the test file (``random`` protocol; default 0.2).
        seed: seed of the stratified split (``random`` protocol).
        workers: processes reading records in parallel (one is fastest on the full database: the whole
            build takes a few seconds, less than a process pool costs to start and to send results back).
        force: replace existing output files.

    Returns:
        ``{"train": path, "test": path}``.
    """
    start = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise HeartlabError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    inter_patient = protocol == "inter-patient"
    if inter_patient and (records or test_size is not None):
        given = "--records" if records else "--test-size"
        raise HeartlabError(
            f"{given} does not apply to --protocol inter-patient: its records are fixed (DS1 trains, DS2 tests)"
        )
    test_size = 0.2 if test_size is None else test_size
    if not 0.0 < test_size < 1.0:
        raise HeartlabError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}")
    spec = DATASETS["arrhythmia_interpatient" if inter_patient else "arrhythmia"]
    out = Path(out)
    train_path, test_path = out / spec.train_name, out / spec.test_name
    outputs = StagedOutputs([train_path, test_path], force=force)
    wanted = [*DS1, *DS2] if inter_patient else records
    if str(source) == "physionet":
        source_dir = download_mitdb(Path(download_dir) if download_dir else default_download_dir(), wanted)
    else:
        source_dir = Path(source)
    beats, results = build_beats(source_dir, wanted, workers)
    metadata = {
        "source": "MIT-BIH Arrhythmia Database (PhysioNet mitdb 1.0.0)",
        "preprocessing": "Kachuee et al. 2018: MLII (V5), 125 Hz, 10 s windows, 1.2 x median R-R",
        "protocol": protocol,
    }
    if inter_patient:
        parts, reference, dropped = _inter_patient_parts(beats)
        metadata["protocol"] = "inter-patient (de Chazal et al. 2004): DS1 trains, DS2 tests; paced records and Q beats left out"
        part_records = {"train": ",".join(DS1), "test": ",".join(DS2)}
        train, test, reference_name = parts["DS1"], parts["DS2"], "annotated"
    else:
        keep, held = stratified_split(beats.labels, test_size, seed)
        parts = {"train": beats.rows(keep), "test": beats.rows(held), "total": beats}
        full = records is None and len(results) == len(MITDB_RECORDS)
        reference, dropped = (PUBLISHED_COUNTS if full else None), ""
        metadata.update(split_seed=str(seed), test_size=str(test_size))
        part_records = dict.fromkeys(("train", "test"), ",".join(r.record for r in results))
        train, test, reference_name = parts["train"], parts["test"], "published"
    with outputs:
        for path, part, split in ((train_path, train, "train"), (test_path, test, "test")):
            meta = {**metadata, "records": part_records[split], "split": split}
            write_beat_file(outputs, path, part.signals, part.labels, meta, columns=part.columns)
    elapsed = time.perf_counter() - start
    columns = {name: part.labels for name, part in parts.items()}
    table = count_table(spec.classes, columns, reference=reference, reference_name=reference_name)
    print(f"MIT-BIH beats per class, {protocol} protocol ({len(results)} records):\n{table}{dropped}")
    logger.info(
        f"MIT-BIH: wrote {train_path} ({train.labels.size} beats) and {test_path} ({test.labels.size} beats) "
        f"in {elapsed:.1f} s"
    )
    return {"train": train_path, "test": test_path}


def _inter_patient_parts(beats: BeatTable) -> tuple[dict[str, BeatTable], dict[str, tuple[int, ...]], str]:
    """DS1 and DS2 without their Q beats, the reference counts, and a note on the beats left out."""
    record = beats.columns[RECORD_COLUMN]
    parts, notes = {}, []
    for name, ids in (("DS1", DS1), ("DS2", DS2)):
        in_set = np.isin(record, ids)
        q = int((in_set & (beats.labels == Q_LABEL)).sum())
        parts[name] = beats.rows(np.flatnonzero(in_set & (beats.labels != Q_LABEL)))
        notes.append(f"{q} Q beat(s) of {name}")
    note = (
        f"\nleft out: {', '.join(notes)} (AAMI practice), the paced records {', '.join(PACED_RECORDS)} and the "
        "last beat of every record (no following beat to measure its R-R interval)"
    )
    return parts, INTERPATIENT_COUNTS, note
