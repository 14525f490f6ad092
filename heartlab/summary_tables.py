"""The summary's tables and sentences as typst text: the studies table per dataset, each ablation's
Table-3-style table, what mattered. :mod:`heartlab.report` collects the results and compiles the page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heartlab import results

if TYPE_CHECKING:
    from heartlab.report import AblationResult, StudyResult

METRIC_LABELS = {  # short column titles of validation metrics in the summary's tables
    "op/precision": "prec. @op", "op/recall": "recall @op", "average_precision": "PR-AUC", "auroc": "ROC-AUC",
    "recall_macro": "macro Se", "recall_macro_floor": "macro Se (floor)", "accuracy": "acc.", "f1_macro": "macro F1",
    "f2_macro": "macro F2", "loss": "loss",
}
PARAMETER_LABELS = {  # short column titles of changed keys in the summary's narrow ablation columns
    "rr_features": "R-R", "stretch_probability": "stretch p", "amplitude_probability": "amp. p", "kernel_size": "kernel",
    "weighting": "weights", "schedule": "LR sched.", "weight_decay": "decay", "sampling": "batches",
}
VALUE_LABELS = {"WeightedCrossEntropy": "weighted CE", "FocalLoss": "focal"}  # changed values, likewise
SUMMARY_METRICS = 6  # metric columns of an ablation table in the summary (ablation.md has them all)
FLOOR = "_floor"  # a metric under the accuracy floor: its plain value, or that value - 1 below the floor
UNDER_FLOOR = "†"  # marks a studies-table value whose validation accuracy missed the floor
PROTOCOLS = {
    "arrhythmia": "MIT-BIH, random beat split (intra-patient: a patient's beats can sit in train and test)",
    "arrhythmia_interpatient": "MIT-BIH, inter-patient DS1 → DS2 (de Chazal 2004): judged on 22 unseen patients",
    "ptb": "PTB Diagnostic sample: normal vs abnormal, stratified random split",
}


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
    body = ",\n  ".join(", ".join(text(breakable(c) if i < left else unbroken(c)) for i, c in enumerate(row)) for row in rows)
    return (
        f"#table(columns: {widths}, align: (left,) * {left} + (right,) * {columns - left}, inset: (x: 3pt, y: 1.8pt), stroke: none,\n"
        f"  table.hline(), {cells}, table.hline(stroke: 0.5pt),\n  {body},\n  table.hline())"
    )


def breakable(name: str) -> str:
    """A name cell that may wrap after its underscores (zero-width spaces): ``resnet1d_recall`` fits a narrow
    column instead of running into the next one."""
    return name.replace("_", "_\u200b")


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


def selection_cell(values: list[float], plain: list[float] | None = None) -> str:
    """A study's selection metric on validation, as :func:`mean_std`. For a floor metric (``..._floor``),
    ``plain`` holds the same runs' plain metric (``recall_macro`` beside ``recall_macro_floor``): that is
    shown, marked :data:`UNDER_FLOOR` when a run's two values differ (its accuracy missed the floor)."""
    if plain is None:
        return mean_std(values)
    under = any(abs(p - v) > 0.5 for v, p in zip(values, plain))
    return mean_std(plain) + (UNDER_FLOOR if under else "")


def decision_metric(metric: str, available) -> str:
    """``test/op/<name>`` when the study's decision rule (the operating point chosen on validation) has that
    value, else ``metric``: the numbers of the rule a user of the model gets."""
    decided = metric.replace("test/", "test/op/", 1)
    return decided if not metric.startswith("test/op/") and decided in available else metric


def short_name(name: str, dataset: str) -> str:
    """A study's folder name without its dataset prefix (the table is per dataset)."""
    return name.removeprefix(dataset + "_") if name != dataset else name


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
            plain = s.metric.removesuffix(FLOOR) if s.metric.endswith(FLOOR) else None
            if seeds is not None and s.metric in seeds.columns:  # the selection metric, on validation
                runs = seeds.drop_nulls([s.metric, *([plain] if plain in seeds.columns else [])])
                valid = selection_cell(runs[s.metric].to_list(), runs[plain].to_list() if plain in runs.columns else None)
            else:
                score, best_plain = s.best_test.get("score"), (s.best_trial or {}).get(f"best/{plain}")
                valid = selection_cell([] if score is None else [score], None if best_plain is None else [best_plain])
            rows.append([short_name(s.name, dataset), s.model, f"{s.trials} ({s.stopped})", wall, valid, *cells])
        selected = ", ".join(dict.fromkeys(inline(s.metric) for s in group))
        seed_counts = sorted({s.top_seeds.filter(s.top_seeds["rank"] == 1).height for s in group if s.top_seeds is not None})
        note = f"Trials selected by {selected} on validation ('val': that metric). Test: " + (
            f"the best trial trained again with {'/'.join(map(str, seed_counts))} seeds (mean ± std); a value without ± is "
            "a study's single test run." if seed_counts else "the best trial, one run."
        )
        if any(UNDER_FLOOR in row[4] for row in rows):
            note += f" {UNDER_FLOOR}: validation accuracy under the selection's floor; the value shown is the plain metric."
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


def ablation_section(ablation: AblationResult) -> list[str]:
    """An ablation's heading, caption and Table-3-style table (typst lines): the metrics of
    :func:`summary_metrics`, constant metric columns and a common ``@op`` said once in the caption."""
    shown, hidden = summary_metrics(ablation.plan)
    plan = {**ablation.plan, "settings": {**ablation.plan["settings"], "report": shown}}
    header, rows = results.ablation_table(ablation.frame, plan, short=True)
    metrics = len(shown)
    header, rows, constant = drop_constant_columns(header, rows, range(len(header) - 1 - metrics, len(header) - 1))
    seeds = ablation.plan["settings"]["seeds"]
    keys = len(header) - 4 - (metrics - len(constant))  # the changed keys' columns, after the row name
    same = "".join(f"; {column_title(name)} was {value} in every row" for name, value in constant)
    titles = [column_title(h) for h in header]
    titles[1:keys + 1] = [PARAMETER_LABELS.get(h, titles[1 + i]) for i, h in enumerate(header[1:keys + 1])]
    rows = [[row[0], *[VALUE_LABELS.get(c, c) for c in row[1:keys + 1]], *row[keys + 1:]] for row in rows]
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
    return [
        f"== Ablation: {inline(ablation.name)} ({inline(PROTOCOLS.get(ablation.dataset, ablation.dataset))})",
        inline(f"Validation metrics in %, mean ± std over {seeds} seeds; blank cells are as in the base row{same}."),
        "",
        "#[#show table: set text(size: 6.5pt)",
        table(titles, rows, left=keys + 1, flexible=range(1, keys + 1)),
        "]",
        "",
    ]
