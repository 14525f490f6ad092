"""Ray Tune studies: an experiment's search section, run as trials of the one training loop.

``python hypertune.py configs/ptb_resnet1d.gin`` (or ``heartlab tune ...``):

1. :mod:`~heartlab.tune.prepare` (driver) reads the config (includes inlined, plus ``--bind`` lines) and its
   search section and checks everything before Ray starts: keys, distributions, metric, ``fit`` and data
   settings, and a dry run that builds model, loss and optimizer for one sampled point. Any problem:
   ``HeartlabError`` (exit code 2), nothing written;
2. :mod:`~heartlab.tune.runner` starts (or joins) Ray, loads the data once and hands it to every trial
   through Ray's object store, and runs the Tuner with ASHA;
3. :mod:`~heartlab.tune.trial` (inside Ray workers) clears gin, parses the study config, binds its sampled
   values and calls :func:`heartlab.train.fit`, reporting every epoch to Ray;
4. :mod:`~heartlab.tune.report` ranks the trials and writes ``trials.parquet``, ``best.gin`` and
   ``best_test_metrics.json`` (the best trial's checkpoint evaluated once on the test split).

An interrupted study (Ctrl-C, or a killed driver) continues with ``--resume``: finished trials are kept,
errored trials are retried once, trials that were running start again from epoch 1.

Importing this package is cheap: Ray, torch and the trainer are imported by the modules that need them.
"""

from heartlab.tune.cli import DEFAULT_STORAGE, add_tune_arguments, run_from_args

__all__ = ["DEFAULT_STORAGE", "add_tune_arguments", "run_from_args", "run_study"]


def run_study(*args, **kwargs) -> int:
    """:func:`heartlab.tune.runner.run_study` (imported on first use)."""
    from heartlab.tune.runner import run_study as run

    return run(*args, **kwargs)
