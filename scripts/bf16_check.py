"""Does bf16 autocast change what a model learns? Train the same config in fp32 and in bf16.

    python scripts/bf16_check.py configs/arrhythmia_resnet1d.gin --seeds 0 1 [--bind ...] [--json OUT.json]

For every seed the two runs share seed, split, threads and bindings; the script prints the best validation
metrics (the test split is not evaluated) and wall time of each precision, averaged over the seeds (one
seed's best epoch moves by about a point from run to run, more than the effect measured), and the
differences. Runs are written under a
temporary directory unless --runs-root is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from heartlab import train
from heartlab.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--bind", action="append", default=[], help="extra gin binding, repeatable")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (SEED macro) to average over")
    parser.add_argument("--runs-root", type=Path, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    runs_root = args.runs_root or Path(tempfile.mkdtemp(prefix="bf16_check_"))
    results = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        runs = []
        for seed in args.seeds:
            load_config(args.config, [*args.bind, f"SEED = {seed}", f"fit.bf16 = {bf16}",
                                      f"fit.num_threads = {args.threads}", f"fit.runs_root = '{runs_root}'"])
            started = time.perf_counter()
            result = train.fit(evaluate_test=False)
            seconds = time.perf_counter() - started
            runs.append({
                "seed": seed,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "seconds_per_epoch": seconds / result.epochs_run,
                **{k: v for k, v in result.best_metrics.items() if k.startswith("val/")},
            })
        mean = {key: statistics.fmean(run[key] for run in runs) for key in runs[0] if key != "seed"}
        results[precision] = {"mean": mean, "runs": runs}
    fp32, bf16 = results["fp32"]["mean"], results["bf16"]["mean"]
    print(f"mean over seeds {args.seeds}")
    print(f"{'metric':<24}{'fp32':>10}{'bf16':>10}{'bf16 - fp32':>13}")
    for key in fp32:
        if key.startswith("val/") or key.startswith("seconds"):
            print(f"{key:<24}{fp32[key]:>10.4f}{bf16[key]:>10.4f}{bf16[key] - fp32[key]:>+13.4f}")
    summary = {
        "config": args.config,
        "bindings": args.bind,
        "runs": results,
        "recall_macro_points_bf16_minus_fp32": 100 * (bf16["val/recall_macro"] - fp32["val/recall_macro"]),
        "speedup_bf16": fp32["seconds_per_epoch"] / bf16["seconds_per_epoch"],
    }
    print(f"val/recall_macro difference: {summary['recall_macro_points_bf16_minus_fp32']:+.2f} points; "
          f"bf16 speed-up per epoch: {summary['speedup_bf16']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
