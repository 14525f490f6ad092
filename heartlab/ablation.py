"""Ablations: a base configuration and rows that each change one hyperparameter (or a few together), every
variant trained with several seeds: the evidence behind a table in the style of Table 3 of "Attention is
all you need".

An ablation file (e.g. ``configs/ablation/arrhythmia_resnet1d.gin``)::

    import heartlab.ablation

    ablation.base = 'results/arrhythmia_resnet1d/best.gin'  # the configuration every row starts from
    ablation.rows = {
        'A': {'ResNet1D.channels': [16, 64]},
        'B': {'WeightedCrossEntropy.weighting': ['none', 'inverse']},
        'C': {'ResNet1D.rr_features': [True]},
    }
    ablation.seeds = 3

Each row has a short name and a dict of gin binding keys to lists of values. The lists of one row have the
same length; its ``i``-th variant binds the ``i``-th value of every key (Table 3 changes h, d_k and d_v
together in its row (A)). The base runs as well. Every variant trains with ``fit.seed`` = 0 .. seeds - 1
(the validation split stays that of the base: the data is loaded once), each as a trial of a Ray study run
by the same trial code as a search, without early stopping. The file may also hold bindings that apply to
every variant (e.g. ``fit.epochs``); they come after the base config.

``heartlab ablate FILE`` (or ``python hypertune.py FILE --ablate``) checks everything before Ray starts --
keys (a typo names the nearest valid key), values, that each key is read by what the variant builds, a dry
run of every variant -- then writes ``<storage>/<name>/ablation.parquet`` (one row per trial) and
``ablation.md`` (mean ± std per variant, the changed cells only). The numbers are validation numbers: the
test split is not touched by an ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gin

from heartlab import checks
from heartlab.errors import HeartlabError

BASE = "base"  # the id and label of the base variant
SEED_KEY = "fit.seed"  # what the seeds bind


@dataclass(frozen=True)
class AblationSettings:
    """What an ablation file says; see :func:`ablation` for each field."""

    base: str
    rows: dict[str, dict[str, list[Any]]]
    seeds: int = 3
    metric: str | None = None
    report: tuple[str, ...] | None = None
    epochs: int | None = None
    cpus_per_trial: float = 1.0


@gin.configurable
def ablation(
    base: str | None = None,
    rows: dict | None = None,
    seeds: int = 3,
    metric: str | None = None,
    report: list[str] | tuple[str, ...] | None = None,
    epochs: int | None = None,
    cpus_per_trial: float = 1.0,
) -> AblationSettings:
    """The ablation section of a config (checked by :func:`read_settings`).

    Args:
        base: path of the configuration every variant starts from: a study's ``best.gin`` or an experiment
            config (relative to the current directory, the ablation file's folder or its parent).
        rows: ``{row name: {binding key: [values]}}``; see the module docstring.
        seeds: training seeds per variant (>= 1), bound as ``fit.seed`` = 0 .. seeds - 1.
        metric: the validation metric that picks each trial's best epoch and leads the table; ``None``
            keeps the base's ``fit.monitor``.
        report: the validation metrics the table shows (mean ± std over seeds) after ``metric``; ``None``
            picks by dataset (macro recall, accuracy, macro F1; binary: precision and recall at the
            operating point, PR-AUC).
        epochs: epochs per trial (``fit.epochs``); ``None`` keeps the base's.
        cpus_per_trial: CPUs Ray reserves for each trial (its torch threads follow).
    """
    return AblationSettings(
        base=base, rows=rows, seeds=seeds, metric=metric, report=None if report is None else tuple(report),
        epochs=epochs, cpus_per_trial=cpus_per_trial,
    )


@dataclass(frozen=True)
class Variant:
    """One configuration of an ablation: the base, or a row's ``index``-th set of values."""

    id: str  # 'base', or the row name and the 1-based index: 'A1', 'A2', ...
    row: str  # '' for the base
    values: dict[str, Any]  # binding key -> value (empty for the base)

    @property
    def label(self) -> str:
        from heartlab.distributions import gin_literal

        return BASE if not self.values else ", ".join(f"{key} = {gin_literal(v)}" for key, v in self.values.items())


def read_settings() -> AblationSettings:
    """The ``ablation.*`` bindings of the parsed config, every field checked (not yet the keys)."""
    try:
        settings = ablation()
    except (TypeError, ValueError) as exc:
        raise HeartlabError(f"ablation section: {exc}") from None
    if not isinstance(settings.base, str) or not settings.base.strip():
        raise HeartlabError(
            "ablation.base is missing: bind it to the configuration the rows change, e.g. "
            "ablation.base = 'results/arrhythmia_resnet1d/best.gin'"
        )
    checks.whole("ablation.seeds", settings.seeds, 1)
    checks.whole("ablation.epochs", settings.epochs, 1, optional=True, unit="epochs")
    checks.number("ablation.cpus_per_trial", settings.cpus_per_trial, 0, 1024, low_open=True)
    if settings.metric is not None and not isinstance(settings.metric, str):
        raise HeartlabError(f"ablation.metric must be a metric name such as 'val/recall_macro', got {settings.metric!r}")
    if settings.report is not None and not all(isinstance(m, str) for m in settings.report):
        raise HeartlabError(f"ablation.report must be a list of metric names, got {list(settings.report)!r}")
    return settings


def variants(rows: Any) -> list[Variant]:
    """The base and every row's variants, in the file's order; the shape of ``rows`` checked (not the keys).

    Raises:
        HeartlabError: one line naming the row: not a dict, an empty row, a key without a non-empty list of
            values, lists of different lengths in one row, a row that binds ``fit.seed``.
    """
    if not isinstance(rows, dict) or not rows:
        raise HeartlabError(
            "ablation.rows is empty or missing: bind it to a dict of rows, e.g. "
            "{'A': {'ResNet1D.channels': [16, 64]}}"
        )
    out = [Variant(BASE, "", {})]
    for row, changes in rows.items():
        where = f"ablation.rows[{row!r}]"
        if not isinstance(row, str) or not row.strip() or not row.replace("_", "").isalnum():
            raise HeartlabError(f"{where}: a row name must be a short name of letters and digits, e.g. 'A'")
        if not isinstance(changes, dict) or not changes:
            raise HeartlabError(f"{where} is empty: give it a dict of binding keys to lists of values, e.g. {{'ResNet1D.channels': [16, 64]}}")
        lengths = set()
        for key, values in changes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise HeartlabError(f"{where}[{key!r}] must be a non-empty list of values, got {values!r}")
            if isinstance(key, str) and key.strip() == SEED_KEY:
                raise HeartlabError(f"{where}: {SEED_KEY} is set by ablation.seeds and cannot be a row")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise HeartlabError(
                f"{where}: the keys of one row change together, so their lists need the same length; got "
                + ", ".join(f"{key!r}: {len(values)}" for key, values in changes.items())
            )
        for index in range(lengths.pop()):
            out.append(Variant(f"{row}{index + 1}", row, {key.strip(): changes[key][index] for key in changes}))
    return out


def check_keys(rows: dict[str, dict[str, list[Any]]]) -> None:
    """Every key names a bindable parameter that a study may change (as a search section's keys)."""
    from heartlab.search import check_binding_key, check_searchable, parse_space

    for row, changes in rows.items():
        for key, values in changes.items():
            try:
                check_binding_key(key)
                check_searchable(parse_space({key: f"choice({list(values)!r})"}), allowed=("fit.epochs",))
            except HeartlabError as exc:
                message = str(exc).replace("search.space key", "key").replace("cannot be searched", "cannot be ablated")
                raise HeartlabError(f"ablation.rows[{row!r}]: {message}") from None


def default_report(classes: tuple[str, ...], metric: str = "") -> tuple[str, ...]:
    """The validation metrics an ablation table shows by default for a dataset with these classes: on more
    than two classes macro recall, accuracy, macro F1 and each abnormal class's recall, at the epoch's logit
    adjustment (``val/op/...``) when the lead ``metric`` is one of those, else at argmax."""
    if len(classes) == 2:
        return ("val/op/precision", "val/op/recall", "val/average_precision", "val/recall_macro")
    prefix = "val/op/" if metric.startswith("val/op/") else "val/"
    return (f"{prefix}recall_macro", f"{prefix}accuracy", f"{prefix}f1_macro", *(f"{prefix}recall/{c}" for c in classes[1:]))


def current_value(key: str) -> str:
    """The value the parsed config gives the binding ``key`` (its default when unbound) as table text: a
    string as it is, a configurable as ``@Name``, anything else as gin text."""
    import inspect

    from heartlab.distributions import gin_literal
    from heartlab.search import check_binding_key

    try:
        value = gin.query_parameter(key)
    except ValueError:
        _, selector, arg = check_binding_key(key)
        configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
        target = configurable.wrapped
        signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        default = signature.parameters[arg].default if arg in signature.parameters else None
        value = None if default is inspect.Parameter.empty else default
    if isinstance(value, gin.config.ConfigurableReference):
        return "@" + value.configurable.name
    return value if isinstance(value, str) else gin_literal(value)
