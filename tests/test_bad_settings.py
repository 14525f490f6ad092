"""Every numeric or path setting of `fit`, `load_splits`, the search section and the command line is
range-checked before anything is created: one `error:` line, exit code 2, no run or study directory.

`heartlab train` and `hypertune.py` run in process here (cli.main / hypertune.main); two cases run as
real subprocesses to check the exit code and stderr a shell sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heartlab import cli
from heartlab.errors import HeartlabError, report
from heartlab.tune.cli import add_tune_arguments, run_from_args
from helpers import ROOT

BASE = ROOT / "configs" / "base.gin"


@pytest.fixture
def files(make_beats) -> tuple[Path, Path]:
    return make_beats(12, 2, seed=1, name="train.parq"), make_beats(4, 2, seed=2, name="test.parq")


@pytest.fixture
def experiment(tmp_path, files) -> Path:
    """A tiny PTB experiment with a search section, on small synthetic beat files."""
    path = tmp_path / "tiny.gin"
    path.write_text(
        f"include '{ROOT / 'configs' / 'ptb_resnet1d.gin'}'\n"
        f"load_splits.train_file = '{files[0]}'\n"
        f"load_splits.test_file = '{files[1]}'\n"
        "ResNet1D.channels = 4\n"
        "ResNet1D.blocks = 1\n"
        "fit.epochs = 2\n"
        "search.grace_period = 1\n"
        "search.space = {'torch.optim.AdamW.lr': 'loguniform(1e-4, 1e-2)'}\n"
    )
    return path


def single_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# ---- heartlab train ------------------------------------------------------------------------------

FIT_AND_DATA = [
    ("fit.epochs = -1", "fit.epochs must be a whole number >= 1"),
    ("fit.epochs = 0", "fit.epochs must be a whole number >= 1"),
    ("fit.epochs = 2.5", "fit.epochs must be a whole number"),
    ("fit.batch_size = 1", "fit.batch_size must be a whole number of beats (BatchNorm needs two) >= 2"),
    ("fit.eval_batch_size = 0", "fit.eval_batch_size must be a whole number of beats >= 1"),
    ("fit.patience = 0", "fit.patience must be a whole number of epochs >= 1 or None"),
    ("fit.seed = -3", "fit.seed must be a whole number >= 0"),
    ("fit.sampling = 'oversample'", "fit.sampling must be one of 'shuffle', 'balanced'"),
    ("Augment.noise_probability = 1.5", "Augment.noise_probability"),
    ("operating_point.target_recall = 0", "operating_point.target_recall"),
    ("selection.accuracy_floor = 2", "selection.accuracy_floor"),
    ("fit.num_threads = 0", "fit.num_threads must be a whole number >= 1 or None"),
    ("fit.bf16 = 'yes'", "fit.bf16 must be one of True, False, 'auto'"),
    ("fit.schedule = 'linear'", "fit.schedule must be one of 'cosine', 'onecycle', 'plateau', 'none'"),
    ("fit.monitor_mode = 'maximum'", "fit.monitor_mode must be one of 'max', 'min', None"),
    ("fit.experiment = '../up'", "fit.experiment '../up': give a plain directory name"),
    ("load_splits.valid_fraction = 1.0", "load_splits.valid_fraction must be a number in (0, 1), got 1.0"),
    ("load_splits.valid_fraction = 0.0", "load_splits.valid_fraction must be a number in (0, 1)"),
    ("load_splits.valid_fraction = -0.2", "load_splits.valid_fraction must be a number in (0, 1)"),
    ("load_splits.seed = -1", "load_splits.seed must be a whole number >= 0"),
    ("load_splits.dataset = 'mitbih'", "unknown dataset 'mitbih'"),
]


@pytest.mark.parametrize("binding, message", FIT_AND_DATA, ids=[b for b, _ in FIT_AND_DATA])
def test_train_setting_out_of_range(binding, message, experiment, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["train", str(experiment), "--bind", f"fit.runs_root = '{runs}'", "--bind", binding])
    assert code == 2
    assert message in single_error(capsys.readouterr().err)
    assert not runs.exists()


def test_runs_root_below_a_file(experiment, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = cli.main(["train", str(experiment), "--bind", f"fit.runs_root = '{blocker / 'runs'}'"])
    assert code == 2
    line = single_error(capsys.readouterr().err)
    assert "fit.runs_root" in line and f"{blocker} is a file" in line
    assert blocker.read_text() == "x"


def test_training_split_without_a_class_names_it(tmp_path, make_beats, experiment, capsys):
    """A training file that lacks a class would train silently and report recall 0 for it on test."""
    import numpy as np

    from heartlab.data import BEAT_LENGTH, write_beats

    only_normal = write_beats(tmp_path / "normal_only.parq", np.random.default_rng(0).random((20, BEAT_LENGTH)), np.zeros(20))
    runs = tmp_path / "runs"
    code = cli.main([
        "train", str(experiment), "--bind", f"fit.runs_root = '{runs}'",
        "--bind", f"load_splits.train_file = '{only_normal}'",
    ])
    assert code == 2
    line = single_error(capsys.readouterr().err)
    assert "training split holds no beat of class abnormal (1)" in line and "normal 20, abnormal 0" in line
    assert not runs.exists()


def test_validation_split_without_a_class_names_it(tmp_path, experiment, capsys):
    import numpy as np

    from heartlab.data import BEAT_LENGTH, write_beats

    labels = np.array([0] * 20 + [1])  # one abnormal beat: it stays in train, validation has none
    path = write_beats(tmp_path / "one_abnormal.parq", np.random.default_rng(0).random((21, BEAT_LENGTH)), labels)
    code = cli.main(["train", str(experiment), "--bind", f"fit.runs_root = '{tmp_path / 'runs'}'",
                     "--bind", f"load_splits.train_file = '{path}'"])
    assert code == 2
    assert "validation split holds no beat of class abnormal (1)" in single_error(capsys.readouterr().err)


def test_subprocess_negative_epochs_exit_2_one_line_no_run(experiment, tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "heartlab.cli", "train", str(experiment), "--bind", "fit.epochs=-1",
         "--bind", f"fit.runs_root='{runs}'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert single_error(done.stderr) == "error: fit.epochs must be a whole number >= 1, got -1"
    assert not runs.exists()


# ---- hypertune.py / heartlab tune -----------------------------------------------------------------


def tune(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="hypertune.py")
    add_tune_arguments(parser)
    try:
        return run_from_args(parser.parse_args(list(argv)))
    except HeartlabError as exc:
        return report(exc)


STUDY_CASES = [
    (["--num-samples", "0"], "--num-samples must be a whole number >= 1"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial must be a number in (0, 1024]"),
    (["--cpus-per-trial", "-1"], "--cpus-per-trial must be a number in (0, 1024]"),
    (["--name", "a/b"], "--name 'a/b': give a plain directory name"),
    (["--name", ".."], "--name '..': give a plain directory name"),
    (["--bind", "search.num_samples = 0"], "search.num_samples must be a whole number >= 1"),
    (["--bind", "search.grace_period = 0"], "search.grace_period must be a whole number of epochs >= 1"),
    (["--bind", "search.reduction_factor = 1"], "search.reduction_factor must be a number in [2, inf)"),
    (["--bind", "search.max_epochs = 0"], "search.max_epochs must be a whole number of epochs >= 1 or None"),
    (["--bind", "search.cpus_per_trial = 0"], "search.cpus_per_trial must be a number in (0, 1024]"),
    (["--bind", "search.max_concurrent_trials = 0"], "search.max_concurrent_trials must be a whole number >= 1"),
    (["--bind", "search.seed = -1"], "search.seed must be a whole number >= 0 or None"),
    (["--bind", "fit.epochs = -1"], "fit.epochs must be a whole number >= 1"),
    (["--bind", "fit.batch_size = 1"], "fit.batch_size must be a whole number of beats"),
    (["--bind", "load_splits.valid_fraction = 1.0"], "load_splits.valid_fraction must be a number in (0, 1)"),
    (
        ["--bind", "search.space = {'fit.epochs': 'choice([2, 4])'}"],
        "search.space key 'fit.epochs' cannot be searched: every trial runs search.max_epochs",
    ),
    (
        ["--bind", "search.space = {'fit.batch_size': 'choice([1, 64])'}"],
        "search.space['fit.batch_size'] = 'choice([1, 64])': fit.batch_size must be a whole number of beats",
    ),
    (
        ["--bind", "search.space = {'fit.patience': 'randint(0, 4)'}"],
        "search.space['fit.patience'] = 'randint(0, 4)': fit.patience must be a whole number of epochs >= 1",
    ),
]


@pytest.mark.parametrize("argv, message", STUDY_CASES, ids=[" ".join(a) for a, _ in STUDY_CASES])
def test_study_setting_out_of_range(argv, message, experiment, tmp_path, capsys):
    storage = tmp_path / "studies"
    assert tune(str(experiment), "--storage", str(storage), *argv) == 2
    assert message in single_error(capsys.readouterr().err)
    assert not storage.exists()


def test_storage_below_a_file(experiment, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert tune(str(experiment), "--storage", str(blocker / "studies")) == 2
    line = single_error(capsys.readouterr().err)
    assert "--storage" in line and f"{blocker} is a file" in line


def test_storage_is_a_file(experiment, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert tune(str(experiment), "--storage", str(blocker)) == 2
    assert "--storage" in single_error(capsys.readouterr().err)
    assert blocker.read_text() == "x"


def test_subprocess_storage_below_a_file(experiment, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    done = subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), str(experiment), "--storage", str(blocker / "ray_results")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    line = single_error(done.stderr)
    assert "--storage" in line and "is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "test.parq", "tiny.gin", "train.parq"]


def test_resume_command_is_complete(experiment, tmp_path):
    """The printed command resumes the same study on the same cluster with the same bindings."""
    import shlex

    from heartlab.tune.prepare import prepare_study
    from heartlab.tune.report import resume_command

    binds = ["fit.batch_size = 8", "ResNet1D.dropout = 0.2"]
    study, _ = prepare_study(experiment, name="s1", storage=tmp_path / "st", bindings=binds)
    words = shlex.split(resume_command(study, "10.0.0.1:6379"))
    assert words[:4] == ["python", "hypertune.py", str(experiment.resolve()), "--resume"]
    options = list(zip(words[4::2], words[5::2]))
    assert ("--name", "s1") in options and ("--storage", str((tmp_path / "st").resolve())) in options
    assert ("--address", "10.0.0.1:6379") in options
    assert [v for k, v in options if k == "--bind"] == binds
    assert "--address" not in resume_command(study, None)
