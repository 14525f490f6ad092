"""Beat files: schema check, loading into tensors, the train/validation split, model views.

A beat file is a parquet table with one row per heartbeat: 187 float columns named ``"0"`` .. ``"186"``
(the beat sampled at 125 Hz, normalised to [0, 1], zero-padded) and a ``target`` column holding the class
index (float or int). Beat files that heartlab builds from the MIT-BIH records also carry each beat's
provenance and its R-R intervals (:mod:`heartlab.beat_context`); they are optional, and training reads
them only where asked (validation by record, models with ``rr_features``). Other columns, such as a stray
pandas ``__index_level_0__``, are ignored. The train/validation split itself is :mod:`heartlab.splitting`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import gin
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from loguru import logger

from heartlab import checks
from heartlab.beat_context import RECORD_COLUMN, BeatContext, read_context
from heartlab.errors import BeatFileError
from heartlab.files import write_atomic
from heartlab.splitting import record_split, stratified_split

BEAT_LENGTH = 187  # samples per beat (1.5 s at 125 Hz)
PADDED_LENGTH = 192  # BEAT_LENGTH zero-padded so that it reshapes to 16 x 12
GRID_SHAPE = (16, 12)  # the 2D view: rows x columns of the padded beat, row-major
SIGNAL_COLUMNS = tuple(str(i) for i in range(BEAT_LENGTH))
TARGET_COLUMN = "target"
METADATA_PREFIX = "heartlab."  # prefix of heartlab's parquet key-value metadata (e.g. heartlab.synthetic)
VALID_SPLITS = ("stratified", "records")


DATA_DIR = "data"  # where experiments look for beat files, relative to the current directory


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its class names (index = label) and the names of its train/test files.

    This registry is the one source of the file names: configs name only the dataset, and the builders
    (``heartlab data ...``) and the quickstart write these names.
    """

    name: str
    classes: tuple[str, ...]
    train_name: str  # file name of the training file (split into train/validation)
    test_name: str  # file name of the test file (evaluated once, at the end)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_file(self) -> str:
        """The default training file, ``data/<train_name>``."""
        return f"{DATA_DIR}/{self.train_name}"

    @property
    def test_file(self) -> str:
        return f"{DATA_DIR}/{self.test_name}"


DATASETS: dict[str, DatasetSpec] = {
    "ptb": DatasetSpec("ptb", ("normal", "abnormal"), "heart_train.parq", "heart_test.parq"),
    "arrhythmia": DatasetSpec("arrhythmia", ("N", "S", "V", "F", "Q"), "heart_big_train.parq", "heart_big_test.parq"),
    # The inter-patient protocol (de Chazal et al. 2004): train on the records of DS1, test on those of DS2.
    # Q (15 beats in the 44 records) is left out, as in the AAMI reporting practice.
    "arrhythmia_interpatient": DatasetSpec(
        "arrhythmia_interpatient", ("N", "S", "V", "F"), "mitbih_ds1.parq", "mitbih_ds2.parq"
    ),
}


def dataset_files(*names: str) -> dict[str, str]:
    """``{'<dataset>_train': file name, '<dataset>_test': file name}`` for the datasets ``names`` (default:
    every registered dataset)."""
    return {
        f"{spec.name}_{split}": file
        for spec in (DATASETS[name] for name in names or DATASETS)
        for split, file in (("train", spec.train_name), ("test", spec.test_name))
    }


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset called ``name``; a clear error listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise BeatFileError(f"unknown dataset {name!r}: known datasets are {known}") from None


