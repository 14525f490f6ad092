"""``heartlab report``: ``summary/summary.pdf`` (2 A4 pages at most), built with typst from the results files.

Every number in the summary is read from a results folder (``results/<name>/``: ``study.json``,
``trials.parquet``, ``best_test_metrics.json``, ``top_seeds.parquet``, ``ablation.json``,
``ablation.parquet``); none is typed by hand. The figures are those ``notebooks/03_hypertune_results.ipynb``
saved into ``summary/figures/`` (each one that exists is included). The typst source is written beside the
PDF (``summary/summary.typ``) and committed with it.

:func:`collect` reads the results, :func:`render` writes the typst source (its tables and sentences:
:mod:`heartlab.summary_tables`), :func:`build` compiles it and refuses a summary longer than :data:`MAX_PAGES`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heartlab import results
from heartlab.errors import HeartlabError
from heartlab.summary_tables import PROTOCOLS, ablation_section, inline, studies_table, text, what_mattered

MAX_PAGES = 2
SOURCE = "summary.typ"
PDF = "summary.pdf"
FIGURES = "figures"
# the figures the summary shows when notebook 03 wrote them, with their captions, in this order (the two
# single panels side by side, then the rows of one panel per study)
FIGURE_CAPTIONS = {
    "per_class_recall": "Test recall per class of each MIT-BIH study's best model (its decision rule); hatched: inter-patient.",
    "pr_curve_ptb": "PTB: precision-recall curve of the best model on the test split; the dot is the threshold chosen on validation.",
    "importance": "Which hyperparameters mattered: the share of each study's metric variance that one hyperparameter explains alone (fANOVA main effect over its trials, their count in brackets); grey: not searched.",
    "learning_curves": "Validation metric per epoch of every trial, a colour per model family: kept (ran to the end, solid) and stopped by ASHA (dashed); open circles: epochs under the accuracy floor.",
}
FIGURE_HEIGHT = "4.0cm"  # every figure of half the width fits this height: the summary stays at 2 pages
WIDE_FIGURE = 2.6  # width / height above which a figure spans both columns


@dataclass
class StudyResult:
    """One study folder."""

    name: str
    dataset: str
    model: str
    metric: str
    trials: int
    stopped: int
    wall_seconds: float | None
    record: dict[str, Any]
    best_test: dict[str, Any]
    top_seeds: Any = None  # polars DataFrame of top_seeds.parquet, or None
    best_trial: dict[str, Any] | None = None  # the rank-1 row of trials.parquet


@dataclass
class AblationResult:
    """One ablation folder."""

    name: str
    dataset: str
    plan: dict[str, Any]
    frame: Any  # polars DataFrame of ablation.parquet


@dataclass
class Collected:
    """Everything the summary shows."""

    studies: list[StudyResult] = field(default_factory=list)
    ablations: list[AblationResult] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def dataset_of(name: str, record: dict[str, Any]) -> str:
    """The dataset of a results folder: recorded in its json, else the longest dataset name it starts with."""
    from heartlab.data import DATASETS

    recorded = (record.get("data") or {}).get("dataset")
    if recorded:
        return recorded
    matches = [d for d in DATASETS if name == d or name.startswith(d + "_")]
    if not matches:
        raise HeartlabError(f"results/{name}: cannot tell its dataset (no data in its json, no dataset name prefix)")
    return max(matches, key=len)


def model_of(config_text: str) -> str:
    """The model class a config binds (``fit.model = @ResNet1D``; the last binding wins)."""
    found = re.findall(r"^fit\.model\s*=\s*@([\w.]+)", config_text, flags=re.MULTILINE)
    return found[-1].rpartition(".")[2] if found else "?"


def collect(results_dir: str | Path, figures_dir: str | Path | None = None) -> Collected:
    """Read every study and ablation folder under ``results_dir`` and the figures in ``figures_dir``."""
    import polars as pl

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise HeartlabError(f"{results_dir}: no results folder (studies write there with --export)")
    out = Collected()
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        if (folder / results.ABLATION_TRIALS).is_file() and (folder / results.ABLATION_FILE).is_file():
            plan = results.read_json(folder / results.ABLATION_FILE)
            frame = pl.read_parquet(folder / results.ABLATION_TRIALS)
            out.ablations.append(AblationResult(folder.name, dataset_of(folder.name, plan), plan, frame))
        elif (folder / results.STUDY_FILE).is_file() and (folder / results.TRIALS_FILE).is_file():
            record = results.read_study_settings(folder)
            trials = results.read_trials(folder)
            best_config = (folder / results.BEST_CONFIG).read_text() if (folder / results.BEST_CONFIG).is_file() else ""
            best_test = results.read_json(folder / results.BEST_TEST_METRICS) if (folder / results.BEST_TEST_METRICS).is_file() else {}
            top = folder / "top_seeds.parquet"
            out.studies.append(StudyResult(
                name=folder.name, dataset=dataset_of(folder.name, record), model=model_of(best_config),
                metric=record["settings"]["metric"], trials=trials.height,
                stopped=trials.filter(pl.col("status") == results.STATUS_STOPPED).height,
                wall_seconds=record.get("wall_seconds"), record=record, best_test=best_test,
                top_seeds=pl.read_parquet(top) if top.is_file() else None,
                best_trial=next(trials.filter(pl.col("rank") == 1).iter_rows(named=True), None),
            ))
    if figures_dir is not None and Path(figures_dir).is_dir():
        out.figures = [Path(figures_dir) / f"{name}.svg" for name in FIGURE_CAPTIONS if (Path(figures_dir) / f"{name}.svg").is_file()]
    if not out.studies and not out.ablations:
        raise HeartlabError(f"{results_dir}: holds no finished study or ablation to report")
    return out


# ---- typst ------------------------------------------------------------------------------------------


def aspect_ratio(svg: Path) -> float:
    """Width / height of an SVG figure, from the size attributes of its root element (1 when absent)."""
    head = svg.read_text(errors="replace")[:2000]
    width = re.search(r'<svg[^>]*\swidth="([\d.]+)', head)
    height = re.search(r'<svg[^>]*\sheight="([\d.]+)', head)
    return float(width.group(1)) / float(height.group(1)) if width and height and float(height.group(1)) > 0 else 1.0


def built_on(collected: Collected) -> str:
    """The date of the newest result (its ``finished`` time), so that the same results give the same source."""
    stamps = [str(item.record.get("finished") or item.record.get("started") or "") for item in collected.studies]
    stamps += [str(item.plan.get("finished") or item.plan.get("started") or "") for item in collected.ablations]
    stamps = [stamp[:10] for stamp in stamps if stamp]
    return max(stamps) if stamps else "an unknown date"


def render(collected: Collected, source_dir: Path) -> str:
    """The typst source of the summary."""
    commits = sorted({str(s.record.get("heartlab_commit")) for s in collected.studies if s.record.get("heartlab_commit")})
    lines = [
        '#set document(title: "heartlab summary", date: none)',  # no build time inside: same results, same PDF
        '#set page(paper: "a4", margin: (x: 1.4cm, y: 1.3cm))',
        '#set text(size: 8.5pt)',
        "#set par(justify: true, leading: 0.5em)",
        "#set heading(numbering: none)",
        "#show heading: set text(size: 10pt)",
        "#show table: set text(size: 7.5pt)",
        "#show figure.caption: set text(size: 7pt)",
        "",
        "#align(center, text(size: 14pt, weight: \"bold\")[heartlab: which model finds the most sick beats?])",
        f"#align(center)[{inline(f'Built by heartlab report from {len(collected.studies)} studies and {len(collected.ablations)} ablations on ' + built_on(collected) + ('; heartlab ' + ', '.join(c[:10] for c in commits) if commits else ''))}]",
        "",
        "== Question and criterion",
        "Single heartbeats (187 samples at 125 Hz) are classified as normal or abnormal (PTB) and as N, S, V, F, Q "
        "(MIT-BIH, AAMI classes). Recall comes first: a missed sick beat is the costly error. Models are selected on "
        "validation only, by recall-first metrics that still count false alarms: macro recall under an accuracy floor, "
        "macro F2, or (PTB) the precision at the threshold that reaches 99 % abnormal recall on validation. The test "
        "split is read once per final model.",
        "",
        "== Data and protocols",
    ]
    datasets = {}
    for item in [*collected.studies, *collected.ablations]:
        data = item.record.get("data") if isinstance(item, StudyResult) else item.plan.get("data")
        if data and item.dataset not in datasets:
            datasets[item.dataset] = data
    for dataset, data in datasets.items():
        counts = ", ".join(
            f"{split} {sum(data[split]):,} ({'/'.join(f'{n:,}' for n in data[split])})" for split in ("train", "valid", "test")
        )
        lines.append(f"- {inline(PROTOCOLS.get(dataset, dataset))}: {inline(counts + ' beats of ' + '/'.join(data['classes']))}")
    lines += ["", "== Studies (test split, best trial by validation)", studies_table(collected.studies) if collected.studies else "", ""]
    for ablation in collected.ablations:
        lines += ablation_section(ablation)
    if collected.figures:
        cells = []
        for figure in collected.figures:
            relative = Path(figure).resolve().relative_to(source_dir.resolve()) if Path(figure).resolve().is_relative_to(source_dir.resolve()) else figure
            wide = aspect_ratio(Path(figure)) > WIDE_FIGURE  # rows of panels: the whole width, at their own height
            height = "" if wide else f", height: {FIGURE_HEIGHT}, fit: \"contain\""
            image = f"image({text(relative.as_posix())}, width: 100%{height})"
            cell = f"figure({image}, caption: [{inline(FIGURE_CAPTIONS[Path(figure).stem])}])"
            cells.append(f"  grid.cell(colspan: 2, {cell})" if wide else f"  {cell}")
        lines += ["== Figures", "#grid(columns: (1fr, 1fr), gutter: 8pt,", ",\n".join(cells), ")", ""]
    sentences = [sentence for ablation in collected.ablations if (sentence := what_mattered(ablation))]
    lines.append("== What mattered")
    lines += [f"- {inline(sentence)}" for sentence in sentences] or ["No ablation finished yet."]
    lines += [
        "",
        "== Limits",
        "The PTB numbers come from a 2,322-beat sample of the real PTB Diagnostic data, so their intervals are wide. "
        "The random MIT-BIH split puts beats of the same patient in training and test, which flatters every model; "
        "the inter-patient protocol shows what is left for patients never seen. Each study is one random search of "
        "a few dozen trials on a 2-core CPU.",
    ]
    return "\n".join(lines) + "\n"


def page_count(source: str, root: Path) -> int:
    import typst

    pages = typst.compile(source.encode(), root=str(root), format="svg")  # one SVG per page; a lone page alone
    return 1 if isinstance(pages, (bytes, str)) else len(pages)


def build(results_dir: str | Path = "results", out_dir: str | Path = "summary") -> Path:
    """Write ``<out_dir>/summary.typ`` and compile ``<out_dir>/summary.pdf``; returns the PDF's path.

    Raises:
        HeartlabError: no results, a results folder that cannot be read, typst failing, or a summary longer
            than :data:`MAX_PAGES` pages (nothing written then).
    """
    import typst

    from heartlab.files import write_atomic, write_text_atomic

    out_dir = Path(out_dir)
    collected = collect(results_dir, out_dir / FIGURES)
    source = render(collected, out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)  # typst's root: the figures are read from below it
    try:
        try:
            pages = page_count(source, out_dir.resolve())
            pdf = typst.compile(source.encode(), root=str(out_dir.resolve()), format="pdf")
        except Exception as exc:  # typst raises its own error type with the compiler's message
            raise HeartlabError(f"typst could not compile the summary: {' '.join(str(exc).split())[:400]}") from None
        if pages > MAX_PAGES:
            raise HeartlabError(
                f"the summary runs to {pages} pages, at most {MAX_PAGES} allowed: report fewer ablations or shorter tables"
            )
    except HeartlabError:
        if created:
            out_dir.rmdir()
        raise
    write_text_atomic(out_dir / SOURCE, source)
    write_atomic(out_dir / PDF, lambda partial: Path(partial).write_bytes(pdf))
    return out_dir / PDF


def report_command(args: argparse.Namespace) -> int:
    pdf = build(args.results, args.out)
    print(f"wrote {pdf} and {Path(args.out) / SOURCE}")
    return 0


def add_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="build summary/summary.pdf (2 pages) from the results folders with typst",
        description="Build the 2-page summary PDF from results/<study>/ and results/<ablation>/ files and the figures "
        "notebook 03 saved in summary/figures/; every number is read from the results files.",
    )
    parser.add_argument("--results", default="results", help="folder of exported studies and ablations (default: results)")
    parser.add_argument("--out", default="summary", help="folder for summary.typ and summary.pdf (default: summary)")
    parser.set_defaults(handler=report_command)

