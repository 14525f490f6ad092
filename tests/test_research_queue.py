"""scripts/research_queue.py plans each study's remaining steps: start, resume, retrain and export."""

from __future__ import annotations

import importlib.util
import json

import polars as pl

from helpers import ROOT

spec = importlib.util.spec_from_file_location("research_queue", ROOT / "scripts" / "research_queue.py")
queue = importlib.util.module_from_spec(spec)
spec.loader.exec_module(queue)


def test_steps_start_resume_or_only_retrain(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "RESULTS", tmp_path / "results")
    storage = tmp_path / "store"
    fresh = queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage)
    assert [c[1] for c in fresh] == ["hypertune.py", "-m"] and "--resume" not in fresh[0]
    (storage / "ptb_resnet1d").mkdir(parents=True)
    (storage / "ptb_resnet1d" / "study.json").write_text(json.dumps({"started": "x"}))
    assert "--resume" in queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage)[0]
    (storage / "ptb_resnet1d" / "study.json").write_text(json.dumps({"started": "x", "finished": "y"}))
    (only,) = queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage)
    assert only[3:5] == ["retrain", str(storage / "ptb_resnet1d")] and only[-1] == str(tmp_path / "results" / "ptb_resnet1d")
    (tmp_path / "results" / "ptb_resnet1d").mkdir(parents=True)
    table = tmp_path / "results" / "ptb_resnet1d" / "top_seeds.parquet"
    pl.DataFrame({"rank": [1, 1, 1], "seed": [0, 1, 2]}).write_parquet(table)  # the best trial's seeds only
    assert [c[3] for c in queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage)] == ["retrain"]
    pl.DataFrame({"rank": [r for r in (1, 2, 3) for _ in range(3)], "seed": [0, 1, 2] * 3}).write_parquet(table)
    assert queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage) == []


def test_search_only_runs_and_exports_the_search_then_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "RESULTS", tmp_path / "results")
    storage = tmp_path / "store"
    (search,) = queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage, search_only=True)
    assert search[1] == "hypertune.py" and search[-2:] == ["--export", str(tmp_path / "results")]
    (storage / "ptb_resnet1d").mkdir(parents=True)
    (storage / "ptb_resnet1d" / "study.json").write_text(json.dumps({"started": "x", "finished": "y"}))
    assert queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage, search_only=True) == []
    assert queue.steps("ptb_resnet1d", "configs/ptb_resnet1d.gin", storage)[0][3] == "retrain"  # later, without the flag


def test_every_study_config_exists():
    for config in queue.STUDIES.values():
        assert (ROOT / config).is_file(), config


def test_ablation_waits_for_its_study_then_starts_resumes_or_is_done(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "RESULTS", tmp_path / "results")
    storage = tmp_path / "store"
    config, study = queue.ABLATIONS["ptb_resnet1d_ablation"]
    assert queue.ablation_steps("ptb_resnet1d_ablation", config, study, storage) == []  # no best.gin yet
    (tmp_path / "results" / study).mkdir(parents=True)
    (tmp_path / "results" / study / "best.gin").write_text("fit.epochs = 1\n")
    (start,) = queue.ablation_steps("ptb_resnet1d_ablation", config, study, storage)
    assert start[1:4] == ["hypertune.py", config, "--ablate"] and "--resume" not in start
    assert start[-2:] == ["--export", str(tmp_path / "results")]
    (storage / "ptb_resnet1d_ablation").mkdir(parents=True)
    assert "--resume" in queue.ablation_steps("ptb_resnet1d_ablation", config, study, storage)[0]
    (tmp_path / "results" / "ptb_resnet1d_ablation").mkdir()
    (tmp_path / "results" / "ptb_resnet1d_ablation" / "ablation.parquet").write_bytes(b"")
    assert queue.ablation_steps("ptb_resnet1d_ablation", config, study, storage) == []


def test_every_ablation_config_exists_and_names_its_study():
    for config, study in queue.ABLATIONS.values():
        assert study in queue.STUDIES
        assert f"results/{study}/best.gin" in (ROOT / config).read_text()
