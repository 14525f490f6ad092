"""Reading a study (``<storage>/<experiment>/``) into polars DataFrames, without Ray.

A study directory holds one folder per trial (Ray's ``params.json``, ``result.json``, ``progress.csv``,
``error.txt`` when it failed; heartlab's ``config.gin``, ``best.pt``, TensorBoard events and
``fit_result.json`` when training ran to its end) plus what :mod:`heartlab.tune` writes at the end:
``study.json``, ``study.gin``, ``trials.parquet``, ``best.gin`` and ``best_test_metrics.json``.

* :func:`read_trials` -- one row per trial (``trials.parquet``).
* :func:`read_history` -- one row per trial and epoch, from every trial's ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from heartlab.runs import FIT_RESULT

STUDY_FILE = "study.json"  # the study's settings: metric, mode, parameter names, config, bindings
STUDY_CONFIG = "study.gin"  # the config every trial parses before its sampled bindings
TRIALS_FILE = "trials.parquet"
BEST_CONFIG = "best.gin"
BEST_TEST_METRICS = "best_test_metrics.json"
HISTORY_FILE = "history.parquet"  # every trial's per-epoch metrics (read_history), written after a study
ABLATION_FILE = "ablation.json"  # an ablation's plan: variants, seeds, metrics, parameters per variant
ABLATION_CONFIG = "ablation.gin"  # the config every ablation trial parses before its variant's bindings
ABLATION_TRIALS = "ablation.parquet"  # one row per trial (variant x seed)
ABLATION_TABLE = "ablation.md"  # the Table-3-style summary: mean +- std over seeds per variant

STATUS_COMPLETED = "completed"  # train.fit ran to its end (all epochs, or its own patience stop)
STATUS_STOPPED = "stopped"  # stopped early by the scheduler (ASHA)
STATUS_ERROR = "error"  # raised (e.g. NonFiniteLossError); see the error column


def read_study_settings(study_dir: str | Path) -> dict[str, Any]:
    """The ``study.json`` heartlab writes when a study starts."""
    return json.loads((Path(study_dir) / STUDY_FILE).read_text())


def read_trials(study_dir: str | Path) -> pl.DataFrame:
    """One row per trial of a finished study, ranked (``rank`` 1 = best; errored trials have none).

    Columns: ``rank, trial_id, status, error``, one column per searched gin key (``ResNet1D.channels``),
    ``best_epoch, epochs, time_s, fit_s``, then ``best/<metric>`` (the best epoch's metrics) and
    ``final/<metric>`` (the last epoch's) for every validation metric, ``train/loss`` and ``lr``.
    """
    path = Path(study_dir) / TRIALS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trials table (the study has not finished; resume it with --resume)")
    return pl.read_parquet(path)


def trial_history(trial_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch results a trial reported, from its ``result.json``.

    Only the latest attempt is kept: a trial restarted after an interruption starts again at epoch 1 and
    Ray appends to the same file, so an epoch that does not follow the previous one starts a new attempt.
    A record cut short by a killed driver is skipped; when Ray then appends the next record to that cut
    line, the next record is still read.
    """
    path = Path(trial_dir) / "result.json"
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for record in _json_records(path.read_text()):
        if "epoch" not in record:
            continue
        if rows and record["epoch"] <= rows[-1]["epoch"]:
            rows = []
        rows.append(record)
    return rows


def _json_records(text: str):
    """Every JSON object in ``text``, one or more per line; fragments that do not parse are skipped."""
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        start = line.find("{")
        while start != -1:
            try:
                record, end = decoder.raw_decode(line, start)
            except json.JSONDecodeError:
                start = line.find("{", start + 1)
                continue
            if isinstance(record, dict):
                yield record
            start = line.find("{", end)


def read_history(study_dir: str | Path) -> pl.DataFrame:
    """One row per trial and epoch: ``trial_id, epoch``, the metrics train.fit reported, ``time_total_s``."""
    frames = []
    for trial_dir in sorted(p for p in Path(study_dir).iterdir() if (p / "result.json").is_file()):
        rows = trial_history(trial_dir)
        if not rows:
            continue
        keep = [
            {
                "trial_id": row.get("trial_id", trial_dir.name),
                "epoch": int(row["epoch"]),
                **{k: float(v) for k, v in row.items() if _is_metric(k, v)},
                "time_total_s": float(row.get("time_total_s", float("nan"))),
            }
            for row in rows
        ]
        frames.append(pl.DataFrame(keep))
    if not frames:
        return pl.DataFrame({"trial_id": [], "epoch": []}, schema={"trial_id": pl.String, "epoch": pl.Int64})
    return pl.concat(frames, how="diagonal_relaxed")


def _is_metric(name: str, value: Any) -> bool:
    return (name.startswith(("val/", "train/")) or name == "lr") and isinstance(value, (int, float))


def summarize_trial(
    trial_dir: str | Path,
    *,
    trial_id: str,
    values: dict[str, Any],
    metric: str,
    mode: str,
    status: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One row of ``trials.parquet`` for a trial: its sampled values, best and final metrics, time."""
    trial_dir = Path(trial_dir)
    history = trial_history(trial_dir)
    fit_result = _read_json(trial_dir / FIT_RESULT)
    row: dict[str, Any] = {"trial_id": trial_id, "trial_dir": trial_dir.name, "status": status, "error": error}
    row.update(values)
    scored = [r for r in history if isinstance(r.get(metric), (int, float))]
    best = None
    if scored:
        pick = max if mode == "max" else min
        best = pick(scored, key=lambda r: r[metric])  # the first of equal values, like train.fit
    last = history[-1] if history else None
    row["best_epoch"] = int(best["epoch"]) if best else None
    row["epochs"] = int(last["epoch"]) if last else 0
    row["time_s"] = float(last["time_total_s"]) if last and "time_total_s" in last else None
    if fit_result is not None:
        row["fit_s"] = float(fit_result.get("fit_seconds", float("nan")))
    elif last is not None and "fit_seconds" in last:
        row["fit_s"] = float(last["fit_seconds"])
    else:
        row["fit_s"] = None
    row["score"] = float(best[metric]) if best else None
    for prefix, source in (("best/", best), ("final/", last)):
        for name, value in (source or {}).items():
            if _is_metric(name, value):
                row[f"{prefix}{name}"] = float(value)
    return row


def trials_frame(rows: list[dict[str, Any]], keys: list[str], mode: str) -> pl.DataFrame:
    """The trials table: rows ranked by ``score`` (best first; trials without a score last, unranked)."""
    rows = [dict(r) for r in rows]
    for key in keys:  # values polars cannot put in one column (mixed types, lists) become gin text
        kinds = {type(r.get(key)) for r in rows if r.get(key) is not None}
        if len(kinds) > 1 and kinds <= {int, float}:
            for r in rows:
                if r.get(key) is not None:
                    r[key] = float(r[key])
        elif len(kinds) > 1 or not kinds <= {int, float, str, bool}:
            from heartlab.search import gin_literal

            for r in rows:
                if r.get(key) is not None:
                    r[key] = gin_literal(r[key])
    scored = sorted(
        (r for r in rows if r.get("score") is not None and r["status"] != STATUS_ERROR),
        key=lambda r: r["score"],
        reverse=mode == "max",
    )
    for rank, r in enumerate(scored, start=1):
        r["rank"] = rank
    rest = [r for r in rows if r not in scored]
    for r in rest:
        r["rank"] = None
    ordered = scored + rest
    columns = ["rank", "trial_id", "trial_dir", "status", "error", *keys, "score", "best_epoch", "epochs", "time_s", "fit_s"]
    metric_columns = sorted({c for r in ordered for c in r if c.startswith(("best/", "final/"))}, key=_metric_order)
    frame = pl.DataFrame(ordered, infer_schema_length=None)
    for column in columns + metric_columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(column))
    return frame.select(columns + metric_columns).with_columns(pl.col("rank").cast(pl.Int64))


COMPACT_FILES = (  # what a results folder keeps of a study or an ablation (no checkpoints, event files)
    STUDY_FILE, TRIALS_FILE, HISTORY_FILE, BEST_CONFIG, BEST_TEST_METRICS, "top_seeds.parquet",
    ABLATION_FILE, ABLATION_TRIALS, ABLATION_TABLE,
)


def export(study_dir: str | Path, to: str | Path) -> list[Path]:
    """Copy the compact files of a finished study or ablation (:data:`COMPACT_FILES` that exist) into the
    folder ``to`` (created); returns the files written. Checkpoints and event files stay behind."""
    import shutil

    study_dir, to = Path(study_dir), Path(to)
    if to.resolve() == study_dir.resolve():
        raise ValueError(f"{to}: exporting a study into its own folder")
    to.mkdir(parents=True, exist_ok=True)
    written = []
    for name in COMPACT_FILES:
        if (study_dir / name).is_file():
            shutil.copy2(study_dir / name, to / name)
            written.append(to / name)
    return written


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file heartlab wrote (study.json, ablation.json, test metrics)."""
    return json.loads(Path(path).read_text())


def ablation_frame(rows: list[dict[str, Any]], order: list[str]) -> pl.DataFrame:
    """``ablation.parquet``: one row per trial, ordered by variant (as planned) and seed. Columns: ``variant,
    row, label, seed, parameters, trial_id, trial_dir, status, error, score, best_epoch, epochs, time_s,
    fit_s``, then ``best/<metric>`` and ``final/<metric>`` of every validation metric."""
    position = {variant: i for i, variant in enumerate(order)}
    rows = sorted(rows, key=lambda r: (position[r["variant"]], r["seed"]))
    columns = [
        "variant", "row", "label", "seed", "parameters", "trial_id", "trial_dir", "status", "error", "score",
        "best_epoch", "epochs", "time_s", "fit_s",
    ]
    metric_columns = sorted({c for r in rows for c in r if c.startswith(("best/", "final/"))}, key=_metric_order)
    frame = pl.DataFrame([{c: r.get(c) for c in columns + metric_columns} for r in rows], infer_schema_length=None)
    return frame.with_columns(pl.col("error").cast(pl.String))


def ablation_summary(frame: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """Per variant (in the frame's order): trials with a result (``n``), parameters, mean training minutes,
    and ``<metric>/mean``, ``<metric>/std`` (sample standard deviation over seeds; 0 for one seed) of the
    best-epoch validation ``metrics``."""
    done = frame.filter(pl.col("status") != STATUS_ERROR)
    aggregations = [pl.len().alias("n"), pl.col("parameters").first(), (pl.col("fit_s").mean() / 60).alias("minutes")]
    for metric in metrics:
        column = pl.col(f"best/{metric}")
        aggregations += [column.mean().alias(f"{metric}/mean"), column.std(ddof=1).fill_null(0.0).alias(f"{metric}/std")]
    order = frame.select("variant", "row", "label").unique(maintain_order=True)
    return order.join(done.group_by("variant", maintain_order=True).agg(aggregations), on="variant", how="left")


def ablation_table(frame: pl.DataFrame, plan: dict[str, Any], short: bool = False) -> tuple[list[str], list[list[str]]]:
    """The Table-3-style table of an ablation as text cells: ``(header, rows)``. The base row shows its
    value of every changed key; each row's variants show only their changed cells (blank = as base), then
    parameters, training minutes, each reported metric as mean ± std over seeds (ratios in %) and the
    number of seeds with a result. Numbers show 3 significant digits. ``short`` names each key column by
    its parameter alone (``lr`` for ``torch.optim.AdamW.lr``) where that name is unique in the table."""
    metrics = list(plan["settings"]["report"])
    summary = {row["variant"]: row for row in ablation_summary(frame, metrics).iter_rows(named=True)}
    keys = list(dict.fromkeys(key for v in plan["variants"] for key in v["values"]))
    base_values = plan.get("base_values", {})
    names = [key.rpartition("/")[2] for key in keys]
    if short:
        last = [name.rpartition(".")[2] for name in names]
        names = [part if last.count(part) == 1 else name for part, name in zip(last, names)]
    header = ["", *names, "params", "train min", *[_metric_header(m) for m in metrics], "seeds"]
    rows = []
    previous_row = None
    for variant in plan["variants"]:
        stats = summary.get(variant["id"], {})
        if variant["row"] == "":
            name, cells = "base", [_cell(base_values.get(k, "")) for k in keys]
        else:
            name = f"({variant['row']})" if variant["row"] != previous_row else ""
            cells = [_cell(variant["values"][k]) if k in variant["values"] else "" for k in keys]
        previous_row = variant["row"]
        parameters, minutes = stats.get("parameters"), stats.get("minutes")
        rows.append([
            name, *cells, f"{parameters:,}" if parameters is not None else "-", f"{minutes:.2f}" if minutes is not None else "-",
            *[_mean_std(stats.get(f"{m}/mean"), stats.get(f"{m}/std"), m) for m in metrics], str(stats.get("n") or 0),
        ])
    return header, rows


def ablation_markdown(frame: pl.DataFrame, plan: dict[str, Any]) -> str:
    """:func:`ablation_table` as a Markdown table."""
    header, rows = ablation_table(frame, plan)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_header(metric: str) -> str:
    name = metric.removeprefix("val/")
    return f"{name} (%)" if _is_ratio(metric) else name


def _is_ratio(metric: str) -> bool:
    return "loss" not in metric and "threshold" not in metric


def _mean_std(mean: float | None, std: float | None, metric: str) -> str:
    if mean is None:
        return "-"
    scale = 100.0 if _is_ratio(metric) else 1.0
    return f"{mean * scale:.2f} ± {(std or 0.0) * scale:.2f}"


def _cell(value: Any) -> str:
    """A changed value as the table shows it: floats (also gin text of one, as base values are) with 3
    significant digits, references without gin's ``@``."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value.removeprefix("@")
        return f"{number:.3g}" if any(c in value for c in ".eE") else value
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _metric_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith("best/") else 1, name)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
