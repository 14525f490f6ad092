"""The search section of an experiment's .gin file, turned into a Ray Tune search space.

An experiment file may end with a search section::

    search.metric = 'val/recall_macro'    # a metric train.fit reports (heartlab.metrics.metric_names)
    search.mode = 'max'
    search.num_samples = 24
    search.space = {
        'ResNet1D.channels': 'choice([16, 32, 64])',
        'torch.optim.AdamW.lr': 'loguniform(1e-4, 3e-3)',
        'train/FocalLoss.gamma': 'uniform(0.0, 3.0)',    # scoped keys work too
    }

Each key of ``search.space`` is a gin binding key (``[scope/]Configurable.parameter``); each value is a
string naming one of Ray Tune's sampling functions (see :mod:`heartlab.distributions`: parsed against a
whitelist, literal arguments only, never ``eval``-ed).

This module only reads and checks the section; :mod:`heartlab.tune` runs the study. ``search`` is a gin
configurable: a search section starts with ``import heartlab.search`` so that the file also parses under
``heartlab train``, which ignores the section.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

import gin

from heartlab import checks
from heartlab.config import check_binding_key
from heartlab.distributions import Distribution, binding_lines, gin_literal, parse_distribution, to_python
from heartlab.errors import HeartlabError

__all__ = [  # the distribution helpers are re-exported: a search space is read with them
    "Distribution", "SearchSettings", "SearchSpace", "binding_lines", "check_binding_key", "check_metric",
    "check_searchable", "check_settings", "gin_literal", "parse_distribution", "parse_space", "read_settings",
    "search", "to_python", "values_to_check",
]

# What a study cannot search: selector (or "fit.<parameter>") -> why. The data is loaded once by the driver;
# a trial's threads, run directory and selection metric are set by the study; ASHA's rungs need one
# number of epochs for all trials.
UNSEARCHABLE = {
    "heartlab.data.load_splits": "the data is loaded once by the driver and shared by all trials",
    "heartlab.search.search": "the search section configures the study itself",
    "fit.epochs": "every trial runs search.max_epochs (or fit.epochs) epochs, and ASHA's rungs are sized from "
    "it; set search.max_epochs instead",
    "fit.num_threads": "a trial's threads follow search.cpus_per_trial",
    "fit.experiment": "trials write into the study directory",
    "fit.runs_root": "trials write into the study directory",
    "fit.monitor": "the study sets it to search.metric",
    "fit.monitor_mode": "the study sets it to search.mode",
}

SCHEDULERS = ("asha", "none")
ALGORITHMS = ("random", "optuna")
MODES = ("max", "min")


@dataclass(frozen=True)
class SearchSettings:
    """Everything the search section says; see :func:`search` for the meaning of each field."""

    space: dict[str, str]
    metric: str = "val/recall_macro"
    mode: str = "max"
    num_samples: int = 16
    algorithm: str = "random"
    scheduler: str = "asha"
    grace_period: int = 2
    reduction_factor: float = 3.0
    max_epochs: int | None = None
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int | None = None
    seed: int | None = None


@gin.configurable("search")
def search(
    space: dict[str, str] | None = None,
    metric: str = "val/recall_macro",
    mode: str = "max",
    num_samples: int = 16,
    algorithm: str = "random",
    scheduler: str = "asha",
    grace_period: int = 2,
    reduction_factor: float = 3.0,
    max_epochs: int | None = None,
    cpus_per_trial: float = 1.0,
    max_concurrent_trials: int | None = None,
    seed: int | None = None,
) -> SearchSettings:
    """The search section of an experiment file (bound as ``search.<name> = ...``).

    Args:
        space: gin binding key -> distribution string, e.g.
            ``{'ResNet1D.channels': 'choice([16, 32, 64])'}``. Required: a study needs something to search.
        metric: the validation metric trials are ranked by; one of the names ``train.fit`` reports
            (``val/recall_macro``, ``val/f1_macro``, ``val/loss``, ``val/recall/<class>``, ...).
        mode: ``'max'`` or ``'min'``: whether a larger ``metric`` is better.
        num_samples: trials to run (with ``grid_search`` entries: samples per grid point, as in Ray).
        algorithm: ``'random'`` (Ray's random/grid search) or ``'optuna'`` (TPE; needs the ``optuna``
            extra, and no ``grid_search`` entries).
        scheduler: ``'asha'`` stops weak trials early at rungs ``grace_period * reduction_factor**k``
            epochs; ``'none'`` trains every trial for all its epochs.
        grace_period: epochs every trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the best ``1/reduction_factor`` of the trials at each rung.
        max_epochs: epochs per trial, bound as ``fit.epochs``; ``None`` keeps the experiment's
            ``fit.epochs``.
        cpus_per_trial: CPUs Ray reserves for each trial; the trial's torch thread count follows it
            (``--cpus-per-trial`` overrides).
        max_concurrent_trials: cap on trials running at once; ``None`` lets the CPUs decide.
        seed: seed of the search algorithm's sampling, for a reproducible sequence of trials.
    """
    if space is None:
        space = {}
    return SearchSettings(
        space=dict(space),
        metric=metric,
        mode=mode,
        num_samples=num_samples,
        algorithm=algorithm,
        scheduler=scheduler,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        max_epochs=max_epochs,
        cpus_per_trial=cpus_per_trial,
        max_concurrent_trials=max_concurrent_trials,
        seed=seed,
    )


def read_settings() -> SearchSettings:
    """The search section of the gin config parsed so far, checked field by field (not yet the keys)."""
    try:
        settings = search()
    except (TypeError, ValueError) as exc:
        raise HeartlabError(f"search section: {exc}") from None
    check_settings(settings)
    return settings


def check_settings(settings: SearchSettings) -> None:
    """Raise :class:`HeartlabError` for a search section whose fields make no sense."""

    def fail(problem: str) -> HeartlabError:
        return HeartlabError(f"search section: {problem}")

    if not isinstance(settings.space, dict) or not settings.space:
        raise fail(
            "search.space is empty or missing: bind it to a dict such as "
            "{'ResNet1D.channels': 'choice([16, 32, 64])'}"
        )
    for key, value in settings.space.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise fail(f"search.space entries must be 'key': 'distribution' strings, got {key!r}: {value!r}")
    try:
        checks.one_of("search.mode", settings.mode, MODES)
        checks.one_of("search.algorithm", settings.algorithm, ALGORITHMS)
        checks.one_of("search.scheduler", settings.scheduler, SCHEDULERS)
        checks.whole("search.num_samples", settings.num_samples, 1)
        checks.whole("search.grace_period", settings.grace_period, 1, unit="epochs")
        checks.number("search.reduction_factor", settings.reduction_factor, 2, math.inf, high_open=True)
        checks.whole("search.max_epochs", settings.max_epochs, 1, optional=True, unit="epochs")
        checks.number("search.cpus_per_trial", settings.cpus_per_trial, 0, 1024, low_open=True)
        checks.whole("search.max_concurrent_trials", settings.max_concurrent_trials, 1, optional=True)
        checks.whole("search.seed", settings.seed, 0, optional=True)
    except HeartlabError as exc:
        raise fail(str(exc)) from None


# ---------------------------------------------------------------------------------------------------
# The space
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """The checked ``search.space``: binding key (as written) -> parsed distribution."""

    distributions: dict[str, Distribution]

    @property
    def keys(self) -> list[str]:
        return list(self.distributions)

    @property
    def has_grid(self) -> bool:
        return any(d.is_grid for d in self.distributions.values())

    def param_names(self) -> dict[str, str]:
        """Ray-side parameter name -> gin key. Ray and Optuna treat '/' as nesting, so scopes use ':'."""
        return {key.replace("/", ":"): key for key in self.distributions}

    def to_ray(self) -> dict[str, Any]:
        """The ``param_space`` for :class:`ray.tune.Tuner` (keys from :meth:`param_names`)."""
        return {name: self.distributions[key].to_ray() for name, key in self.param_names().items()}

    def first_point(self) -> dict[str, Any]:
        """A point of the space Ray can draw (gin key -> :meth:`Distribution.first`), without Ray."""
        return {key: dist.first() for key, dist in self.distributions.items()}

    def sample(self, seed: int = 0) -> dict[str, Any]:
        """One point of the space (gin key -> value) drawn by Ray's samplers, as Python values."""
        return {key: dist.sample(seed + i) for i, (key, dist) in enumerate(self.distributions.items())}


