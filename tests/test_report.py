"""`heartlab report`: the summary PDF from results files (synthetic results folders here): at most two
pages, every table number equal to the results files', one error and nothing written when it cannot be."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import polars as pl
import pytest

from heartlab import cli, report, results, summary_tables
from heartlab.errors import HeartlabError
from helpers import ROOT

CLASSES = ["N", "S", "V", "F", "Q"]
DATA = {"dataset": "arrhythmia", "classes": CLASSES, "train": [58000, 1780, 4630, 510, 5140],
        "valid": [14500, 445, 1160, 130, 1290], "test": [18118, 556, 1448, 162, 1608], "synthetic": False}


def write_study(folder: Path, name: str, recalls: list[float]) -> Path:
    study = folder / name
    study.mkdir(parents=True)
    record = {"settings": {"metric": "val/recall_macro_floor"}, "data": DATA, "wall_seconds": 1800.0,
              "heartlab_commit": "0123456789abcdef0123456789abcdef01234567", "command": "hypertune.py x"}
    (study / results.STUDY_FILE).write_text(json.dumps(record))
    rows = [{"trial_id": f"t{i}", "trial_dir": f"trial_t{i}", "status": "completed" if i < 3 else "stopped", "error": None,
             "ResNet1D.channels": 32, "score": 0.9 - i / 100, "best_epoch": 3, "epochs": 5, "time_s": 60.0, "fit_s": 50.0}
            for i in range(5)]
    results.trials_frame(rows, ["ResNet1D.channels"], "max").write_parquet(study / results.TRIALS_FILE)
    (study / results.BEST_CONFIG).write_text("fit.model = @ResNet1D\n")
    best = {"classes": CLASSES, "test/recall_macro": recalls[0], "test/accuracy": 0.98, "test/f1_macro": 0.9,
            **{f"test/recall/{c}": 0.95 for c in CLASSES}}
    (study / results.BEST_TEST_METRICS).write_text(json.dumps(best))
    seeds = pl.DataFrame({"rank": [1, 1, 1, 2], "trial_id": ["t0"] * 3 + ["t1"], "seed": [0, 1, 2, 0],
                          "test/recall_macro": [*recalls, 0.5], "test/accuracy": [0.98, 0.985, 0.99, 0.5],
                          "test/f1_macro": [0.9, 0.91, 0.92, 0.5], **{f"test/recall/{c}": [0.9, 0.92, 0.94, 0.5] for c in CLASSES[1:]}})
    seeds.write_parquet(study / "top_seeds.parquet")
    return study


def write_ablation(folder: Path, name: str) -> tuple[Path, pl.DataFrame]:
    ablation = folder / name
    ablation.mkdir(parents=True)
    plan = {"settings": {"report": ["val/recall_macro", "val/accuracy"], "seeds": 3},
            "variants": [{"id": "base", "row": "", "values": {}, "label": "base"},
                         {"id": "A1", "row": "A", "values": {"ResNet1D.channels": 16}, "label": "ResNet1D.channels = 16"},
                         {"id": "B1", "row": "B", "values": {"WeightedCrossEntropy.weighting": "none"}, "label": "weighting none"}],
            "base_values": {"ResNet1D.channels": "32", "WeightedCrossEntropy.weighting": "log"}, "data": DATA}
    (ablation / results.ABLATION_FILE).write_text(json.dumps(plan))
    rows = []
    for variant, values in {"base": [0.95, 0.96, 0.97], "A1": [0.93, 0.935, 0.94], "B1": [0.80, 0.90, 0.85]}.items():
        for seed, value in enumerate(values):
            rows.append({"variant": variant, "row": "" if variant == "base" else variant[0], "label": variant, "seed": seed,
                         "parameters": 1000, "status": "completed", "fit_s": 120.0, "best/val/recall_macro": value,
                         "best/val/accuracy": 0.98})
    frame = results.ablation_frame(rows, ["base", "A1", "B1"])
    frame.write_parquet(ablation / results.ABLATION_TRIALS)
    return ablation, frame


def test_report_builds_two_pages_from_the_results_files(tmp_path):
    folder = tmp_path / "results"
    write_study(folder, "arrhythmia_resnet1d", [0.95, 0.96, 0.97])
    _, frame = write_ablation(folder, "arrhythmia_ablation")
    out = tmp_path / "summary"
    assert cli.main(["report", "--results", str(folder), "--out", str(out)]) == 0
    pdf, source = out / "summary.pdf", (out / "summary.typ").read_text()
    assert pdf.read_bytes().startswith(b"%PDF") and report.page_count(source, out) <= 2

    # the study row: mean ± std over the top trial's seeds, as top_seeds.parquet holds them
    assert summary_tables.unbroken('"96.00 ± 1.00"') in source  # test/recall_macro of rank 1: 0.95, 0.96, 0.97
    assert '"5 (2)"' in source and '"30"' in source  # trials (stopped), wall minutes
    # the ablation table: every mean ± std equals the parquet's
    for variant, group in frame.group_by("variant"):
        values = group["best/val/recall_macro"].to_list()
        assert summary_tables.unbroken(f'"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"') in source, variant
    assert '"(A)", "16", ""' in source and '"base", "32", "log"' in source
    assert '[*#"weights"*]' in source and '[*#"weighting"*]' not in source  # the short column title
    # what mattered: the largest change first
    mattered = source[source.index("== What mattered"):]
    assert mattered.index("weighting none") < mattered.index("ResNet1D.channels = 16")


def test_a_floor_metric_gives_way_to_its_plain_value_and_its_failures_are_named(tmp_path):
    folder = tmp_path / "results"
    ablation, frame = write_ablation(folder, "arrhythmia_ablation")
    plan = json.loads((ablation / results.ABLATION_FILE).read_text())
    plan["settings"]["report"] = ["val/recall_macro_floor", *plan["settings"]["report"], "val/f1_macro", *(f"val/recall/{c}" for c in CLASSES)]
    (ablation / results.ABLATION_FILE).write_text(json.dumps(plan))
    below = pl.col("variant") == "B1"  # B1's accuracy under the floor: macro recall - 1
    frame = frame.with_columns(
        pl.when(below).then(pl.col("best/val/recall_macro") - 1).otherwise(pl.col("best/val/recall_macro")).alias("best/val/recall_macro_floor"),
        pl.lit(0.9).alias("best/val/f1_macro"), *(pl.lit(0.9).alias(f"best/val/recall/{c}") for c in CLASSES),
    )
    frame.write_parquet(ablation / results.ABLATION_TRIALS)
    source = report.render(report.collect(folder), tmp_path)

    shown, hidden = summary_tables.summary_metrics(plan)
    assert shown == ["val/recall_macro", "val/accuracy", "val/f1_macro", "val/recall/N", "val/recall/S", "val/recall/V"]
    assert hidden == ["val/recall_macro_floor", "val/recall/F", "val/recall/Q"]
    assert "selected by macro Se (floor)" in source and "Se F, Se Q in arrhythmia_ablation/ablation.md" in source
    mattered = source[source.index("== What mattered"):]
    assert "Accuracy under the selection's floor: weighting none (3 of 3 seeds)" in mattered
    assert "ResNet1D.channels = 16 (-2.50)" in mattered  # 0.935 vs 0.96 mean, beyond the spread


def test_a_floor_selection_metric_shows_its_plain_value_marked_under_the_floor(tmp_path):
    folder = tmp_path / "results"
    kept = write_study(folder, "arrhythmia_resnet1d", [0.95, 0.96, 0.97])
    seeds = pl.read_parquet(kept / "top_seeds.parquet")
    seeds.with_columns(pl.Series("val/recall_macro_floor", [0.95, -0.04, 0.96, 0.5]),
                       pl.Series("val/recall_macro", [0.95, 0.96, 0.96, 0.5])).write_parquet(kept / "top_seeds.parquet")
    single = write_study(folder, "arrhythmia_cnn2d", [0.9, 0.9, 0.9])
    (single / "top_seeds.parquet").unlink()
    best = json.loads((single / results.BEST_TEST_METRICS).read_text())
    (single / results.BEST_TEST_METRICS).write_text(json.dumps({**best, "score": -0.0706}))
    trials = pl.read_parquet(single / results.TRIALS_FILE)  # the best trial's plain metric beside its score
    trials.with_columns(pl.when(pl.col("rank") == 1).then(0.9294).otherwise(0.5).alias("best/val/recall_macro")).write_parquet(single / results.TRIALS_FILE)
    source = report.render(report.collect(folder), tmp_path)

    # seed 1 missed the floor: its macro recall (0.96) counts, the cell is marked; the single run likewise
    assert summary_tables.unbroken('"95.67 ± 0.58†"') in source
    assert '"92.94†"' in source and "-7.06" not in source
    assert "†: validation accuracy under the selection's floor" in source
    assert summary_tables.selection_cell([0.95, 0.97], [0.95, 0.97]) == "96.00 ± 1.41"
    assert summary_tables.selection_cell([-0.5]) == "-50.00"  # a metric without a floor is shown as it is


def test_figures_of_panel_rows_span_the_page_at_their_own_height(tmp_path):
    folder = tmp_path / "results"
    write_study(folder, "arrhythmia_resnet1d", [0.95, 0.96, 0.97])
    figures = tmp_path / "summary" / report.FIGURES
    figures.mkdir(parents=True)
    for name, (width, height) in {"importance": (920, 330), "pr_curve_ptb": (260, 215)}.items():
        (figures / f"{name}.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}pt" height="{height}pt"></svg>')
    source = report.render(report.collect(folder, figures), tmp_path / "summary")
    wide = next(line for line in source.splitlines() if "importance.svg" in line)
    narrow = next(line for line in source.splitlines() if "pr_curve_ptb.svg" in line)
    assert wide.lstrip().startswith("grid.cell(colspan: 2,") and "height:" not in wide  # 2.8 : 1, two rows of panels
    assert not narrow.lstrip().startswith("grid.cell") and f"height: {report.FIGURE_HEIGHT}" in narrow


def test_report_refuses_more_than_two_pages_and_writes_nothing(tmp_path):
    folder = tmp_path / "results"
    for i in range(30):
        write_ablation(folder, f"arrhythmia_ablation_{i:02d}")
    out = tmp_path / "summary"
    with pytest.raises(HeartlabError, match="pages, at most 2 allowed"):
        report.build(folder, out)
    assert not out.exists()


def test_report_without_results_is_one_error(tmp_path):
    assert cli.main(["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "s")]) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeartlabError, match="holds no finished study or ablation"):
        report.build(tmp_path / "empty", tmp_path / "s")


# ---- the committed summary ------------------------------------------------------------------------

SUMMARY = ROOT / "summary"
RESULTS = ROOT / "results"


def test_committed_summary_is_what_report_builds_from_the_committed_results():
    """summary/summary.typ and summary.pdf are exactly what `heartlab report` makes of results/ and
    summary/figures/ now: rebuild them (make summary) whenever a results folder changes."""
    import typst

    source = report.render(report.collect(RESULTS, SUMMARY / report.FIGURES), SUMMARY)
    assert (SUMMARY / report.SOURCE).read_text() == source, "summary/ is stale: run `make summary` and commit it"
    assert report.page_count(source, SUMMARY) <= report.MAX_PAGES
    pdf = typst.compile(source.encode(), root=str(SUMMARY.resolve()), format="pdf")
    assert (SUMMARY / report.PDF).read_bytes() == pdf


def test_committed_summary_numbers_equal_the_results_files():
    """Every ablation cell (mean ± std over seeds) and every retrained study's rank-1 test numbers in the
    committed summary, recomputed here from ablation.parquet / top_seeds.parquet with the statistics module."""
    source = (SUMMARY / report.SOURCE).read_text()
    checked = 0
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        if (folder / results.ABLATION_TRIALS).is_file():
            plan = json.loads((folder / results.ABLATION_FILE).read_text())
            frame = pl.read_parquet(folder / results.ABLATION_TRIALS)
            for metric in summary_tables.summary_metrics(plan)[0]:  # the columns the summary shows (ablation.md: all)
                for variant, group in frame.group_by("variant"):
                    values = group[f"best/{metric}"].drop_nulls().to_list()
                    scale = 100 if "loss" not in metric else 1
                    shown = f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"
                    # a table cell, or the caption's note on a column equal in every row
                    assert summary_tables.unbroken(f'"{shown}"') in source or f"was {shown} in every row" in source, (folder.name, variant, metric)
                    checked += 1
        elif (folder / "top_seeds.parquet").is_file():
            top = pl.read_parquet(folder / "top_seeds.parquet").filter(pl.col("rank") == 1)
            metric = "test/op/recall" if "test/op/precision" in top.columns else summary_tables.decision_metric("test/recall_macro", top.columns)
            values = top[metric].to_list()
            assert summary_tables.unbroken(f'"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"') in source, folder.name
            checked += 1
    assert checked > 0, "no results folder with seeds to check"


def test_readme_results_quote_the_summary():
    """Every mean ± std in the README's Results section is a number of the committed summary (so of the
    results files): README figures are not typed by hand either."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Results"):readme.index("\n## ", readme.index("## Results") + 3)]
    quoted = re.findall(r"\d+\.\d\d ± \d+\.\d\d", section)
    assert quoted, "the Results section quotes no mean ± std"
    source = (SUMMARY / report.SOURCE).read_text()
    missing = [q for q in quoted if summary_tables.unbroken(q) not in source]
    assert not missing, f"README numbers not in summary/summary.typ: {missing}"
