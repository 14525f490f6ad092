"""The ``heartlab data ...`` subcommands: build, split, synthesise and inspect beat files.

``heartlab/cli.py`` calls :func:`add_data_parser` and runs ``args.handler(args)``; handlers return the exit
code and raise :class:`heartlab.errors.HeartlabError` for problems the user can fix (printed as one line,
exit code 2). The builders write all their output files or none.
"""

from __future__ import annotations

import argparse

from heartlab.data import DATASETS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {value}")
    return value


def _records(text: str) -> list[str]:
    ids = [part.strip() for part in text.replace(",", " ").split() if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("expected record ids such as 100,101")
    return ids


def _add_common(
    parser: argparse.ArgumentParser, *, seed_help: str, test_size: bool = True, test_size_default: float | None = 0.2
) -> None:
    parser.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: 0)")
    if test_size:
        parser.add_argument(
            "--test-size",
            type=_fraction,
            default=test_size_default,
            help="fraction of every class held out for the test file (default: 0.2)",
        )
    parser.add_argument("--force", action="store_true", help="replace output files that already exist")


def run_mitbih(args: argparse.Namespace) -> int:
    from heartlab.builders.mitbih import build_mitbih

    build_mitbih(
        args.source,
        args.out,
        protocol=args.protocol,
        records=args.records,
        test_size=args.test_size,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
        download_dir=args.download_dir,
    )
    return 0


def run_kaggle(args: argparse.Namespace) -> int:
    from heartlab.builders.kaggle import convert_kaggle

    convert_kaggle(args.folder, args.out, seed=args.seed, test_size=args.test_size, force=args.force)
    return 0


def run_split(args: argparse.Namespace) -> int:
    from heartlab.builders.split import split_file

    split_file(
        args.file,
        args.out_train,
        args.out_test,
        test_size=args.test_size,
        seed=args.seed,
        dataset=args.dataset,
        force=args.force,
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from heartlab.builders.demo import build_demo

    build_demo(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed, force=args.force)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from heartlab.builders.info import describe_file

    print(describe_file(args.file, args.dataset))
    return 0


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` and its subcommands ``mitbih``, ``kaggle``, ``split``, ``demo``, ``info``."""
    data = subparsers.add_parser(
        "data",
        help="build, split, synthesise or inspect beat files",
        description="Build, split, synthesise or inspect beat files (parquet: columns '0'..'186' and 'target').",
    )
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    datasets = sorted(DATASETS)

    p = commands.add_parser(
        "mitbih",
        help="rebuild the MIT-BIH beat files from the raw records (random or inter-patient protocol)",
        description=(
            "Build MIT-BIH beat files from the raw records with the published preprocessing (Kachuee et al. 2018): "
            "lead MLII, 125 Hz, 10 s windows normalised to [0, 1], beats of 1.2 x the window's median R-R interval, "
            "AAMI classes. Every beat keeps its record, R-peak sample and R-R intervals (rr_pre, rr_post, rr_local, rr_average, "
            "seconds). --protocol random (default): heart_big_train.parq / heart_big_test.parq, N/S/V/F/Q beats "
            "split 80/20 at random (stratified), as published. --protocol inter-patient (de Chazal et al. 2004): "
            "mitbih_ds1.parq (records of DS1, for training) and mitbih_ds2.parq (DS2, for testing), N/S/V/F beats, "
            "paced records and Q beats left out: the model is tested on patients it never saw."
        ),
    )
    p.add_argument(
        "--protocol",
        choices=("random", "inter-patient"),
        default="random",
        help="random: beats split at random (default); inter-patient: DS1 -> DS2 by record",
    )
    p.add_argument(
        "--source",
        required=True,
        metavar="DIR|physionet",
        help="folder of the records (NNN.hea/.dat/.atr), or 'physionet' to download them (needs internet)",
    )
    p.add_argument("--out", default="data", metavar="DIR", help="output folder (default: data)")
    p.add_argument("--records", type=_records, metavar="IDS", help="build from these records only, e.g. 100,101")
    p.add_argument("--workers", type=_positive_int, default=1, help="processes reading records (default: 1)")
    p.add_argument(
        "--download-dir",
        metavar="DIR",
        help="where --source physionet keeps the download (default: ~/.cache/heartlab/mitdb)",
    )
    _add_common(p, seed_help="seed of the stratified train/test split (random protocol)", test_size_default=None)
    p.set_defaults(handler=run_mitbih)

    p = commands.add_parser(
        "kaggle",
        help="convert the four Kaggle heartbeat CSVs into the four beat files",
        description=(
            "Convert mitbih_train.csv, mitbih_test.csv, ptbdb_normal.csv and ptbdb_abnormal.csv (Kaggle 'ECG "
            "Heartbeat Categorization Dataset': no header, 187 values then the label) into heart_big_train.parq, "
            "heart_big_test.parq, heart_train.parq and heart_test.parq (PTB: normal=0, abnormal=1, stratified split)."
        ),
    )
    p.add_argument("folder", metavar="DIR", help="folder holding the four CSV files")
    p.add_argument("--out", default="data", metavar="DIR", help="output folder (default: data)")
    _add_common(p, seed_help="seed of the stratified PTB train/test split")
    p.set_defaults(handler=run_kaggle)

    p = commands.add_parser(
        "split",
        help="stratified train/test split of one beat file",
        description="Split one beat file into a training and a test file, stratified by class, with a fixed seed.",
    )
    p.add_argument("file", metavar="FILE", help="beat file to split")
    p.add_argument("--out-train", required=True, metavar="FILE", help="training file to write")
    p.add_argument("--out-test", required=True, metavar="FILE", help="test file to write")
    p.add_argument("--dataset", metavar="NAME", help=f"check the labels against a dataset ({', '.join(datasets)})")
    _add_common(p, seed_help="seed of the split")
    p.set_defaults(handler=run_split)

    p = commands.add_parser(
        "demo",
        help="write SYNTHETIC beat files for both datasets (for trying the tools)",
        description=(
            "Write SYNTHETIC beats (not ECG recordings) with the beat-file schema for both datasets: "
            "heart_train/heart_test.parq (PTB normal/abnormal) and heart_big_train/heart_big_test.parq (N/S/V/F/Q), "
            "plus SYNTHETIC_README.txt. Seconds to make; only for trying the tools end to end."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--n-train", type=_positive_int, default=4000, help="training beats per dataset (default: 4000)")
    p.add_argument("--n-test", type=_positive_int, help="test beats per dataset (default: n-train / 4)")
    _add_common(p, seed_help="seed of the generator", test_size=False)
    p.set_defaults(handler=run_demo)

    p = commands.add_parser(
        "info",
        help="rows, class counts, value range and schema problems of a beat file",
        description="Report what a beat file holds: rows, class counts, value range, padding, schema problems.",
    )
    p.add_argument("file", metavar="FILE", help="beat file (parquet)")
    p.add_argument("--dataset", metavar="NAME", help=f"check the labels against a dataset ({', '.join(datasets)})")
    p.set_defaults(handler=run_info)
