"""Run the research studies and ablations one after the other, each resumable, and export their compact results.

    python scripts/research_queue.py                      # every study and ablation, in order
    python scripts/research_queue.py ptb_resnet1d         # only these
    python scripts/research_queue.py --list               # what each step runs, and what is done

For each study: ``hypertune.py CONFIG`` (or ``--resume`` when its folder exists and it has not finished),
then ``heartlab retrain`` of its top trials with 3 seeds, then the compact files are exported to
``results/<name>/``. A study whose ``results/<name>/top_seeds.parquet`` exists is skipped. An ablation
(``configs/ablation/<study>.gin``, whose base is ``results/<study>/best.gin``) runs with ``heartlab ablate``
once its study is exported, and is exported to ``results/<study>_ablation/``; one whose
``ablation.parquet`` is there is skipped. Stop it at any time (Ctrl-C or a kill) and run it again: every
step continues where it stopped. Commands are printed before they run; each is what the README lists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORAGE = ROOT.parent / "ray_results"  # outside the checkout: trial folders, checkpoints, event files
RESULTS = ROOT / "results"
TOP, SEEDS = 3, 3

# name -> experiment config; the order is the order they run in
STUDIES = {
    "ptb_resnet1d": "configs/ptb_resnet1d.gin",
    "ptb_cnn2d": "configs/ptb_cnn2d.gin",  # a baseline, with the same budget as the families
    "arrhythmia_resnet1d": "configs/arrhythmia_resnet1d.gin",
    "arrhythmia_interpatient_resnet1d": "configs/arrhythmia_interpatient_resnet1d.gin",
    "arrhythmia_cnn2d_plus": "configs/arrhythmia_cnn2d_plus.gin",
    "arrhythmia_interpatient_cnn2d_plus": "configs/arrhythmia_interpatient_cnn2d_plus.gin",
    "arrhythmia_cnn2d": "configs/arrhythmia_cnn2d.gin",  # the 2D baseline on MIT-BIH (Transformer1D: ~400 s per epoch)
    # the ResNet1D searched around the MIT-BIH ablations' winners (natural class mix, no class weights, 32+ channels)
    "arrhythmia_resnet1d_wide": "configs/arrhythmia_resnet1d_wide.gin",
    "ptb_cnn2d_plus": "configs/ptb_cnn2d_plus.gin",
    "ptb_transformer": "configs/ptb_transformer.gin",  # the other baseline
}
# ablation name -> (ablation config, the study whose best.gin it starts from)
ABLATIONS = {
    "ptb_resnet1d_ablation": ("configs/ablation/ptb_resnet1d.gin", "ptb_resnet1d"),
    "arrhythmia_resnet1d_ablation": ("configs/ablation/arrhythmia_resnet1d.gin", "arrhythmia_resnet1d"),
    # the MIT-BIH ablation's three winning single changes together
    "arrhythmia_resnet1d_combined": ("configs/ablation/arrhythmia_resnet1d_combined.gin", "arrhythmia_resnet1d"),
}


def finished(folder: Path, record_name: str) -> bool:
    record = folder / record_name
    return record.is_file() and "finished" in json.loads(record.read_text())


def run(command: list[str]) -> None:
    print("+ " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=ROOT)
    if code != 0:
        sys.exit(f"{command[0]} stopped with exit code {code}; run this script again to continue")


def retrained(table: Path) -> bool:
    """Whether a study's exported ``top_seeds.parquet`` holds all TOP x SEEDS runs (a shorter one, e.g. the
    best trial's seeds alone, is continued)."""
    import pyarrow.parquet as pq

    return table.is_file() and pq.ParquetFile(table).metadata.num_rows >= TOP * SEEDS


def steps(name: str, config: str, storage: Path, search_only: bool = False) -> list[list[str]]:
    """The commands still to run for one study; ``search_only``: the search alone, exported when it
    finishes (the retrain follows on a later run without the flag)."""
    study_dir = storage / name
    if retrained(RESULTS / name / "top_seeds.parquet"):
        return []
    commands = []
    if not finished(study_dir, "study.json"):
        resume = ["--resume"] if study_dir.is_dir() else []
        export = ["--export", str(RESULTS)] if search_only else []
        commands.append([sys.executable, "hypertune.py", config, "--name", name, "--storage", str(storage), *resume, *export])
    if not search_only:
        commands.append([
            sys.executable, "-m", "heartlab.cli", "retrain", str(study_dir), "--top", str(TOP), "--seeds", str(SEEDS),
            "--export", str(RESULTS / name),
        ])
    return commands


def ablation_steps(name: str, config: str, study: str, storage: Path) -> list[list[str]]:
    """The command still to run for one ablation (none when it is exported or its study is not yet)."""
    if (RESULTS / name / "ablation.parquet").is_file() or not (RESULTS / study / "best.gin").is_file():
        return []
    resume = ["--resume"] if (storage / name).is_dir() else []
    return [[sys.executable, "hypertune.py", config, "--ablate", "--name", name, "--storage", str(storage), *resume, "--export", str(RESULTS)]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"studies and ablations to run (default: all of {', '.join([*STUDIES, *ABLATIONS])})")
    parser.add_argument("--storage", type=Path, default=STORAGE, help=f"where the studies live (default {STORAGE})")
    parser.add_argument("--list", action="store_true", help="print each study's remaining commands and stop")
    parser.add_argument(
        "--search-only", action="store_true",
        help="run (or resume) the studies' searches and export them; retrain and ablations on a later run without it",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in STUDIES and n not in ABLATIONS]
    if unknown:
        parser.error(f"unknown studies or ablations: {', '.join(unknown)} (known: {', '.join([*STUDIES, *ABLATIONS])})")
    for name in args.names or [*STUDIES, *ABLATIONS]:
        if name in STUDIES:
            commands = steps(name, STUDIES[name], args.storage, args.search_only)
        elif args.search_only:
            continue
        else:
            config, study = ABLATIONS[name]
            commands = ablation_steps(name, config, study, args.storage)
            if not commands and not (RESULTS / study / "best.gin").is_file():
                print(f"{name}: waits for the study {study} (results/{study}/best.gin)")
                continue
        if args.list:
            print(f"{name}: " + ("done" if not commands else "\n  " + "\n  ".join(" ".join(c) for c in commands)))
            continue
        for command in commands:
            run(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
