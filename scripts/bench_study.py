"""Wall time of a Ray Tune study with ASHA against the same trials without a scheduler, and Ray's overhead.

    python scripts/bench_study.py                      # 16 trials of configs/ptb_resnet1d.gin, PTB sample
    python scripts/bench_study.py --num-samples 8 --epochs 6 --json bench_study.json

Both studies run `hypertune.py` on the same config, data and search seed, so Ray samples the same trials;
the only difference is `search.scheduler` ('asha' vs 'none'). Data: the real PTB sample from
../shared/data/ptb/ split 80/20 (stratified, seed 0) into train/test files in a temporary folder.

Reported per study:
  1st epoch   seconds from the process start to the first epoch a trial reported
  process_s   the whole `hypertune.py` process (imports, checks, Ray start, study, test evaluation, shutdown)
  study_s     Tuner.fit() alone (the driver's "N trials in X s wall time" line)
  fit_s       the seconds trials spent inside train.fit, summed over trials
  epochs      epochs trained, summed over trials
  busy        fit_s / (study_s * slots): the fraction of the study's CPU slots spent inside train.fit
              (slots = concurrent trials = CPUs // cpus_per_trial); 1 - busy is Ray's overhead (actor
              start, scheduling, reporting, checkpoint copies) plus idle slots at the end
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
PTB_SAMPLE = ROOT.parent / "shared" / "data" / "ptb" / "ptb_beats_sample.parq"


def prepare_data(folder: Path) -> tuple[Path, Path]:
    from heartlab.data import read_beats, write_beats
    from heartlab.splitting import stratified_split

    x, y = read_beats(PTB_SAMPLE, num_classes=2)
    keep, held = stratified_split(y, 0.2, seed=0)
    return write_beats(folder / "train.parq", x[keep], y[keep]), write_beats(folder / "test.parq", x[held], y[held])


VARIANTS = {  # name -> (scheduler, CPUs per trial; None keeps the config's search.cpus_per_trial)
    "asha": ("asha", None),
    "none": ("none", None),
    "none-1x2": ("none", 2),  # one trial at a time with 2 torch threads
    "none-2x1": ("none", 1),  # two trials side by side with 1 thread each
}


def first_epoch_delay(study_dir: Path, started_wall: float) -> float:
    """Seconds from the process start to the first epoch any trial reported (Ray's result timestamps)."""
    stamps = []
    for result in study_dir.glob("*/result.json"):
        first = result.read_text().splitlines()[:1]
        if first:
            stamps.append(json.loads(first[0])["timestamp"])
    return min(stamps) - started_wall


def run(config: Path, storage: Path, variant: str, args) -> dict:
    scheduler, cpus = VARIANTS[variant]
    name = f"bench_{variant}"
    command = [
        sys.executable, str(ROOT / "hypertune.py"), str(config), "--storage", str(storage), "--name", name,
        "--num-samples", str(args.num_samples), "--bind", f"search.scheduler = {scheduler!r}",
        "--bind", f"search.seed = {args.seed}",
    ]
    if args.epochs:
        command += ["--bind", f"search.max_epochs = {args.epochs}"]
    if cpus:
        command += ["--cpus-per-trial", str(cpus)]
    started_wall = time.time()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{name}: hypertune.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    match = re.search(r"(\d+) trials in ([\d.]+) s wall time", done.stdout)
    study_s = float(match.group(2))
    table = pl.read_parquet(storage / name / "trials.parquet")
    settings = json.loads((storage / name / "study.json").read_text())["settings"]
    slots = max(1, int((os.cpu_count() or 1) // settings["cpus_per_trial"]))
    if settings.get("max_concurrent_trials"):
        slots = min(slots, settings["max_concurrent_trials"])
    fit_s = float(table["fit_s"].sum())
    return {
        "variant": variant,
        "scheduler": scheduler,
        "cpus_per_trial": settings["cpus_per_trial"],
        "first_epoch_s": round(first_epoch_delay(storage / name, started_wall), 1),
        "trials": table.height,
        "stopped_early": int((table["status"] == "stopped").sum()),
        "epochs": int(table["epochs"].sum()),
        "process_s": round(process_s, 1),
        "study_s": round(study_s, 1),
        "fit_s": round(fit_s, 1),
        "slots": slots,
        "busy": round(fit_s / (study_s * slots), 3),
        "best": round(float(table["score"][0]), 4),
        "command": " ".join(command),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "ptb_resnet1d.gin"))
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the config's fit.epochs)")
    parser.add_argument("--seed", type=int, default=0, help="search seed: both studies sample the same trials")
    parser.add_argument(
        "--variants", default="asha,none",
        help=f"comma-separated studies to run, of {', '.join(VARIANTS)} (default asha,none; "
        "none-1x2,none-2x1 compares 1 trial x 2 threads with 2 trials x 1 thread)",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    if not PTB_SAMPLE.exists():
        sys.exit(f"the PTB sample is not at {PTB_SAMPLE}")

    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        folder = Path(folder)
        train_file, test_file = prepare_data(folder)
        config = folder / "bench.gin"
        config.write_text(
            f"include '{Path(args.config).resolve()}'\n"
            f"load_splits.train_file = '{train_file}'\nload_splits.test_file = '{test_file}'\n"
        )
        figures = [run(config, folder / "studies", variant, args) for variant in variants]

    print(f"{args.num_samples} trials of {Path(args.config).name} on the PTB sample, {os.cpu_count()} CPUs")
    print(f"{'variant':>9} {'cpus':>5} {'stopped':>8} {'epochs':>7} {'1st epoch':>10} {'process_s':>10} {'study_s':>8} "
          f"{'fit_s':>7} {'busy':>6} {'best':>7}")
    for f in figures:
        print(
            f"{f['variant']:>9} {f['cpus_per_trial']:>5} {f['stopped_early']:>8} {f['epochs']:>7} {f['first_epoch_s']:>10} "
            f"{f['process_s']:>10} {f['study_s']:>8} {f['fit_s']:>7} {f['busy']:>6} {f['best']:>7}"
        )
    by_name = {f["variant"]: f for f in figures}
    if {"asha", "none"} <= set(by_name):
        print(f"ASHA / no scheduler, study wall time: {by_name['asha']['study_s'] / by_name['none']['study_s']:.2f}")
    if {"none-1x2", "none-2x1"} <= set(by_name):
        ratio = by_name["none-2x1"]["study_s"] / by_name["none-1x2"]["study_s"]
        print(f"2 trials x 1 thread / 1 trial x 2 threads, study wall time: {ratio:.2f}")
    for f in figures:
        print(f"command: {f['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
