"""Real Ray Tune studies through `hypertune.py` on the real PTB sample (tiny ResNet1D, a few epochs).

* a 4-trial study with ASHA, built so that ASHA must stop trials early: the search compares FocalLoss
  gamma 4 against gamma 0 on `val/loss`, and a focal loss with gamma 4 is ~10x smaller whatever the model
  learned; trials run one at a time, so each gamma-0 trial reaches rung 1 after a gamma-4 trial and falls
  below the rung's median. Then `best.gin` is trained with `heartlab train`.
* a study killed with SIGKILL after its first trial finished, then resumed with `--resume`; half of its
  trials diverge (AdamW lr 1e6 -> NaN loss) and must end up as errored trials without stopping the study.
* a study stopped with SIGTERM (as `kill PID` or a batch scheduler does): it stops as Ctrl+C would, exit 130,
  its session's wall time recorded, and `--resume` adds the next session's.

Each study starts its own local Ray (`ray.init(address='local', include_dashboard=False)`, 2 CPUs here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gin
import polars as pl
import pytest
from tensorboard.backend.event_processing import event_accumulator

from heartlab import results
from helpers import ROOT

pytestmark = pytest.mark.slow  # the real PTB sample comes from the ptb_files fixture (skips without ../shared)

TIMEOUT = 240  # seconds per hypertune.py run; a hung Ray fails the test instead of the suite


def study_config(folder: Path, ptb_files, body: str) -> Path:
    """A config over the real ptb_resnet1d.gin with a tiny model and the given search section."""
    train_file, test_file = ptb_files
    config = folder / "tiny.gin"
    config.write_text(
        f"include '{ROOT / 'configs' / 'ptb_resnet1d.gin'}'\n"
        f"load_splits.train_file = '{train_file}'\n"
        f"load_splits.test_file = '{test_file}'\n"
        "ResNet1D.channels = 4\n"
        "ResNet1D.blocks = 1\n"
        "fit.patience = None\n"
        "fit.batch_size = 128\n" + body
    )
    return config


def env() -> dict[str, str]:
    return {**os.environ, "RAY_DEDUP_LOGS": "0", "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}


def hypertune(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), *args],
        cwd=cwd, env=env(), capture_output=True, text=True, timeout=TIMEOUT,
    )


def trial_dirs(study: Path) -> list[Path]:
    return sorted(p for p in study.iterdir() if p.is_dir() and p.name.startswith("trial_"))


def operative_values(config_gin: Path, keys: list[str]) -> dict:
    gin.clear_config()
    import heartlab.train  # noqa: F401

    gin.parse_config_file(str(config_gin))
    values = {key: gin.query_parameter(key) for key in keys}
    gin.clear_config()
    return values


ASHA_SECTION = """
fit.epochs = 3
fit.loss = @FocalLoss
import heartlab.search
search.metric = 'val/loss'
search.mode = 'min'
search.num_samples = 2
search.scheduler = 'asha'
search.grace_period = 1
search.reduction_factor = 2
search.max_concurrent_trials = 1
search.space = {
    'FocalLoss.gamma': 'grid_search([4.0, 0.0])',
    'ResNet1D.channels': 'choice([4, 6])',
    'torch.optim.AdamW.lr': 'loguniform(1e-3, 1e-2)',
}
"""
KEYS = ["FocalLoss.gamma", "ResNet1D.channels", "torch.optim.AdamW.lr"]


def test_study_with_asha_end_to_end(ptb_files, tmp_path):
    config = study_config(tmp_path, ptb_files, ASHA_SECTION)
    storage = tmp_path / "studies"
    done = hypertune(str(config), "--storage", str(storage), "--name", "asha", "--export", str(tmp_path / "results"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = storage / "asha"

    # study.json says where the study came from; --export copied the compact files (no checkpoints)
    record = json.loads((study / "study.json").read_text())
    assert record["command"].startswith("hypertune.py ") and "--name asha" in record["command"]
    assert record["cpu_count"] >= 1 and record["wall_seconds"] > 0 and record["finished"] >= record["started"]
    assert record["heartlab_commit"] is None or len(record["heartlab_commit"]) >= 40
    exported = sorted(p.name for p in (tmp_path / "results" / "asha").iterdir())
    assert exported == ["best.gin", "best_test_metrics.json", "history.parquet", "study.json", "trials.parquet"]

    # The ranked table on the console, then the summary.
    assert "rank  trial" in done.stdout and "4 trials in" in done.stdout
    assert "train it again: heartlab train" in done.stdout

    # trials.parquet: one row per trial, sampled values, statuses, metrics.
    table = pl.read_parquet(study / "trials.parquet")
    assert table.height == 4
    assert set(KEYS) <= set(table.columns)
    assert {"best/val/loss", "final/val/loss", "best/val/recall_macro", "epochs", "time_s", "status"} <= set(table.columns)
    assert table["rank"].to_list() == [1, 2, 3, 4]
    assert table["score"].is_sorted()  # val/loss, mode min: best first

    # ASHA stopped every gamma-0 trial at its first rung; gamma-4 trials outrank them.
    weak = table.filter(pl.col("FocalLoss.gamma") == 0.0)
    assert weak.height == 2
    assert weak["status"].to_list() == ["stopped", "stopped"]
    assert weak["epochs"].to_list() == [1, 1]
    assert table["FocalLoss.gamma"][0] == 4.0
    assert (table.filter(pl.col("FocalLoss.gamma") == 4.0)["epochs"] >= 1).all()

    # Every trial directory: the operative config.gin with the trial's sampled values, TensorBoard events.
    dirs = trial_dirs(study)
    assert len(dirs) == 4
    rows = {row["trial_dir"]: row for row in table.iter_rows(named=True)}
    for trial in dirs:
        row = rows[trial.name]
        params = json.loads((trial / "params.json").read_text())  # what Ray sampled
        assert operative_values(trial / "config.gin", KEYS) == {key: row[key] for key in KEYS} == params
        events = sorted(trial.rglob("events.out.tfevents.*"))
        assert len(events) == 1, events  # train.fit's only: Ray's TensorBoard logger is off
        accumulator = event_accumulator.EventAccumulator(str(trial), size_guidance={"scalars": 0, "tensors": 0})
        accumulator.Reload()
        steps = [event.step for event in accumulator.Scalars("val/recall_macro")]
        assert steps == list(range(1, row["epochs"] + 1))
        assert "val/loss" in accumulator.Tags()["scalars"] and "train/loss" in accumulator.Tags()["scalars"]
        assert "_hparams_/session_start_info" in accumulator.PluginTagToContent("hparams")
        assert (trial / "best.pt").is_file()
    # the study root holds one event file: the HParams experiment of the searched keys (tests/test_hparams_study.py)
    assert [p.suffix for p in study.glob("events.out.tfevents.*")] == [".hparams_experiment"]

    # heartlab.results reads the study back without Ray.
    assert results.read_trials(study).equals(table)
    history = results.read_history(study)
    assert history.height == int(table["epochs"].sum())
    assert {"trial_id", "epoch", "val/loss", "val/recall_macro", "train/loss"} <= set(history.columns)

    # best.gin: the study config plus the best trial's values; best_test_metrics.json from its checkpoint.
    best = table.row(0, named=True)
    assert operative_values(study / "best.gin", KEYS) == {key: best[key] for key in KEYS}
    metrics = json.loads((study / "best_test_metrics.json").read_text())
    assert metrics["trial_id"] == best["trial_id"] and metrics["metric"] == "val/loss"
    assert 0.0 <= metrics["test/recall_macro"] <= 1.0 and len(metrics["confusion_matrix"]) == 2

    # `heartlab train best.gin` trains (from anywhere: best.gin inlines its includes).
    runs = tmp_path / "runs"
    trained = subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "train", str(study / "best.gin"),
         "--bind", "fit.epochs = 1", "--bind", f"fit.runs_root = '{runs}'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = list((runs / "ptb_resnet1d").iterdir())
    assert (run / "best.pt").is_file()
    assert operative_values(run / "config.gin", KEYS) == {key: best[key] for key in KEYS}

    # `heartlab retrain`: the top 2 trials again with 2 seeds each, each evaluated once on test, 2 side by side
    retrained = subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "retrain", str(study), "--top", "2", "--seeds", "2", "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    top = pl.read_parquet(study / "top_seeds.parquet")
    assert top.height == 4 and sorted(zip(top["rank"], top["seed"])) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert top.filter(pl.col("rank") == 1)["FocalLoss.gamma"].to_list() == [best["FocalLoss.gamma"]] * 2
    assert top["test/recall_macro"].is_between(0, 1).all() and "mean ± std" in retrained.stdout
    first = top.filter((pl.col("rank") == 1) & (pl.col("seed") == 0)).row(0, named=True)
    written = json.loads((study / "top_seeds" / first["run_dir"] / "test_metrics.json").read_text())
    assert first["test/recall_macro"] == written["test/recall_macro"]
    assert retrained.stdout.count("retrained ") == 4
    # again: every run is finished, so nothing trains and the table is the same
    again = subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "retrain", str(study), "--top", "2", "--seeds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert again.returncode == 0 and "retrained " not in again.stdout, again.stderr[-3000:]
    assert pl.read_parquet(study / "top_seeds.parquet").equals(top)


KILL_SECTION = """
fit.epochs = 3
import heartlab.search
search.num_samples = 3
search.scheduler = 'none'
search.max_concurrent_trials = 1
search.space = {
    'torch.optim.AdamW.lr': 'grid_search([3e-3, 1e6])',  # 1e6 diverges: the loss becomes NaN in epoch 1
    'ResNet1D.channels': 'choice([4, 6])',
}
"""


def experiment_state(study: Path) -> dict[str, str]:
    """Trial id -> status from Ray's latest saved study state (what --resume will see)."""
    files = sorted(study.glob("experiment_state-*.json"))  # one per driver session, named by start time
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # being written
    return {json.loads(trial)["trial_id"]: json.loads(trial)["status"] for trial, _ in state["trial_data"]}


