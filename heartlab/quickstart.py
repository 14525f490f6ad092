"""``heartlab quickstart``: the main job end to end — a short hypertuning study — on whatever data is here.

With the experiment's beat files in ``data/`` (see ``heartlab data --help``), the study runs on them. With
none, it generates synthetic demo beats into ``data/demo/`` (once) and runs on those, saying so loudly.

Every run is a new study, ``<storage>/quickstart-<YYYYmmdd-HHMMSS>/`` (printed at the end), so the command
can be repeated; ``--resume`` continues the latest quickstart study (or ``--name``'s) after an interruption.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from loguru import logger

from heartlab.errors import HeartlabError
from heartlab.tune.cli import DEFAULT_STORAGE

DEFAULT_CONFIG = "configs/ptb_resnet1d.gin"

NAME_PREFIX = "quickstart-"
DEMO_DIR = Path("data") / "demo"
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
    import gin

    from heartlab.config import bound, load_config
    from heartlab.data import get_dataset, load_splits

    load_config(config)
    spec = get_dataset(bound(load_splits, "dataset"))
    train_file = Path(bound(load_splits, "train_file") or spec.train_file)
    test_file = Path(bound(load_splits, "test_file") or spec.test_file)
    gin.clear_config()
    if train_file.is_file() and test_file.is_file():
        logger.info(f"quickstart: using the beat files {train_file} and {test_file}")
        return [], False
    demo_train, demo_test = demo_dir / spec.train_name, demo_dir / spec.test_name
    if not (demo_train.is_file() and demo_test.is_file()):
        from heartlab.builders.demo import build_demo

        build_demo(demo_dir, force=True)
    return [f"load_splits.train_file = '{demo_train}'", f"load_splits.test_file = '{demo_test}'"], True


def latest_study(storage: Path) -> str:
    """The name of the newest ``quickstart-*`` study in ``storage`` (for ``--resume`` without ``--name``)."""
    names = sorted(p.name for p in storage.glob(f"{NAME_PREFIX}*") if p.is_dir())
    if not names:
        raise HeartlabError(f"{storage}: no quickstart study to resume; run `heartlab quickstart` without --resume")
    return names[-1]


def banner(lines: list[str]) -> str:
    width = max(map(len, lines))
    rule = "=" * width
    return "\n".join([rule, *lines, rule])


def run_quickstart(args: argparse.Namespace) -> int:
    from heartlab import checks
    from heartlab.tune.runner import run_study

    checks.whole("--num-samples", args.num_samples, 1)
    checks.whole("--epochs", args.epochs, 1)
    name = args.name
    if args.resume and name is None:
        name = latest_study(Path(args.storage))
    elif name is None:
        name = NAME_PREFIX + datetime.now().strftime("%Y%m%d-%H%M%S")
    bindings, synthetic = data_bindings(args.config)
    if synthetic:
        print(banner([
            f"No beat files for {args.config} in data/: this quickstart runs on SYNTHETIC demo beats",
            f"generated into {DEMO_DIR}/ (not ECG recordings; its results say nothing about real ECGs).",
            *REAL_DATA_ROUTES.splitlines(),
        ]), flush=True)
    # a short study: ASHA may stop a trial after its first epoch (rungs 1, 3, 9, ... epochs)
    bindings += [f"search.max_epochs = {args.epochs}", "search.grace_period = 1"]
    code = run_study(
        args.config, num_samples=args.num_samples, name=name, storage=args.storage, bindings=bindings, resume=args.resume
    )
    if code == 0:
        study = Path(args.storage) / name
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
    parser.add_argument("--name", default=None, help=f"study name (default {NAME_PREFIX}<date>-<time>: a new study per run)")
    parser.add_argument("--resume", action="store_true", help="continue the latest quickstart study (or --name's)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"directory holding studies (default {DEFAULT_STORAGE})")
    parser.set_defaults(handler=run_quickstart)
