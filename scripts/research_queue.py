"""Run the research studies one after the other, each resumable, and export their compact results.

    python scripts/research_queue.py                      # every study, in order
    python scripts/research_queue.py ptb_resnet1d         # only these
    python scripts/research_queue.py --list               # what each step runs, and what is done

For each study: ``hypertune.py CONFIG`` (or ``--resume`` when its folder exists and it has not finished),
then ``heartlab retrain`` of its top trials with 3 seeds, then the compact files are exported to
``results/<name>/``. A study whose ``results/<name>/top_seeds.parquet`` exists is skipped. Stop it at any
time (Ctrl-C or a kill) and run it again: every step continues where it stopped. Commands are printed
before they run; each is what the README lists for that study.
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
    "arrhythmia_resnet1d": "configs/arrhythmia_resnet1d.gin",
    "arrhythmia_cnn2d_plus": "configs/arrhythmia_cnn2d_plus.gin",
    "arrhythmia_interpatient_resnet1d": "configs/arrhythmia_interpatient_resnet1d.gin",
    "arrhythmia_interpatient_cnn2d_plus": "configs/arrhythmia_interpatient_cnn2d_plus.gin",
    "ptb_cnn2d_plus": "configs/ptb_cnn2d_plus.gin",
    "ptb_cnn2d": "configs/ptb_cnn2d.gin",  # the baselines, with the same budget as the families
    "ptb_transformer": "configs/ptb_transformer.gin",
}


def finished(study_dir: Path) -> bool:
    record = study_dir / "study.json"
    return record.is_file() and "finished" in json.loads(record.read_text())


def run(command: list[str]) -> None:
    print("+ " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=ROOT)
    if code != 0:
        sys.exit(f"{command[0]} stopped with exit code {code}; run this script again to continue")


def steps(name: str, config: str, storage: Path) -> list[list[str]]:
    """The commands still to run for one study."""
    study_dir = storage / name
    if (RESULTS / name / "top_seeds.parquet").is_file():
        return []
    commands = []
    if not finished(study_dir):
        resume = ["--resume"] if study_dir.is_dir() else []
        commands.append([sys.executable, "hypertune.py", config, "--name", name, "--storage", str(storage), *resume])
    commands.append([
        sys.executable, "-m", "heartlab.cli", "retrain", str(study_dir), "--top", str(TOP), "--seeds", str(SEEDS),
        "--export", str(RESULTS / name),
    ])
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"studies to run (default: all of {', '.join(STUDIES)})")
    parser.add_argument("--storage", type=Path, default=STORAGE, help=f"where the studies live (default {STORAGE})")
    parser.add_argument("--list", action="store_true", help="print each study's remaining commands and stop")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in STUDIES]
    if unknown:
        parser.error(f"unknown studies: {', '.join(unknown)} (known: {', '.join(STUDIES)})")
    for name in args.names or STUDIES:
        commands = steps(name, STUDIES[name], args.storage)
        if args.list:
            print(f"{name}: " + ("done" if not commands else "\n  " + "\n  ".join(" ".join(c) for c in commands)))
            continue
        for command in commands:
            run(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
