"""The study's command line, shared by ``python hypertune.py`` and ``heartlab tune``."""

from __future__ import annotations

import argparse

from heartlab import checks
from heartlab.errors import HeartlabError
from heartlab.files import check_output_dir

DEFAULT_STORAGE = "ray_results"  # where studies go, relative to the current directory


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's arguments to ``parser``."""
    parser.description = parser.description or (
        "Hypertune an experiment with Ray Tune: the config's search section says what to sample; every trial "
        "trains with train.fit. Writes <storage>/<name>/ (trial directories, trials.parquet, best.gin, "
        "best_test_metrics.json)."
    )
    parser.add_argument("config", help="experiment config with a search section, e.g. configs/ptb_resnet1d.gin")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N", help="trials to run (default: search.num_samples)")
    parser.add_argument("--name", default=None, help="study name = directory under --storage (default: the config's file name)")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, metavar="PATH",
        help=f"directory holding studies (default: ./{DEFAULT_STORAGE}); on a cluster, a path every node sees",
    )
    parser.add_argument(
        "--address", default=None, metavar="auto|HOST:PORT",
        help="join an existing Ray cluster (see README, 'Hypertuning on a Ray cluster'); default: start Ray locally",
    )
    parser.add_argument("--resume", action="store_true", help="continue the interrupted study --name in --storage")
    parser.add_argument(
        "--bind", action="append", default=[], metavar="KEY=VALUE",
        help="extra gin binding for every trial, repeatable, e.g. --bind 'fit.epochs = 10'",
    )
    parser.add_argument("--cpus-per-trial", type=float, default=None, metavar="K", help="CPUs per trial (default: search.cpus_per_trial)")
    parser.add_argument(
        "--export", default=None, metavar="DIR",
        help="when finished, copy the compact results (study.json, trials.parquet, history.parquet, best.gin, "
        "best_test_metrics.json; or the ablation's files) into DIR/<name>/, e.g. --export results",
    )
    parser.add_argument(
        "--ablate", action="store_true",
        help="CONFIG is an ablation file (ablation.base, ablation.rows, ablation.seeds): run every variant x seed "
        "(= heartlab ablate); writes ablation.parquet and ablation.md",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run (or resume) the study the parsed arguments describe; returns the process exit code."""
    checks.whole("--num-samples", args.num_samples, 1, optional=True)
    if args.cpus_per_trial is not None:
        checks.number("--cpus-per-trial", args.cpus_per_trial, 0, 1024, low_open=True)
    if args.export is not None:
        check_output_dir(args.export, "--export")
    code = run_study_or_ablation(args)
    if code == 0 and args.export is not None:
        from pathlib import Path

        from heartlab import results
        from heartlab.tune.prepare import study_location

        name, path = study_location(args.config, args.name, args.storage)
        written = results.export(path, Path(args.export) / name)
        print(f"exported {', '.join(p.name for p in written)} to {Path(args.export) / name}")
    return code


def run_study_or_ablation(args: argparse.Namespace) -> int:
    if args.ablate:
        if args.num_samples is not None:
            raise HeartlabError("--num-samples does not apply to an ablation: it runs every variant x ablation.seeds")
        from heartlab.tune.ablate import run_ablation

        return run_ablation(
            args.config, name=args.name, storage=args.storage, address=args.address, resume=args.resume,
            bindings=args.bind, cpus_per_trial=args.cpus_per_trial,
        )
    from heartlab.tune.runner import run_study

    return run_study(
        args.config,
        num_samples=args.num_samples,
        name=args.name,
        storage=args.storage,
        address=args.address,
        resume=args.resume,
        bindings=args.bind,
        cpus_per_trial=args.cpus_per_trial,
    )
