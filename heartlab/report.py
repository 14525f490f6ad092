"""``heartlab report``: ``summary/summary.pdf`` (2 A4 pages at most), built with typst from the results files.

Every number in the summary is read from a results folder (``results/<name>/``: ``study.json``,
``trials.parquet``, ``best_test_metrics.json``, ``top_seeds.parquet``, ``ablation.json``,
``ablation.parquet``); none is typed by hand. The figures are those ``notebooks/03_hypertune_results.ipynb``
saved into ``summary/figures/`` (each one that exists is included). The typst source is written beside the
PDF (``summary/summary.typ``) and committed with it.

:func:`collect` reads the results, :func:`render` writes the typst source, :func:`build` compiles it and
refuses a summary longer than :data:`MAX_PAGES`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heartlab import results
from heartlab.errors import HeartlabError

MAX_PAGES = 2
SOURCE = "summary.typ"
PDF = "summary.pdf"
FIGURES = "figures"
# the figures the summary shows when notebook 03 wrote them, with their captions, in this order (the two
# single panels side by side, then the rows of one panel per study)
FIGURE_CAPTIONS = {
    "per_class_recall": "Test recall per class of each MIT-BIH study's best model (its decision rule); hatched: inter-patient.",
    "pr_curve_ptb": "PTB: precision-recall curve of the best model on the test split; the dot is the threshold chosen on validation.",
    "importance": "Which hyperparameters mattered: fANOVA-style variance share of the study metric over the trials.",
    "learning_curves": "Validation metric per epoch of every trial: kept (ran to the end) and stopped by ASHA.",
}
METRIC_LABELS = {  # short column titles of validation metrics in the summary's tables
    "op/precision": "prec. @op", "op/recall": "recall @op", "average_precision": "PR-AUC", "auroc": "ROC-AUC",
    "recall_macro": "macro Se", "recall_macro_floor": "macro Se (floor)", "accuracy": "acc.", "f1_macro": "macro F1",
    "f2_macro": "macro F2", "loss": "loss",
}
SUMMARY_METRICS = 6  # metric columns of an ablation table in the summary (ablation.md has them all)
FLOOR = "_floor"  # a metric under the accuracy floor: its plain value, or that value - 1 below the floor
FIGURE_HEIGHT = "4.6cm"  # every figure of half the width fits this height: the summary stays at 2 pages
WIDE_FIGURE = 2.6  # width / height above which a figure spans both columns
PROTOCOLS = {
    "arrhythmia": "MIT-BIH, random beat split (intra-patient: a patient's beats can sit in train and test)",
    "arrhythmia_interpatient": "MIT-BIH, inter-patient DS1 → DS2 (de Chazal 2004): judged on 22 unseen patients",
    "ptb": "PTB Diagnostic sample: normal vs abnormal, stratified random split",
}


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
            ))
    if figures_dir is not None and Path(figures_dir).is_dir():
        out.figures = [Path(figures_dir) / f"{name}.svg" for name in FIGURE_CAPTIONS if (Path(figures_dir) / f"{name}.svg").is_file()]
    if not out.studies and not out.ablations:
        raise HeartlabError(f"{results_dir}: holds no finished study or ablation to report")
    return out


# ---- typst ------------------------------------------------------------------------------------------


def text(value: Any) -> str:
    """``value`` as a typst string literal (shown verbatim: no markup in metric names like recall_macro)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def inline(value: Any) -> str:
    """``value`` as inline markup: ``#"..."``."""
    return "#" + text(value)


