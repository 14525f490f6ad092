"""``heartlab quickstart``: the main job end to end — a short hypertuning study — on whatever data is here.

With the experiment's beat files in ``data/`` (see ``heartlab data --help``), the study runs on them. With
none, it generates synthetic demo beats into ``data/demo/`` (once) and runs on those, saying so loudly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gin
from loguru import logger

from heartlab.config import load_config

DEFAULT_CONFIG = "configs/ptb_resnet1d.gin"
DEMO_DIR = Path("data") / "demo"
DEMO_FILES = {  # dataset -> (train, test) file names written by `heartlab data demo`
    "ptb": ("heart_train.parq", "heart_test.parq"),
    "arrhythmia": ("heart_big_train.parq", "heart_big_test.parq"),
}
REAL_DATA_ROUTES = """\
To run on real beats instead, put them in data/ (the configs read data/heart_*.parq) by one of:
  heartlab data mitbih --source physionet --out data/          # MIT-BIH from PhysioNet (needs internet)
  heartlab data mitbih --source DIR --out data/                # MIT-BIH from WFDB records you have
  heartlab data kaggle DIR --out data/                         # the Kaggle CSVs (mitbih_*.csv, ptbdb_*.csv)
  heartlab data split FILE --out-train data/heart_train.parq --out-test data/heart_test.parq
then run the same command again."""


def data_bindings(config: str | Path, demo_dir: Path = DEMO_DIR) -> tuple[list[str], bool]:
    """Bindings that point the experiment at its real files if they exist, else at demo files.

    Returns ``(bindings, synthetic)``; demo files are generated on first use.
    """
    load_config(config)
    dataset = gin.query_parameter("load_splits.dataset")
    train_file = Path(gin.query_parameter("load_splits.train_file"))
    test_file = Path(gin.query_parameter("load_splits.test_file"))
    gin.clear_config()
    if train_file.is_file() and test_file.is_file():
        logger.info(f"quickstart: using the beat files {train_file} and {test_file}")
        return [], False
    demo_train, demo_test = (demo_dir / name for name in DEMO_FILES[dataset])
    if not (demo_train.is_file() and demo_test.is_file()):
        from heartlab.builders.demo import build_demo

        build_demo(demo_dir, force=True)
    return [f"load_splits.train_file = '{demo_train}'", f"load_splits.test_file = '{demo_test}'"], True


def banner(lines: list[str]) -> str:
    width = max(map(len, lines))
    rule = "=" * width
    return "\n".join([rule, *lines, rule])


def run_quickstart(args: argparse.Namespace) -> int:
    from heartlab.tune import run_study

    bindings, synthetic = data_bindings(args.config)
    if synthetic:
        print(banner([
            f"No beat files for {args.config} in data/: this quickstart runs on SYNTHETIC demo beats",
            f"generated into {DEMO_DIR}/ (not ECG recordings; its results say nothing about real ECGs).",
            *REAL_DATA_ROUTES.splitlines(),
        ]), flush=True)
    bindings += [f"fit.epochs = {args.epochs}", f"search.max_epochs = {args.epochs}"]
    code = run_study(args.config, num_samples=args.num_samples, name=args.name, storage=args.storage, bindings=bindings)
    if code == 0:
        study = Path(args.storage) / args.name
        print(banner([
            f"Quickstart study finished{' (SYNTHETIC demo data)' if synthetic else ''}: {study}/",
            f"  trials:       {study}/trials.parquet",
            f"  curves:       tensorboard --logdir {study}",
            f"  best config:  heartlab train {study}/best.gin",
            f"  full study:   python hypertune.py {args.config}",
        ]))
    return code


def add_quickstart_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="run a short hypertuning study end to end (on demo data when data/ has none)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"experiment config (default {DEFAULT_CONFIG})")
    parser.add_argument("--num-samples", type=int, default=4, help="trials (default 4)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial at most (default 3)")
    parser.add_argument("--name", default="quickstart", help="study name (default quickstart)")
    parser.add_argument("--storage", default="ray_results", help="directory holding studies (default ray_results)")
    parser.set_defaults(handler=run_quickstart)
