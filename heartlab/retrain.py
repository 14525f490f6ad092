"""``heartlab retrain STUDY_DIR``: the top configurations of a finished study trained again with several
seeds, each evaluated once on the test split, so that a study's headline is more than one lucky seed.

For each of the ``--top`` best trials (by the study's metric on validation) and each seed 0 .. ``--seeds``
- 1, the study config plus the trial's sampled values plus ``fit.seed = <seed>`` is trained by
``train.fit`` into ``<STUDY_DIR>/top_seeds/rank<k>_<trial>_seed<s>/`` (a finished run is kept, so an
interrupted retrain continues where it stopped). The validation split is the study's (``load_splits.seed``
stays). Writes ``<STUDY_DIR>/top_seeds.parquet``: one row per run with the trial's values, the best
epoch's validation metrics (``val/...``) and the test metrics (``test/...``); prints mean ± std per rank.

The runs are independent: ``--jobs`` of them train side by side in worker processes (default: as many as
the study ran trials side by side on this machine, i.e. CPUs // ``search.cpus_per_trial``), each with
CPUs // jobs torch threads. The thread count changes the order of float reductions, so a run repeats
exactly only with the same ``--jobs`` on the same machine (a study's own trial, on 1 thread, is not
repeated by its seed-0 retrain on 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from heartlab import results, runs
from heartlab.errors import HeartlabError

TOP_SEEDS = "top_seeds.parquet"
TOP_SEEDS_DIR = "top_seeds"


def trial_values(trial_dir: Path, param_names: dict[str, str]) -> dict[str, Any]:
    """A trial's sampled values (gin key -> value) from Ray's ``params.json`` in its directory."""
    from heartlab.search import to_python

    path = trial_dir / "params.json"
    if not path.is_file():
        raise HeartlabError(f"{trial_dir}: no params.json (not a trial directory of this study)")
    params = json.loads(path.read_text())
    return {param_names[name]: to_python(value) for name, value in params.items() if name in param_names}


def default_jobs(settings: dict[str, Any]) -> int:
    """Runs side by side: as many as the study's trials on this machine (CPUs // search.cpus_per_trial)."""
    import os

    per_trial = float(settings.get("settings", {}).get("cpus_per_trial") or 1)
    return max(1, int((os.cpu_count() or 1) // max(per_trial, 1)))


def train_run(config: tuple[str, str], bindings: list[str], run_dir: str, threads: int) -> str:
    """One retrain run in a worker process: the study config plus ``bindings``, ``threads`` torch threads,
    trained by ``train.fit`` into ``run_dir`` and evaluated once on test."""
    from heartlab import train
    from heartlab.config import ConfigText, parse_text

    parse_text(ConfigText.of(*config).plus([*bindings, f"fit.num_threads = {threads}"], "retrain"))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    train.fit(run_dir=run_dir, evaluate_test=True)
    return run_dir


def retrain_top(study_dir: str | Path, top: int = 3, seeds: int = 3, jobs: int | None = None):
    """Retrain the ``top`` best trials of the study at ``study_dir`` with ``seeds`` seeds each, ``jobs`` runs
    side by side (``None``: :func:`default_jobs`); returns the ``top_seeds.parquet`` frame (also written)."""
    import multiprocessing
    import os

    import polars as pl

    from heartlab import checks
    from heartlab.config import ConfigText, parse_text
    from heartlab.data import load_splits
    from heartlab.files import write_atomic
    from heartlab.search import binding_lines

    checks.whole("--top", top, 1)
    checks.whole("--seeds", seeds, 1)
    checks.whole("--jobs", jobs, 1, optional=True)
    study_dir = Path(study_dir)
    try:
        trials = results.read_trials(study_dir)
    except FileNotFoundError as exc:
        raise HeartlabError(str(exc)) from None
    settings = results.read_study_settings(study_dir)
    param_names = settings["param_names"]
    study_config = ConfigText.of((study_dir / results.STUDY_CONFIG).read_text(), str(study_dir / results.STUDY_CONFIG))
    ranked = trials.filter(pl.col("rank").is_not_null()).sort("rank").head(top)
    if ranked.height == 0:
        raise HeartlabError(f"{study_dir}: no ranked trial to retrain")
    parse_text(study_config)
    load_splits()  # the data files are there and hold every class, before any run starts
    planned, pending = [], []
    for trial in ranked.iter_rows(named=True):
        values = trial_values(study_dir / trial["trial_dir"], param_names)
        for seed in range(seeds):
            run_dir = study_dir / TOP_SEEDS_DIR / f"rank{trial['rank']}_{trial['trial_dir']}_seed{seed}"
            planned.append((run_dir, trial, values, seed))
            if not (run_dir / runs.TEST_METRICS).is_file():
                pending.append((run_dir, [*binding_lines(values), f"fit.seed = {seed}"]))
    jobs = min(jobs or default_jobs(settings), max(len(pending), 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    config = (study_config.text, str(study_dir / results.STUDY_CONFIG))
    if pending:
        with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
            for done in pool.starmap(train_run, [(config, bindings, str(run_dir), threads) for run_dir, bindings in pending], chunksize=1):
                print(f"retrained {done}", flush=True)
    rows = [run_row(run_dir, trial, values, seed) for run_dir, trial, values, seed in planned]
    frame = pl.DataFrame(rows, infer_schema_length=None)
    write_atomic(study_dir / TOP_SEEDS, frame.write_parquet)
    return frame


def run_row(run_dir: Path, trial: dict[str, Any], values: dict[str, Any], seed: int) -> dict[str, Any]:
    """One row of ``top_seeds.parquet`` from a finished run directory."""
    from heartlab.search import gin_literal

    test = json.loads((run_dir / runs.TEST_METRICS).read_text())
    state = runs.load_checkpoint(run_dir)
    row: dict[str, Any] = {"rank": trial["rank"], "trial_id": trial["trial_id"], "seed": seed, "run_dir": run_dir.name}
    row.update({key: gin_literal(value) if not isinstance(value, (int, float, str, bool)) else value for key, value in values.items()})
    row["best_epoch"] = int(state["epoch"])
    row.update({name: float(value) for name, value in state["metrics"].items() if name.startswith("val/")})
    row.update({name: float(value) for name, value in test.items() if name.startswith("test/") and isinstance(value, (int, float))})
    return row


def summary_metrics(frame) -> list[str]:
    """The test metrics a summary shows: the binary operating point's, or macro recall, accuracy,
    macro F1 and per-class recall (of the logit adjustment chosen on validation, where there is one)."""
    if "test/op/precision" in frame.columns:
        wanted = ["test/op/recall", "test/op/precision", "test/average_precision", "test/auroc", "test/recall_macro"]
    else:  # the decision rule's numbers (a logit adjustment chosen on validation: test/op/...) when there is one
        prefix = "test/op/" if "test/op/recall_macro" in frame.columns else "test/"
        wanted = [f"{prefix}recall_macro", f"{prefix}accuracy", f"{prefix}f1_macro"]
        wanted += sorted(c for c in frame.columns if c.startswith(f"{prefix}recall/"))
    return [name for name in wanted if name in frame.columns]


def format_summary(frame) -> str:
    """Mean ± std over seeds per rank (in %), one line per rank."""
    names = summary_metrics(frame)
    lines = ["rank  trial       seeds  " + "  ".join(f"{n.removeprefix('test/'):>18}" for n in names)]
    for (rank, trial_id), group in frame.group_by(["rank", "trial_id"], maintain_order=True):
        cells = []
        for name in names:
            mean, std = group[name].mean() * 100, (group[name].std() or 0.0) * 100
            cells.append(f"{mean:>10.2f} ± {std:5.2f}")
        lines.append(f"{rank:>4}  {trial_id:<10}  {group.height:>5}  " + "  ".join(cells))
    return "\n".join(lines)


def retrain_command(args: argparse.Namespace) -> int:
    frame = retrain_top(args.study_dir, args.top, args.seeds, args.jobs)
    print(f"\ntest metrics of the top {args.top} trials of {args.study_dir}, {args.seeds} seeds each (mean ± std, %):")
    print(format_summary(frame))
    print(f"wrote {Path(args.study_dir) / TOP_SEEDS}")
    if args.export is not None:
        written = results.export(args.study_dir, args.export)
        print(f"exported {', '.join(p.name for p in written)} to {args.export}")
    return 0


def add_retrain_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "retrain", help="train a finished study's top trials again with several seeds; test metrics as mean ± std",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="a finished study, e.g. ray_results/arrhythmia_resnet1d")
    parser.add_argument("--top", type=int, default=3, help="how many of the best trials (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per trial: fit.seed = 0 .. N-1 (default 3)")
    parser.add_argument(
        "--jobs", type=int, default=None, metavar="J",
        help="runs side by side, each with CPUs // J torch threads (default: CPUs // the study's search.cpus_per_trial)",
    )
    parser.add_argument("--export", default=None, metavar="DIR", help="then copy the study's compact results into DIR")
    parser.set_defaults(handler=retrain_command)