def read_beats(
    path: str | Path, num_classes: int | None = None, require_target: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and check one beat file.

    Args:
        path: the parquet file.
        num_classes: when given, every label must be an integer in ``[0, num_classes)``.
        require_target: whether the file must have its ``target`` column; without it (beats to predict),
            the labels are ``None`` and the signal columns get the same checks.

    Returns:
        ``(signals, labels)``: float32 array of shape ``(n, 187)`` and int64 array of shape ``(n,)`` (``None``
        for a file without ``target`` when it is not required).

    Raises:
        BeatFileError: one line naming the file and the problem.
    """
    path = Path(path)

    def fail(problem: str) -> BeatFileError:
        return BeatFileError(f"{path}: {problem}")

    if not path.is_file():
        raise fail("no such file (see `heartlab data --help` for ways to make beat files)")
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several types for non-parquet input
        raise fail(f"not a readable parquet file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    missing = [c for c in SIGNAL_COLUMNS if c not in schema]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise fail(
            f"missing {len(missing)} of the {BEAT_LENGTH} signal columns '0'..'186' ({shown}); "
            "a beat file holds one column per sample plus 'target'"
        )
    has_target = TARGET_COLUMN in schema
    if not has_target and require_target:
        raise fail("no 'target' column (the class label of each beat)")
    columns = [*SIGNAL_COLUMNS, TARGET_COLUMN] if has_target else list(SIGNAL_COLUMNS)
    for column in columns:
        if not schema[column].is_numeric():
            raise fail(f"column {column!r} has type {schema[column]}, expected a number")

    frame = pl.read_parquet(path, columns=columns)
    if frame.height == 0:
        raise fail("no rows")
    signals = frame.select(SIGNAL_COLUMNS).to_numpy().astype(np.float32, copy=False)
    if not np.isfinite(signals).all():
        bad_rows = np.flatnonzero(~np.isfinite(signals).all(axis=1))
        raise fail(f"{bad_rows.size} row(s) hold NaN, inf or missing samples (first: row {bad_rows[0]})")
    if not has_target:
        return signals, None
    target = frame.get_column(TARGET_COLUMN)
    if target.null_count():
        raise fail(f"{target.null_count()} missing target value(s)")
    target_values = target.to_numpy().astype(np.float64, copy=False)
    if not np.isfinite(target_values).all() or not np.all(target_values == np.round(target_values)):
        raise fail("'target' holds values that are not whole numbers")
    labels = target_values.astype(np.int64)
    if num_classes is not None:
        out_of_range = (labels < 0) | (labels >= num_classes)
        if out_of_range.any():
            bad = sorted(set(labels[out_of_range].tolist()))[:5]
            raise fail(
                f"'target' holds label(s) {bad} outside 0..{num_classes - 1} "
                f"({out_of_range.sum()} row(s)); is this file for another dataset?"
            )
    return signals, labels


def write_beats(
    path: str | Path, signals: np.ndarray, labels: np.ndarray, columns: Mapping[str, np.ndarray] | None = None
) -> Path:
    """Write beats in the schema :func:`read_beats` expects (``target`` as float, like the course files),
    plus optional per-beat ``columns`` (e.g. :data:`heartlab.beat_context.RECORD_COLUMN`,
    :data:`heartlab.beat_context.RR_COLUMNS`), one value per beat.

    The file is written beside its destination and renamed into place, so a failure leaves nothing
    half-written.
    """
    signals = np.asarray(signals, dtype=np.float32)
    labels = np.asarray(labels)
    if signals.ndim != 2 or signals.shape[1] != BEAT_LENGTH:
        raise ValueError(f"signals must have shape (n, {BEAT_LENGTH}), got {signals.shape}")
    if labels.shape != (signals.shape[0],):
        raise ValueError(f"labels must have shape ({signals.shape[0]},), got {labels.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {name: signals[:, i] for i, name in enumerate(SIGNAL_COLUMNS)}
    table[TARGET_COLUMN] = labels.astype(np.float64)
    for name, values in (columns or {}).items():
        if name in table:
            raise ValueError(f"column {name!r} is part of the beat schema")
        if len(values) != signals.shape[0]:
            raise ValueError(f"column {name!r} holds {len(values)} values for {signals.shape[0]} beats")
        table[name] = values
    write_atomic(path, lambda partial: pl.DataFrame(table).write_parquet(partial))
    return path


@dataclass
class Split:
    """One split in memory: ``x`` float32 ``(n, 187)``, ``y`` int64 ``(n,)``; optionally the record of each
    beat (``record``, text ids) and its R-R intervals (``rr``, float32 ``(n, 4)`` in seconds)."""

    x: torch.Tensor
    y: torch.Tensor
    record: np.ndarray | None = None
    rr: torch.Tensor | None = None

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, context: BeatContext) -> Split:
        """A split from :func:`read_beats` arrays and the file's :func:`heartlab.beat_context.read_context`."""
        rr = None if context.rr is None else torch.from_numpy(context.rr)
        return cls(torch.from_numpy(x), torch.from_numpy(y), context.record, rr)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, rows: np.ndarray) -> Split:
        """The beats at ``rows`` (indices), with their records and R-R intervals."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        return Split(
            self.x[index],
            self.y[index],
            None if self.record is None else self.record[rows],
            None if self.rr is None else self.rr[index],
        )

    @property
    def records(self) -> list[str]:
        """The distinct records of this split, sorted (empty when the file had no record column)."""
        return [] if self.record is None else sorted(set(self.record.tolist()))

    def class_counts(self, num_classes: int) -> torch.Tensor:
        return torch.bincount(self.y, minlength=num_classes)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``heartlab.*`` key-value entries of a parquet file (without the prefix); ``{}`` if none."""
    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode()[len(METADATA_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode(errors="replace").startswith(METADATA_PREFIX)
    }


def is_synthetic(path: str | Path) -> bool:
    """Whether a beat file was generated by ``heartlab data demo`` (metadata ``heartlab.synthetic=true``)."""
    return read_metadata(path).get("synthetic", "").lower() == "true"


@dataclass
class Splits:
    """The three splits of an experiment. ``test`` is read up front (so a bad file fails before any
    training) but is evaluated only once, after training, with the best checkpoint."""

    dataset: DatasetSpec
    train: Split
    valid: Split
    test: Split
    synthetic: bool = False  # generated demo beats, not ECG recordings

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    def summary(self) -> dict[str, object]:
        """Plain values for a results file: the dataset, its classes and the beats per class of each split."""
        counts = {name: getattr(self, name).class_counts(self.dataset.num_classes).tolist() for name in ("train", "valid", "test")}
        return {"dataset": self.dataset.name, "classes": list(self.classes), **counts, "synthetic": self.synthetic}

    def describe(self) -> str:
        def counts(split: Split) -> str:
            per_class = "/".join(str(c) for c in split.class_counts(self.dataset.num_classes).tolist())
            if not split.records:
                return f"[{per_class}]"
            shown = split.records if len(split.records) <= 6 else [*split.records[:5], "..."]
            return f"[{per_class}] from {len(split.records)} records ({', '.join(shown)})"

        label = "SYNTHETIC demo beats of " if self.synthetic else ""
        return (
            f"{label}{self.dataset.name} ({'/'.join(self.classes)}): train {len(self.train)} {counts(self.train)}, "
            f"valid {len(self.valid)} {counts(self.valid)}, test {len(self.test)} {counts(self.test)}"
        )


@gin.configurable
def load_splits(
    dataset: str = "ptb",
    train_file: str | None = None,
    test_file: str | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
    valid_split: str = "stratified",
) -> Splits:
    """Load an experiment's data: the training file split into train/validation, and the test file.

    Args:
        dataset: registered dataset name: ``'ptb'`` (normal/abnormal), ``'arrhythmia'`` (N/S/V/F/Q, beats
            split at random) or ``'arrhythmia_interpatient'`` (N/S/V/F, DS1 -> DS2 by record).
        train_file: parquet file to train and validate on; ``None`` takes the dataset's default
            (``data/heart_train.parq``, ``data/heart_big_train.parq`` or ``data/mitbih_ds1.parq``).
        test_file: parquet file evaluated once after training; ``None`` takes the dataset's default.
        valid_fraction: fraction, strictly between 0 and 1, held out for validation: of every class
            (``'stratified'``), or of the records (``'records'``).
        seed: seed (>= 0) of the train/validation split.
        valid_split: ``'stratified'`` holds out beats at random within each class; ``'records'`` holds out
            whole records (patients), so that validation, like an inter-patient test, judges the model on
            patients it never trained on: among seeded random draws of ``round(valid_fraction x records)``
            records, the one whose share of every class is closest to ``valid_fraction`` (train and
            validation each holding every class). Needs the file's ``record`` column.

    Raises:
        BeatFileError: a bad file, a setting out of range, or a train or validation split without a beat
            of some class (its recall could not be trained or measured).
    """
    spec = get_dataset(dataset)
    checks.number("load_splits.valid_fraction", valid_fraction, 0.0, 1.0, low_open=True, high_open=True)
    checks.whole("load_splits.seed", seed, 0)
    checks.one_of("load_splits.valid_split", valid_split, VALID_SPLITS)
    train_file, test_file = train_file or spec.train_file, test_file or spec.test_file
    train_x, train_y = read_beats(train_file, spec.num_classes)
    test_x, test_y = read_beats(test_file, spec.num_classes)
    train_context, test_context = read_context(train_file, train_y.size), read_context(test_file, test_y.size)
    synthetic = is_synthetic(train_file) or is_synthetic(test_file)
    if synthetic:
        logger.warning(
            f"{train_file} / {test_file}: SYNTHETIC demo beats, not ECG recordings; results say nothing about "
            "real ECGs (bring real data with `heartlab data mitbih|kaggle|split`)"
        )
    if valid_split == "records":
        if train_context.record is None:
            raise BeatFileError(
                f"{train_file}: load_splits.valid_split = 'records' needs a {RECORD_COLUMN!r} column (the record "
                "of each beat); files built by `heartlab data mitbih` have it, or use valid_split = 'stratified'"
            )
        keep, held = record_split(train_context.record, train_y, valid_fraction, seed, spec.classes, train_file)
    else:
        keep, held = stratified_split(train_y, valid_fraction, seed)
    full, test = Split.of(train_x, train_y, train_context), Split.of(test_x, test_y, test_context)
    if (full.rr is None) != (test.rr is None):
        logger.warning(f"{train_file} / {test_file}: only one of them has the R-R columns; models cannot use them")
        full, test = replace(full, rr=None), replace(test, rr=None)
    splits = Splits(dataset=spec, train=full.subset(keep), valid=full.subset(held), test=test, synthetic=synthetic)
    in_file = np.bincount(train_y, minlength=spec.num_classes).tolist()
    for name, split in (("training", splits.train), ("validation", splits.valid)):
        counts = split.class_counts(spec.num_classes).tolist()
        missing = [f"{c} ({i})" for i, (c, n) in enumerate(zip(spec.classes, counts)) if n == 0]
        if missing:
            raise BeatFileError(
                f"{train_file}: the {name} split holds no beat of class {', '.join(missing)} (the file holds "
                f"{', '.join(f'{c} {n}' for c, n in zip(spec.classes, in_file))}); train and validation must each "
                f"hold every class: add beats of it or change load_splits.valid_fraction ({valid_fraction:g})"
            )
    return splits


def as_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """Shape a batch of beats ``(B, 187)`` for a model.

    ``'1d'`` gives ``(B, 1, 187)``; ``'2d'`` gives the 16 x 12 image ``(B, 1, 16, 12)``: the beat zero-padded
    to 192 samples and reshaped row by row.
    """
    if view == "1d":
        return x.unsqueeze(1)
    if view == "2d":
        padded = torch.nn.functional.pad(x, (0, PADDED_LENGTH - x.shape[-1]))
        return padded.reshape(x.shape[0], 1, *GRID_SHAPE)
    raise ValueError(f"unknown view {view!r}: use '1d' or '2d'")


assert math.prod(GRID_SHAPE) == PADDED_LENGTH
