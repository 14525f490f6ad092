"""Reading a study without Ray: ``results.trial_history`` on Ray's ``result.json`` (restarted trials, a line
cut by a kill, lines that are not epochs), ``results.summarize_trial`` on such a file, and the trials table
written to parquet and read back, against expected values built here by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from heartlab import results

METRIC = "val/recall_macro"


def epoch_line(epoch: int, recall: float, loss: float, **extra) -> str:
    """One line as Ray's JSON logger writes it for a ``tune.report`` of heartlab's trial."""
    return json.dumps(
        {
            "epoch": epoch,
            METRIC: recall,
            "val/loss": loss,
            "train/loss": loss + 0.1,
            "lr": 0.001,
            "trial_id": "abc_00000",
            "training_iteration": epoch,
            "time_total_s": 1.5 * epoch,
            "done": False,
            **extra,
        }
    )


def write_result(trial_dir: Path, lines: list[str], final_newline: bool = True) -> Path:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "result.json").write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return trial_dir


FIRST_ATTEMPT = [epoch_line(1, 0.60, 0.50), epoch_line(2, 0.70, 0.40), epoch_line(3, 0.95, 0.20)]
SECOND_ATTEMPT = [epoch_line(1, 0.55, 0.60), epoch_line(2, 0.65, 0.45)]


def test_restarted_trial_keeps_only_the_latest_attempt(tmp_path):
    trial = write_result(tmp_path / "trial_a", FIRST_ATTEMPT + SECOND_ATTEMPT)
    rows = results.trial_history(trial)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert [row[METRIC] for row in rows] == [0.55, 0.65]
    assert [row["val/loss"] for row in rows] == [0.60, 0.45]


def test_a_trial_restarted_after_its_first_epoch_keeps_the_second_attempt(tmp_path):
    """Killed after reporting epoch 1, restarted, epoch 1 again: one row, the restart's."""
    trial = write_result(tmp_path / "trial_a", [epoch_line(1, 0.60, 0.50), epoch_line(1, 0.55, 0.60), epoch_line(2, 0.65, 0.45)])
    rows = results.trial_history(trial)
    assert [(row["epoch"], row[METRIC]) for row in rows] == [(1, 0.55), (2, 0.65)]


def test_three_attempts_keep_the_last(tmp_path):
    third = [epoch_line(1, 0.5, 0.9)]
    trial = write_result(tmp_path / "trial_a", FIRST_ATTEMPT + SECOND_ATTEMPT + third)
    rows = results.trial_history(trial)
    assert [(row["epoch"], row[METRIC]) for row in rows] == [(1, 0.5)]


def test_a_last_line_cut_by_a_kill_is_skipped(tmp_path):
    cut = epoch_line(3, 0.99, 0.1)[:25]
    assert not cut.endswith("}")
    trial = write_result(tmp_path / "trial_a", FIRST_ATTEMPT[:2] + [cut], final_newline=False)
    rows = results.trial_history(trial)
    assert [(row["epoch"], row[METRIC]) for row in rows] == [(1, 0.60), (2, 0.70)]


def test_a_restart_appended_to_a_cut_line_starts_a_new_attempt(tmp_path):
    """Ray appends: the restarted attempt's epoch 1 lands on the cut line, and must still reset the history."""
    cut = epoch_line(3, 0.99, 0.1)[:25]
    glued = [*FIRST_ATTEMPT[:2], cut + SECOND_ATTEMPT[0], SECOND_ATTEMPT[1]]
    trial = write_result(tmp_path / "trial_a", glued)
    rows = results.trial_history(trial)
    assert [(row["epoch"], row[METRIC]) for row in rows] == [(1, 0.55), (2, 0.65)]
    best = results.summarize_trial(trial, trial_id="a", values={}, metric=METRIC, mode="max", status="completed")
    assert best["best_epoch"] == 2 and best["score"] == 0.65


def test_blank_lines_and_lines_without_epoch_are_skipped(tmp_path):
    lines = [
        "",
        FIRST_ATTEMPT[0],
        "   ",
        json.dumps({"trial_id": "abc_00000", "done": True}),  # e.g. a final report without an epoch
        FIRST_ATTEMPT[1],
        "",
        json.dumps({"epoch_count": 1, METRIC: 0.0}),
        FIRST_ATTEMPT[2],
        "",
    ]
    trial = write_result(tmp_path / "trial_a", lines)
    rows = results.trial_history(trial)
    assert [(row["epoch"], row[METRIC]) for row in rows] == [(1, 0.60), (2, 0.70), (3, 0.95)]


def test_no_result_file_gives_no_history(tmp_path):
    (tmp_path / "trial_a").mkdir()
    assert results.trial_history(tmp_path / "trial_a") == []


def summarize(trial_dir: Path, mode: str, metric: str = METRIC) -> dict:
    return results.summarize_trial(
        trial_dir, trial_id="abc_00000", values={"ResNet1D.channels": 16}, metric=metric, mode=mode,
        status=results.STATUS_COMPLETED,
    )


