"""`heartlab quickstart` on a machine with no beat files: demo data, a real short study, clear labelling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from heartlab.data import is_synthetic
from heartlab.quickstart import data_bindings
from helpers import ROOT

CONFIG = ROOT / "configs" / "ptb_resnet1d.gin"


def quickstart(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "quickstart", "--config", str(CONFIG), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_quickstart_runs_twice_on_demo_data_when_data_is_empty(tmp_path):
    done = quickstart(tmp_path, "--num-samples", "2", "--epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SYNTHETIC demo beats" in done.stdout
    assert "heartlab data mitbih" in done.stdout and "heartlab data kaggle" in done.stdout
    demo = tmp_path / "data" / "demo"
    assert is_synthetic(demo / "heart_train.parq") and (demo / "SYNTHETIC_README.txt").is_file()
    assert not (tmp_path / "data" / "heart_train.parq").exists()  # data/ itself is left for real files
    (study,) = (tmp_path / "ray_results").iterdir()
    assert study.name.startswith("quickstart-") and f"{Path('ray_results') / study.name}/" in done.stdout
    assert pl.read_parquet(study / "trials.parquet").height == 2
    assert (study / "best.gin").is_file() and (study / "best_test_metrics.json").is_file()

    # the same command again: a new study beside the first, which stays as it was
    first_trials = (study / "trials.parquet").read_bytes()
    again = quickstart(tmp_path, "--num-samples", "1", "--epochs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    studies = sorted((tmp_path / "ray_results").iterdir())
    assert len(studies) == 2 and studies[0] == study and studies[1].name.startswith("quickstart-")
    assert pl.read_parquet(studies[1] / "trials.parquet").height == 1
    assert (study / "trials.parquet").read_bytes() == first_trials


def test_real_files_in_data_are_used_as_they_are(tmp_path, monkeypatch, make_beats):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    make_beats(10, 2, name="data/heart_train.parq")
    make_beats(5, 2, name="data/heart_test.parq")
    assert data_bindings(CONFIG) == ([], False)
    assert not (tmp_path / "data" / "demo").exists()


def test_demo_files_are_made_once_and_bound(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bindings, synthetic = data_bindings(CONFIG, demo_dir=tmp_path / "demo")
    assert synthetic
    assert bindings == [
        f"load_splits.train_file = '{tmp_path / 'demo' / 'heart_train.parq'}'",
        f"load_splits.test_file = '{tmp_path / 'demo' / 'heart_test.parq'}'",
    ]
    stamp = (tmp_path / "demo" / "heart_train.parq").stat().st_mtime_ns
    data_bindings(CONFIG, demo_dir=tmp_path / "demo")
    assert (tmp_path / "demo" / "heart_train.parq").stat().st_mtime_ns == stamp