def table(header: list[str], rows: list[list[str]], left: int = 1, flexible: range | None = None) -> str:
    """A compact typst table of text cells, the header in bold; the first ``left`` columns (names) are
    left-aligned, the others (numbers) right-aligned. Columns in ``flexible`` share the width left over
    and wrap; the others are as wide as their widest cell (a ``mean ± std`` never breaks)."""
    columns = len(header)
    widths = "(" + ", ".join("1fr" if flexible is not None and i in flexible else "auto" for i in range(columns)) + ",)"
    cells = ", ".join(f"[*{inline(h)}*]" if h else "[]" for h in header)
    body = ",\n  ".join(", ".join(text(unbroken(c)) for c in row) for row in rows)
    return (
        f"#table(columns: {widths}, align: (left,) * {left} + (right,) * {columns - left}, inset: 3pt, stroke: none,\n"
        f"  table.hline(), {cells}, table.hline(stroke: 0.5pt),\n  {body},\n  table.hline())"
    )


def aspect_ratio(svg: Path) -> float:
    """Width / height of an SVG figure, from the size attributes of its root element (1 when absent)."""
    head = svg.read_text(errors="replace")[:2000]
    width = re.search(r'<svg[^>]*\swidth="([\d.]+)', head)
    height = re.search(r'<svg[^>]*\sheight="([\d.]+)', head)
    return float(width.group(1)) / float(height.group(1)) if width and height and float(height.group(1)) > 0 else 1.0


def unbroken(cell: str) -> str:
    """A table cell with no line break inside ``mean ± std`` (no-break spaces around the ±)."""
    return cell.replace(" ± ", "\u00a0±\u00a0")


def column_title(title: str) -> str:
    """A table column's title as the summary shows it: a metric by its short label, underscores as spaces."""
    name = title.removesuffix(" (%)")
    if name in METRIC_LABELS:
        return METRIC_LABELS[name]
    at_op = name.startswith("op/")
    base = name.removeprefix("op/")
    label = METRIC_LABELS.get(base) or (f"Se {base.removeprefix('recall/')}" if base.startswith("recall/") else base.replace("_", " "))
    return f"{label} @op" if at_op else label


def drop_constant_columns(header: list[str], rows: list[list[str]], columns) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """Leave out those of ``columns`` whose cell is the same in every row (e.g. the recall a threshold was
    chosen to reach); returns the header, the rows and ``(name, value)`` of each column left out."""
    constant = [i for i in columns if len({row[i] for row in rows}) == 1]
    keep = [i for i in range(len(header)) if i not in constant]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows], [(header[i], rows[0][i]) for i in constant]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in % over seeds (sample std; a single value alone)."""
    import statistics

    if not values:
        return "-"
    if len(values) == 1:
        return percent(values[0])
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def study_metrics(dataset: str, classes: list[str]) -> list[tuple[str, str]]:
    """(column title, test metric) of a dataset's results table. Five classes: the argmax names; a study
    whose decision is a logit adjustment chosen on validation shows its ``test/op/...`` values instead
    (:func:`decision_metric`). Inter-patient tables add the positive predictivity (+P) of S and V, the
    numbers that literature compares."""
    if len(classes) == 2:
        return [("recall @op", "test/op/recall"), ("precision @op", "test/op/precision"), ("PR-AUC", "test/average_precision"),
                ("ROC-AUC", "test/auroc")]
    picked = [("macro Se", "test/recall_macro"), ("accuracy", "test/accuracy"), ("macro F1", "test/f1_macro")]
    picked += [(f"Se {c}", f"test/recall/{c}") for c in classes[1:]]
    if dataset == "arrhythmia_interpatient":
        picked += [(f"+P {c}", f"test/precision/{c}") for c in classes[1:3]]
    return picked


def decision_metric(metric: str, available) -> str:
    """``test/op/<name>`` when the study's decision rule (the operating point chosen on validation) has that
    value, else ``metric``: the numbers of the rule a user of the model gets."""
    decided = metric.replace("test/", "test/op/", 1)
    return decided if not metric.startswith("test/op/") and decided in available else metric


def short_name(name: str, dataset: str) -> str:
    """A study's folder name without its dataset prefix (the table is per dataset)."""
    return name.removeprefix(dataset + "_") if name != dataset else name