def test_summary_of_a_restarted_trial_uses_the_latest_attempt(tmp_path):
    """The first attempt reached recall 0.95 at epoch 3; only the second attempt (0.55, 0.65) counts."""
    trial = write_result(tmp_path / "trial_a", FIRST_ATTEMPT + SECOND_ATTEMPT + ["{\"epoch\": 3, \"val/rec"])
    row = summarize(trial, "max")
    assert row["best_epoch"] == 2
    assert row["score"] == 0.65
    assert row["epochs"] == 2
    assert row["time_s"] == 3.0
    assert row[f"best/{METRIC}"] == 0.65
    assert row["best/val/loss"] == 0.45
    assert row[f"final/{METRIC}"] == 0.65
    assert row["ResNet1D.channels"] == 16

    by_loss = summarize(trial, "min", metric="val/loss")
    assert (by_loss["best_epoch"], by_loss["score"]) == (2, 0.45)


def test_summary_picks_the_first_of_equal_values(tmp_path):
    lines = [epoch_line(1, 0.5, 0.3), epoch_line(2, 0.8, 0.2), epoch_line(3, 0.8, 0.2), epoch_line(4, 0.7, 0.5)]
    trial = write_result(tmp_path / "trial_a", lines)
    assert summarize(trial, "max")["best_epoch"] == 2
    assert summarize(trial, "min", metric="val/loss")["best_epoch"] == 2
    assert summarize(trial, "max")["final/val/loss"] == 0.5


# ---- trials.parquet: written by trials_frame, read back by read_trials ----

KEY = "ResNet1D.channels"  # int in some trials, float in others: one float column
NAME = "WeightedCrossEntropy.weighting"


def trial_row(trial_id: str, status: str, score: float | None, channels, weighting: str, error: str | None = None) -> dict:
    return {
        "trial_id": trial_id,
        "trial_dir": f"trial_{trial_id}",
        "status": status,
        "error": error,
        KEY: channels,
        NAME: weighting,
        "best_epoch": None if score is None else 2,
        "epochs": 0 if score is None else 3,
        "time_s": None if score is None else 4.5,
        "fit_s": None if score is None else 4.0,
        "score": score,
        **({} if score is None else {f"best/{METRIC}": score, f"final/{METRIC}": score - 0.01}),
    }


ROWS = [
    trial_row("t1", results.STATUS_COMPLETED, 0.70, 16, "none"),
    trial_row("t2", results.STATUS_ERROR, 0.99, 32.0, "inverse", error="NonFiniteLossError: train/loss became nan"),
    trial_row("t3", results.STATUS_STOPPED, 0.60, 64, "none"),
    trial_row("t4", results.STATUS_COMPLETED, 0.90, 24.5, "sqrt_inverse"),
    trial_row("t5", results.STATUS_ERROR, None, 16, "inverse", error="RuntimeError: boom"),
    trial_row("t6", results.STATUS_COMPLETED, 0.80, 8, "none"),
]


@pytest.mark.parametrize(
    "mode, ranked",
    [
        ("max", ["t4", "t6", "t1", "t3"]),  # highest score first
        ("min", ["t3", "t1", "t6", "t4"]),  # lowest score first
    ],
)
def test_trials_table_round_trip(tmp_path, mode, ranked):
    frame = results.trials_frame(ROWS, [KEY, NAME], mode)
    frame.write_parquet(tmp_path / results.TRIALS_FILE)
    table = results.read_trials(tmp_path)

    unranked = ["t2", "t5"]  # the errored trials (one with a score), in their original order, last
    assert table["trial_id"].to_list() == ranked + unranked
    assert table["rank"].to_list() == [1, 2, 3, 4, None, None]
    assert table.schema["rank"] == pl.Int64

    by_id = {row["trial_id"]: row for row in ROWS}
    assert table.schema[KEY] == pl.Float64
    assert table[KEY].to_list() == [float(by_id[t][KEY]) for t in ranked + unranked]
    assert table[NAME].to_list() == [by_id[t][NAME] for t in ranked + unranked]
    assert table["score"].to_list() == [by_id[t]["score"] for t in ranked + unranked]
    assert table["status"].to_list() == [by_id[t]["status"] for t in ranked + unranked]
    assert table["error"].to_list() == [by_id[t]["error"] for t in ranked + unranked]
    assert table[f"best/{METRIC}"].to_list()[:4] == [by_id[t]["score"] for t in ranked]
    assert table[f"best/{METRIC}"].to_list()[5] is None
    final = table[f"final/{METRIC}"].to_list()
    assert all(math.isclose(final[i], by_id[t]["score"] - 0.01) for i, t in enumerate(ranked))
    assert table.columns[:5] == ["rank", "trial_id", "trial_dir", "status", "error"]
    assert table.columns.index(f"best/{METRIC}") < table.columns.index(f"final/{METRIC}")


def test_read_trials_without_a_table_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume"):
        results.read_trials(tmp_path)
