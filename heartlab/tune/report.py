"""After a study: the ranked table, ``trials.parquet``, ``history.parquet`` (every trial's epochs), ``best.gin``
and ``best_test_metrics.json``.

The test split is evaluated here, once, with the best trial's checkpoint; it played no part in selection.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from heartlab import results
from heartlab.files import write_atomic, write_json_atomic, write_text_atomic
from heartlab.provenance import add_session
from heartlab.search import binding_lines, to_python
from heartlab.tune.prepare import Study


def finish(study: Study, data, grid, wall: float, resume: str) -> int:
    """Summarise a finished study (exit code 0, or 1 when no trial has a result); report an interrupted one
    (nothing written, exit code 130, ``resume`` = the command that continues it)."""
    settings = study.settings
    finished = grid.num_terminated + grid.num_errors
    complete = finished == len(grid) and len(grid) >= study.expected_trials
    study_file = study.path / results.STUDY_FILE
    write_json_atomic(study_file, add_session(results.read_json(study_file), wall, complete))
    if not complete:
        print(
            f"\nstudy interrupted: {finished} of {study.expected_trials} trials finished. Continue it with:\n  {resume}",
            file=sys.stderr,
        )
        return 130

    rows = [trial_row(study, result) for result in grid]
    frame = results.trials_frame(rows, study.space.keys, settings.mode)
    write_atomic(study.path / results.TRIALS_FILE, frame.write_parquet)
    write_atomic(study.path / results.HISTORY_FILE, results.read_history(study.path).write_parquet)
    print()
    print(format_table(frame, study))
    fit_total = sum(r["fit_s"] or 0.0 for r in rows)
    print(
        f"\n{len(rows)} trials in {wall:.1f} s wall time; {fit_total:.1f} s inside train.fit "
        f"(summed over trials); results in {study.path}"
    )
    errored = frame.filter(frame["status"] == results.STATUS_ERROR)
    if errored.height:
        print(f"\n{errored.height} trial(s) failed:")
        for row in errored.iter_rows(named=True):
            print(f"  {row['trial_dir']}: {row['error']}")

    ranked = frame.filter(frame["rank"] == 1)
    if ranked.height == 0:
        print("\nno trial produced a validation result: no best.gin written", file=sys.stderr)
        return 1
    best = ranked.row(0, named=True)
    best_dir = study.path / best["trial_dir"]
    best_values = next(r for r in rows if r["trial_id"] == best["trial_id"])
    best_values = {key: best_values[key] for key in study.space.keys}
    write_text_atomic(study.path / results.BEST_CONFIG, best_config(study, best, best_values))

    from heartlab import runs

    test_metrics = runs.evaluate_run(best_dir, data)
    payload = {
        "trial_id": best["trial_id"],
        "trial_dir": str(best_dir),
        "metric": settings.metric,
        "mode": settings.mode,
        "score": best["score"],
        "hyperparameters": best_values,
        **test_metrics,
    }
    write_json_atomic(study.path / results.BEST_TEST_METRICS, payload)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in test_metrics.items() if k.startswith("test/") and isinstance(v, float))
    print(f"\nbest: {best['trial_dir']} ({settings.metric} {best['score']:.4f}, epoch {best['best_epoch']})")
    print(f"test split, best checkpoint, evaluated once: {shown}")
    from heartlab.metrics import aami_table

    print(aami_table(test_metrics, tuple(test_metrics["classes"]), ci=test_metrics.get("ci95")))
    print(f"train it again: heartlab train {study.path / results.BEST_CONFIG}")
    return 0


def trial_row(study: Study, result) -> dict[str, Any]:
    """One row of ``trials.parquet`` from Ray's result of a trial and the files in its directory."""
    names = study.space.param_names()
    trial_dir = study.path / Path(result.path).name
    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id") or trial_dir.name.removeprefix("trial_"))
    values = {names[n]: to_python(v) for n, v in (result.config or {}).items() if n in names}
    error = None
    if result.error is not None:
        status, error = results.STATUS_ERROR, error_message(result.error)
    elif (trial_dir / results.FIT_RESULT).is_file():
        status = results.STATUS_COMPLETED
    else:
        status = results.STATUS_STOPPED  # terminated without train.fit returning: the scheduler stopped it
    return results.summarize_trial(
        trial_dir, trial_id=trial_id, values=values, metric=study.settings.metric, mode=study.settings.mode,
        status=status, error=error,
    )


def error_message(error: BaseException) -> str:
    """One line for a trial's exception: the original exception's type and message, not Ray's wrapper."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def resume_command(study: Study, address: str | None) -> str:
    """The complete command that continues ``study``: same config, name, storage, cluster and bindings."""
    words = ["python", "hypertune.py", str(study.config_path), "--resume", "--name", study.name, "--storage", str(study.storage)]
    if address:
        words += ["--address", address]
    for binding in study.bindings:
        words += ["--bind", binding]
    return shlex.join(words)


def best_config(study: Study, best: dict[str, Any], values: dict[str, Any]) -> str:
    """``best.gin``: the study config (includes inlined, study bindings) and the best trial's values."""
    settings = study.settings
    header = [
        f"# Best trial of study {study.name!r} ({study.path}): {best['trial_dir']},",
        f"# {settings.metric} = {best['score']:.4f} at epoch {best['best_epoch']} "
        f"({best['status']}, {best['epochs']} epochs run).",
        f"# Train it again:  heartlab train {study.path / results.BEST_CONFIG}",
        f"# Below: {study.config_path} with its includes inlined and the study's bindings, then the best",
        "# trial's sampled values, which take precedence. The search section is inert under `heartlab train`.",
        "",
    ]
    footer = ["", f"# ---- best trial {best['trial_id']}: sampled values ----", *binding_lines(values), ""]
    return "\n".join(header) + study.study_config.text + "\n".join(footer)


def format_table(frame, study: Study) -> str:
    """The ranked trials as aligned text: rank, trial, status, metric, searched values, epochs, time."""
    metric = study.settings.metric
    keys = study.space.keys
    short = _short_names(keys)
    header = ["rank", "trial", "status", metric, *short.values(), "epochs", "time"]
    lines = [header]
    for row in frame.iter_rows(named=True):
        lines.append(
            [
                str(row["rank"]) if row["rank"] is not None else "-",
                row["trial_dir"],
                row["status"],
                _fmt(row["score"]),
                *(_fmt(row[k]) for k in keys),
                str(row["epochs"]),
                f"{row['time_s']:.1f}s" if row["time_s"] is not None else "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {0, 3, len(header) - 2, len(header) - 1} | {4 + i for i in range(len(keys))}
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )


def _short_names(keys: list[str]) -> dict[str, str]:
    def short(key: str) -> str:
        scope, _, rest = key.rpartition("/")
        tail = ".".join(rest.split(".")[-2:])
        return f"{scope}/{tail}" if scope else tail

    names = {key: short(key) for key in keys}
    if len(set(names.values())) < len(names):
        return {key: key for key in keys}
    return names


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
