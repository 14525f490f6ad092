"""Ablations: the file's checks (one error line before Ray starts, nothing written), the plan of variants,
the Table-3-style table, and a real Ray ablation through `heartlab ablate` on the real PTB sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from heartlab import results
from heartlab.ablation import Variant, variants
from heartlab.errors import HeartlabError
from heartlab.tune.ablate import prepare_ablation
from helpers import ROOT

BASE = ROOT / "configs" / "ptb_cnn2d.gin"


def ablation_file(folder: Path, rows: str, *extra: str, base: str | Path = BASE, seeds: int = 2) -> Path:
    path = folder / "ablation.gin"
    path.write_text(
        "import heartlab.ablation\n"
        f"ablation.base = '{base}'\n"
        f"ablation.rows = {rows}\n"
        f"ablation.seeds = {seeds}\n" + "".join(line + "\n" for line in extra)
    )
    return path


# ---- the plan -------------------------------------------------------------------------------------


def test_variants_take_the_ith_value_of_every_key_of_a_row():
    planned = variants({"A": {"Transformer1D.heads": [2, 8], "Transformer1D.hidden": [64, 256]}, "B": {"fit.epochs": [5]}})
    assert [v.id for v in planned] == ["base", "A1", "A2", "B1"]
    assert planned[2] == Variant("A2", "A", {"Transformer1D.heads": 8, "Transformer1D.hidden": 256})
    assert planned[0].label == "base" and planned[3].label == "fit.epochs = 5"


@pytest.mark.parametrize(
    "rows, words",
    [
        ("{}", "ablation.rows is empty or missing"),
        ("{'A': {}}", "ablation.rows['A'] is empty"),
        ("{'A': {'CNN2D.hidden': []}}", "ablation.rows['A']['CNN2D.hidden'] must be a non-empty list"),
        ("{'A': {'CNN2D.hidden': [8, 16], 'CNN2D.dropout': [0.1]}}", "need the same length"),
        ("{'A': {'fit.seed': [1, 2]}}", "fit.seed is set by ablation.seeds"),
        ("{'A': {'CNN2D.hiden': [8]}}", "did you mean 'CNN2D.hidden'"),
        ("{'A': {'ResNet1D.channels': [8]}}", "has no effect in this experiment"),
        ("{'A': {'fit.batch_size': [1]}}", "ablation.rows['A']: fit.batch_size must be a whole number of beats"),
        ("{'A': {'load_splits.valid_fraction': [0.3]}}", "cannot be ablated"),
        ("{'A': {'CNN2D.hidden': [-4]}}", "ablation variant A1 (CNN2D.hidden = -4)"),
    ],
)
def test_bad_ablation_fails_before_ray_with_one_line(rows, words, ptb_files, tmp_path):
    config = ablation_file(tmp_path, rows, f"load_splits.train_file = '{ptb_files[0]}'", f"load_splits.test_file = '{ptb_files[1]}'")
    with pytest.raises(HeartlabError) as caught:
        prepare_ablation(config, storage=tmp_path / "store")
    message = str(caught.value)
    assert words in message and "\n" not in message, message
    assert not (tmp_path / "store").exists()


def test_missing_base_and_bad_seeds(tmp_path):
    with pytest.raises(HeartlabError, match="ablation.base 'nowhere.gin' not found"):
        prepare_ablation(ablation_file(tmp_path, "{'A': {'CNN2D.hidden': [8]}}", base="nowhere.gin"), storage=tmp_path / "s")
    with pytest.raises(HeartlabError, match="ablation.seeds must be a whole number >= 1"):
        prepare_ablation(ablation_file(tmp_path, "{'A': {'CNN2D.hidden': [8]}}", seeds=0), storage=tmp_path / "s")


def test_a_ready_ablation_lists_variants_parameters_and_base_values(ptb_files, tmp_path):
    config = ablation_file(
        tmp_path,
        "{'A': {'CNN2D.hidden': [8, 32]}, 'B': {'fit.loss': ['@FocalLoss']}, 'C': {'Augment.noise_probability': [0.5]}, "
        "'D': {'operating_point.target_recall': [0.95]}}",  # C, D: read by fit, not by what the model builds
        f"load_splits.train_file = '{ptb_files[0]}'", f"load_splits.test_file = '{ptb_files[1]}'", "ablation.epochs = 3",
    )
    ablation, _ = prepare_ablation(config, storage=tmp_path / "store")
    assert [v.id for v in ablation.variants] == ["base", "A1", "A2", "B1", "C1", "D1"] and ablation.expected_trials == 12
    assert ablation.parameters["A1"] < ablation.parameters["base"] < ablation.parameters["A2"]
    assert ablation.parameters["B1"] == ablation.parameters["base"]
    assert ablation.base_values == {
        "CNN2D.hidden": "16", "fit.loss": "@WeightedCrossEntropy", "Augment.noise_probability": "0.0", "operating_point.target_recall": "0.99",
    }
    assert ablation.metric == "val/op/precision"  # the base's fit.monitor (configs/data/ptb.gin)
    assert "fit.epochs = 3" in ablation.study_config.text
    assert not (tmp_path / "store").exists()


# ---- the table ------------------------------------------------------------------------------------


def test_markdown_table_holds_the_mean_and_std_of_ablation_parquet():
    plan = {
        "settings": {"report": ["val/recall_macro", "val/loss"]},
        "variants": [{"id": "base", "row": "", "values": {}}, {"id": "A1", "row": "A", "values": {"CNN2D.hidden": 8}},
                     {"id": "A2", "row": "A", "values": {"CNN2D.hidden": 32}}],
        "base_values": {"CNN2D.hidden": "16"},
    }
    rows = []
    for variant, recalls in {"base": [0.90, 0.92, 0.94], "A1": [0.80, 0.86, 0.83], "A2": [0.95, 0.95, 0.95]}.items():
        for seed, recall in enumerate(recalls):
            rows.append({"variant": variant, "row": "" if variant == "base" else "A", "label": variant, "seed": seed,
                         "parameters": {"base": 100, "A1": 50, "A2": 300}[variant], "status": "completed", "fit_s": 60.0 * (seed + 1),
                         "best/val/recall_macro": recall, "best/val/loss": 1.0 - recall})
    frame = results.ablation_frame(rows, ["base", "A1", "A2"])
    text = results.ablation_markdown(frame, plan)
    lines = text.splitlines()
    assert lines[0].split("|")[2].strip() == "CNN2D.hidden"
    assert lines[2].startswith("| base | 16 | 100 | 2.00 | 92.00 ± 2.00 | 0.08 ± 0.02 | 3 |")
    assert lines[3].startswith("| (A) | 8 | 50 |") and "83.00 ± 3.00" in lines[3]
    assert lines[4].startswith("|  | 32 | 300 |") and "95.00 ± 0.00" in lines[4]
    summary = results.ablation_summary(frame, ["val/recall_macro"])
    assert summary.filter(pl.col("variant") == "A1")["val/recall_macro/std"].item() == pytest.approx(0.03)


# ---- a real ablation ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ablation_end_to_end_on_ray(ptb_files, tmp_path):
    config = ablation_file(
        tmp_path, "{'A': {'CNN2D.hidden': [8]}}",
        f"load_splits.train_file = '{ptb_files[0]}'", f"load_splits.test_file = '{ptb_files[1]}'",
        "fit.epochs = 2", "fit.batch_size = 128", "fit.patience = None",
    )
    storage = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "ablate", str(config), "--storage", str(storage), "--name", "abl"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = storage / "abl"
    frame = pl.read_parquet(folder / results.ABLATION_TRIALS)
    assert frame.height == 4 and sorted(zip(frame["variant"], frame["seed"])) == [("A1", 0), ("A1", 1), ("base", 0), ("base", 1)]
    assert (frame["status"] == "completed").all() and (frame["epochs"] == 2).all()
    base = frame.filter(pl.col("variant") == "base")
    assert base["best/val/op/precision"].n_unique() == 2 or base["best/val/loss"].n_unique() == 2  # two seeds differ
    table = (folder / results.ABLATION_TABLE).read_text()
    mean = base["best/val/op/precision"].mean() * 100
    assert f"{mean:.2f} ± " in table and table in done.stdout
    # hypertune.py --ablate is the same command; a finished one is not overwritten
    again = subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), str(config), "--ablate", "--storage", str(storage), "--name", "abl"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 2 and "already exists: continue that ablation with --resume" in again.stderr
