"""The ``heartlab`` command: ``train``, ``tune``, ``ablate``, ``retrain``, ``predict``, ``report``, ``quickstart``, ``data`` and
``models`` subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loguru import logger

from heartlab.data_cli import add_data_parser
from heartlab.errors import HeartlabError, report
from heartlab.models_cli import add_models_parser
from heartlab.predict import add_predict_parser
from heartlab.quickstart import add_quickstart_parser
from heartlab.report import add_report_parser
from heartlab.retrain import add_retrain_parser
from heartlab.tune import add_tune_arguments, run_from_args


def train_command(args: argparse.Namespace) -> int:
    from heartlab import train
    from heartlab.config import load_config

    load_config(args.config, args.bind)
    result = train.fit()
    logger.info(f"best epoch {result.best_epoch} of {result.epochs_run}; run directory: {result.run_dir}")
    return 0


def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one model from a gin config",
        description="Train one model from a gin config; writes runs/<experiment>/<timestamp>-<id>/.",
    )
    parser.add_argument("config", help="experiment config, e.g. configs/ptb_resnet1d.gin")
    parser.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="BINDING",
        help="extra gin binding, repeatable, e.g. --bind 'ResNet1D.channels = 64'",
    )
    parser.set_defaults(handler=train_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heartlab", description="Train and hypertune ECG heartbeat classifiers.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_data_parser(subparsers)
    tune_parser = subparsers.add_parser("tune", help="hypertune an experiment with Ray Tune (= hypertune.py)")
    add_tune_arguments(tune_parser)
    tune_parser.set_defaults(handler=run_from_args)
    ablate_parser = subparsers.add_parser(
        "ablate", help="run an ablation file: a base config and rows of changed hyperparameters, several seeds each",
        description="Run an ablation on Ray Tune: the base config of ablation.base, then every row's variants, each with "
        "ablation.seeds training seeds; writes <storage>/<name>/ablation.parquet and ablation.md (see heartlab/ablation.py).",
    )
    add_tune_arguments(ablate_parser)
    ablate_parser.set_defaults(handler=run_from_args, ablate=True)
    add_quickstart_parser(subparsers)
    add_models_parser(subparsers)
    add_predict_parser(subparsers)
    add_retrain_parser(subparsers)
    add_report_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HeartlabError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