def parse_space(space: dict[str, str]) -> SearchSpace:
    """Check every key of ``space`` against gin's registry and parse every distribution string."""
    if not space:
        raise HeartlabError(
            "search section: search.space is empty or missing: bind it to a dict such as "
            "{'ResNet1D.channels': 'choice([16, 32, 64])'}"
        )
    distributions: dict[str, Distribution] = {}
    canonical: dict[str, str] = {}
    for key, text in space.items():
        scope, selector, arg_name = check_binding_key(key)
        full = f"{scope}/{selector}.{arg_name}" if scope else f"{selector}.{arg_name}"
        if full in canonical:
            raise HeartlabError(f"search.space keys {canonical[full]!r} and {key!r} name the same parameter")
        canonical[full] = key
        distributions[key.strip()] = parse_distribution(text, key)
    return SearchSpace(distributions)


def check_searchable(space: SearchSpace, allowed: tuple[str, ...] = ()) -> None:
    """Raise :class:`HeartlabError` for a key a study cannot search (:data:`UNSEARCHABLE` says why);
    ``allowed`` names entries of it that are fine here (an ablation, which has no ASHA, may change
    ``fit.epochs``)."""
    for key in space.keys:
        _, selector, arg = check_binding_key(key)
        short = f"fit.{arg}" if selector == "heartlab.train.fit" else selector
        reason = None if short in allowed else UNSEARCHABLE.get(short) or UNSEARCHABLE.get(selector)
        if reason:
            raise HeartlabError(f"search.space key {key!r} cannot be searched: {reason}")


def values_to_check(dist: Distribution) -> list[Any]:
    """The values of a distribution worth range-checking: every option of a choice/grid, else both bounds."""
    if dist.name in ("choice", "grid_search"):
        return [to_python(v) for v in dist.args[0]]
    if dist.name in ("randint", "qrandint"):
        return [dist.args[0], dist.args[1] - 1]  # Ray's upper bound is exclusive
    return [dist.args[0], dist.args[1]]


def check_metric(metric: str, valid: list[str]) -> None:
    """Raise :class:`HeartlabError` unless ``metric`` is one of the reported validation metrics."""
    if metric in valid:
        return
    choices = [m for m in valid if m.startswith("val/")] or valid
    near = difflib.get_close_matches(metric, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise HeartlabError(
        f"search.metric {metric!r} is not a metric training reports{hint} (choose from {', '.join(choices)})"
    )