def kill_session(session: int) -> None:
    """SIGKILL every process left in the session the killed driver led (its local Ray), by pid."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) == session:
                os.kill(int(proc.name), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stopped_study(folder: Path, ptb_files, section: str, name: str, signum: int) -> tuple[list[str], Path, int, str]:
    """``hypertune.py`` on ``section``, started in its own session and sent ``signum`` once Ray's saved state
    shows a finished trial while the study still runs: ``(args, study folder, exit code, output)``."""
    config = study_config(folder, ptb_files, section)
    study = folder / "studies" / name
    args = [str(ROOT / "hypertune.py"), str(config), "--storage", str(folder / "studies"), "--name", name]
    log = folder / "first.log"
    with log.open("w") as out:
        driver = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and driver.poll() is None and "TERMINATED" not in experiment_state(study).values():
            time.sleep(0.1)
        if driver.poll() is not None or "TERMINATED" not in experiment_state(study).values():
            pytest.fail("the study ended, or ran past the timeout, before a trial finished: " + log.read_text()[-2000:])
        os.kill(driver.pid, signum)
        driver.wait(timeout=120)
    finally:
        kill_session(driver.pid)
    return args, study, driver.returncode, log.read_text()


def test_killed_study_resumes_without_losing_or_rerunning_trials(ptb_files, tmp_path):
    args, study, _, _ = stopped_study(tmp_path, ptb_files, KILL_SECTION, "killed", signal.SIGKILL)
    before = experiment_state(study)
    finished = sorted(t for t, status in before.items() if status == "TERMINATED")
    assert finished
    assert len(before) < 6 or any(status not in ("TERMINATED", "ERROR") for status in before.values())
    assert not (study / "trials.parquet").exists()
    snapshot = {t: (study / f"trial_{t}" / "result.json").read_bytes() for t in finished}
    config_mtime = {t: (study / f"trial_{t}" / "config.gin").stat().st_mtime_ns for t in finished}

    resumed = hypertune(*args[1:], "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    # Completed trials: same results, not retrained (config.gin untouched), still in the table.
    for t in finished:
        assert (study / f"trial_{t}" / "result.json").read_bytes() == snapshot[t]
        assert (study / f"trial_{t}" / "config.gin").stat().st_mtime_ns == config_mtime[t]
    table = pl.read_parquet(study / "trials.parquet")
    assert table.height == 6 and sorted(table["trial_id"].unique().to_list()) == sorted(experiment_state(study))
    assert set(finished) <= set(table["trial_id"].to_list())
    assert set(experiment_state(study).values()) <= {"TERMINATED", "ERROR"}

    # Diverging trials are errored (retried once on resume, failing again) and listed; the rest completed.
    errored = table.filter(pl.col("status") == "error")
    assert sorted(errored["torch.optim.AdamW.lr"].to_list()) == [1e6, 1e6, 1e6]
    assert all("NonFiniteLossError" in message for message in errored["error"].to_list())
    assert table.filter(pl.col("status") == "completed")["torch.optim.AdamW.lr"].to_list() == [3e-3, 3e-3, 3e-3]
    assert errored["rank"].null_count() == 3
    assert "3 trial(s) failed:" in resumed.stdout and "NonFiniteLossError" in resumed.stdout
    assert (study / "best.gin").is_file() and (study / "best_test_metrics.json").is_file()


TERM_SECTION = """
fit.epochs = 2
import heartlab.search
search.num_samples = 4
search.scheduler = 'none'
search.max_concurrent_trials = 1
search.space = {'ResNet1D.channels': 'grid_search([4, 6])'}
"""


def test_sigterm_stops_a_study_like_ctrl_c_and_keeps_its_wall_time(ptb_files, tmp_path):
    args, study, code, output = stopped_study(tmp_path, ptb_files, TERM_SECTION, "term", signal.SIGTERM)
    assert code == 130, output[-3000:]
    assert "study interrupted" in output and "--resume" in output
    assert not (study / "trials.parquet").exists()
    first = json.loads((study / "study.json").read_text())
    assert first["wall_seconds"] > 0 and "finished" not in first
    assert any(status != "TERMINATED" for status in experiment_state(study).values()) or len(experiment_state(study)) < 8

    resumed = hypertune(*args[1:], "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    second = json.loads((study / "study.json").read_text())
    assert second["wall_seconds"] > first["wall_seconds"] and "finished" in second
    assert pl.read_parquet(study / "trials.parquet").height == 8


FAMILIES_SECTION = """
fit.epochs = 1
import heartlab.search
search.metric = 'val/op/precision'
search.num_samples = 1
search.scheduler = 'none'
search.space = {
    'fit.model': "grid_search(['@CNN2D', '@Transformer1D', '@ResNet1D', '@InceptionTime', '@CNNGRU', '@CNN2DPlus', '@Transformer1DPlus'])",
}
"""


def test_every_model_family_trains_as_a_ray_trial(ptb_files, tmp_path):
    """One study whose grid is the seven model classes: each trains one epoch inside a Ray worker."""
    config = study_config(tmp_path, ptb_files, FAMILIES_SECTION)
    storage = tmp_path / "studies"
    done = hypertune(str(config), "--storage", str(storage), "--name", "families")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = results.read_trials(storage / "families")
    assert trials.height == 7 and (trials["status"] == results.STATUS_COMPLETED).all()
    models = sorted(trials["fit.model"].to_list())
    assert models == sorted(["@CNN2D", "@Transformer1D", "@ResNet1D", "@InceptionTime", "@CNNGRU", "@CNN2DPlus", "@Transformer1DPlus"])
    for trial_dir in trial_dirs(storage / "families"):
        assert (trial_dir / "best.pt").is_file() and (trial_dir / "fit_result.json").is_file()
    history = pl.read_parquet(storage / "families" / results.HISTORY_FILE)
    assert history.height == 7 and "val/op/precision" in history.columns