def built_on(collected: Collected) -> str:
    """The date of the newest result (its ``finished`` time), so that the same results give the same source."""
    stamps = [str(item.record.get("finished") or item.record.get("started") or "") for item in collected.studies]
    stamps += [str(item.plan.get("finished") or item.plan.get("started") or "") for item in collected.ablations]
    stamps = [stamp[:10] for stamp in stamps if stamp]
    return max(stamps) if stamps else "an unknown date"


def studies_table(studies: list[StudyResult]) -> str:
    """One table per dataset: each study's model, trials, time and test metrics (mean ± std over the top
    trial's seeds when it was retrained, else its single test evaluation); the selection metric under it."""
    blocks = []
    for dataset in dict.fromkeys(s.dataset for s in studies):
        group = [s for s in studies if s.dataset == dataset]
        classes = group[0].best_test.get("classes") or (group[0].record.get("data") or {}).get("classes") or []
        columns = study_metrics(dataset, classes)
        header = ["study", "model", "trials (stopped)", "wall min", "val %", *[title + " %" for title, _ in columns]]
        rows = []
        for s in group:
            seeds = None
            if s.top_seeds is not None and s.top_seeds.height:
                seeds = s.top_seeds.filter(s.top_seeds["rank"] == 1)
            cells = []
            for _, metric in columns:
                if seeds is not None:
                    metric = decision_metric(metric, seeds.columns)
                    cells.append(mean_std(seeds[metric].drop_nulls().to_list()) if metric in seeds.columns else "-")
                else:
                    cells.append(percent(s.best_test.get(decision_metric(metric, s.best_test))))
            wall = "-" if s.wall_seconds is None else f"{s.wall_seconds / 60:.0f}"
            if seeds is not None and s.metric in seeds.columns:  # the selection metric, on validation
                valid = mean_std(seeds[s.metric].drop_nulls().to_list())
            else:
                valid = percent(s.best_test.get("score"))
            rows.append([short_name(s.name, dataset), s.model, f"{s.trials} ({s.stopped})", wall, valid, *cells])
        selected = ", ".join(dict.fromkeys(inline(s.metric) for s in group))
        seed_counts = sorted({s.top_seeds.filter(s.top_seeds["rank"] == 1).height for s in group if s.top_seeds is not None})
        note = f"Trials selected by {selected} on validation ('val': that metric). Test: " + (
            f"the best trial trained again with {'/'.join(map(str, seed_counts))} seeds (mean ± std); a value without ± is "
            "a study's single test run." if seed_counts else "the best trial, one run."
        )
        blocks.append(f"*{inline(PROTOCOLS.get(dataset, dataset))}*\n\n" + table(header, rows, left=2) + f"\n#text(size: 7pt)[{note}]")
    return "\n\n".join(blocks)


