"""Convert the Kaggle "ECG Heartbeat Categorization Dataset" CSVs into the four beat files.

The Kaggle download holds four CSV files without a header row, one beat per line: 187 sample values, then
the label. ``mitbih_train.csv`` / ``mitbih_test.csv`` (labels 0..4 = N, S, V, F, Q) become
``heart_big_train.parq`` / ``heart_big_test.parq``; ``ptbdb_normal.csv`` and ``ptbdb_abnormal.csv`` are
labelled normal = 0 and abnormal = 1, pooled, and split (stratified 80/20, fixed seed) into
``heart_train.parq`` / ``heart_test.parq``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
from loguru import logger

from heartlab.builders.outputs import StagedOutputs, count_table, write_beat_file
from heartlab.data import BEAT_LENGTH, DATASETS, dataset_files
from heartlab.errors import HeartlabError
from heartlab.splitting import stratified_split

CSV_COLUMNS = BEAT_LENGTH + 1  # 187 samples, then the label
MITBIH_FILES = {"train": "mitbih_train.csv", "test": "mitbih_test.csv"}
PTB_FILES = {0: "ptbdb_normal.csv", 1: "ptbdb_abnormal.csv"}  # label -> file
OUTPUT_FILES = dataset_files("ptb", "arrhythmia")  # the file names the configs read (heartlab.data.DATASETS)
DEFAULT_SEED = 0
KAGGLE_DOC = "https://www.kaggle.com/datasets/shayanfazeli/heartbeat"


def _locate_problem(path: Path) -> str | None:
    """Slow pass over a CSV that failed to parse: the first line with the wrong number of values or a value
    that is not a number."""
    with path.open(newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != CSV_COLUMNS:
                return (
                    f"line {line_no} has {len(row)} values, expected {CSV_COLUMNS} "
                    f"({BEAT_LENGTH} samples, then the label)"
                )
            for col, cell in enumerate(row, start=1):
                try:
                    float(cell)
                except ValueError:
                    what = "the label" if col == CSV_COLUMNS else f"sample {col - 1}"
                    hint = " (the Kaggle files have no header row)" if line_no == 1 else ""
                    return f"line {line_no}, column {col} ({what}): {cell.strip()[:30]!r} is not a number{hint}"
    return None


def read_kaggle_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one Kaggle CSV.

    Returns:
        ``(signals, label_values)``: float32 ``(n, 187)`` and the label column as float64 ``(n,)``.

    Raises:
        HeartlabError: naming the file, the line and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise HeartlabError(f"{path}: no such file")
    schema = {f"column_{i}": pl.Float64 for i in range(CSV_COLUMNS)}
    try:
        frame = pl.read_csv(path, has_header=False, schema=schema)
        problem = None
    except Exception as exc:  # ragged lines and unparsable values raise polars' ComputeError
        frame = None
        problem = _locate_problem(path) or f"cannot be read as CSV ({str(exc).splitlines()[0]})"
    if frame is not None:
        nulls = frame.select(pl.any_horizontal(pl.all().is_null()).arg_true()).to_series()
        if nulls.len():
            problem = _locate_problem(path) or f"row {nulls[0] + 1} has missing values"
        elif frame.height == 0:
            problem = "no rows"
    if problem:
        raise HeartlabError(
            f"{path}: {problem}. A Kaggle heartbeat CSV has no header and {CSV_COLUMNS} numbers per line ({KAGGLE_DOC})"
        )
    values = frame.to_numpy()
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise HeartlabError(f"{path}: line {row + 1} holds NaN or infinite values")
    return values[:, :BEAT_LENGTH].astype(np.float32), values[:, BEAT_LENGTH]


def _labels(path: Path, values: np.ndarray, num_classes: int) -> np.ndarray:
    whole = values == np.round(values)
    in_range = whole & (values >= 0) & (values < num_classes)
    if not in_range.all():
        row = int(np.flatnonzero(~in_range)[0])
        raise HeartlabError(
            f"{path}: line {row + 1} has label {values[row]:g}; expected a whole number 0..{num_classes - 1} "
            f"in the last column"
        )
    return values.astype(np.int64)


def convert_kaggle(
    source: str | Path, out: str | Path, *, seed: int = DEFAULT_SEED, test_size: float = 0.2, force: bool = False
) -> dict[str, Path]:
    """Convert the four Kaggle CSVs of folder ``source`` into the four beat files in ``out``.

    Returns:
        the written files, keyed ``arrhythmia_train``, ``arrhythmia_test``, ``ptb_train``, ``ptb_test``.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise HeartlabError(
            f"{source}: no such folder; pass the folder holding the four Kaggle CSVs "
            f"({', '.join([*MITBIH_FILES.values(), *PTB_FILES.values()])})"
        )
    expected = [*MITBIH_FILES.values(), *PTB_FILES.values()]
    missing = [name for name in expected if not (source / name).is_file()]
    if missing:
        raise HeartlabError(
            f"{source}: missing {', '.join(missing)}; the folder must hold the four CSVs of the Kaggle "
            f"heartbeat dataset ({', '.join(expected)}; {KAGGLE_DOC})"
        )
    if not 0.0 < test_size < 1.0:
        raise HeartlabError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}")
    destinations = {key: out / name for key, name in OUTPUT_FILES.items()}
    outputs = StagedOutputs(destinations.values(), force=force)

    arrhythmia = DATASETS["arrhythmia"]
    mitbih = {}
    for split, name in MITBIH_FILES.items():
        logger.info(f"Kaggle: reading {source / name}")
        x, values = read_kaggle_csv(source / name)
        mitbih[split] = (x, _labels(source / name, values, arrhythmia.num_classes))

    ptb_x, ptb_y = [], []
    for label, name in PTB_FILES.items():
        logger.info(f"Kaggle: reading {source / name}")
        x, values = read_kaggle_csv(source / name)
        wrong = np.flatnonzero(values != label)
        if wrong.size:
            raise HeartlabError(
                f"{source / name}: line {wrong[0] + 1} has label {values[wrong[0]]:g}, but every beat of {name} "
                f"should be labelled {label} ({DATASETS['ptb'].classes[label]}); are the PTB files swapped?"
            )
        ptb_x.append(x)
        ptb_y.append(np.full(x.shape[0], label, dtype=np.int64))
    ptb_signals, ptb_labels = np.concatenate(ptb_x), np.concatenate(ptb_y)
    keep, held = stratified_split(ptb_labels, test_size, seed)

    meta = {"source": f"Kaggle heartbeat CSVs ({KAGGLE_DOC})"}
    ptb_meta = {**meta, "split_seed": str(seed), "test_size": str(test_size)}
    with outputs:
        for split in ("train", "test"):
            x, y = mitbih[split]
            write_beat_file(outputs, destinations[f"arrhythmia_{split}"], x, y, {**meta, "split": split})
        write_beat_file(
            outputs, destinations["ptb_train"], ptb_signals[keep], ptb_labels[keep], {**ptb_meta, "split": "train"}
        )
        write_beat_file(
            outputs, destinations["ptb_test"], ptb_signals[held], ptb_labels[held], {**ptb_meta, "split": "test"}
        )

    print("Arrhythmia (Kaggle mitbih_*.csv):")
    print(count_table(arrhythmia.classes, {"train": mitbih["train"][1], "test": mitbih["test"][1]}))
    print(f"PTB (Kaggle ptbdb_*.csv, stratified split, seed {seed}):")
    print(count_table(DATASETS["ptb"].classes, {"train": ptb_labels[keep], "test": ptb_labels[held]}))
    logger.info(f"Kaggle: wrote {', '.join(str(p) for p in destinations.values())}")
    return destinations
