"""The notebooks run headless (nbclient) on small synthetic beat files, through their `parameters` cell."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

from heartlab.beat_context import RECORD_COLUMN, RR_COLUMNS
from heartlab.data import BEAT_LENGTH, DATASETS, write_beats
from helpers import ROOT

EXPLORE = ROOT / "notebooks" / "01_explore_data.ipynb"


def with_parameters(notebook: nbformat.NotebookNode, **values) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with a cell assigning ``values`` right after its cell tagged ``parameters`` (the
    papermill convention), outputs cleared."""
    notebook = copy.deepcopy(notebook)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in values.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def run(notebook: nbformat.NotebookNode, folder: Path, name: str) -> nbformat.NotebookNode:
    """Execute ``notebook`` in ``folder`` (its working directory) and keep the result there as ``name``."""
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(notebook, folder / name)
    return notebook


def text_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """Every printed text and plain-text rendering of the executed code cells."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                texts.append(output.data["text/plain"])
    return texts


def beat_file(path: Path, num_classes: int, per_class: int, records: int = 0, seed: int = 0) -> Path:
    """Synthetic beats of every class, zero-padded after a random length; with ``records``, a record column
    (each record holding every class) and R-R intervals where S and V (labels 1, 2) come early."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(num_classes), per_class * max(records, 1))
    signals = rng.random((labels.size, BEAT_LENGTH)).astype(np.float32)
    lengths = rng.integers(60, BEAT_LENGTH + 1, labels.size)
    signals[np.arange(BEAT_LENGTH) >= lengths[:, None]] = 0.0
    columns = {}
    if records:
        columns[RECORD_COLUMN] = np.repeat([str(100 + r) for r in range(records)], per_class * num_classes)
        average = rng.uniform(0.6, 1.2, labels.size).astype(np.float32)
        pre = average * np.where(np.isin(labels, (1, 2)), 0.7, 1.0)  # S and V come early
        post = average * np.where(labels == 2, 1.25, 1.0)  # V: a compensatory pause
        columns |= dict(zip(RR_COLUMNS, (pre, post, average, average)))
    return write_beats(path, signals, labels, columns)


def test_explore_data_runs_on_small_files(tmp_path):
    five, four = DATASETS["arrhythmia"].num_classes, DATASETS["arrhythmia_interpatient"].num_classes
    parameters = {
        "PTB_FILE": str(beat_file(tmp_path / "ptb.parq", 2, 20)),
        "ARRHYTHMIA_TRAIN": str(beat_file(tmp_path / "big_train.parq", five, 3, records=4, seed=1)),
        "ARRHYTHMIA_TEST": str(beat_file(tmp_path / "big_test.parq", five, 2, records=4, seed=2)),
        "INTERPATIENT_TRAIN": str(beat_file(tmp_path / "ds1.parq", four, 3, records=6, seed=3)),
        "INTERPATIENT_TEST": str(beat_file(tmp_path / "ds2.parq", four, 3, records=5, seed=4)),
        "MAX_BEATS": 50,
    }
    committed = EXPLORE.read_bytes()
    start = time.perf_counter()
    executed = run(with_parameters(nbformat.reads(committed, as_version=4), **parameters), tmp_path, EXPLORE.name)
    print(f"executed in {time.perf_counter() - start:.1f} s")
    assert EXPLORE.read_bytes() == committed  # the committed notebook is left as it was

    texts = text_outputs(executed)
    joined = "\n".join(texts)
    assert "50 of 72 beats" in joined  # DS1: 6 records x 4 classes x 3 beats, cut to MAX_BEATS
    assert "40 of 40 beats" in joined  # PTB, under MAX_BEATS
    for name, spec in DATASETS.items():  # one class-balance table per dataset, naming every class
        table = next(t for t in texts if "majority / class" in t and name in t and "training beats" not in t)
        for cls in spec.classes:
            assert re.search(rf"\b{cls}\b", table), (name, cls, table)
    assert "majority / class: PTB normal" in joined  # the key numbers cell ran to its end
    assert not any(o.output_type == "error" for c in executed.cells for o in c.get("outputs", []))
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 8