def summary_metrics(plan: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The ablation's reported metrics the summary's table shows, and those it leaves to ``ablation.md``: a
    floor metric (``recall_macro_floor``) gives way to its plain value when that is reported too (the floor
    is named in the caption), and at most :data:`SUMMARY_METRICS` columns, in the plan's order."""
    reported = list(plan["settings"]["report"])
    plain = [m for m in reported if not (m.endswith(FLOOR) and m.removesuffix(FLOOR) in reported)]
    shown = plain[:SUMMARY_METRICS]
    return shown, [m for m in reported if m not in shown]


def below_floor(ablation: AblationResult, metric: str) -> dict[str, int]:
    """Per variant, the seeds whose best epoch missed the accuracy floor (their ``<metric>_floor`` is their
    ``metric`` - 1); empty when the ablation has no floor metric for ``metric``."""
    floor, plain = f"best/{metric}{FLOOR}", f"best/{metric}"
    if floor not in ablation.frame.columns or plain not in ablation.frame.columns:
        return {}
    missed = ablation.frame.filter((ablation.frame[plain] - ablation.frame[floor]) > 0.5)
    return {variant: group.height for (variant,), group in missed.group_by("variant")}


def what_mattered(ablation: AblationResult) -> str:
    """One sentence per ablation: the rows whose change of the lead metric (the first the table shows)
    against the base exceeds the seed spread (largest first, with the change in points), then those within
    it, then those with seeds under the accuracy floor of a floor metric (failures to its selection)."""
    metric = summary_metrics(ablation.plan)[0][0]
    missed = below_floor(ablation, metric)
    summary = results.ablation_summary(ablation.frame, [metric])
    base = summary.filter(summary["variant"] == "base")
    if base.height == 0 or base[f"{metric}/mean"][0] is None:
        return ""
    base_mean = base[f"{metric}/mean"][0]
    labels = {v["id"]: v.get("label") or v["id"] for v in ablation.plan["variants"]}
    changes, failed = [], []
    for row in summary.filter(summary["variant"] != "base").iter_rows(named=True):
        if row[f"{metric}/mean"] is None:
            continue
        delta = 100 * (row[f"{metric}/mean"] - base_mean)
        noise = 100 * max(row[f"{metric}/std"] or 0.0, base[f"{metric}/std"][0] or 0.0)
        label = labels.get(row["variant"], row["label"])
        if missed.get(row["variant"]):  # the selection counts those seeds as failures, whatever their recall
            failed.append(f"{label} ({missed[row['variant']]} of {row['n']} seeds)")
            continue
        changes.append((abs(delta), delta, noise, label))
    changes.sort(key=lambda change: change[0], reverse=True)
    beyond = [f"{label} ({delta:+.2f})" for _, delta, noise, label in changes if abs(delta) > noise]
    within = [label for _, delta, noise, label in changes if abs(delta) <= noise]
    name = metric.removeprefix("val/")
    sentence = f"{ablation.name}, {name} in points against the base: "
    sentence += ("beyond the seed spread: " + "; ".join(beyond) + ". ") if beyond else "no change beyond the seed spread. "
    if within:
        sentence += "Within the spread (no evidence either way): " + "; ".join(within) + ". "
    if failed:
        sentence += "Accuracy under the selection's floor: " + "; ".join(failed) + "."
    return sentence.rstrip()


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
        shown, hidden = summary_metrics(ablation.plan)
        plan = {**ablation.plan, "settings": {**ablation.plan["settings"], "report": shown}}
        header, rows = results.ablation_table(ablation.frame, plan, short=True)
        metrics = len(shown)
        header, rows, constant = drop_constant_columns(header, rows, range(len(header) - 1 - metrics, len(header) - 1))
        seeds = ablation.plan["settings"]["seeds"]
        keys = len(header) - 4 - (metrics - len(constant))  # the changed keys' columns, after the row name
        same = "".join(f"; {column_title(name)} was {value} in every row" for name, value in constant)
        titles = [column_title(h) for h in header]
        metric_titles = titles[keys + 3:-1]
        if len(metric_titles) > 1 and all(t.endswith(" @op") for t in metric_titles):  # say it once, in the caption
            titles[keys + 3:-1] = [t.removesuffix(" @op") for t in metric_titles]
            same += "; all at the decision rule chosen on validation (@op)"
        floors = [m for m in hidden if m.endswith(FLOOR)]
        if floors:
            same += f"; selected by {', '.join(column_title(m.removeprefix('val/')) for m in floors)}: the same value, or 100 points less below the accuracy floor"
        others = [m for m in hidden if m not in floors]
        if others:
            same += f"; {', '.join(column_title(m.removeprefix('val/')) for m in others)} in {ablation.name}/ablation.md"
        lines += [
            f"== Ablation: {inline(ablation.name)} ({inline(PROTOCOLS.get(ablation.dataset, ablation.dataset))})",
            inline(f"Validation metrics in %, mean ± std over {seeds} seeds; blank cells are as in the base row{same}."),
            "",
            "#[#show table: set text(size: 6.5pt)",
            table(titles, rows, left=keys + 1, flexible=range(1, keys + 1)),
            "]",
            "",
        ]
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

