"""Print the per-class table of the cardiology literature (Se, +P, FPR, with 95% record-bootstrap intervals
when present) for finished runs or studies, from their ``test_metrics.json`` / ``best_test_metrics.json``.

    python scripts/aami_table.py runs/arrhythmia_interpatient_resnet1d/20261130-101500-ab12cd
    python scripts/aami_table.py ray_results/arrhythmia_interpatient_resnet1d
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heartlab.metrics import aami_table
from heartlab.results import BEST_TEST_METRICS as STUDY_METRICS
from heartlab.runs import TEST_METRICS


def metrics_file(path: Path) -> Path:
    for candidate in (path, path / TEST_METRICS, path / STUDY_METRICS):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no {TEST_METRICS} or {STUDY_METRICS} here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, study directories or metrics files")
    args = parser.parse_args(argv)
    for path in args.paths:
        try:
            file = metrics_file(path)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        values = json.loads(file.read_text())
        print(f"{file}\n{aami_table(values, tuple(values['classes']), ci=values.get('ci95'))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