def assert_committed_executed(path: Path) -> nbformat.NotebookNode:
    """Committed with the outputs of a full run: one parameters cell, every code cell executed, no error,
    figures kept small. Returns the notebook."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1
    assert all(cell.execution_count for cell in code)
    assert not any(output.output_type == "error" for cell in code for output in cell.outputs)
    assert path.stat().st_size < 2_000_000
    return notebook


def test_explore_data_is_committed_executed():
    assert_committed_executed(EXPLORE)


MANUAL = ROOT / "notebooks" / "02_manual_exploration.ipynb"


def test_manual_exploration_runs_on_small_files(tmp_path):
    """Every section trains (1 epoch, a few steps) on small synthetic files and writes its tables."""
    five = DATASETS["arrhythmia"].num_classes
    train_file = beat_file(tmp_path / "big_train.parq", five, 8, records=4, seed=1)
    test_file = beat_file(tmp_path / "big_test.parq", five, 2, records=2, seed=2)
    ptb_train, ptb_test = beat_file(tmp_path / "ptb_train.parq", 2, 40), beat_file(tmp_path / "ptb_test.parq", 2, 10, seed=5)
    parameters = {
        "ARRHYTHMIA_FILES": (str(train_file), str(test_file)),
        "PTB_FILES": (str(ptb_train), str(ptb_test)),
        "MAX_TRAIN_BEATS": 120,
        "EPOCHS": 1,
        "FAMILY_EPOCHS": {"arrhythmia": 1, "ptb": 1},
        "SLOW_FAMILY_EPOCHS": {"arrhythmia": 1, "ptb": 1},
        "TARGET_EPOCHS": 1,
        "LR_STEPS": 15,
        "THREADS": 1,
        "OUT": str(tmp_path / "out"),
        "CONFIGS": str(ROOT / "configs"),
    }
    committed = MANUAL.read_bytes()
    start = time.perf_counter()
    executed = run(with_parameters(nbformat.reads(committed, as_version=4), **parameters), tmp_path, MANUAL.name)
    print(f"executed in {time.perf_counter() - start:.1f} s")
    assert MANUAL.read_bytes() == committed
    assert not any(o.output_type == "error" for c in executed.cells for o in c.get("outputs", []))

    import polars as pl

    arrhythmia = pl.read_parquet(tmp_path / "out" / "arrhythmia_runs.parquet")
    ptb = pl.read_parquet(tmp_path / "out" / "ptb_runs.parquet")
    assert set(arrhythmia["section"]) == {"imbalance", "rr_augment", "size", "families", "target"}
    assert arrhythmia.filter(pl.col("section") == "families").height == ptb.height == 7  # every family, both datasets
    assert ((arrhythmia["recall_macro"] >= 0) & (arrhythmia["recall_macro"] <= 1)).all()
    assert (ptb["op_recall"] >= 0.99).all()  # the threshold chosen on validation reaches the target there
    choices = pl.read_csv(tmp_path / "out" / "choices.csv")
    assert choices.columns == ["setting", "start at", "search range", "evidence"] and choices.height >= 6
    joined = "\n".join(text_outputs(executed))
    assert "targets met on validation" in joined


def test_manual_exploration_is_committed_executed():
    assert_committed_executed(MANUAL)


RESULTS_NOTEBOOK = ROOT / "notebooks" / "03_hypertune_results.ipynb"


def test_hypertune_results_runs_on_the_committed_results(tmp_path):
    """Notebook 03 reads results/ with polars only and writes its figures (PNG and SVG) where told."""
    figures = tmp_path / "figures"
    parameters = {"RESULTS": str(ROOT / "results"), "FIGURES": str(figures)}
    committed = RESULTS_NOTEBOOK.read_bytes()
    executed = run(with_parameters(nbformat.reads(committed, as_version=4), **parameters), tmp_path, RESULTS_NOTEBOOK.name)
    assert RESULTS_NOTEBOOK.read_bytes() == committed
    assert not any(o.output_type == "error" for c in executed.cells for o in c.get("outputs", []))
    studies = [p for p in (ROOT / "results").iterdir() if (p / "trials.parquet").is_file()]
    assert f"{len(studies)} studies" in "\n".join(text_outputs(executed))
    written = {p.name for p in figures.iterdir()}
    assert {"per_class_recall.png", "per_class_recall.svg"} <= written  # the committed MIT-BIH studies have test metrics
    assert all(p.stat().st_size > 1000 for p in figures.iterdir())
    source = "\n".join(c.source for c in executed.cells if c.cell_type == "code")
    assert "import ray" not in source and "import torch" not in source  # polars only


def test_hypertune_results_is_committed_executed_on_the_committed_results():
    """Its outputs are those of the results folders committed beside it: the same count of studies and
    ablations, each folder named (rerun it after exporting a study: see the README's Results)."""
    notebook = assert_committed_executed(RESULTS_NOTEBOOK)
    joined = "\n".join(text_outputs(notebook))
    studies = [p for p in (ROOT / "results").iterdir() if (p / "trials.parquet").is_file()]
    ablations = [p for p in (ROOT / "results").iterdir() if (p / "ablation.parquet").is_file()]
    assert f"{len(studies)} studies" in joined and f"{len(ablations)} ablations" in joined
    assert all(p.name in joined for p in [*studies, *ablations])
