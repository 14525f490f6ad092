"""The optional per-beat columns of a beat file: each beat's provenance and its R-R intervals.

Beat files that heartlab builds from the MIT-BIH records carry, beside the signal and ``target`` columns of
:mod:`heartlab.data`, the record (patient) and the R-peak sample of each beat (:data:`PROVENANCE_COLUMNS`)
and its R-R intervals (:data:`RR_COLUMNS`). :func:`read_context` reads and checks the record and R-R
columns into a :class:`BeatContext`; training uses them only where asked (validation by record, models with
``rr_features``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from heartlab.errors import BeatFileError

RECORD_COLUMN = "record"  # the recording (one patient) a beat comes from, e.g. '101' (text)
R_PEAK_COLUMN = "r_peak"  # sample index of the beat's R-peak annotation in its record (at the record's rate)
PROVENANCE_COLUMNS = (RECORD_COLUMN, R_PEAK_COLUMN)
# R-R intervals in seconds, after de Chazal et al. (2004): to the previous beat, to the next beat, and the
# mean R-R interval of the beats within 5 s either side (local rhythm) and within 150 s either side (the
# patient's average rhythm over 5 minutes).
RR_COLUMNS = ("rr_pre", "rr_post", "rr_local", "rr_average")


@dataclass(frozen=True)
class BeatContext:
    """The optional per-beat columns of a beat file: ``record`` (text ids, ``None`` when absent) and the
    R-R intervals ``rr`` (float32 ``(n, 4)``: :data:`RR_COLUMNS`, seconds; ``None`` when absent)."""

    record: np.ndarray | None = None
    rr: np.ndarray | None = None


def read_context(path: str | Path, n: int) -> BeatContext:
    """Read and check the optional :data:`RECORD_COLUMN` and :data:`RR_COLUMNS` of a beat file of ``n`` rows
    (already checked by :func:`heartlab.data.read_beats`).

    Raises:
        BeatFileError: only some of the R-R columns present, or values that are missing, not numbers, or
            not positive.
    """
    schema = pl.read_parquet_schema(path)
    present = [c for c in RR_COLUMNS if c in schema]
    if present and len(present) != len(RR_COLUMNS):
        missing = [c for c in RR_COLUMNS if c not in schema]
        raise BeatFileError(
            f"{path}: has R-R column(s) {', '.join(present)} but not {', '.join(missing)}; a file holds all of "
            f"{', '.join(RR_COLUMNS)} (seconds) or none (rebuild it with `heartlab data mitbih`)"
        )
    wanted = [c for c in (RECORD_COLUMN, *present) if c in schema]
    if not wanted:
        return BeatContext()
    frame = pl.read_parquet(path, columns=wanted)
    assert frame.height == n
    record = None
    if RECORD_COLUMN in frame.columns:
        column = frame.get_column(RECORD_COLUMN)
        if column.null_count():
            raise BeatFileError(f"{path}: {column.null_count()} missing value(s) in column {RECORD_COLUMN!r}")
        record = column.cast(pl.Utf8).to_numpy().astype(str)
    rr = None
    if present:
        for name in present:
            if not schema[name].is_numeric():
                raise BeatFileError(f"{path}: column {name!r} has type {schema[name]}, expected seconds as a number")
        rr = frame.select(present).to_numpy().astype(np.float32)
        bad = ~(np.isfinite(rr) & (rr > 0)).all(axis=1)
        if bad.any():
            raise BeatFileError(
                f"{path}: {bad.sum()} row(s) hold R-R intervals that are missing, not finite or not positive "
                f"(first: row {np.flatnonzero(bad)[0]}); R-R intervals are durations in seconds"
            )
    return BeatContext(record, rr)
